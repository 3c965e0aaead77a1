"""Checkpoints: one pickle per saved step, written atomically.

A checkpoint holds everything a run needs to continue exactly: the step, the
model weights and state, and the optimizer slots (all as numpy arrays). Files
are written to a temporary name and renamed into place, so a run killed while
saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
import pickle
import re
import sys
from typing import Any

import jax
import numpy as np

SUBDIR = 'checkpoints'
_NAME = re.compile(r'^step_(\d+)\.pkl$')


def _to_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def path_for(output_dir: str, step: int) -> str:
    return os.path.join(output_dir, SUBDIR, f'step_{step:08d}.pkl')


def list_steps(output_dir: str) -> list[int]:
    """Steps of the complete checkpoints in `output_dir`, ascending."""
    directory = os.path.join(output_dir, SUBDIR)
    if not os.path.isdir(directory):
        return []
    return sorted(int(m.group(1)) for m in map(_NAME.match,
                                               os.listdir(directory)) if m)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def size_bytes(*trees) -> int:
    """Bytes the arrays in `trees` take in a checkpoint (before pickling)."""
    return sum(getattr(leaf, 'nbytes', 0)
               for leaf in jax.tree_util.tree_leaves(trees))


def save(output_dir: str, step: int, *, weights, state, slots,
         keep: int = 3) -> str:
    """Writes the checkpoint for `step`; keeps the newest `keep` of them."""
    path = path_for(output_dir, step)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = {'step': step, 'weights': _to_numpy(weights),
               'state': _to_numpy(state), 'slots': _to_numpy(slots)}
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))  # makes the rename itself durable
    for old in list_steps(output_dir)[:-keep]:
        os.remove(path_for(output_dir, old))
    return path


def load(output_dir: str, step: int | None = None) -> dict[str, Any] | None:
    """The checkpoint at `step` (default: the latest readable one), or None if
    there is none."""
    steps = list_steps(output_dir)
    if step is not None:
        if step not in steps:
            raise FileNotFoundError(
                f'no checkpoint for step {step} in {output_dir} '
                f'(available: {steps or "none"})')
        return _read(path_for(output_dir, step))
    for candidate in reversed(steps):
        try:
            return _read(path_for(output_dir, candidate))
        except (EOFError, pickle.UnpicklingError) as e:
            # Renames are atomic, so only a damaged disk gets here; an older
            # checkpoint is still better than starting over.
            print(f'warning: skipping unreadable checkpoint '
                  f'{path_for(output_dir, candidate)}: {e}', file=sys.stderr)
    return None


def _read(path: str) -> dict[str, Any]:
    with open(path, 'rb') as f:
        return pickle.load(f)
