"""Runs survive kills and give the same bits wherever they run.

Small runs of codelab.gin and reformer_copy.gin (12 steps, eval every 4,
checkpoint every 3) are the references. Each comparison runs its reference
the same way as the runs it checks: `python -m experiments.main` processes
against a command run, in-process runs (which keep the test process's thread
pool) against an in-process run. Killed or interrupted runs must end with
exactly the reference's numbers, and their event files must hold each
(tag, step) exactly once.
"""
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader

from experiments import checkpoints, main, manifest
from experiments.summaries import read_scalars

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMS = ['experiments.Experiment.n_steps = 12',
          'experiments.Experiment.eval_every = 4',
          'experiments.Experiment.checkpoint_every = 3',
          'experiments.Experiment.n_eval_batches = 1']
EVAL_STEPS = [4, 8, 12]
# codelab.gin runs on one XLA:CPU thread, reformer_copy.gin on the default 2.
GIN_FILES = ['codelab.gin', 'reformer_copy.gin']
CPUS = sorted(os.sched_getaffinity(0))


def _train(out, params=PARAMS):
    return main.run(['codelab.gin'], params, output_dir=str(out))


def _command(gin_file, out):
    return ([sys.executable, '-m', 'experiments.main', f'--gin_file={gin_file}',
             f'--output_dir={out}'] + [f'--gin_param={p}' for p in PARAMS])


def _outcome(out):
    """What a run computed: every logged number but the timings, and the
    final weights, model state and optimizer slots."""
    scalars = {sub: {tag: points for tag, points in
                     read_scalars(os.path.join(out, sub)).items()
                     if not tag.startswith('training/steps_per_second')}
               for sub in ('train', 'eval')}
    final = checkpoints.load(str(out))
    arrays = [np.asarray(leaf) for part in ('weights', 'state', 'slots')
              for leaf in _leaves(final[part])]
    return scalars, final['step'], [(a.dtype.str, a.shape, a.tobytes())
                                    for a in arrays]


def _leaves(tree):
    import jax
    return jax.tree_util.tree_leaves(tree)


def _run_command(gin_file, out, cpus=None):
    """The command, to the end; on `cpus` only if given (as taskset does,
    by a Python that pins itself, then becomes the command)."""
    command = _command(gin_file, out)
    if cpus:
        command[1:1] = ['-c', 'import os, sys; os.sched_setaffinity(0, '
                        f'{set(cpus)!r}); os.execv(sys.executable, '
                        '[sys.executable] + sys.argv[1:])']
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return _outcome(out)


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
    """The uninterrupted in-process run: its eval scalars, every step."""
    out = tmp_path_factory.mktemp('reference')
    assert _train(out) == 0
    assert_clean_events(str(out))
    return read_scalars(str(out / 'eval'))


@pytest.fixture(scope='module')
def command_reference(tmp_path_factory):
    """The uninterrupted command run of a gin file (made on first use)."""
    made = {}

    def get(gin_file):
        if gin_file not in made:
            out = tmp_path_factory.mktemp(gin_file.split('.')[0])
            made[gin_file] = _run_command(gin_file, out)
            assert_clean_events(str(out))
        return made[gin_file]
    return get


@pytest.mark.parametrize('gin_file', GIN_FILES)
def test_sigkill_at_several_points_resumes_exactly(command_reference,
                                                    gin_file, tmp_path):
    """Kills a real process (SIGKILL) right after an evaluation and at a
    random moment of the resumed run, then lets it finish."""
    out = tmp_path / 'killed'
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    delay = random.Random(0).uniform(0.5, 2.0)
    kills = [('step  4/12', 0.0), ('Resuming ', delay)]
    transcript = []
    for trigger, wait in kills + [(None, None)]:
        process = subprocess.Popen(_command(gin_file, out), cwd=REPO, env=env,
                                   text=True, stdout=subprocess.PIPE,
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
    assert _outcome(out) == command_reference(gin_file)
    assert_clean_events(str(out))


@pytest.mark.skipif(len(CPUS) < 2, reason='compares 1 core with 2')
@pytest.mark.parametrize('gin_file', GIN_FILES)
def test_one_core_and_two_give_the_same_bits(command_reference, gin_file,
                                             tmp_path):
    """The same command pinned to one core (taskset) and free on two: the
    thread pool is the experiment's, not the machine's, so nothing moves."""
    out = tmp_path / 'one_core'
    assert _run_command(gin_file, out, cpus={CPUS[0]}) == command_reference(
        gin_file)
    assert manifest.read(str(out))[-1]['usable_cpus'] == 1


def test_two_copies_started_at_once_give_the_same_bits(command_reference,
                                                       tmp_path):
    """Two copies of a command share the machine, so each runs under the
    other's load; neither's numbers move."""
    gin_file = 'reformer_copy.gin'
    outs = [tmp_path / 'first', tmp_path / 'second']
    processes = [subprocess.Popen(_command(gin_file, out), cwd=REPO,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
                 for out in outs]
    for process in processes:
        transcript = process.communicate()[0]
        assert process.returncode == 0, transcript
    expected = command_reference(gin_file)
    assert [_outcome(out) for out in outs] == [expected, expected]


class _Killed(BaseException):
    """Stands in for SIGKILL inside this process."""


def test_kill_while_writing_a_checkpoint_keeps_the_previous(
        reference, tmp_path, monkeypatch):
    """Orbax writes a checkpoint into a temporary directory and renames it
    when complete: the kill comes while it writes step 9's metadata."""
    from orbax.checkpoint._src.handlers import json_checkpoint_handler
    handler = json_checkpoint_handler.JsonCheckpointHandler
    out = tmp_path / 'run'
    real_save = handler._save_fn

    async def write_then_die(self, meta, directory):
        if meta['step'] == 9:  # half the file on disk, then the kill
            (directory / self._filename).write_text(json.dumps(meta)[:20])
            raise _Killed
        await real_save(self, meta, directory)

    monkeypatch.setattr(handler, '_save_fn', write_then_die)
    with pytest.raises(_Killed):
        _train(out)
    monkeypatch.undo()
    assert checkpoints.list_steps(str(out)) == [3, 6]
    unfinished = checkpoints.path_for(str(out), 9) + '.orbax-checkpoint-tmp'
    assert os.path.isfile(os.path.join(unfinished, 'meta.orbax-checkpoint-tmp',
                                       'metadata'))
    assert checkpoints.load(str(out))['step'] == 6

    assert _train(out) == 0
    assert not os.path.exists(unfinished)
    assert read_scalars(str(out / 'eval')) == reference
    assert_clean_events(str(out))


def test_events_logged_after_the_last_checkpoint_are_not_doubled(
        reference, tmp_path):
    """The step-8 eval was logged, then the run died before its step-9
    checkpoint; the resumed run redoes steps 7-8 and logs step 8 once."""
    out = tmp_path / 'run'
    assert _train(out, PARAMS[1:] + ['experiments.Experiment.n_steps = 8']) == 0
    assert checkpoints.list_steps(str(out)) == [3, 6, 8]
    shutil.rmtree(checkpoints.path_for(str(out), 8))
    assert _train(out) == 0
    assert read_scalars(str(out / 'eval')) == reference
    assert_clean_events(str(out))


def test_unreadable_latest_checkpoint_falls_back_to_the_previous(
        tmp_path, capsys):
    weights = {'w': [1.0]}
    for step in (1, 2):
        checkpoints.save(str(tmp_path), step, weights=weights, state=(),
                         slots=())
    newest = checkpoints.path_for(str(tmp_path), 2)
    damaged = [path for path in glob.glob(os.path.join(newest, 'arrays', '**'),
                                          recursive=True)
               if os.path.isfile(path)]
    assert damaged
    for path in damaged:  # the array files; the JSON beside them is intact
        with open(path, 'r+b') as f:
            f.truncate(10)
    assert checkpoints.load(str(tmp_path))['step'] == 1
    assert capsys.readouterr().err.startswith(
        f'warning: skipping unreadable checkpoint {newest}: ')


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
