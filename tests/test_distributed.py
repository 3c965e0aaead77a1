"""One run over two processes (jax.distributed on localhost, one CPU device
each) against one process with two forced CPU devices and the same global
batch; bad cluster settings; and the same two-process run as the trial of
a Cloud TPU sweep on a 2-worker slice (tests/gcloud_standin.py), preempted
(both processes killed) and resumed by a rerun, which must end with the
numbers of the run never stopped, bit for bit.

The tolerance: the two set-ups reduce the gradients with different
collectives (gloo between processes, XLA's own within one), which round
differently in the last bits, so losses and metrics are compared to rtol
1e-5 and every weight and optimizer slot to 1e-6 absolute (the weights here
are of order 0.1-1; Adafactor's updates of the near-zero biases, ~1e-6,
amplify those last bits to ~4e-7). A real change of arithmetic (another
batch, a missed or doubled reduction) moves the losses by far more.
"""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

import numpy as np

from tests.test_reliability import _outcome

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Two evaluations, four checkpoints; each process draws only its own 8 rows
# of the batch of 16 (the one process draws both streams).
PARAMS = ['tasks.copy.rows_per_seed = 8',
          'experiments.Experiment.n_steps = 16',
          'experiments.Experiment.eval_every = 8',
          'experiments.Experiment.checkpoint_every = 4',
          'experiments.Experiment.n_eval_batches = 1']
TWO_DEVICES = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}


def _free_port():
    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


def _command(out, *flags):
    return [sys.executable, '-m', 'experiments.main', '--gin_file=codelab.gin',
            f'--output_dir={out}', *[f'--gin_param={p}' for p in PARAMS],
            *flags]


def _start(out, port, process_id, *flags):
    return subprocess.Popen(
        _command(out, f'--coordinator_address=localhost:{port}',
                 '--num_processes=2', f'--process_id={process_id}', *flags),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(processes, timeout=300):
    results = []
    for p in processes:
        out, err = p.communicate(timeout=timeout)
        results.append((p.returncode, out, err))
    return results


def _two_processes(out):
    port = _free_port()
    return _finish([_start(out, port, i) for i in (0, 1)])


@pytest.fixture(scope='module')
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp('one') / 'run'
    result = subprocess.run(_command(out), cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, **TWO_DEVICES})
    assert result.returncode == 0, result.stderr
    assert 'on 2 device(s)' in result.stdout
    return _outcome(out)


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp('two') / 'run'
    (rc0, out0, err0), (rc1, out1, err1) = _two_processes(out)
    assert (rc0, rc1) == (0, 0), err0 + err1
    return out, out0, out1, _outcome(out)


def _assert_close(got, want):
    (scalars, step, arrays), (want_scalars, want_step, want_arrays) = got, want
    assert step == want_step
    assert scalars.keys() == want_scalars.keys()
    for sub in scalars:
        assert scalars[sub].keys() == want_scalars[sub].keys()
        for tag, points in scalars[sub].items():
            assert [s for s, _ in points] == [s for s, _ in want_scalars[sub][tag]]
            np.testing.assert_allclose(
                [v for _, v in points], [v for _, v in want_scalars[sub][tag]],
                rtol=1e-5, err_msg=f'{sub}/{tag}')
    assert len(arrays) == len(want_arrays)
    for (dtype, shape, data), (want_dtype, want_shape, want_data) in zip(
            arrays, want_arrays):
        assert (dtype, shape) == (want_dtype, want_shape)
        np.testing.assert_allclose(np.frombuffer(data, dtype),
                                   np.frombuffer(want_data, dtype),
                                   rtol=0, atol=1e-6)


def test_two_processes_train_what_one_does_and_only_process_0_writes(
        one_process, two_processes):
    out, out0, out1, outcome = two_processes
    assert 'on 2 device(s)' in out0 and 'Final eval' in out0
    assert 'Note: each process draws' not in out0
    # The progress lines are process 0's (gloo's own "[Gloo] Rank 1 is
    # connected" line is all process 1 prints).
    assert [line for line in out1.splitlines()
            if not line.startswith('[Gloo]')] == []
    _assert_close(outcome, one_process)
    assert sorted(os.listdir(out)) == [
        '.lock', 'checkpoints', 'config.gin', 'eval', 'manifest.json',
        'operative_config.gin', 'progress.json', 'train']


@pytest.mark.parametrize('flags, message', [
    (['--coordinator_address=localhost:1', '--num_processes=2',
      '--process_id=2'],
     'error: process_id=2 (from flags) is out of range for num_processes=2: '
     'use 0 to 1\n'),
    (['--coordinator_address=localhost:1', '--num_processes=2'],
     'error: a run over several processes needs all of --coordinator_address,'
     ' --num_processes, --process_id; missing --process_id\n'),
    (['--coordinator_address=localhost', '--num_processes=2',
      '--process_id=0'],
     "error: coordinator address 'localhost' (from flags) must be "
     'host:port\n'),
])
def test_bad_cluster_settings_are_one_line_and_write_nothing(
        flags, message, tmp_path):
    out = tmp_path / 'run'
    result = subprocess.run(_command(out, *flags), cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (2, message)
    assert not out.exists()


def test_a_coordinator_that_never_answers_ends_the_process_in_time(tmp_path):
    out = tmp_path / 'run'
    port = _free_port()  # nobody listens there
    start = time.monotonic()
    result = subprocess.run(
        _command(out, f'--coordinator_address=localhost:{port}',
                 '--num_processes=2', '--process_id=1',
                 '--initialization_timeout=2'),
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        f'error: the coordinator localhost:{port} did not answer within 2 s')
    assert result.stderr.count('\n') == 1
    assert time.monotonic() - start < 60
    assert not out.exists()


def test_processes_whose_peer_never_starts_end_in_time(tmp_path):
    # Processes 0 and 1 of 3 (the coordinator answers; process 2 never
    # comes): each ends with one line, before JAX's own deadline aborts it.
    out, port = tmp_path / 'run', _free_port()
    start = time.monotonic()
    processes = [subprocess.Popen(
        _command(out, f'--coordinator_address=localhost:{port}',
                 '--num_processes=3', f'--process_id={i}',
                 '--initialization_timeout=3'),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (0, 1)]
    for i, (rc, stdout, stderr) in enumerate(_finish(processes, timeout=120)):
        assert (rc, stdout) == (2, ''), stderr
        assert stderr == (
            "error: the run's 3 processes did not all join within 3 s (this "
            f'is process {i}, coordinator localhost:{port}); start every '
            'process with the same --num_processes and --coordinator_address,'
            ' or raise --initialization_timeout\n')
    assert time.monotonic() - start < 60
    assert not out.exists()


def test_a_process_holding_part_of_a_batch_is_told_how_to_draw_only_it():
    from experiments.training import drawing_note
    import tasks
    copy = tasks.Copy(vocab_size=8, length=10, batch_size=16)
    assert drawing_note(copy, (0, 16)) is None  # one process
    assert drawing_note(copy, (8, 16)) == (
        'Note: each process draws 16 rows of a batch to use the 8 it holds; '
        'tasks.copy.rows_per_seed = 8 would have it draw only those.')
    for per_seed in (8, 4):
        assert drawing_note(tasks.Copy(8, 10, 16, rows_per_seed=per_seed),
                            (8, 16)) is None
    # Streams of 6 rows: rows 6-11 and 12-15 for rows 8-15.
    assert drawing_note(tasks.Copy(8, 10, 16, rows_per_seed=6),
                        (8, 16)).startswith('Note: each process draws 10 rows')


def test_the_environment_of_a_multi_host_tpu_slice_names_the_cluster():
    from experiments import distributed
    env = {'TPU_WORKER_HOSTNAMES': 'w-0,w-1,w-2,w-3', 'TPU_WORKER_ID': '2'}
    assert distributed.from_environment(env) == distributed.Cluster(
        f'w-0:{distributed.DEFAULT_PORT}', 4, 2)
    assert distributed.from_environment({'TPU_WORKER_HOSTNAMES': 'w-0'}) is None
    assert distributed.from_environment({}) is None
    with pytest.raises(distributed.ConfigError, match='TPU_WORKER_ID'):
        distributed.from_environment({'TPU_WORKER_HOSTNAMES': 'a,b'})


SLICE_SWEEP = f"""# One trial, the run above, on a 2-worker TPU slice (tests only).
import scripts.sweeps
scripts.Sweep.base = 'codelab.gin'
scripts.Sweep.bindings = {PARAMS!r}
scripts.Sweep.axes = {{'models.TransformerLM.n_heads': [8]}}  # codelab's
"""
TRIAL = 'n_heads=8'


def test_a_preempted_slice_trains_its_trial_once_and_resumes_it_exactly(
        two_processes, tmp_path, monkeypatch):
    """The Cloud TPU backend with the stand-in gcloud running a 2-worker
    slice (v4-16): the trial runs once, as one run over both workers'
    processes. The VM is preempted as the trial's step-8 checkpoint reaches
    the bucket (every process of both workers SIGKILLed); the rerun of the
    same command resumes the trial there on a new VM, and it ends with the
    numbers of the same run over two processes never stopped, bit for bit."""
    from tests.test_sweep_tpu import TPU, _calls, _stand_in, _sweep
    root = _stand_in(tmp_path, monkeypatch)
    (tmp_path / 'tiny.gin').write_text(SLICE_SWEEP)
    monkeypatch.setenv('GCLOUD_EXECUTE', '1')
    bucket = root / 'bucket' / 'my-bucket' / 'sweeps' / 'tiny' / TRIAL
    monkeypatch.setenv('GCLOUD_PREEMPT', 'gs://my-bucket/sweeps/tiny/'
                       f'{TRIAL}/checkpoints/step_00000008')
    flags = [*TPU, '--accelerator_type=v4-16']  # 2 workers in the stand-in

    status, out = _sweep(*flags)
    assert status == 1, out
    # Both workers' two installs went to the stand-in's pip, none to a real
    # one.
    pip = (root / 'pip.log').read_text().splitlines()
    assert len(pip) == 4 and all(c.startswith('install ') for c in pip)
    assert 'lsh failed at run: exit status 255' in out
    assert 'Rerun the same command' in out
    # Each checkpoint reached the bucket as it was written.
    assert sorted(os.listdir(bucket / 'checkpoints')) == [
        'step_00000004', 'step_00000008']
    assert json.loads((bucket / 'trial.json').read_text())['state'] == (
        'running')
    calls = len(_calls(root))

    status, out = _sweep(*flags)
    assert status == 0, out
    assert '0 of 1 trials finished earlier; 1 to run' in out
    assert _calls(root)[calls + 1][:5] == [  # a new VM
        'compute', 'tpus', 'tpu-vm', 'create', 'lsh']
    status = json.loads((bucket / 'trial.json').read_text())
    assert status['state'] == 'finished' and status['attempts'] == 2
    # One run over both workers' devices (one CPU device each), logged by
    # worker 0; worker 1's attempt (its log starts as the bucket's copy of
    # worker 0's) logs no progress of its own.
    log = (bucket / 'trial.log').read_text().split('# attempt 2')[1]
    assert 'Resuming from the checkpoint at step 8' in log
    assert 'for 16 steps on 2 device(s)' in log and 'Final eval' in log
    other = (root / 'deleted' / 'lsh' / 'worker-1' / 'sweep-runs' / 'tiny'
             / TRIAL / 'trial.log').read_text().split('# attempt 2')[1]
    assert 'step ' not in other.split('\n', 1)[1] and 'Final' not in other
    # The finished trial's copy is exact: the checkpoints it kept.
    assert sorted(os.listdir(bucket / 'checkpoints')) == [
        'step_00000008', 'step_00000012', 'step_00000016']
    assert _outcome(bucket) == two_processes[3]
    # And the results came back here for scripts.report.
    assert json.loads((tmp_path / 'runs' / 'sweeps' / 'tiny' / TRIAL /
                       'trial.json').read_text())['state'] == 'finished'
