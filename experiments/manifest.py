"""Where a run ran: a manifest that every start adds to its run directory.

A run's bits depend on more than its config: XLA:CPU compiles for the
instruction set it finds and its library kernels dispatch on it, and the
thread pool splits sums (experiments/xla_cpu.py). `manifest.json` records,
for each start, the command, the code's version and the stack's, and the
machine, so a number can be traced to what produced it. A resume compares
itself with the run's last start: another pool size would change the
computation, so it is refused; another kind of machine may change the bits,
so it is said in one warning line.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys

from experiments import run_dir

FILE = run_dir.MANIFEST_FILE
_PACKAGES = ('jax', 'jaxlib', 'trax', 'gin-config', 'numpy')
_PROJECT = 'trax-seq-lab'
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The CPU flags that decide which kernels XLA and its libraries run.
_ISA_PREFIXES = ('sse', 'ssse', 'avx', 'fma', 'f16c', 'amx', 'asimd', 'sve',
                 'neon')
# What makes two machines "of the same kind" for a run's bits.
_KIND = ('platform', 'device_kind', 'cpu_model', 'isa', 'n_devices')


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    if not os.path.isdir(os.path.join(_REPO, '.git')):
        return None
    try:
        return subprocess.run(['git', '-C', _REPO, *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu() -> tuple[str, list[str]]:
    """The CPU's model name and its SIMD flags (Linux; elsewhere what
    `platform` says, with no flags)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'model name':
                    model = value.strip()
                elif key in ('flags', 'Features') and not flags:
                    flags = sorted(flag for flag in value.split()
                                   if flag.startswith(_ISA_PREFIXES))
                if key == '' and flags:  # the first processor is enough
                    break
    except OSError:
        pass
    return model, flags


def collect(threads: int, n_devices: int) -> dict:
    """This process's start: command, versions, machine."""
    import jax
    device = jax.devices()[0]
    cpu_model, isa = _cpu()
    commit = _git('rev-parse', 'HEAD')
    return {
        'started': datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        'command': [sys.executable, *sys.argv],
        'project_version': _version(_PROJECT),
        'git_commit': commit,
        'git_dirty': bool(_git('status', '--porcelain')) if commit else None,
        'versions': {'python': platform.python_version(),
                     **{name: _version(name) for name in _PACKAGES}},
        'host': socket.gethostname(),
        'platform': device.platform,
        'device_kind': device.device_kind,
        'cpu_model': cpu_model,
        'isa': isa,
        'n_devices': n_devices,
        'threads': threads,
        'usable_cpus': len(os.sched_getaffinity(0)),
    }


def read(output_dir: str) -> list[dict]:
    """The run's starts, oldest first ([] for a run without a manifest, or
    one whose manifest is damaged: it is a record, not needed to resume)."""
    try:
        with open(os.path.join(output_dir, FILE)) as f:
            starts = json.load(f)['starts']
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [s for s in starts if isinstance(s, dict)] if isinstance(
        starts, list) else []


def record(output_dir: str, earlier: list[dict], start: dict) -> None:
    """Writes the run's manifest (atomically): the `earlier` starts that
    read() gave, then `start`."""
    run_dir.write_json(os.path.join(output_dir, FILE),
                       {'starts': earlier + [start]})


def describe(start: dict) -> str:
    """One line: where a start ran and with what."""
    versions = start.get('versions') or {}
    code = start.get('git_commit')
    code = (f'commit {code[:10]}' + (' (uncommitted changes)'
                                     if start.get('git_dirty') else '')
            if code else f'version {start.get("project_version")}')
    isa = start.get('isa') or []
    widest = [f for f in ('avx512f', 'avx2', 'avx', 'sve', 'asimd')
              if f in isa][:1]
    return (f'{start.get("cpu_model")} ({", ".join(widest) or "no SIMD flags"}'
            f'), {start.get("n_devices")} {start.get("platform")} device(s), '
            f'{start.get("threads")} XLA:CPU thread(s); jax '
            f'{versions.get("jax")}, trax {versions.get("trax")}; {code}')


def resume_problems(previous: dict, now: dict) -> tuple[str | None,
                                                         str | None]:
    """(why resuming `previous`'s run here is refused, or None; a warning
    that the bits may differ, or None)."""
    if previous.get('threads') != now['threads']:
        return (f'the run was trained with {previous.get("threads")} XLA:CPU '
                f'thread(s) and this process has {now["threads"]}; another '
                'pool size computes other bits, so the resumed run would not '
                'be the run it continues (set experiments.Experiment.'
                'cpu_threads to match, in a fresh process)'), None
    changed = [key for key in _KIND if previous.get(key) != now.get(key)]
    changed += [f'{name} version' for name in _PACKAGES
                if (previous.get('versions') or {}).get(name)
                != now['versions'].get(name)]
    if not changed:
        return None, None
    return None, (f'resuming on another kind of machine ({", ".join(changed)}'
                  f' differ: trained on {describe(previous)}); the bits may '
                  'differ from an uninterrupted run')
