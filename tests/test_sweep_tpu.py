"""The Cloud TPU backend against tests/gcloud_standin.py, a stand-in for
`gcloud` that records its calls and keeps a bucket and TPU VMs in
directories; here the VMs' commands are recorded, not run.
tests/test_distributed.py has the stand-in run them: a 2-worker slice,
preempted mid-trial, then resumed.
"""
import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from scripts import sweep
from scripts.sweeps import cloud_tpu

STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'gcloud_standin.py')
SWEEP = """# Three tiny trials (tests only).
import scripts.sweeps
scripts.Sweep.base = 'codelab.gin'
scripts.Sweep.bindings = ['experiments.Experiment.n_steps = 4']
scripts.Sweep.axes = {'models.TransformerLM.n_heads': [1, 2, 4]}
"""
TRIALS = ['n_heads=1', 'n_heads=2', 'n_heads=4']
TPU = ['--backend=tpu', '--tpu_name=lsh', '--zone=us-central2-b',
       '--bucket=gs://my-bucket/sweeps']


def _stand_in(tmp_path, monkeypatch):
    """The stand-in on PATH, its state in tmp_path/gcloud, the tiny sweep
    file in tmp_path (the working directory); returns the state dir."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    shim = bin_dir / 'gcloud'
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDIN} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    monkeypatch.setenv('GCLOUD_ROOT', str(tmp_path / 'gcloud'))
    for name in ('GCLOUD_FAIL', 'GCLOUD_EXECUTE', 'GCLOUD_PREEMPT'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'tiny.gin').write_text(SWEEP)
    return tmp_path / 'gcloud'


def _calls(root):
    log = root / 'calls.jsonl'
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def gcloud(tmp_path, monkeypatch):
    """The stand-in (VMs' commands recorded, not run); returns a function
    giving the recorded calls."""
    root = _stand_in(tmp_path, monkeypatch)
    return lambda: _calls(root)


def _tarball(tmp_path, vm):
    """The source tarball as the stand-in's (deleted) VM received it."""
    return str(tmp_path / 'gcloud' / 'deleted' / vm / 'worker-0'
               / cloud_tpu.TARBALL)


def _sweep(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = sweep.main(['scripts.sweep', '--gin_file=tiny.gin', *args])
    return status, out.getvalue()


def _vm_calls(calls, vm):
    return [c for c in calls if vm in c or f'{vm}:trax-seq-lab.tar.gz' in c]


def _ssh_command(call):
    return next(a for a in call if a.startswith('--command='))[10:]


def test_dry_run_prints_the_commands_and_runs_nothing(gcloud, tmp_path):
    status, out = _sweep(*TPU, '--num_vms=2', '--dry_run')
    assert status == 0
    assert gcloud() == []
    assert sorted(os.listdir(tmp_path)) == ['bin', 'tiny.gin']
    lines = out.splitlines()
    assert ('gcloud storage cat '
            "'gs://my-bucket/sweeps/tiny/*/trial.json'") in lines
    for vm in ('lsh-0', 'lsh-1'):
        assert (f'gcloud compute tpus tpu-vm create {vm} '
                '--accelerator-type=v4-8 --version=tpu-ubuntu2204-base '
                '--zone=us-central2-b') in lines
        assert (f'gcloud compute tpus tpu-vm delete {vm} --quiet '
                '--zone=us-central2-b') in lines
    assert '# lsh-0: 2 trial(s): n_heads=1, n_heads=4' in lines
    assert '# lsh-1: 1 trial(s): n_heads=2' in lines
    assert ('gcloud storage rsync --recursive gs://my-bucket/sweeps/tiny '
            'runs/sweeps/tiny') in lines
    # The run step as a real run sends it: each trial once over the
    # workers, worker 0 copying its checkpoints to the bucket.
    assert out.count('gcloud compute tpus tpu-vm ssh lsh-0 --worker=all '
                     "'--command=. seq-lab-venv/bin/activate") == 1
    assert 'mirror=; [ "$TPU_WORKER_ID" = 0 ] && mirror=--mirror_to="$dest"' \
        in out


def test_runs_each_vm_from_create_to_delete(gcloud, tmp_path):
    status, out = _sweep(*TPU, '--num_vms=2', '--project=my-project')
    assert status == 0, out
    calls = gcloud()
    assert calls[0] == ['storage', 'cat',
                        'gs://my-bucket/sweeps/tiny/*/trial.json',
                        '--project=my-project']
    assert calls[-1] == ['storage', 'rsync', '--recursive',
                         'gs://my-bucket/sweeps/tiny', 'runs/sweeps/tiny',
                         '--project=my-project']
    for vm, trials in (('lsh-0', ['n_heads=1', 'n_heads=4']),
                       ('lsh-1', ['n_heads=2'])):
        mine = _vm_calls(calls, vm)
        assert [c[:4] for c in mine] == [
            ['compute', 'tpus', 'tpu-vm', 'create'],
            ['compute', 'tpus', 'tpu-vm', 'scp'],
            ['compute', 'tpus', 'tpu-vm', 'ssh'],
            ['compute', 'tpus', 'tpu-vm', 'ssh'],
            ['compute', 'tpus', 'tpu-vm', 'delete']]
        for call in mine:
            assert '--zone=us-central2-b' in call
            assert '--project=my-project' in call
        install, run = mine[2], mine[3]
        assert '--worker=all' in install and '--worker=all' in run
        assert "pip install" in _ssh_command(install)
        assert _ssh_command(install).endswith('--no-deps trax')
        script = _ssh_command(run)
        assert f"for t in {' '.join(trials)}; do" in script
        # Worker 0 copies each checkpoint to the bucket as it is written,
        # and the trial when it ends.
        assert ('python -m scripts.sweep --gin_file=_sweep/tiny.gin '
                '--output_dir="$out" --trial="$t" ${mirror:+"$mirror"}'
                ) in script
        assert 'mirror=--mirror_to="$dest"' in script
        assert ('gcloud storage rsync --recursive "$dest/$t" "$out/$t"'
                in script)
        assert '"$out/$t" "$dest/$t"' in script
        for command in (_ssh_command(install), script):  # valid shell
            subprocess.run(['bash', '-n', '-c', command], check=True)
    with tarfile.open(_tarball(tmp_path, 'lsh-0')) as tar:
        names = tar.getnames()
    for needed in ('setup.py', 'constraints.txt', 'scripts/sweep.py',
                   'experiments/main.py', 'gin_configs/codelab.gin',
                   '_sweep/tiny.gin'):
        assert needed in names
    assert not any('__pycache__' in n for n in names)


def test_spot_queued_resources_are_waited_for_and_deleted(gcloud):
    status, out = _sweep(*TPU, '--spot', '--queued',
                         '--accelerator_type=v5litepod-8',
                         '--runtime_version=v2-alpha-tpuv5-lite')
    assert status == 0, out
    calls = gcloud()
    assert calls[1] == [
        'compute', 'tpus', 'queued-resources', 'create', 'lsh',
        '--node-id=lsh', '--accelerator-type=v5litepod-8',
        '--runtime-version=v2-alpha-tpuv5-lite', '--spot',
        '--zone=us-central2-b']
    assert calls[2] == ['compute', 'tpus', 'queued-resources', 'describe',
                        'lsh', '--format=value(state.state)',
                        '--zone=us-central2-b']
    assert calls[-2] == ['compute', 'tpus', 'queued-resources', 'delete',
                         'lsh', '--force', '--quiet', '--zone=us-central2-b']


def test_trials_finished_in_the_bucket_are_skipped(gcloud, tmp_path):
    bucket = tmp_path / 'gcloud' / 'bucket' / 'my-bucket' / 'sweeps' / 'tiny'
    for name, state in (('n_heads=2', 'finished'), ('n_heads=4', 'failed')):
        (bucket / name).mkdir(parents=True)
        (bucket / name / 'trial.json').write_text(
            json.dumps({'name': name, 'state': state}, indent=1))
    status, out = _sweep(*TPU)
    assert status == 0, out
    assert '1 of 3 trials finished earlier; 2 to run' in out
    run = next(c for c in gcloud() if 'ssh' in c and 'for t in' in
               _ssh_command(c))
    assert 'for t in n_heads=1 n_heads=4; do' in _ssh_command(run)


def test_a_failed_step_still_deletes_the_vm(gcloud, monkeypatch):
    """A preempted VM looks like this: its run step fails."""
    monkeypatch.setenv('GCLOUD_FAIL', 'python -m scripts.sweep')
    status, out = _sweep(*TPU)
    assert status == 1
    assert [c[3] for c in gcloud() if c[0] == 'compute'] == [
        'create', 'scp', 'ssh', 'ssh', 'delete']
    assert 'lsh failed at run: exit status 1' in out
    assert 'Rerun the same command to run the missing trials' in out


def test_finished_names_reads_concatenated_status_files():
    text = ('{"name": "a", "state": "finished"}\n'
            '{\n "name": "b",\n "state": "running"\n}\n'
            'WARNING: {not json} from gcloud\n'
            '{"name": "c", "state": "finished"}')
    assert cloud_tpu.finished_names(text) == {'a', 'c'}
    assert cloud_tpu.finished_names('') == set()


def test_the_attention_zoo_ships_whole_and_its_trials_resolve_on_a_vm(
        gcloud, tmp_path):
    """The shipped zoo sweep, whose task axis names gin files: every trial
    goes to a VM, the tarball carries each bundle's file, and a trial
    resolves there (dry run from the unpacked tarball, as the VM runs it)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = sweep.main(['scripts.sweep',
                             '--gin_file=sweeps/attention_zoo.gin', *TPU,
                             '--num_vms=2'])
    assert status == 0, out.getvalue()
    scripts = [_ssh_command(c) for c in gcloud()
               if 'ssh' in c and 'for t in' in _ssh_command(c)]
    assert len(scripts) == 2
    shipped = [t for s in scripts for t in
               s.split('for t in ', 1)[1].split('; do', 1)[0].split()]
    assert len(shipped) == len(set(shipped)) == 24
    assert 'attention=favor,task=mqar' in shipped
    vm = tmp_path / 'vm'
    with tarfile.open(_tarball(tmp_path, 'lsh-0')) as tar:
        names = tar.getnames()
        tar.extractall(vm)
    for task in ('copy', 'reversal', 'associative_recall', 'induction_heads',
                 'mqar', 'selective_copying'):
        assert f'gin_configs/zoo/{task}.gin' in names
    assert '_sweep/attention_zoo.gin' in names
    proc = subprocess.run(
        [sys.executable, '-m', 'scripts.sweep',
         '--gin_file=_sweep/attention_zoo.gin', '--output_dir=out',
         '--trial=attention=favor,task=mqar', '--dry_run'],
        cwd=vm, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONPATH=str(vm)), timeout=300)
    assert proc.returncode == 0, proc.stdout
    assert '--gin_file=zoo/model.gin --gin_file=zoo/mqar.gin' in proc.stdout
    assert 'dry run: 1 valid trial(s)' in proc.stdout


def test_workers_find_their_slice_in_the_metadata_server(tmp_path):
    """On a TPU VM (no GKE variables) the run script asks the metadata
    server, here a stand-in `curl`, for the worker's number and its slice's
    hosts, in either of the formats worker-network-endpoints has."""
    curl = tmp_path / 'curl'
    curl.write_text('#!/bin/bash\ncase "${@: -1}" in\n'
                    '  */agent-worker-number) echo -n 1 ;;\n'
                    '  */worker-network-endpoints) echo -n "$ENDPOINTS" ;;\n'
                    '  *) exit 22 ;;\nesac\n')
    curl.chmod(0o755)
    prologue = '\n'.join(cloud_tpu.WORKER_ENVIRONMENT) + (
        '\necho "$TPU_WORKER_ID|${TPU_WORKER_HOSTNAMES-unset}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith('TPU_')}
    env['PATH'] = f'{tmp_path}{os.pathsep}{env["PATH"]}'
    for endpoints, hosts in (
            ('n:0:10.0.0.2,n:1:10.0.0.3', '10.0.0.2,10.0.0.3'),
            ('t1v-w-0,t1v-w-1', 't1v-w-0,t1v-w-1'), ('', 'unset')):
        out = subprocess.run(['bash', '-c', prologue], capture_output=True,
                             text=True, check=True,
                             env={**env, 'ENDPOINTS': endpoints}).stdout
        assert out == f'1|{hosts}\n'
    # GKE's own variables win over the metadata server.
    out = subprocess.run(['bash', '-c', prologue], capture_output=True,
                         text=True, check=True, env={
                             **env, 'TPU_WORKER_ID': '3',
                             'TPU_WORKER_HOSTNAMES': 'a,b,c,d'}).stdout
    assert out == '3|a,b,c,d\n'


def test_mirror_to_takes_a_gs_path_and_needs_gcloud(tmp_path, monkeypatch,
                                                    capsys):
    from experiments import main
    out = tmp_path / 'run'
    args = ['main', '--gin_file=codelab.gin', f'--output_dir={out}']
    assert main.main([*args, '--mirror_to=/tmp/copy']) == 2
    assert capsys.readouterr().err == (
        "error: --mirror_to must be a gs:// path, got '/tmp/copy'\n")
    monkeypatch.setenv('PATH', str(tmp_path))  # no gcloud there
    assert main.main([*args, '--mirror_to=gs://b/run']) == 2
    assert capsys.readouterr().err == (
        'error: --mirror_to=gs://b/run needs the gcloud CLI on PATH\n')
    assert not out.exists()
    assert sweep.main(['scripts.sweep', '--gin_file=sweeps/reformer_lsh.gin',
                       *TPU, '--mirror_to=gs://b/x', '--dry_run']) == 2
    assert capsys.readouterr().err.startswith(
        'error: --mirror_to is for --backend=local')


def test_a_failed_copy_is_a_warning_and_training_goes_on(gcloud, tmp_path,
                                                         monkeypatch, capsys):
    from experiments import main
    monkeypatch.setenv('GCLOUD_FAIL', 'storage rsync')
    out = tmp_path / 'run'
    assert main.run(['codelab.gin'], [
        'experiments.Experiment.n_steps = 8',
        'experiments.Experiment.eval_every = 8',
        'experiments.Experiment.checkpoint_every = 4',
        'experiments.Experiment.n_eval_batches = 1'], output_dir=str(out),
        mirror_to='gs://my-bucket/run') == 0
    warning = (f'warning: copying {out} to gs://my-bucket/run failed (exit 1: '
               'ERROR: (gcloud) stand-in failure); the next checkpoint tries '
               'again\n')
    assert capsys.readouterr().err == warning * 3  # steps 4, 8 and the end
    assert [c[:2] for c in gcloud()] == [['storage', 'rsync']] * 3
    assert sorted(os.listdir(out / 'checkpoints')) == [
        'step_00000004', 'step_00000008']
