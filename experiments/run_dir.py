"""Guarding a run directory: one writer at a time, one config per directory.

A directory holds one experiment. Rerunning the same command resumes it;
rerunning with other bindings is refused (they would silently mix two
experiments) unless the user asks to start over. Only `n_steps` may change, so
a finished run can be extended.
"""
from __future__ import annotations

import contextlib
import difflib
import errno
import fcntl
import json
import os
import re
import shutil

from experiments.errors import ConfigError

CONFIG_FILE = 'config.gin'
MANIFEST_FILE = 'manifest.json'  # where each start ran (experiments.manifest)
PROGRESS_FILE = 'progress.json'  # the last evaluation, for programs
LOCK_FILE = '.lock'
# What a training run (and scripts/convert_checkpoints.py) writes;
# `--overwrite` removes exactly these.
ARTIFACTS = (CONFIG_FILE, 'operative_config.gin', MANIFEST_FILE,
             PROGRESS_FILE, 'checkpoints', 'checkpoints_pickle', 'train',
             'eval', 'evaluations')
_MAY_CHANGE = re.compile(r'^(experiments\.)?Experiment\.n_steps\s*=')


class RunDirError(ConfigError):
    """The output directory cannot be used as asked."""


def existing_ancestor(path: str) -> str:
    """`path` itself if it exists, else its nearest existing parent."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def check_writable(output_dir: str) -> None:
    """Raises unless `output_dir` is, or can be created as, a writable dir."""
    path = existing_ancestor(output_dir)
    missing = path != os.path.abspath(output_dir)
    if not os.path.isdir(path):
        raise RunDirError(f'cannot use --output_dir={output_dir}: {path} is '
                          'not a directory')
    if not os.access(path, os.W_OK | os.X_OK):
        what = 'create' if missing else 'write to'
        raise RunDirError(f'cannot {what} --output_dir={output_dir}: {path} '
                          'is not writable')


def _bindings(config: str) -> list[str]:
    return [line for line in config.splitlines()
            if line.strip() and not line.startswith('#')
            and not _MAY_CHANGE.match(line)]


def config_changes(saved: str, current: str) -> list[str]:
    """The binding lines that differ, as `- saved` / `+ current` lines."""
    diff = difflib.unified_diff(_bindings(saved), _bindings(current),
                                lineterm='', n=0)
    return [f'{line[0]} {line[1:]}' for line in diff
            if line[:1] in '+-' and not line.startswith(('---', '+++'))]


def guard(output_dir: str, config: str, overwrite: bool = False) -> None:
    """Raises if training with `config` must not write into `output_dir`."""
    check_writable(output_dir)
    saved_path = os.path.join(output_dir, CONFIG_FILE)
    if overwrite or not os.path.isfile(saved_path):
        return
    with open(saved_path) as f:
        changes = config_changes(f.read(), config)
    if changes:
        listing = '\n'.join('  ' + line for line in changes)
        raise RunDirError(
            f'{output_dir} holds a run with a different config (- saved, '
            f'+ now):\n{listing}\nRerun with the saved bindings to resume it, '
            'pass --overwrite to start over, or choose another --output_dir.')


def write_json(path: str, value) -> None:
    """Writes `value` as JSON so that a reader sees the old file or the
    new one, never a part."""
    with open(path + '.tmp', 'w') as f:
        json.dump(value, f, indent=2)
    os.replace(path + '.tmp', path)


def write_progress(output_dir: str, step: int, n_steps: int, evals: dict,
                   about: dict, steps_per_second: float | None = None,
                   finished: bool = False) -> None:
    """Records the run's last evaluation in PROGRESS_FILE, which sweep
    runners and reports read (the progress lines printed are for people),
    with `about`: what does not change over the run (its parameter count,
    its task length)."""
    write_json(os.path.join(output_dir, PROGRESS_FILE), {
        'step': step, 'n_steps': n_steps, 'eval': evals, **about,
        'steps_per_second': steps_per_second, 'finished': finished})


def read_progress(output_dir: str) -> dict | None:
    """What write_progress recorded last; None before the first
    evaluation (or if the file is unreadable)."""
    try:
        with open(os.path.join(output_dir, PROGRESS_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def clear(output_dir: str) -> None:
    """Removes a previous run's outputs (for `--overwrite`)."""
    for name in ARTIFACTS:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


@contextlib.contextmanager
def exclusive(output_dir: str):
    """Holds `output_dir` for this process. The lock is an flock, which the
    kernel drops when the process dies, so a killed run never leaves it
    stuck."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, LOCK_FILE), 'a+') as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            lock.seek(0)
            holder = lock.read().strip() or 'unknown'
            raise RunDirError(f'{output_dir} is in use by another process '
                              f'(pid {holder}); wait for it or choose '
                              'another --output_dir') from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
