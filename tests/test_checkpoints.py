"""Checkpoints are data: Orbax arrays and JSON, never unpickled.

The format round-trips trax's trees exactly and refuses trees that do not fit
the model; a file crafted to run code when unpickled, put where a checkpoint
would be (the old step_*.pkl name, or a file inside the new layout), is never
run by resume, evaluate or decode; old pickle directories are refused, naming
scripts.convert_checkpoints, which converts them.
"""
import glob
import json
import os
import pickle
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import checkpoints, decode, evaluate, main
from scripts import convert_checkpoints
from test_bad_input_commands import check, snapshot

PARAMS = ['experiments.Experiment.n_steps = 2',
          'experiments.Experiment.eval_every = 2',
          'experiments.Experiment.checkpoint_every = 1',
          'experiments.Experiment.n_eval_batches = 1']
CONVERT = 'python -m scripts.convert_checkpoints --output_dir='
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Payload:
    """Unpickling this creates the directory `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _plant(path, marker):
    with open(path, 'wb') as f:
        pickle.dump(_Payload(marker), f)


def _trees_equal(a, b):
    return (jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
            and all(x.dtype == y.dtype and np.array_equal(x, y)
                    for x, y in zip(jax.tree_util.tree_leaves(a),
                                    jax.tree_util.tree_leaves(b))))


# ------------------------------------------------------------ the format ----

def test_odd_trees_round_trip_exactly(tmp_path):
    weights = (np.arange(6, dtype=np.float32).reshape(2, 3), (),
               [(), {'b': np.int32(7), 'a': [1.5, ()]}], None)
    state = (np.array([3, 4], np.uint32), ((), ()))
    slots = [np.ones((), np.float32)]
    checkpoints.save(str(tmp_path), 5, weights=weights, state=state,
                     slots=slots)
    loaded = checkpoints.load(str(tmp_path))
    assert loaded['step'] == 5
    expected = jax.tree_util.tree_map(np.asarray, (weights, state, slots))
    assert _trees_equal((loaded['weights'], loaded['state'], loaded['slots']),
                        expected)
    assert type(loaded['weights'][2]) is list  # tuples and lists kept apart
    path = checkpoints.path_for(str(tmp_path), 5)
    assert os.path.isdir(os.path.join(path, 'arrays'))
    with open(os.path.join(path, 'meta', 'metadata')) as f:
        assert json.load(f)['step'] == 5


def test_only_the_newest_three_are_kept(tmp_path):
    for step in range(1, 6):
        checkpoints.save(str(tmp_path), step, weights=(np.zeros(2),),
                         state=(), slots=())
    assert checkpoints.list_steps(str(tmp_path)) == [3, 4, 5]
    assert sorted(os.listdir(tmp_path / 'checkpoints')) == [
        'step_00000003', 'step_00000004', 'step_00000005']


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(tmp_path):
    checkpoints.save(str(tmp_path), 1, weights=(np.zeros((2, 3), np.float32),),
                     state=(), slots=())
    like = {'weights': (np.zeros((3, 3), np.float32),), 'state': (),
            'slots': ()}
    with pytest.raises(checkpoints.CheckpointError,
                       match=r'weights array 0 is float32\[2, 3\], the '
                             r"model's float32\[3, 3\]"):
        checkpoints.load(str(tmp_path), like=like)
    like['weights'] = [np.zeros((2, 3), np.float32)]
    with pytest.raises(checkpoints.CheckpointError,
                       match='its weights are nested differently'):
        checkpoints.load(str(tmp_path), like=like)


def test_unreadable_checkpoints_are_one_error(tmp_path):
    for step in (1, 2):
        checkpoints.save(str(tmp_path), step, weights=(np.zeros(2),),
                         state=(), slots=())
        with open(os.path.join(checkpoints.path_for(str(tmp_path), step),
                               'meta', 'metadata'), 'w') as f:
            f.write('{"format": 1, "st')
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.load(str(tmp_path))
    message = str(error.value)
    assert message.startswith(f'no readable checkpoint in {tmp_path}: '
                              f'{checkpoints.path_for(str(tmp_path), 2)}: ')
    assert message.endswith('(and 1 older)') and '\n' not in message
    with pytest.raises(checkpoints.CheckpointError, match='step_00000001: '):
        checkpoints.load(str(tmp_path), step=1)


# ------------------------------------------- crafted files in a run dir ----

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A codelab run trained for 2 steps, with checkpoints at 1 and 2."""
    out = tmp_path_factory.mktemp('trained') / 'run'
    assert main.run(['codelab.gin'], PARAMS, output_dir=str(out)) == 0
    assert checkpoints.list_steps(str(out)) == [1, 2]
    return out


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run at tmp_path/root/run."""
    out = tmp_path / 'root' / 'run'
    shutil.copytree(trained, out)
    return out


def _resume(out, capsys, params=PARAMS):
    """experiments.main on `out`: (status, stderr, stdout); on exit 2
    nothing but the lock file (which records this process) has changed."""
    before = snapshot(out)
    status = main.run(['codelab.gin'], params, output_dir=str(out))
    printed, err = capsys.readouterr()
    if status == 2:
        assert err.startswith('error: ') and err.count('\n') == 1, err
        after = snapshot(out)
        assert {p: v for p, v in before.items() if p != '.lock'} == {
            p: v for p, v in after.items() if p != '.lock'}
    return status, err, printed


def _all_refuse(out, capsys, message):
    """Resume, evaluate and decode on `out` all exit 2 with one `error:`
    line holding `message`, writing nothing."""
    status, err, _ = _resume(out, capsys)
    assert status == 2 and message in err, err
    for command, args in ((evaluate, ['--num_batches=1']),
                          (decode, ['--num_examples=1'])):
        status, err = check(command, [f'--output_dir={out}', *args],
                            out.parent, capsys)
        assert status == 2 and message in err, err


def _all_succeed(out, capsys):
    """Evaluate, decode, then resume on `out` all exit 0; their stderr."""
    errs = []
    for command, args, writes in (
            (evaluate, ['--num_batches=1'], 'run/evaluations'),
            (decode, ['--num_examples=1'], None)):
        status, err = check(command, [f'--output_dir={out}', *args],
                            out.parent, capsys, may_write=writes)
        assert status == 0, err
        errs.append(err)
    status, err, _ = _resume(out, capsys)
    assert status == 0, err
    return errs + [err]


def test_a_pickle_under_the_old_name_is_refused_unread(run, tmp_path, capsys):
    marker = tmp_path / 'marker'
    for step in checkpoints.list_steps(str(run)):
        shutil.rmtree(checkpoints.path_for(str(run), step))
    _plant(run / 'checkpoints' / 'step_00000002.pkl', marker)
    _all_refuse(run, capsys, f'{CONVERT}{run}')
    assert not marker.exists()


def test_a_pickle_beside_the_checkpoints_is_ignored(run, tmp_path, capsys):
    marker = tmp_path / 'marker'
    _plant(run / 'checkpoints' / 'step_00000003.pkl', marker)
    _all_succeed(run, capsys)
    assert not marker.exists()


def _array_file(checkpoint):
    """The biggest file of a checkpoint's array data."""
    files = [p for p in glob.glob(os.path.join(checkpoint, 'arrays', '**'),
                                  recursive=True) if os.path.isfile(p)]
    return max(files, key=os.path.getsize)


PARTS = {'array data': _array_file,
         'array metadata': lambda c: os.path.join(c, 'arrays', '_METADATA'),
         'nesting': lambda c: os.path.join(c, 'meta', 'metadata')}


@pytest.mark.parametrize('part', sorted(PARTS))
def test_a_pickle_inside_every_checkpoint_is_refused_unread(
        run, tmp_path, capsys, part):
    marker = tmp_path / 'marker'
    for step in checkpoints.list_steps(str(run)):
        target = PARTS[part](checkpoints.path_for(str(run), step))
        assert os.path.isfile(target)
        _plant(target, marker)
    _all_refuse(run, capsys, f'no readable checkpoint in {run}')
    assert not marker.exists()


def test_the_commands_print_one_line_for_a_damaged_run(run, tmp_path):
    """As processes, where Orbax's threads could print beside the error."""
    marker = tmp_path / 'marker'
    for step in checkpoints.list_steps(str(run)):
        _plant(_array_file(checkpoints.path_for(str(run), step)), marker)
    for command in ('experiments.evaluate', 'experiments.decode'):
        done = subprocess.run(
            [sys.executable, '-m', command, f'--output_dir={run}'], cwd=REPO,
            capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f'error: no readable checkpoint in '
                                      f'{run}: ') and done.stderr.count(
                                          '\n') == 1, done.stderr
    assert not marker.exists()


def test_a_pickle_inside_the_newest_falls_back_unread(run, tmp_path, capsys):
    marker = tmp_path / 'marker'
    _plant(_array_file(checkpoints.path_for(str(run), 2)), marker)
    for err in _all_succeed(run, capsys):
        assert err.startswith('warning: skipping unreadable checkpoint '
                              f'{checkpoints.path_for(str(run), 2)}: '), err
    assert not marker.exists()
    # The resumed run trained step 2 again and replaced the damaged one.
    assert checkpoints.load(str(run))['step'] == 2


# ----------------------------------------------------------- conversion ----

def _as_pickles(out):
    """Rewrites `out`'s checkpoints as the old save did (one pickle of a
    dict of numpy trees per step); returns them as loaded before."""
    before = {}
    for step in checkpoints.list_steps(str(out)):
        before[step] = checkpoints.load(str(out), step)
        with open(out / 'checkpoints' / f'step_{step:08d}.pkl', 'wb') as f:
            pickle.dump(before[step], f, protocol=pickle.HIGHEST_PROTOCOL)
        shutil.rmtree(checkpoints.path_for(str(out), step))
    return before


def _convert(out):
    return convert_checkpoints.main(['convert_checkpoints',
                                     f'--output_dir={out}'])


def test_converted_pickles_resume_and_evaluate(run, capsys):
    before = _as_pickles(run)
    _all_refuse(run, capsys, f'{CONVERT}{run}')
    assert _convert(run) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        f'moved the pickles to {run / "checkpoints_pickle"}')
    assert sorted(os.listdir(run / 'checkpoints_pickle')) == [
        'step_00000001.pkl', 'step_00000002.pkl']
    assert checkpoints.pickle_files(str(run)) == []
    for step, old in before.items():
        new = checkpoints.load(str(run), step)
        assert new['step'] == step
        assert _trees_equal([new[k] for k in checkpoints.TREES],
                            [old[k] for k in checkpoints.TREES])
    _all_succeed(run, capsys)
    status, err, printed = _resume(run, capsys, PARAMS[1:] + [
        'experiments.Experiment.n_steps = 3'])
    assert status == 0, err
    assert 'Resuming from the checkpoint at step 2' in printed
    assert checkpoints.list_steps(str(run)) == [1, 2, 3]


def test_conversion_refuses_a_pickle_that_runs_code(run, tmp_path, capsys):
    marker = tmp_path / 'marker'
    _as_pickles(run)
    _plant(run / 'checkpoints' / 'step_00000002.pkl', marker)
    os.remove(run / 'checkpoints' / 'step_00000001.pkl')
    before = snapshot(run)
    assert _convert(run) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith(
        f'error: no pickle checkpoint in {run} could be read: ')
    assert 'posix.mkdir' in err
    assert snapshot(run) == before and not marker.exists()


def test_conversion_needs_pickle_checkpoints(run, tmp_path, capsys):
    for out, message in ((run, 'nothing to convert'),
                         (tmp_path / 'missing', 'no run directory')):
        before = snapshot(tmp_path)
        assert _convert(out) == 2
        err = capsys.readouterr().err
        assert err.startswith('error: ') and message in err, err
        assert snapshot(tmp_path) == before
