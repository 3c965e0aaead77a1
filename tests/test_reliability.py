"""Runs survive kills: exact resume, clean TensorBoard logs, divergence stops.

A small codelab run (12 steps, eval every 4, checkpoint every 3) is the
reference; runs that are killed or interrupted must end with exactly its
metrics, and their event files must hold each (tag, step) exactly once.
"""
import os
import pickle
import random
import signal
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing import event_file_loader

from experiments import checkpoints, main
from experiments.summaries import read_scalars

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMS = ['experiments.Experiment.n_steps = 12',
          'experiments.Experiment.eval_every = 4',
          'experiments.Experiment.checkpoint_every = 3',
          'experiments.Experiment.n_eval_batches = 1']
EVAL_STEPS = [4, 8, 12]


def _train(out, params=PARAMS):
    return main.run(['codelab.gin'], params, output_dir=str(out))


def logged_pairs(logdir):
    """Every (tag, step) in `logdir`'s event files, duplicates included."""
    pairs = []
    for name in sorted(os.listdir(logdir)):
        loader = event_file_loader.EventFileLoader(os.path.join(logdir, name))
        for event in loader.Load():
            pairs += [(v.tag, event.step) for v in event.summary.value]
    return pairs


def assert_clean_events(out):
    for sub in ('train', 'eval'):
        pairs = logged_pairs(os.path.join(out, sub))
        assert len(pairs) == len(set(pairs)), f'{sub}: a step logged twice'
        steps = sorted({step for tag, step in pairs
                        if tag == 'metrics/loss'})
        assert steps == EVAL_STEPS, f'{sub}: steps {steps}'


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """The uninterrupted run: its eval scalars, every step."""
    out = tmp_path_factory.mktemp('reference')
    assert _train(out) == 0
    assert_clean_events(str(out))
    return read_scalars(str(out / 'eval'))


def test_sigkill_at_several_points_resumes_exactly(reference, tmp_path):
    """Kills a real process (SIGKILL) right after an evaluation and at a
    random moment of the resumed run, then lets it finish."""
    out = tmp_path / 'killed'
    command = [sys.executable, '-m', 'experiments.main',
               '--gin_file=codelab.gin', f'--output_dir={out}']
    command += [f'--gin_param={p}' for p in PARAMS]
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    delay = random.Random(0).uniform(0.5, 2.0)
    kills = [('step  4/12', 0.0), ('Resuming ', delay)]
    transcript = []
    for trigger, wait in kills + [(None, None)]:
        process = subprocess.Popen(command, cwd=REPO, env=env, text=True,
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        for line in process.stdout:
            transcript.append(line)
            if trigger and line.startswith(trigger):
                if wait:
                    try:
                        process.wait(timeout=wait)
                    except subprocess.TimeoutExpired:
                        pass
                process.send_signal(signal.SIGKILL)
                break
        process.stdout.close()
        status = process.wait()
        if trigger:
            assert status in (-signal.SIGKILL, 0), ''.join(transcript)
        else:
            assert status == 0, ''.join(transcript)
    assert any(line.startswith('Resuming from the checkpoint at step')
               for line in transcript)
    assert read_scalars(str(out / 'eval')) == reference
    assert_clean_events(str(out))


class _Killed(BaseException):
    """Stands in for SIGKILL inside this process."""


def test_kill_while_writing_a_checkpoint_keeps_the_previous(
        reference, tmp_path, monkeypatch):
    out = tmp_path / 'run'
    real_dump = pickle.dump

    def dump_then_die(payload, f, **kwargs):
        if payload['step'] == 9:  # half a file on disk, then the kill
            f.write(pickle.dumps(payload)[:1000])
            raise _Killed
        real_dump(payload, f, **kwargs)

    monkeypatch.setattr(checkpoints.pickle, 'dump', dump_then_die)
    with pytest.raises(_Killed):
        _train(out)
    monkeypatch.undo()
    assert checkpoints.list_steps(str(out)) == [3, 6]
    assert os.path.exists(checkpoints.path_for(str(out), 9) + '.tmp')
    assert checkpoints.load(str(out))['step'] == 6

    assert _train(out) == 0
    assert read_scalars(str(out / 'eval')) == reference
    assert_clean_events(str(out))


def test_events_logged_after_the_last_checkpoint_are_not_doubled(
        reference, tmp_path):
    """The step-8 eval was logged, then the run died before its step-9
    checkpoint; the resumed run redoes steps 7-8 and logs step 8 once."""
    out = tmp_path / 'run'
    assert _train(out, PARAMS[1:] + ['experiments.Experiment.n_steps = 8']) == 0
    assert checkpoints.list_steps(str(out)) == [3, 6, 8]
    os.remove(checkpoints.path_for(str(out), 8))
    assert _train(out) == 0
    assert read_scalars(str(out / 'eval')) == reference
    assert_clean_events(str(out))


def test_unreadable_latest_checkpoint_falls_back_to_the_previous(tmp_path):
    weights = {'w': [1.0]}
    for step in (1, 2):
        checkpoints.save(str(tmp_path), step, weights=weights, state=(),
                         slots=())
    with open(checkpoints.path_for(str(tmp_path), 2), 'r+b') as f:
        f.truncate(10)
    assert checkpoints.load(str(tmp_path))['step'] == 1


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(
        tmp_path, capsys):
    out = tmp_path / 'run'
    status = _train(out, PARAMS + [
        'experiments.Experiment.checkpoint_every = 1',
        'experiments.Experiment.lr_schedule = @lr_schedules.constant()',
        'lr_schedules.constant.value = 1e30'])
    assert status == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith('error: training diverged: the loss is nan at '
                               'step 2; the last good checkpoint (step 1)')
    assert checkpoints.list_steps(str(out)) == [1]
