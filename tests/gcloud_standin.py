"""A stand-in for the `gcloud` commands the Cloud TPU backend runs (tests
only; tests/test_sweep_tpu.py puts it on PATH as `gcloud`).

Its state lives under $GCLOUD_ROOT:

    calls.jsonl          every call's arguments, one JSON list a line
    bucket/<b>/...       the bucket gs://<b>/... (`storage rsync`, `cat`)
    vms/<vm>/worker-<i>  a TPU VM's workers' home directories
    deleted/<vm>         a deleted VM, kept for the test to look at

`tpu-vm create` makes one worker per host of the accelerator type (v4-16:
2; the stand-in's rule is max(1, N // 8) for `<type>-N`). `scp --worker=all`
copies into every worker's home. `ssh --worker=all` runs the command only
when $GCLOUD_EXECUTE is set: then each worker is a `bash -c` process with
its home as HOME and what a TPU VM's workers get, TPU_WORKER_ID and, with
several workers, TPU_PROCESS_ADDRESSES (localhost, a free port each), so
experiments.main joins one run over the workers. Installing is simulated:
`python3 -m venv DIR` makes an activate script that puts this Python (with
the project's dependencies) on PATH, and `pip` only logs its arguments to
pip.log; the project itself runs from the unpacked tarball.

$GCLOUD_PREEMPT names a bucket path (gs://...): the first `storage rsync`
that makes it exist (a trial's copy of a new checkpoint) then preempts the
VM it was called from, as Cloud TPU does: every process of every worker is
killed at once, and that VM's `ssh` ends with status 255. A call whose
arguments contain $GCLOUD_FAIL fails.
"""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

ROOT = os.environ['GCLOUD_ROOT']
VMS, DELETED = os.path.join(ROOT, 'vms'), os.path.join(ROOT, 'deleted')


def fail(message: str, status: int = 1):
    print(f'ERROR: (gcloud) {message}')
    sys.exit(status)


def local(path: str) -> str:
    """A gs:// path's stand-in directory, or a local path as it is."""
    if path.startswith('gs://'):
        return os.path.join(ROOT, 'bucket', path[len('gs://'):])
    return path


def option(args, name, default=None):
    for arg in args:
        if arg.startswith(f'--{name}='):
            return arg.split('=', 1)[1]
    return default


def positional(args):
    return [a for a in args if not a.startswith('--')]


def workers(vm: str) -> list[str]:
    return sorted(glob.glob(os.path.join(VMS, vm, 'worker-*')),
                  key=lambda p: int(p.rsplit('-', 1)[1]))


def create(vm: str, accelerator: str) -> None:
    hosts = max(1, int(accelerator.rsplit('-', 1)[1]) // 8)
    for i in range(hosts):
        os.makedirs(os.path.join(VMS, vm, f'worker-{i}'))
    _write_worker_bin(os.path.join(VMS, vm, 'bin'))


def delete(vm: str) -> None:
    if not os.path.isdir(os.path.join(VMS, vm)):
        fail(f'TPU {vm} not found')
    kept = os.path.join(DELETED, vm)
    shutil.rmtree(kept, ignore_errors=True)
    os.makedirs(DELETED, exist_ok=True)
    shutil.move(os.path.join(VMS, vm), kept)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


def _write_worker_bin(path: str) -> None:
    """`python3` (venv creation simulated, else this Python) and `pip` (a
    no-op) for a VM's workers."""
    os.makedirs(path)
    python_dir = os.path.dirname(sys.executable)
    # The activated "venv" keeps these shims first: this Python's own pip
    # must never run (it would install into the tests' environment).
    shims = {
        'python3': f'''#!/bin/bash
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  echo 'export PATH="{path}:{python_dir}:$PATH"' > "$3/bin/activate"
  exit 0
fi
exec "{sys.executable}" "$@"
''',
        'pip': f'#!/bin/bash\necho "$*" >> "{ROOT}/pip.log"\n',
    }
    for name, text in shims.items():
        with open(os.path.join(path, name), 'w') as f:
            f.write(text)
        os.chmod(os.path.join(path, name), 0o755)


def ssh(vm: str, command: str) -> int:
    if not os.environ.get('GCLOUD_EXECUTE'):
        return 0
    homes = workers(vm)
    addresses = ','.join(f'localhost:{_free_port()}' for _ in homes)
    processes = []
    for i, home in enumerate(homes):
        env = {**os.environ, 'HOME': home, 'TPU_WORKER_ID': str(i),
               'GCLOUD_VM': vm,
               'PATH': os.pathsep.join([os.path.join(VMS, vm, 'bin'),
                                        os.environ['PATH']])}
        if len(homes) > 1:
            env['TPU_PROCESS_ADDRESSES'] = addresses
        processes.append(subprocess.Popen(
            ['bash', '-c', command], cwd=home, env=env,
            start_new_session=True, stdin=subprocess.DEVNULL))
    with open(os.path.join(VMS, vm, 'pids'), 'w') as f:
        f.write(' '.join(str(p.pid) for p in processes))
    codes = [p.wait() for p in processes]
    if os.path.exists(os.path.join(VMS, vm, 'preempted')):
        print(f'Connection to {vm} closed by remote host.')
        return 255
    return max(abs(c) for c in codes)


def _children() -> dict[int, list[int]]:
    children = {}
    for stat in glob.glob('/proc/[0-9]*/stat'):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        pid = int(stat.split('/')[2])
        children.setdefault(int(fields[1]), []).append(pid)
    return children


def preempt(vm: str) -> None:
    """Kills every process the VM's workers started (this one last)."""
    with open(os.path.join(VMS, vm, 'preempted'), 'w'):
        pass
    with open(os.path.join(VMS, vm, 'pids')) as f:
        roots = [int(p) for p in f.read().split()]
    children, doomed, todo = _children(), set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in doomed:
            doomed.add(pid)
            todo.extend(children.get(pid, []))
    for pid in doomed - {os.getpid()}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def rsync(args) -> None:
    source, dest = (local(p) for p in positional(args)[2:4])
    if not os.path.isdir(source):
        if positional(args)[2].startswith('gs://'):
            return  # an empty bucket path: nothing to copy
        fail(f'{source} not found')
    recursive = '--recursive' in args
    for dirpath, dirnames, filenames in os.walk(source):
        target = os.path.join(dest, os.path.relpath(dirpath, source))
        os.makedirs(target, exist_ok=True)
        for name in filenames:
            shutil.copy2(os.path.join(dirpath, name), target)
        if not recursive:
            break
    if '--delete-unmatched-destination-objects' in args:
        for dirpath, dirnames, filenames in os.walk(dest, topdown=False):
            mirror = os.path.join(source, os.path.relpath(dirpath, dest))
            for name in filenames:
                if not os.path.exists(os.path.join(mirror, name)):
                    os.remove(os.path.join(dirpath, name))
            if not os.path.exists(mirror):
                os.rmdir(dirpath)
    target = os.environ.get('GCLOUD_PREEMPT')
    vm = os.environ.get('GCLOUD_VM')
    if (target and vm and os.path.exists(local(target))
            and not os.path.exists(os.path.join(ROOT, 'preempted'))):
        with open(os.path.join(ROOT, 'preempted'), 'w'):
            pass  # once: the next VM runs on
        preempt(vm)


def main(args) -> int:
    os.makedirs(ROOT, exist_ok=True)
    with open(os.path.join(ROOT, 'calls.jsonl'), 'a') as log:
        log.write(json.dumps(args) + '\n')
    failing = os.environ.get('GCLOUD_FAIL')
    if failing and failing in ' '.join(args):
        fail('stand-in failure')
    words = positional(args)
    if words[:2] == ['storage', 'rsync']:
        rsync(args)
    elif words[:2] == ['storage', 'cat']:
        paths = sorted(glob.glob(local(words[2])))
        if not paths:
            fail('(gcloud.storage.cat) no URLs matched')
        for path in paths:
            with open(path) as f:
                print(f.read())
    elif words[:3] == ['compute', 'tpus', 'tpu-vm'] or words[:3] == [
            'compute', 'tpus', 'queued-resources']:
        verb, vm = words[3], words[4]
        if verb == 'create':
            create(vm, option(args, 'accelerator-type'))
        elif verb == 'describe':
            print('ACTIVE')
        elif verb == 'delete':
            delete(vm)
        elif verb == 'scp':
            source, target = words[4], words[5]
            vm, name = target.split(':', 1)
            for home in workers(vm):
                shutil.copy(source, os.path.join(home, name))
        elif verb == 'ssh':
            return ssh(vm, option(args, 'command'))
    else:
        fail(f'the stand-in does not know {words[:3]}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
