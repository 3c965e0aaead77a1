"""The lean install's promise: the main install (setup.py's requirements and
trax installed with --no-deps) runs experiments without TensorFlow, and the
test command installs trax the same way, so the suite tests what users get."""
import importlib.metadata
import os
import subprocess
import sys
import textwrap

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = 'trax-seq-lab'
# In every venv: what the venv itself and an editable install bring.
VENV = ('pip', 'setuptools', PROJECT)


def _requirements(extra=None):
    """Canonical names of the project's requirements: the main install's,
    or those that `extra` adds."""
    found = set()
    for line in importlib.metadata.requires(PROJECT) or ():
        req = Requirement(line)
        main = req.marker is None or req.marker.evaluate({'extra': ''})
        if main if extra is None else (
                not main and req.marker.evaluate({'extra': extra})):
            found.add(canonicalize_name(req.name))
    return found


def _main_install():
    """Distributions a main install holds: the requirements, what they
    bring (installed here), and trax alone."""
    todo, seen = [*_requirements(), *VENV], {'trax'}
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or ()
        except importlib.metadata.PackageNotFoundError:
            continue  # a marker for another platform
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({'extra': ''}):
                todo.append(req.name)
    return seen


def test_main_requirements_leave_tensorflow_and_trax_out():
    main = _requirements()
    assert not {n for n in main if n.startswith(('tensorflow', 'keras'))}
    assert not main & {'trax', 'gym', 'funcsigs'}
    assert 'tensorflow' in _requirements('upstream')
    assert _requirements('upstream') <= _requirements('test')


def test_trax_is_installed_without_its_dependencies():
    # Its declared tensorflow-text, tensorflow-datasets and gym are absent
    # only where trax went in with --no-deps, as the README's commands do.
    assert importlib.metadata.version('trax') == '1.4.1'
    for name in ('tensorflow-text', 'tensorflow-datasets', 'gym'):
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        raise AssertionError(f'{name} is installed: install trax --no-deps')


def test_a_run_needs_only_the_main_install(tmp_path):
    """With every module that the main install lacks hidden (TensorFlow,
    Keras, the test tools...), the bridge imports, a run trains, evaluates,
    checkpoints and decodes, and a trax feature that needs TensorFlow says
    which extra has it."""
    main = _main_install()
    hidden = sorted(module for module, dists
                    in importlib.metadata.packages_distributions().items()
                    if not {canonicalize_name(d) for d in dists} & main)
    assert 'tensorflow' in hidden and 'keras' in hidden
    script = textwrap.dedent(f'''
        import sys
        HIDDEN = set({hidden!r})

        class Hide:
            """Wraps a finder: the hidden modules are not found."""
            def __init__(self, finder):
                self.finder = finder
            def find_spec(self, name, path=None, target=None):
                if name.partition('.')[0] in HIDDEN:
                    return None
                return self.finder.find_spec(name, path, target)
            def __getattr__(self, name):
                return getattr(self.finder, name)

        sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
        from experiments import decode, evaluate, main
        from models import trax_bridge
        steps = ['experiments.Experiment.n_steps = 2',
                 'experiments.Experiment.eval_every = 2',
                 'experiments.Experiment.n_eval_batches = 1']
        out = {str(tmp_path)!r}
        assert main.run(['codelab.gin'], steps, output_dir=out) == 0
        assert evaluate.run(out) == 0
        assert decode.run(out, num_examples=1) == 0
        try:
            trax_bridge.trax.jaxboard.SummaryWriter(out)
        except ModuleNotFoundError as error:
            assert "'.[upstream]'" in str(error), error
        else:
            raise AssertionError('TensorFlow was found')
        print('OK')
    ''')
    proc = subprocess.run(
        [sys.executable, '-c', script], cwd=REPO_ROOT, timeout=300,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == 'OK', proc.stdout
