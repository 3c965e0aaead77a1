"""The Cloud TPU backend against a stand-in `gcloud` that records its calls.

The stand-in appends each call's arguments to a log, keeps a copy of the
source tarball it is asked to copy, answers `storage cat` with a prepared
trial.json (or fails, like an empty bucket), answers `queued-resources
describe` with ACTIVE, and fails any call containing $GCLOUD_FAIL.
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

FAKE_GCLOUD = r'''#!{python}
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ['GCLOUD_LOG'], 'a') as log:
    log.write(json.dumps(args) + '\n')
fail = os.environ.get('GCLOUD_FAIL')
if fail and fail in ' '.join(args):
    print('ERROR: (gcloud) stand-in failure')
    sys.exit(1)
if args[:2] == ['storage', 'cat']:
    finished = os.environ.get('GCLOUD_CAT')
    if not finished:
        print('ERROR: (gcloud.storage.cat) no URLs matched')
        sys.exit(1)
    print(open(finished).read())
elif 'describe' in args:
    print('ACTIVE')
elif 'scp' in args:
    shutil.copy(args[4], os.environ['GCLOUD_LOG'] + '.tar.gz')
'''
SWEEP = """# Three tiny trials (tests only).
import scripts.sweeps
scripts.Sweep.base = 'codelab.gin'
scripts.Sweep.bindings = ['experiments.Experiment.n_steps = 4']
scripts.Sweep.axes = {'models.TransformerLM.n_heads': [1, 2, 4]}
"""
TRIALS = ['n_heads=1', 'n_heads=2', 'n_heads=4']
TPU = ['--backend=tpu', '--tpu_name=lsh', '--zone=us-central2-b',
       '--bucket=gs://my-bucket/sweeps']


@pytest.fixture
def gcloud(tmp_path, monkeypatch):
    """The stand-in on PATH; returns a function giving the recorded calls."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    fake = bin_dir / 'gcloud'
    fake.write_text(FAKE_GCLOUD.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / 'gcloud.log'
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    monkeypatch.setenv('GCLOUD_LOG', str(log))
    monkeypatch.delenv('GCLOUD_FAIL', raising=False)
    monkeypatch.delenv('GCLOUD_CAT', raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'tiny.gin').write_text(SWEEP)

    def calls():
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]
    return calls


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
        assert ('python -m scripts.sweep --gin_file=_sweep/tiny.gin '
                '--output_dir="$out" --trial="$t"') in script
        assert 'gcloud storage rsync --recursive "$out" "$dest"' in script
        for command in (_ssh_command(install), script):  # valid shell
            subprocess.run(['bash', '-n', '-c', command], check=True)
    with tarfile.open(str(tmp_path / 'gcloud.log.tar.gz')) as tar:
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


def test_trials_finished_in_the_bucket_are_skipped(gcloud, tmp_path,
                                                   monkeypatch):
    finished = tmp_path / 'cat.json'
    finished.write_text(
        json.dumps({'name': 'n_heads=2', 'state': 'finished'}, indent=1)
        + '\n' + json.dumps({'name': 'n_heads=4', 'state': 'failed'}))
    monkeypatch.setenv('GCLOUD_CAT', str(finished))
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
    with tarfile.open(str(tmp_path / 'gcloud.log.tar.gz')) as tar:
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
