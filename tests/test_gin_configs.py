"""Every shipped gin file parses, dry-runs and selects this project's code."""
import glob
import os
import re

import gin
import pytest

from experiments import config, main
from scripts.sweeps import spec

ALL_FILES = sorted(glob.glob(os.path.join(config.CONFIG_DIR, '**', '*.gin'),
                             recursive=True))
EXPERIMENTS = sorted(os.path.basename(p) for p in glob.glob(
    os.path.join(config.CONFIG_DIR, '*.gin')))
SHIPPED = {'codelab.gin', 'transformer_copy.gin', 'reformer_copy.gin',
           'transformer_reversal.gin', 'reformer_reversal.gin'}
SWEEP_DIR = os.path.join(config.CONFIG_DIR, 'sweeps')
SWEEPS = sorted(os.path.basename(p) for p in glob.glob(
    os.path.join(SWEEP_DIR, '*.gin')))
SHIPPED_SWEEPS = {'reformer_lsh.gin', 'model_sizes.gin'}
# Configurables we take from trax on purpose; ours live in these packages.
OUR_PACKAGES = ('experiments', 'models', 'tasks', 'scripts')
TRAX_ALLOWED = ('trax.optimizers', 'trax.supervised.lr_schedules')


def _rel(path):
    return os.path.relpath(path, config.CONFIG_DIR)


def test_shipped_experiments_exist():
    assert SHIPPED <= set(EXPERIMENTS)


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_experiment_dry_runs(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main.run([name], [], dry_run=True) == 0
    out = capsys.readouterr().out
    # A number, or a macro such as the zoo's %STEPS.
    assert re.search(r'Experiment\.n_steps = (\d+|%\w+)', out)
    assert f'would write to runs/{name[:-4]}' in out
    assert os.listdir(tmp_path) == []  # a dry run writes nothing


@pytest.mark.parametrize('path', ALL_FILES, ids=_rel)
def test_header(path):
    """One-line purpose first; experiment and sweep files also give command
    and result."""
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith('# ') and len(lines[0]) > 10
    if os.path.dirname(path) == SWEEP_DIR:
        header = '\n'.join(l for l in lines if l.startswith('#'))
        name = os.path.basename(path)
        assert f'python -m scripts.sweep --gin_file=sweeps/{name}' in header
        assert re.search(r'2-core CPU: .*\d.* min', header), (
            'header must state the measured runtime')
    if os.path.dirname(path) == config.CONFIG_DIR:
        header = '\n'.join(l for l in lines if l.startswith('#'))
        name = os.path.basename(path)
        assert f'python -m experiments.main --gin_file={name}' in header
        assert re.search(r'2-core CPU: .*\d.* min.*accuracy \d', header), (
            'header must state the measured runtime and eval accuracy')


def test_every_common_file_is_included():
    """Each shared file is included by an experiment or named by a sweep
    (a bundle axis's file)."""
    included = set()
    for path in ALL_FILES:
        with open(path) as f:
            text = f.read()
        included.update(re.findall(r"^include '([^']+)'", text, re.M))
        if os.path.dirname(path) == SWEEP_DIR:
            included.update(f'gin_configs/{name}' for name in re.findall(
                r"'([\w/]+\.gin)'", text))
    for path in ALL_FILES:
        if os.path.dirname(path) != config.CONFIG_DIR and 'sweeps' not in path:
            assert f'gin_configs/{_rel(path)}' in included, path


def _selectors(text):
    """Configurables named in bindings (`a.b.param = ...`) and references."""
    bound = re.findall(r'^([A-Za-z_][\w.]*)\.\w+\s*=', text, re.M)
    referenced = re.findall(r'@([A-Za-z_][\w.]*)', text)
    return set(bound) | set(referenced)


@pytest.mark.parametrize('name', sorted(SHIPPED))
def test_selectors_resolve_to_this_project(name):
    config.parse([name])
    for path in ALL_FILES:
        with open(path) as f:
            for selector in _selectors(f.read()):
                configurable = gin.get_configurable(selector)
                module = getattr(configurable, '__module__', '')
                ours = module.split('.')[0] in OUR_PACKAGES
                assert ours or module.startswith(TRAX_ALLOWED), (
                    f'{_rel(path)}: {selector} resolves to {module}')
                if selector.split('.')[0] in OUR_PACKAGES:
                    assert ours, f'{selector} resolved to trax: {module}'


def test_shipped_sweeps_exist():
    assert SHIPPED_SWEEPS <= set(SWEEPS)


@pytest.mark.parametrize('name', SWEEPS)
def test_sweep_expands_and_every_trial_validates(name):
    """A sweep file is not an experiment: it names one and the axes over it.
    Every trial must build, and every axis must reach this project's code."""
    sweep = spec.load(f'sweeps/{name}')
    trials = spec.expand(sweep)
    assert len(trials) > 1
    assert len({t.name for t in trials}) == len(trials)
    spec.validate(sweep, trials)
    config.parse(sweep.base)
    for axis in sweep.axes:
        if '.' in axis:
            module = gin.get_configurable(axis.rsplit('.', 1)[0]).__module__
            assert module.split('.')[0] in OUR_PACKAGES or module.startswith(
                TRAX_ALLOWED), f'{name}: {axis} resolves to {module}'


@pytest.mark.parametrize('name', SWEEPS)
def test_every_trial_dry_runs_as_its_command(name, tmp_path, monkeypatch,
                                             capsys):
    """Each trial's own `experiments.main` command (what the sweep runs)
    passes --dry_run: none of its bindings goes unused."""
    monkeypatch.chdir(tmp_path)
    sweep = spec.load(f'sweeps/{name}')
    for trial in spec.expand(sweep):
        args = spec.main_args(sweep, trial, str(tmp_path / trial.name))
        gin.clear_config()
        assert main.run([a.split('=', 1)[1] for a in args
                         if a.startswith('--gin_file=')],
                        [a.split('=', 1)[1] for a in args
                         if a.startswith('--gin_param=')],
                        str(tmp_path / trial.name), dry_run=True) == 0, (
            trial.name, capsys.readouterr().err)
    assert os.listdir(tmp_path) == []
