"""Property-based: no malformed input makes the other entry points show a
traceback.

`experiments.decode` and `experiments.evaluate` on a tiny trained run,
`scripts.sweep --dry_run` and `scripts.report` get random and malformed
flags, `--gin_param` strings, sweep files, run and sweep directories; each
input either is valid (exit 0) or exits 2 with one `error: ...` line and
writes nothing (a valid evaluate writes only its results, a valid report
only the report). test_bad_input.py, whose inputs these reuse, does the same
for `experiments.main --dry_run`.
"""
import copy
import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from experiments import decode, evaluate
from scripts import report, sweep
from scripts.sweeps import layout, spec
from test_bad_input import EXAMPLES, FIELDS, gin_values, identifiers
from test_decoding import _train
from test_sweep import _write
from test_report import NAMES, SWEEP, _log

# Where a valid input decodes, evaluates or plots: fewer examples.
SLOW = settings(EXAMPLES, max_examples=50)
SLOWER = settings(EXAMPLES, max_examples=30)
TRAINED_STEPS = 2


def snapshot(root):
    """Every path under `root`; files with their size and mtime."""
    tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            tree[os.path.relpath(path, root)] = (
                None if name in dirs else (info.st_size, info.st_mtime_ns))
    return tree


def check(command, args, root, capsys, may_write=None):
    """Runs `command.main(args)`; asserts exit 0, or exit 2 with one
    `error: ` line. Nothing under `root` may change, except on exit 0 under
    `may_write` (a path relative to `root`). Returns the status and
    stderr."""
    before = snapshot(root)
    status = command.main([command.__name__, *args])
    err = capsys.readouterr().err
    assert status in (0, 2), (args, status, err)
    after = snapshot(root)
    changed = {p for p in before.keys() | after.keys()
               if before.get(p) != after.get(p)}
    if status == 2:
        assert err.startswith('error: ') and 'Traceback' not in err, err
        assert err.count('\n') == 1, err
    if status == 2 or may_write is None:
        assert not changed, (args, err, changed)
    else:
        assert all(p.startswith(may_write) for p in changed), changed
    return status, err


# ------------------------------------------- decode and evaluate ----

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The root holding `run`, a TransformerLM trained for 2 steps."""
    run = _train(tmp_path_factory, 'transformer_copy.gin', 'TransformerLM',
                 TRAINED_STEPS, ['models.TransformerLM.n_layers = 1',
                                 'experiments.Experiment.n_eval_batches = 1',
                                 'experiments.Experiment.decode_eval_every '
                                 '= 0'])
    return os.path.dirname(run.output_dir)


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working directory, so relative paths land in it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_command(command, args, root, capsys):
    """`command` on the trained run; evaluate may add its results."""
    return check(command, [f'--output_dir={os.path.join(root, "run")}',
                           *args], root, capsys,
                 may_write=os.path.join('run', evaluate.RESULTS_DIR))


commands = st.sampled_from([decode, evaluate])
# The configurables the trained run builds, and ReformerLM, which it does not.
SELECTORS = [f'{c}.{f}' for c, fields in FIELDS.items() for f in fields
             if c != 'tasks.reversal']


@SLOW
@given(commands, st.text(max_size=60))
def test_random_gin_params(trained, capsys, command, text):
    run_command(command, [f'--gin_param={text}'], trained, capsys)


@SLOW
@given(commands, st.sampled_from(SELECTORS), gin_values)
def test_wrong_values_for_every_parameter(trained, capsys, command, selector,
                                          value):
    status, err = run_command(
        command, [f'--gin_param={selector} = {value}'], trained, capsys)
    assert status == 0 or selector.rsplit('.', 1)[1] in err, err


@SLOW
@given(commands, st.sampled_from(['experiments.Experiment.task',
                                  'experiments.Experiment.model']),
       identifiers)
def test_unknown_tasks_and_models_are_refused(trained, capsys, command, field,
                                              name):
    status, err = run_command(command, [f'--gin_param={field} = @{name}()'],
                              trained, capsys)
    assert status == 2 and name in err, err


run_paths = st.one_of(
    st.text(max_size=30),
    st.sampled_from(['', '.', '/', 'run', 'ROOT', 'ROOT/run/checkpoints',
                     'ROOT/run/eval', 'ROOT/run/evaluations',
                     'ROOT/run/config.gin',
                     f'ROOT/run/checkpoints/step_{TRAINED_STEPS:08d}.pkl']))


@SLOW
@given(commands, run_paths)
def test_output_dirs_that_are_not_runs(trained, elsewhere, capsys, command,
                                       path):
    """Relative paths are read from an empty directory, so none is a run;
    ROOT/... are the trained run's parent and parts."""
    path = path.replace('ROOT', trained)
    assert check(command, [f'--output_dir={path}'], trained, capsys)[0] == 2
    assert os.listdir(elsewhere) == []


@SLOW
@given(commands, st.one_of(st.integers().filter(lambda s: s != TRAINED_STEPS)
                           .map(str), st.text(max_size=10)))
def test_bad_steps(trained, capsys, command, step):
    run_command(command, [f'--step={step}'], trained, capsys)


# A count is small or impossible: a large possible one is valid, and slow.
counts = st.one_of(st.integers(-2, 3), st.integers(max_value=-3),
                   st.integers(min_value=2**40))
numbers = st.one_of(st.integers().map(str), st.floats().map(str),
                    st.text(max_size=10))
DECODE_FLAGS = {
    'prompt': st.one_of(st.text(max_size=20), st.lists(
        st.integers(-2, 40).map(str), max_size=20).map(' '.join)),
    'length': numbers, 'temperature': numbers, 'seed': numbers,
    'step': numbers, 'num_examples': st.one_of(counts.map(str), numbers.filter(
        lambda n: not n.isdigit() or int(n) < 4)),
    'split': st.one_of(st.sampled_from(['eval', 'train']),
                       st.text(max_size=8)),
}


def flags_of(values):
    """`--name=value` for a flag of `values` (name -> strategy)."""
    return st.sampled_from(sorted(values)).flatmap(
        lambda name: values[name].map(f'--{name}={{}}'.format))


@SLOWER
@given(st.lists(flags_of(DECODE_FLAGS), min_size=1, max_size=3))
def test_bad_decode_flags(trained, capsys, flags):
    run_command(decode, flags, trained, capsys)


@SLOWER
@given(st.one_of(counts.map(str), st.floats().map(str), st.text(max_size=10)))
def test_bad_evaluate_batches(trained, capsys, value):
    run_command(evaluate, [f'--num_batches={value}'], trained, capsys)


@SLOW
@given(commands, st.lists(st.text(max_size=20), min_size=1, max_size=3))
def test_junk_arguments(trained, elsewhere, capsys, command, args):
    run_command(command, args, trained, capsys)


# ------------------------------------------------------ scripts.sweep ----

AXIS = "{'models.TransformerLM.n_heads': [1, 2]}"
# Python literals as a sweep file writes axis values.
literals = st.one_of(
    st.sampled_from([1, 2, 4, 16, 32]),  # sizes codelab.gin can take
    st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8),
    st.booleans(), st.none(),
    st.sampled_from(['@models.TransformerLM()', '@tasks.copy()', '%LENGTH',
                     '%UNDEFINED', '@nothing()', '@models.ReformerLM()']))
axis_names = st.one_of(st.sampled_from(SELECTORS + ['LENGTH', 'VOCAB_SIZE']),
                       identifiers,
                       identifiers.map(lambda f: f'models.TransformerLM.{f}'))


def sweep_dry_run(path, args, root, capsys):
    """The sweep file at `path`, dry run last so no junk flag turns it off;
    the default output directory is under `root`, the working directory."""
    check(sweep, [f'--gin_file={path}', *args, '--dry_run'], root, capsys)


@pytest.fixture
def sweep_file(elsewhere):
    """Writes a tiny sweep file (test_sweep.py's) into the working
    directory; returns its path."""
    return lambda axes=AXIS, mode='grid', extra='': _write(
        elsewhere, axes, mode=mode, extra=extra)


@EXAMPLES
@given(st.lists(st.text(max_size=40), min_size=1, max_size=4))
def test_sweep_files_with_random_lines(elsewhere, sweep_file, capsys, lines):
    sweep_dry_run(sweep_file(extra='\n'.join(lines)), [], elsewhere, capsys)


@EXAMPLES
@given(st.dictionaries(axis_names, st.lists(literals, max_size=3),
                       min_size=1, max_size=3),
       st.one_of(st.sampled_from(spec.MODES), st.text(max_size=6)))
def test_random_axes_and_values(elsewhere, sweep_file, capsys, axes, mode):
    sweep_dry_run(sweep_file(repr(axes), mode=mode), [], elsewhere, capsys)


@EXAMPLES
@given(st.lists(st.text(max_size=40), max_size=3),
       st.lists(st.one_of(st.text(max_size=20),
                          st.text(max_size=40).map('--gin_param='.__add__),
                          st.text(max_size=20).map('--trial='.__add__)),
                max_size=3))
def test_junk_bindings_and_flags(elsewhere, sweep_file, capsys, bindings,
                                 args):
    path = sweep_file(extra=f'scripts.Sweep.bindings = {bindings!r}\n')
    sweep_dry_run(path, args, elsewhere, capsys)


# ----------------------------------------------------- scripts.report ----

STATUS = {'name': NAMES[0], 'state': 'finished', 'wall_time_s': 1.5,
          'error': None, 'attempts': 1}
MANIFEST = json.loads(json.dumps(
    layout.manifest('lsh', SWEEP, spec.expand(SWEEP))))


@pytest.fixture(scope='module')
def swept(tmp_path_factory):
    """The root holding `sweep`, a sweep directory as test_report.py's with
    one trial finished, and `out`, where reports go."""
    root = tmp_path_factory.mktemp('report')
    trial = str(root / 'sweep' / NAMES[0])
    layout.write_manifest(str(root / 'sweep'), MANIFEST)
    _log(trial, [0.5, 0.9], [1.0, 50.0])
    layout.write_status(trial, STATUS)
    return str(root)


def run_report(args, root, capsys, may_write=('out', 'sweep/report',
                                              'sweep/plots')):
    return check(report, [os.path.join(root, 'sweep'),
                          f'--output_dir={os.path.join(root, "out")}', *args],
                 root, capsys, may_write)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)


@st.composite
def corrupted(draw, node):
    """`node` with one part, at any depth, deleted or replaced by random
    JSON."""
    if isinstance(node, (dict, list)) and node and draw(st.booleans()):
        key = draw(st.sampled_from(
            list(node) if isinstance(node, dict) else range(len(node))))
        node = copy.copy(node)
        if draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(corrupted(node[key]))
        return node
    return draw(json_values)


def damaged(data):
    """File contents: `data` as JSON with a part changed, truncated, or
    random bytes."""
    text = json.dumps(data)
    return st.one_of(
        corrupted(data).map(lambda d: json.dumps(d).encode()),
        st.integers(0, len(text) - 1).map(lambda n: text[:n].encode()),
        st.binary(max_size=40))


def with_file(path, contents, test):
    """Runs `test()` with `contents` in `path`, then puts the file back."""
    with open(path, 'rb') as f:
        original = f.read()
    with open(path, 'wb') as f:
        f.write(contents)
    try:
        return test()
    finally:
        with open(path, 'wb') as f:
            f.write(original)


report_paths = st.one_of(
    st.text(max_size=30),
    st.sampled_from(['', '.', '/', 'ROOT', 'ROOT/out', 'ROOT/sweep/sweep.json',
                     f'ROOT/sweep/{NAMES[0]}', f'ROOT/sweep/{NAMES[1]}']))


@EXAMPLES
@given(report_paths)
def test_report_on_dirs_that_are_not_sweeps(swept, elsewhere, capsys, path):
    path = path.replace('ROOT', swept)
    assert check(report, [path], swept, capsys)[0] == 2
    assert os.listdir(elsewhere) == []


@settings(EXAMPLES, max_examples=100)
@given(damaged(MANIFEST))
def test_report_on_a_corrupted_sweep_json(swept, capsys, contents):
    with_file(os.path.join(swept, 'sweep', layout.MANIFEST), contents,
              lambda: run_report([], swept, capsys))


@SLOW
@given(damaged(STATUS))
def test_report_on_a_corrupted_trial_json(swept, capsys, contents):
    with_file(os.path.join(swept, 'sweep', NAMES[0], layout.STATUS),
              contents, lambda: run_report([], swept, capsys))


@SLOW
@given(st.lists(st.one_of(st.text(max_size=20),
                          st.text(max_size=30).map('--metric='.__add__),
                          st.text(max_size=30).map('--output_dir='.__add__)),
                min_size=1, max_size=3))
def test_report_junk_arguments(swept, elsewhere, capsys, args):
    """Relative --output_dir paths land in `elsewhere`, which a valid
    report may write to."""
    before = sorted(os.listdir(elsewhere))
    if run_report(args, swept, capsys)[0] == 2:
        assert sorted(os.listdir(elsewhere)) == before


def test_anchors(trained, swept, capsys):
    """Inputs the properties above may not draw: impossible sizes are named
    without being built, and plots take names as plain text."""
    for command, args, message in [
            (evaluate, ['--gin_param=models.TransformerLM.n_layers='
                        '1000000000000'],
             'n_layers=1000000000000 (trained with 1) changes the shapes'),
            (decode, ['--gin_param=tasks.copy.batch_size=1000000000000'],
             'a batch of tasks.copy.batch_size=1000000000000 x length=16 '
             'needs'),
            (evaluate, ['--num_batches=1000000000000'],
             '--num_batches=1000000000000 batches of 16 x 16 tokens needs'),
            (decode, ['--temperature=nan'], '--temperature must be a finite'),
            (decode, ['--seed=4294967296'], 'not an integer in the range')]:
        status, err = run_command(command, args, trained, capsys)
        assert status == 2 and message in err, (args, err)
    named = json.dumps({**MANIFEST, 'sweep': r'$\undefined$'}).encode()
    assert with_file(os.path.join(swept, 'sweep', layout.MANIFEST), named,
                     lambda: run_report([], swept, capsys))[0] == 0
