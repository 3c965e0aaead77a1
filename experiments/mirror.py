"""A copy of the run directory in a Cloud Storage bucket, kept up to date
at every checkpoint (`--mirror_to=gs://...`).

A run on a machine that can vanish (a spot or preemptible TPU VM) then loses
at most the steps since its last checkpoint: the next machine copies the
directory back and resumes from it (the Cloud TPU sweep backend does both).
Process 0 runs `gcloud storage rsync` after each checkpoint and once at the
end, and training waits for it, so a checkpoint reported written is in the
bucket. A failed copy is a warning, and the next checkpoint's copy retries:
training on is worth more than stopping over a network blip.

Nothing is deleted in the bucket: a checkpoint the run has since pruned
stays there until the run ends (the sweep backend then mirrors the finished
directory exactly), so the copy never has less than the run had.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

from experiments.errors import ConfigError

FLAG = 'mirror_to'


def checked(dest: str | None) -> str | None:
    """`dest` if it is a gs:// path that gcloud can write to; ConfigError
    otherwise (None: no mirror)."""
    if not dest:
        return None
    if not dest.startswith('gs://') or dest.rstrip('/') == 'gs:':
        raise ConfigError(f'--{FLAG} must be a gs:// path, got {dest!r}')
    if shutil.which('gcloud') is None:
        raise ConfigError(f'--{FLAG}={dest} needs the gcloud CLI on PATH')
    return dest.rstrip('/')


def command(output_dir: str, dest: str) -> list[str]:
    return ['gcloud', 'storage', 'rsync', '--recursive', output_dir, dest]


def push(output_dir: str, dest: str | None) -> bool:
    """Copies `output_dir` to `dest` (nothing for None); whether it worked."""
    if dest is None:
        return True
    result = subprocess.run(command(output_dir, dest), capture_output=True,
                            text=True, stdin=subprocess.DEVNULL)
    if result.returncode:
        last = (result.stderr or result.stdout).strip().splitlines()
        print(f'warning: copying {output_dir} to {dest} failed (exit '
              f'{result.returncode}: {last[-1] if last else "no output"}); '
              'the next checkpoint tries again', file=sys.stderr)
    return result.returncode == 0
