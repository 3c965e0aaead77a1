"""Runs a sweep's trials on Cloud TPU VMs with gcloud.

For each VM: create it (directly, or as a queued resource that is waited on
until ACTIVE; spot if asked), copy a tarball of this project and the sweep
file to it, install, then run its share of the trials one at a time with this
same sweep runner. Every worker of a slice runs it (as TPU VMs require), and
each trial runs once across all of them: one process per worker, one program
over all their chips (experiments.distributed). Worker 0 copies the trial's
directory to the bucket after each checkpoint (experiments.mirror) and when
it ends. The VM is deleted at the end, also when a step failed. Trials
already finished in the bucket are skipped and the others start from what
the bucket has of them, so rerunning the same command after a preemption
runs only what is missing and resumes unfinished trials from their last
checkpoint; at the end the bucket is copied back into the local sweep
directory for `python -m scripts.report`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from typing import Sequence, TextIO

import scripts
from experiments.errors import ConfigError
from scripts.sweeps import layout
from scripts.sweeps.spec import Trial

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(
    scripts.__file__)))
# What a VM needs to install and run the project.
SOURCE_FILES = ('setup.py', 'pyproject.toml', 'constraints.txt', 'README.md')
SOURCE_PACKAGES = ('experiments', 'models', 'tasks', 'scripts', 'gin_configs')
TARBALL = 'trax-seq-lab.tar.gz'
REMOTE_PROJECT = 'trax-seq-lab'   # under the VM user's home
REMOTE_VENV = 'seq-lab-venv'
REMOTE_RUNS = 'sweep-runs'
SWEEP_IN_TARBALL = '_sweep'
# A worker's number and its slice's hosts, for experiments.distributed to
# join one run over all of them: GKE sets TPU_WORKER_ID and
# TPU_WORKER_HOSTNAMES itself; a TPU VM's metadata server has them
# (worker-network-endpoints lists hosts, or name:number:address triples).
WORKER_ENVIRONMENT = (
    'md() { curl -sf -H Metadata-Flavor:Google "http://metadata.google.'
    'internal/computeMetadata/v1/instance/attributes/$1"; }',
    '[ -n "$TPU_WORKER_ID" ] || TPU_WORKER_ID=$(md agent-worker-number) '
    '|| TPU_WORKER_ID=0; export TPU_WORKER_ID',
    'if [ -z "$TPU_WORKER_HOSTNAMES$TPU_PROCESS_ADDRESSES" ]; then '
    "hosts=$(md worker-network-endpoints | tr , '\\n' | awk -F: '{print $NF}'"
    ' | paste -sd, -); [ -z "$hosts" ] || export TPU_WORKER_HOSTNAMES=$hosts; '
    'fi',
)


@dataclasses.dataclass(frozen=True)
class TpuOptions:
    """Where and on what the trials run.

    name: the TPU VM's name; with several VMs, `<name>-0`, `<name>-1`, ...
    bucket: gs:// path; the sweep's results go to `<bucket>/<sweep name>`.
    """

    name: str
    zone: str
    bucket: str
    accelerator_type: str = 'v4-8'
    runtime_version: str = 'tpu-ubuntu2204-base'
    project: str | None = None
    num_vms: int = 1
    spot: bool = False
    queued: bool = False

    def __post_init__(self):
        for flag, value in (('tpu_name', self.name), ('zone', self.zone)):
            if not value:
                raise ConfigError(f'--backend=tpu needs --{flag}')
        if not self.bucket.startswith('gs://'):
            raise ConfigError(f'--bucket must be a gs:// path, got '
                              f'{self.bucket!r}')
        if self.num_vms < 1:
            raise ConfigError(f'--num_vms must be >= 1, got {self.num_vms}')


class GcloudCommands:
    """The gcloud command lines for one sweep; building them runs nothing."""

    def __init__(self, options: TpuOptions, sweep_name: str, sweep_file: str):
        self.o = options
        self.sweep_name = sweep_name
        self.sweep_file = sweep_file
        self.results = f'{options.bucket.rstrip("/")}/{sweep_name}'

    def vm_names(self, n: int) -> list[str]:
        return [self.o.name] if n == 1 else [f'{self.o.name}-{i}'
                                            for i in range(n)]

    def _project(self) -> list[str]:
        return [f'--project={self.o.project}'] if self.o.project else []

    def _tpus(self, *args: str) -> list[str]:
        return (['gcloud', 'compute', 'tpus', *args, f'--zone={self.o.zone}']
                + self._project())

    def finished_query(self) -> list[str]:
        return (['gcloud', 'storage', 'cat',
                 f'{self.results}/*/{layout.STATUS}'] + self._project())

    def create(self, vm: str) -> list[str]:
        spot = ['--spot'] if self.o.spot else []
        if self.o.queued:
            return self._tpus(
                'queued-resources', 'create', vm, f'--node-id={vm}',
                f'--accelerator-type={self.o.accelerator_type}',
                f'--runtime-version={self.o.runtime_version}', *spot)
        return self._tpus('tpu-vm', 'create', vm,
                          f'--accelerator-type={self.o.accelerator_type}',
                          f'--version={self.o.runtime_version}', *spot)

    def queued_state(self, vm: str) -> list[str]:
        return self._tpus('queued-resources', 'describe', vm,
                          '--format=value(state.state)')

    def copy_source(self, vm: str, tarball: str) -> list[str]:
        return self._tpus('tpu-vm', 'scp', tarball, f'{vm}:{TARBALL}',
                          '--worker=all')

    def _ssh(self, vm: str, command: str, worker: str = 'all') -> list[str]:
        return self._tpus('tpu-vm', 'ssh', vm, f'--worker={worker}',
                          f'--command={command}')

    def install(self, vm: str) -> list[str]:
        return self._ssh(vm, ' && '.join([
            f'mkdir -p {REMOTE_PROJECT}',
            f'tar -xzf {TARBALL} -C {REMOTE_PROJECT}',
            f'python3 -m venv {REMOTE_VENV}',
            f'. {REMOTE_VENV}/bin/activate',
            f'pip install -q -c {REMOTE_PROJECT}/constraints.txt '
            f"-e ./{REMOTE_PROJECT} 'jax[tpu]'",
            # trax without its declared dependencies (setup.py says why)
            f'pip install -q -c {REMOTE_PROJECT}/constraints.txt --no-deps '
            'trax']))

    def run(self, vm: str, trials: Sequence[Trial]) -> list[str]:
        """Every worker runs this. Each trial: fetch what the bucket has of
        it (to resume), run it once across all the VM's workers (one
        process each, joined by experiments.distributed), worker 0 copying
        it to the bucket after each checkpoint; then worker 0 copies the
        sweep directory there."""
        sweep = f'{SWEEP_IN_TARBALL}/{os.path.basename(self.sweep_file)}'
        names = ' '.join(shlex.quote(t.name) for t in trials)
        return self._ssh(vm, '\n'.join([
            f'. {REMOTE_VENV}/bin/activate && cd {REMOTE_PROJECT} || exit 1',
            f'out=$HOME/{REMOTE_RUNS}/{self.sweep_name}; '
            f'dest={shlex.quote(self.results)}; status=0',
            *WORKER_ENVIRONMENT,
            'mirror=; [ "$TPU_WORKER_ID" = 0 ] && mirror=--mirror_to="$dest"',
            f'for t in {names}; do',
            '  mkdir -p "$out/$t"',
            '  gcloud storage rsync --recursive "$dest/$t" "$out/$t" '
            '>/dev/null 2>&1',
            f'  python -m scripts.sweep --gin_file={sweep} '
            '--output_dir="$out" --trial="$t" ${mirror:+"$mirror"} '
            '&& ok=1 || { ok=; status=1; }',
            # A finished trial's copy becomes exact (checkpoints it pruned
            # go); then the sweep's own files.
            '  if [ "$TPU_WORKER_ID" = 0 ]; then gcloud storage rsync '
            '--recursive ${ok:+--delete-unmatched-destination-objects} '
            '"$out/$t" "$dest/$t" && gcloud storage rsync "$out" "$dest" '
            '|| status=1; fi',
            'done',
            'exit $status']))

    def delete(self, vm: str) -> list[str]:
        if self.o.queued:  # --force deletes the TPU VM with the request
            return self._tpus('queued-resources', 'delete', vm, '--force',
                              '--quiet')
        return self._tpus('tpu-vm', 'delete', vm, '--quiet')

    def fetch_results(self, local_dir: str) -> list[str]:
        return (['gcloud', 'storage', 'rsync', '--recursive', self.results,
                 local_dir] + self._project())


def shares(trials: Sequence[Trial], n: int) -> list[list[Trial]]:
    """Round-robin split over at most n VMs (no VM without trials)."""
    n = min(n, len(trials))
    return [list(trials[i::n]) for i in range(n)]


def finished_names(cat_output: str) -> set[str]:
    """Names of finished trials in concatenated trial.json documents (text
    between them, such as a gcloud warning, is skipped)."""
    decoder, names = json.JSONDecoder(), set()
    start = cat_output.find('{')
    while start != -1:
        try:
            status, end = decoder.raw_decode(cat_output, start)
        except ValueError:
            start = cat_output.find('{', start + 1)
            continue
        if isinstance(status, dict) and layout.is_finished(status):
            names.add(status.get('name'))
        start = cat_output.find('{', end)
    return names


def write_source_tarball(path: str, sweep_file: str) -> None:
    """This project's source and the sweep file, as the VMs install them."""
    if not os.path.isfile(os.path.join(PROJECT_ROOT, 'setup.py')):
        raise ConfigError(f'--backend=tpu needs the project source (setup.py) '
                          f'in {PROJECT_ROOT}; run it from a source checkout')

    def skip_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if '__pycache__' in info.name else info

    with tarfile.open(path, 'w:gz') as tar:
        for name in SOURCE_FILES + SOURCE_PACKAGES:
            source = os.path.join(PROJECT_ROOT, name)
            if os.path.exists(source):
                tar.add(source, arcname=name, filter=skip_caches)
        tar.add(sweep_file, arcname=f'{SWEEP_IN_TARBALL}/'
                f'{os.path.basename(sweep_file)}')


class StepFailed(Exception):
    """A gcloud command failed (or was skipped after Ctrl-C)."""


class TpuRunner:
    """Drives the VMs for one sweep; `dry_run` prints instead of running."""

    def __init__(self, commands: GcloudCommands, local_dir: str,
                 dry_run: bool = False, out: TextIO | None = None,
                 poll_s: float = 30.0):
        self.c = commands
        self.local_dir = local_dir
        self.dry_run = dry_run
        self.out = out or sys.stdout
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._stop = threading.Event()  # set by Ctrl-C: only deletes run
        self._failures: dict[str, str] = {}

    def _say(self, text: str) -> None:
        with self._lock:
            self.out.write(text + '\n')
            self.out.flush()

    def _call(self, label: str, command: list[str], echo: bool = True,
              cleanup: bool = False) -> str:
        """Runs `command` (or prints it in a dry run) and returns its
        output, streamed line by line with `label` in front; raises
        StepFailed if it fails. After Ctrl-C only `cleanup` commands run."""
        if self.dry_run:
            self._say(shlex.join(command))
            return ''
        if self._stop.is_set() and not cleanup:
            raise StepFailed('interrupted')
        self._say(f'[{label}] $ {shlex.join(command)}')
        process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True,
                                   stdin=subprocess.DEVNULL)
        lines = []
        for line in process.stdout:
            lines.append(line)
            if echo:
                self._say(f'[{label}] {line.rstrip()}')
        process.wait()
        if process.returncode:
            raise StepFailed(f'exit status {process.returncode}')
        return ''.join(lines)

    def _wait_until_active(self, vm: str) -> None:
        if self.dry_run:
            self._say(f'# wait until this prints ACTIVE: '
                      f'{shlex.join(self.c.queued_state(vm))}')
            return
        while True:
            state = self._call(vm, self.c.queued_state(vm), echo=False).strip()
            if state == 'ACTIVE':
                return
            if state in ('FAILED', 'SUSPENDED'):
                raise StepFailed(f'queued resource {vm} is {state}')
            time.sleep(self.poll_s)

    def _vm(self, vm: str, trials: Sequence[Trial], tarball: str) -> None:
        self._say(f'# {vm}: {len(trials)} trial(s): '
                  + ', '.join(t.name for t in trials))
        step = 'create'
        try:
            self._call(vm, self.c.create(vm))
            if self.c.o.queued:
                step = 'wait'
                self._wait_until_active(vm)
            for step, command in (('copy', self.c.copy_source(vm, tarball)),
                                  ('install', self.c.install(vm)),
                                  ('run', self.c.run(vm, trials))):
                self._call(vm, command)
        except StepFailed as e:
            self._failures[vm] = f'{step}: {e}'
        finally:
            try:
                self._call(vm, self.c.delete(vm), cleanup=True)
            except StepFailed as e:
                self._failures.setdefault(vm, f'delete: {e} (delete it by '
                                          'hand)')

    def _finished_in_bucket(self) -> set[str]:
        if self.dry_run:
            self._say('# trials already finished in the bucket are skipped; '
                      'they are listed with:')
            self._call('bucket', self.c.finished_query())
            return set()
        try:
            return finished_names(self._call(
                'bucket', self.c.finished_query(), echo=False))
        except StepFailed:
            return set()  # nothing there yet

    def run(self, trials: Sequence[Trial]) -> int:
        """Runs the trials not finished in the bucket; 0 if every VM got
        through, 1 otherwise."""
        done = self._finished_in_bucket()
        pending = [t for t in trials if t.name not in done]
        self._say(f'# {len(trials) - len(pending)} of {len(trials)} trials '
                  f'finished earlier; {len(pending)} to run, results in '
                  f'{self.c.results}')
        if pending:
            groups = shares(pending, self.c.o.num_vms)
            names = self.c.vm_names(len(groups))
            if self.dry_run:
                self._say(f'# {TARBALL}, made at run time: '
                          f'{", ".join(SOURCE_PACKAGES)}, setup files and '
                          f'{self.c.sweep_file}')
                for vm, group in zip(names, groups):
                    self._vm(vm, group, TARBALL)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    tarball = os.path.join(tmp, TARBALL)
                    write_source_tarball(tarball, self.c.sweep_file)
                    self._run_in_threads(names, groups, tarball)
        self._say('# copy the results here:')
        if not self.dry_run:
            os.makedirs(self.local_dir, exist_ok=True)
        try:
            self._call('bucket', self.c.fetch_results(self.local_dir))
        except StepFailed as e:
            self._failures['fetch'] = str(e)
        for vm, failure in self._failures.items():
            self._say(f'{vm} failed at {failure}')
        if self._failures:
            self._say('Rerun the same command to run the missing trials '
                      '(a preempted VM leaves its unfinished trials missing; '
                      'finished ones are skipped).')
        return 1 if self._failures else 0

    def _run_in_threads(self, names, groups, tarball) -> None:
        threads = [threading.Thread(target=self._vm, args=(vm, group, tarball))
                   for vm, group in zip(names, groups)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:
            self._stop.set()
            self._say('Interrupted: deleting the TPU VMs; wait for it.')
            for thread in threads:
                thread.join()
