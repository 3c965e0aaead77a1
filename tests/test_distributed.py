"""One run over two processes (jax.distributed on localhost, one CPU device
each) against one process with two forced CPU devices and the same global
batch; a kill of both and a restart of both; bad cluster settings.

The tolerance: the two set-ups reduce the gradients with different
collectives (gloo between processes, XLA's own within one), which round
differently in the last bits, so losses and metrics are compared to rtol
1e-5 and every weight and optimizer slot to 1e-6 absolute (the weights here
are of order 0.1-1; Adafactor's updates of the near-zero biases, ~1e-6,
amplify those last bits to ~4e-7). A real change of arithmetic (another
batch, a missed or doubled reduction) moves the losses by far more. A
resume is compared with the uninterrupted two-process run bit for bit.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import numpy as np

from tests.test_reliability import _outcome

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Steps after the first checkpoint, so that a kill right after it lands
# before the end.
PARAMS = ['experiments.Experiment.n_steps = 24',
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
    # The progress lines are process 0's (gloo's own "[Gloo] Rank 1 is
    # connected" line is all process 1 prints).
    assert [line for line in out1.splitlines()
            if not line.startswith('[Gloo]')] == []
    _assert_close(outcome, one_process)
    assert sorted(os.listdir(out)) == [
        '.lock', 'checkpoints', 'config.gin', 'eval', 'manifest.json',
        'operative_config.gin', 'progress.json', 'train']


def test_killing_both_and_starting_both_again_resumes_exactly(
        two_processes, tmp_path):
    out = tmp_path / 'run'
    port = _free_port()
    processes = [_start(out, port, i) for i in (0, 1)]
    first = out / 'checkpoints' / 'step_00000004'
    deadline = time.monotonic() + 300
    while not first.is_dir() and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in processes:
        p.send_signal(signal.SIGKILL)
    _finish(processes)
    assert first.is_dir()
    (rc0, out0, err0), (rc1, _, err1) = _two_processes(out)
    assert (rc0, rc1) == (0, 0), err0 + err1
    assert 'Resuming from the checkpoint at step' in out0
    assert _outcome(out) == two_processes[3]


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


def test_the_environment_of_a_multi_host_tpu_slice_names_the_cluster():
    from experiments import distributed
    env = {'TPU_WORKER_HOSTNAMES': 'w-0,w-1,w-2,w-3', 'TPU_WORKER_ID': '2'}
    assert distributed.from_environment(env) == distributed.Cluster(
        f'w-0:{distributed.DEFAULT_PORT}', 4, 2)
    assert distributed.from_environment({'TPU_WORKER_HOSTNAMES': 'w-0'}) is None
    assert distributed.from_environment({}) is None
    with pytest.raises(distributed.ConfigError, match='TPU_WORKER_ID'):
        distributed.from_environment({'TPU_WORKER_HOSTNAMES': 'a,b'})
