"""Each run records where it ran; a resume checks it.

Runs here are in-process (`main.run`), so their thread pool is the test
process's; what matters is what the manifest says and what a resume does
when it disagrees.
"""
import json
import os
import subprocess
import sys

import pytest

from experiments import evaluate, main, manifest, xla_cpu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMS = ['experiments.Experiment.n_steps = 2',
          'experiments.Experiment.eval_every = 1',
          'experiments.Experiment.n_eval_batches = 1']
MORE_STEPS = PARAMS + ['experiments.Experiment.n_steps = 3']


def _tree(root):
    """Every path under `root` with its size and modification time."""
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            stat = os.stat(path)
            found[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture
def trained(tmp_path):
    out = tmp_path / 'run'
    assert main.run(['codelab.gin'], PARAMS, output_dir=str(out)) == 0
    return out


def test_every_start_records_command_code_stack_and_machine(trained):
    assert main.run(['codelab.gin'], MORE_STEPS, output_dir=str(trained)) == 0
    starts = manifest.read(str(trained))
    assert len(starts) == 2
    start = starts[-1]
    assert start['command'][0] == sys.executable
    assert start['project_version'] == '0.1.0'
    if os.path.isdir(os.path.join(REPO, '.git')):
        head = subprocess.run(['git', '-C', REPO, 'rev-parse', 'HEAD'],
                              capture_output=True, text=True).stdout.strip()
        assert start['git_commit'] == head
    import jax
    assert start['versions']['jax'] == jax.__version__
    assert start['versions']['trax'] == '1.4.1'
    assert set(start['versions']) >= {'python', 'jaxlib', 'gin-config'}
    assert start['platform'] == 'cpu' and start['n_devices'] == 1
    assert start['threads'] == xla_cpu.pool_size()
    assert start['usable_cpus'] == len(os.sched_getaffinity(0))
    with open('/proc/cpuinfo') as f:
        cpuinfo = f.read()
    assert start['cpu_model'] in cpuinfo
    assert start['isa'] and all(flag in cpuinfo for flag in start['isa'])


def _edit_last_start(out, **changes):
    starts = manifest.read(str(out))
    starts[-1].update(changes)
    with open(out / manifest.FILE, 'w') as f:
        json.dump({'starts': starts}, f)


def test_a_resume_with_another_thread_pool_is_refused(trained, capsys):
    _edit_last_start(trained, threads=xla_cpu.pool_size() + 1)
    before = _tree(trained)
    capsys.readouterr()
    assert main.run(['codelab.gin'], MORE_STEPS, output_dir=str(trained)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: cannot resume {trained}: the run was '
                          f'trained with {xla_cpu.pool_size() + 1} XLA:CPU '
                          'thread(s)') and err.count('\n') == 1, err
    assert 'cpu_threads' in err
    after = _tree(trained)
    after.pop('.lock'), before.pop('.lock')  # the lock is taken, then freed
    assert after == before


def test_a_resume_on_another_kind_of_machine_warns_once(trained, capsys):
    _edit_last_start(trained, cpu_model='Some Other CPU', isa=['sse2'])
    capsys.readouterr()
    assert main.run(['codelab.gin'], MORE_STEPS, output_dir=str(trained)) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines()
                if line.startswith('warning:')]
    assert len(warnings) == 1
    assert ('resuming on another kind of machine (cpu_model, isa differ: '
            'trained on Some Other CPU (no SIMD flags)') in warnings[0]
    assert 'the bits may differ' in warnings[0]
    assert 'Resuming from the checkpoint at step 2 (last start: Some Other ' \
        'CPU' in captured.out


def test_evaluate_shows_where_the_run_ran(trained, capsys):
    capsys.readouterr()
    assert evaluate.main(['evaluate', f'--output_dir={trained}']) == 0
    out = capsys.readouterr().out
    start = manifest.read(str(trained))[-1]
    assert f'  trained on {manifest.describe(start)}\n' in out
    assert f'{xla_cpu.pool_size()} XLA:CPU thread(s)' in out


def test_overwrite_starts_the_manifest_anew(trained):
    assert main.run(['codelab.gin'], PARAMS, output_dir=str(trained),
                    overwrite=True) == 0
    assert len(manifest.read(str(trained))) == 1


def test_a_damaged_manifest_is_no_obstacle(trained):
    (trained / manifest.FILE).write_text('{not json')
    assert manifest.read(str(trained)) == []
    assert main.run(['codelab.gin'], MORE_STEPS, output_dir=str(trained)) == 0
    assert len(manifest.read(str(trained))) == 1
