"""Sweep files: expansion (grid, zip), trial names, validation, bad input,
and the runner's status lines.

Everything here runs in-process without training; the local runs are in
test_sweep_runs.py and the Cloud TPU backend in test_sweep_tpu.py.
"""
import io
import os

import pytest

from experiments import main as experiments_main
from experiments import run_dir
from experiments.errors import ConfigError
from scripts import sweep
from scripts.sweeps import layout, local, spec

SHRINK = ['experiments.Experiment.n_steps = 4']


def _sweep(axes, mode='grid', base='codelab.gin', bindings=SHRINK, **more):
    return spec.Sweep(base=base, axes=axes, mode=mode, bindings=bindings,
                      **more)


def test_grid_is_every_combination_first_axis_slowest():
    trials = spec.expand(_sweep({'models.TransformerLM.n_heads': [1, 2],
                                   'models.TransformerLM.d_ff': [16, 32, 64]}))
    assert [t.name for t in trials] == [
        'n_heads=1,d_ff=16', 'n_heads=1,d_ff=32', 'n_heads=1,d_ff=64',
        'n_heads=2,d_ff=16', 'n_heads=2,d_ff=32', 'n_heads=2,d_ff=64']
    assert trials[4].values == {'n_heads': 2, 'd_ff': 32}
    # The sweep's bindings first, then one per axis, in axis order.
    assert trials[4].bindings == (
        'experiments.Experiment.n_steps = 4',
        'models.TransformerLM.n_heads = 2', 'models.TransformerLM.d_ff = 32')


def test_zip_takes_the_ith_value_of_every_axis():
    trials = spec.expand(_sweep({'models.TransformerLM.n_heads': [1, 2, 4],
                                   'models.TransformerLM.d_ff': [16, 32, 64]},
                                  mode='zip'))
    assert [t.name for t in trials] == ['n_heads=1,d_ff=16',
                                        'n_heads=2,d_ff=32',
                                        'n_heads=4,d_ff=64']


def test_zip_may_repeat_a_value_but_not_a_trial():
    axes = {'models.TransformerLM.n_heads': [1, 2, 2],
            'models.TransformerLM.d_ff': [16, 16, 32]}
    trials = spec.expand(_sweep(axes, mode='zip'))
    assert [t.name for t in trials] == ['n_heads=1,d_ff=16',
                                        'n_heads=2,d_ff=16',
                                        'n_heads=2,d_ff=32']
    axes['models.TransformerLM.d_ff'] = [16, 32, 32]
    with pytest.raises(ConfigError, match="name 'n_heads=2,d_ff=32'"):
        spec.expand(_sweep(axes, mode='zip'))


def test_names_and_bindings_from_references_strings_and_floats():
    trials = spec.expand(_sweep({
        'experiments.Experiment.model': ['@models.TransformerLM()',
                                         '@models.ReformerLM()'],
        'models.ReformerLM.attention': ['lsh'],
        'D_MODEL': [32],
        'trax.supervised.lr_schedules.multifactor.constant': [1e-3],
        'models.ReformerLM.n_buckets': [None]}))
    assert [t.name for t in trials] == [
        'model=TransformerLM,attention=lsh,d_model=32,constant=0.001,'
        'n_buckets=None',
        'model=ReformerLM,attention=lsh,d_model=32,constant=0.001,'
        'n_buckets=None']
    assert trials[1].bindings[1:] == (
        'experiments.Experiment.model = @models.ReformerLM()',
        "models.ReformerLM.attention = 'lsh'", 'D_MODEL = 32',
        'trax.supervised.lr_schedules.multifactor.constant = 0.001',
        'models.ReformerLM.n_buckets = None')


def test_clashing_axis_keys_grow_until_unique():
    keys = spec.axis_keys(['models.TransformerLM.d_model',
                             'models.ReformerLM.d_model', 'N_LAYERS'])
    assert keys == {'models.TransformerLM.d_model': 'TransformerLM.d_model',
                    'models.ReformerLM.d_model': 'ReformerLM.d_model',
                    'N_LAYERS': 'n_layers'}


def test_expansion_is_deterministic():
    axes = {'models.TransformerLM.n_heads': [2, 1], 'D_MODEL': [64, 32]}
    assert spec.expand(_sweep(axes)) == spec.expand(_sweep(axes))


@pytest.mark.parametrize('kwargs, message', [
    (dict(axes={'a.b': [1, 2]}, mode='cube'), "Sweep.mode must be one of"),
    (dict(axes={'a.b': []}), "Sweep.axes['a.b'] must be a non-empty list"),
    (dict(axes={'a.b': [1, 1]}), "Sweep.axes['a.b'] repeats a value"),
    (dict(axes={}), 'Sweep.axes must map gin parameter names'),
    (dict(axes={'a.b': [1, 2], 'c.d': [1]}, mode='zip'),
     'every axis needs the same number of values'),
    (dict(axes={'a.b': [1]}, base=''), 'Sweep.base must be a gin file'),
    (dict(axes={'a.b': [1]}, bindings='x.y = 1'),
     'Sweep.bindings must be a list'),
    (dict(axes={'a.b': [1]}, seeds=[0, 0]), 'Sweep.seeds must be a list of '
     'distinct ints'),
    (dict(axes={'a.b': [1]}, seeds=[-1]), 'Sweep.seeds must be'),
    (dict(axes={'SEED': [1, 2]}, seeds=[0]), "Sweep.seeds and the axis "
     "'SEED' both set the seed"),
    (dict(axes={'task': {'a': []}}), "Sweep.axes['task'] must map labels"),
    (dict(axes={'task': {'a b': ['x.y = 1']}}), "must map labels"),
    (dict(axes={'a.b': [1]}, leaderboard=['exact match']),
     'Sweep.leaderboard must be a list of eval metric names'),
    (dict(axes={'a.b': [1]}, leaderboard=['accuracy']),
     'Sweep.leaderboard needs a grid of exactly two axes'),
])
def test_bad_sweeps_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[')):
        _sweep(**{'bindings': SHRINK, **kwargs})


def test_seeds_repeat_every_trial_innermost_through_the_seed_macro():
    sweep = _sweep({'models.TransformerLM.n_heads': [1, 2]}, seeds=[3, 4])
    trials = spec.expand(sweep)
    assert [t.name for t in trials] == [
        'n_heads=1,seed=3', 'n_heads=1,seed=4', 'n_heads=2,seed=3',
        'n_heads=2,seed=4']
    assert trials[1].bindings[-2:] == ('models.TransformerLM.n_heads = 1',
                                       'SEED = 4')
    assert trials[1].values == {'n_heads': 1, 'seed': 4}
    axes = layout.manifest('s', sweep, trials)['axes']
    assert axes[-1] == {'name': 'SEED', 'key': 'seed', 'values': [3, 4],
                        'seeds': True}


def test_a_bundle_axis_binds_each_label_s_own_bindings():
    sweep = _sweep({'task': {'short': ['LENGTH = 8', 'X = 1'],
                             'long': ['LENGTH = 16']},
                    'models.TransformerLM.n_heads': [1, 2]})
    trials = spec.expand(sweep)
    assert [t.name for t in trials] == [
        'task=short,n_heads=1', 'task=short,n_heads=2', 'task=long,n_heads=1',
        'task=long,n_heads=2']
    assert trials[2].bindings[-2:] == ('LENGTH = 16',
                                       'models.TransformerLM.n_heads = 1')
    assert trials[0].values == {'task': 'short', 'n_heads': 1}
    assert trials[0].files == ()


def test_a_bundle_may_name_a_gin_file_read_after_the_base(tmp_path):
    sweep = _sweep({'task': {'copy': 'transformer_copy.gin',
                             'reversal': 'transformer_reversal.gin'}},
                   base='gin_configs/common/training.gin')
    trials = spec.expand(sweep)
    assert [(t.name, t.files) for t in trials] == [
        ('task=copy', ('transformer_copy.gin',)),
        ('task=reversal', ('transformer_reversal.gin',))]
    args = spec.main_args(sweep, trials[1], 'out')
    assert args[2:4] == ['--gin_file=gin_configs/common/training.gin',
                         '--gin_file=transformer_reversal.gin']
    spec.validate(sweep, trials)


def test_seeds_need_the_seed_macro_and_bundles_their_bindings_used(tmp_path):
    valid = spec.load(_write(tmp_path, "{'task': {'short': ['LENGTH = 8'], "
                             "'long': ['LENGTH = 12']}}",
                             extra='scripts.Sweep.seeds = [0, 1]\n'))
    spec.validate(valid, spec.expand(valid))
    unused = spec.load(_write(tmp_path, "{'task': {'short': ['LENGTH = 8', "
                              "'tasks.reversal.length = 8'], "
                              "'long': ['LENGTH = 12']}}"))
    with pytest.raises(ConfigError, match='trial task=short: gin binding '
                       'tasks.reversal.length .* is never used'):
        spec.validate(unused, spec.expand(unused))
    # A base that seeds its experiment and task itself leaves SEED unused.
    base = tmp_path / 'seeded.gin'
    base.write_text("include 'gin_configs/codelab.gin'\n"
                    'experiments.Experiment.seed = 1\ntasks.copy.seed = 1\n')
    own_seed = _sweep({'LENGTH': [8, 12]}, base=str(base), seeds=[0])
    with pytest.raises(ConfigError, match='trial length=8,seed=0: gin macro '
                       'SEED .* is never used'):
        spec.validate(own_seed, spec.expand(own_seed))


def test_values_that_name_the_same_trial_are_rejected():
    with pytest.raises(ConfigError, match="share the name 'n_heads=1'"):
        spec.expand(_sweep({'models.TransformerLM.n_heads': [1, '1']}))


def _write(tmp_path, axes, name='tiny.gin', mode='grid', extra=''):
    path = tmp_path / name
    path.write_text(f"""# A test sweep.
import scripts.sweeps
scripts.Sweep.base = 'codelab.gin'
scripts.Sweep.bindings = {SHRINK!r}
scripts.Sweep.axes = {axes}
scripts.Sweep.mode = '{mode}'
{extra}""")
    return str(path)


def test_load_then_validate_every_trial(tmp_path):
    path = _write(tmp_path, "{'models.TransformerLM.n_heads': [1, 2], "
                            "'D_MODEL': [16, 32]}",
                  extra='models.TransformerLM.d_model = %D_MODEL\n')
    # A binding written in the sweep file itself reaches no trial.
    with pytest.raises(ConfigError, match=(
            r'tiny.gin: gin binding models.TransformerLM.d_model '
            r'\(.*tiny.gin:7\) is never used')):
        spec.load(path)
    loaded = spec.load(_write(tmp_path, "{'models.TransformerLM.n_heads': "
                                          "[1, 2], 'D_MODEL': [16, 32]}"))
    assert loaded.base == ('codelab.gin',)
    assert loaded.mode == 'grid'
    assert loaded.bindings == tuple(SHRINK)
    trials = spec.expand(loaded)
    assert len(trials) == 4
    with pytest.raises(ConfigError, match='trial n_heads=1,d_model=16: gin '
                       'macro D_MODEL .* is never used'):
        spec.validate(loaded, trials)  # D_MODEL is bound to nothing


@pytest.mark.parametrize('axes, message', [
    ("{'models.TransformerLM.n_haeds': [1, 2]}",
     "trial n_haeds=1: --gin_param='models.TransformerLM.n_haeds = 1'"),
    ("{'models.TransformerLM.n_heads': [2, 3]}",
     'trial n_heads=3: TransformerLM.d_model=32 is not divisible by '
     'TransformerLM.n_heads=3'),
    ("{'D_MODLE': [16, 32]}", 'trial d_modle=16: gin macro D_MODLE '
     '(--gin_param) is never used: nothing refers to %D_MODLE'),
    ("{'models.ReformerLM.n_hashes': [1, 2]}",
     'trial n_hashes=1: gin binding models.ReformerLM.n_hashes (--gin_param) '
     'is never used: models.ReformerLM is never called'),
    # The second axis replaces the %LENGTH the first one is for.
    ("{'LENGTH': [16, 20], 'tasks.copy.length': [8, 12]}",
     "axis 'LENGTH' has no effect on any trial"),
])
def test_validation_names_the_bad_axis_or_trial(tmp_path, axes, message):
    loaded = spec.load(_write(tmp_path, axes))
    with pytest.raises(ConfigError) as raised:
        spec.validate(loaded, spec.expand(loaded))
    assert message in str(raised.value)


def test_a_macro_axis_used_by_a_binding_is_valid(tmp_path):
    loaded = spec.load(_write(
        tmp_path, "{'D_MODEL': [16, 32]}",
        extra="scripts.Sweep.bindings = ['models.TransformerLM.d_model = "
              "%D_MODEL']\n"))
    spec.validate(loaded, spec.expand(loaded))


def test_each_trial_is_a_normal_experiments_main_run(tmp_path, capsys):
    loaded = spec.load(_write(tmp_path,
                                "{'models.TransformerLM.n_heads': [1, 2]}"))
    trial = spec.expand(loaded)[1]
    args = spec.main_args(loaded, trial, str(tmp_path / 'out'))
    assert args[:3] == ['-m', 'experiments.main', '--gin_file=codelab.gin']
    gin_files = [a.split('=', 1)[1] for a in args if a.startswith('--gin_f')]
    params = [a.split('=', 1)[1] for a in args if a.startswith('--gin_p')]
    assert experiments_main.run(gin_files, params, str(tmp_path / 'out'),
                                dry_run=True) == 0
    assert 'TransformerLM.n_heads = 2' in capsys.readouterr().out


def _cli(*args):
    return sweep.main(['scripts.sweep', *args])


def test_cli_typo_in_an_axis_fails_before_any_trial(tmp_path, capsys):
    path = _write(tmp_path, "{'models.TransformerLM.n_haeds': [1, 2]}")
    out = tmp_path / 'runs'
    assert _cli(f'--gin_file={path}', f'--output_dir={out}') == 2
    err = capsys.readouterr().err
    assert err.startswith('error: trial n_haeds=1: ') and err.count('\n') == 1
    assert 'n_haeds' in err and 'Traceback' not in err
    assert not out.exists()


@pytest.mark.parametrize('args, message', [
    ([], 'give the sweep file with --gin_file'),
    (['--gin_file=nope.gin'], "sweep file nope.gin: gin file not found"),
    (['--gin_file=codelab.gin'], 'sweep file codelab.gin: '),
    (['--gin_file={sweep}', '--trial=n_heads=3'],
     '--trial=n_heads=3 is not a trial of'),
    (['--gin_file={sweep}', '--parallel=0'], 'parallel'),
    (['--gin_file={sweep}', '--backend=tpu', '--zone=z', '--bucket=gs://b'],
     '--backend=tpu needs --tpu_name'),
    (['--gin_file={sweep}', '--backend=tpu', '--tpu_name=t', '--zone=z',
      '--bucket=/local'], '--bucket must be a gs:// path'),
    (['--gin_file={sweep}', 'extra'], "unexpected arguments ['extra']"),
])
def test_cli_bad_input(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "{'models.TransformerLM.n_heads': [1, 2]}")
    assert _cli(*[a.format(sweep=path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    assert message in err
    assert sorted(os.listdir(tmp_path)) == ['tiny.gin']  # nothing written


def test_cli_dry_run_prints_each_trial_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "{'models.TransformerLM.n_heads': [1, 2]}")
    assert _cli(f'--gin_file={path}', '--dry_run') == 0
    out = capsys.readouterr().out
    assert '# n_heads=2: to run' in out
    assert ("python -m experiments.main --gin_file=codelab.gin "
            "'--gin_param=experiments.Experiment.n_steps = 4' "
            "'--gin_param=models.TransformerLM.n_heads = 2' "
            "--output_dir=runs/sweeps/tiny/n_heads=2") in out
    assert sorted(os.listdir(tmp_path)) == ['tiny.gin']


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_status_lines_in_a_log_change_only_with_the_state():
    out = io.StringIO()
    board = local.StatusBoard(['a=1', 'a=22'], out)
    board.set('a=1', 'running', '0m01s  starting')
    board.set('a=1', 'running', '0m02s  step 2/4')  # progress: no new line
    board.set('a=22', 'failed', '0m03s  boom')
    board.draw()
    assert out.getvalue() == ('a=1   running     0m01s  starting\n'
                              'a=22  failed      0m03s  boom\n')


def test_status_block_is_redrawn_in_place_on_a_terminal():
    out = _Terminal()
    board = local.StatusBoard(['a=1', 'a=2'], out)
    board.set('a=1', 'running', 'step 2/4')
    board.draw()
    first = out.getvalue()
    assert first == ('\x1b[2Ka=1  running     step 2/4\n'
                     '\x1b[2Ka=2  pending\n')
    board.set('a=1', 'finished', 'final acc 1.0000')
    board.draw()
    # Back up over the two lines just drawn, then overwrite them.
    assert out.getvalue()[len(first):].startswith(
        '\x1b[2F\x1b[2Ka=1  finished    final acc 1.0000\n')


def test_progress_from_the_file_a_run_writes_and_errors_from_its_log(
        tmp_path):
    assert local.progress(str(tmp_path)) == 'starting'
    evals = {'loss': 0.2, 'accuracy': 0.95, 'sequence_accuracy': 0.5}
    run_dir.write_progress(str(tmp_path), 200, 400, evals,
                           {'n_parameters': 1234}, 71.54)
    assert local.progress(str(tmp_path)) == (
        'step 200/400 acc 0.9500 seq_acc 0.5000 71.5 steps/s')
    run_dir.write_progress(str(tmp_path), 400, 400,
                           {**evals, 'accuracy': 0.99}, {}, finished=True)
    assert local.progress(str(tmp_path)) == 'final acc 0.9900 seq_acc 0.5000'
    log = 'step 200/400 | train loss 0.1 acc 0.9000 | ...\n'
    assert local.error_line(
        log + 'error: training diverged: the loss is nan at step 3\n'
        'Traceback? no\n') == 'training diverged: the loss is nan at step 3'
    assert local.error_line(
        'Traceback (most recent call last):\n  ...\n'
        'FileExistsError: [Errno 17] File exists\n') == (
        'FileExistsError: [Errno 17] File exists')
