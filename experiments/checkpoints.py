"""Checkpoints: one Orbax checkpoint per saved step, data only, never code.

A checkpoint holds everything a run needs to continue exactly: the step, the
model weights and state, and the optimizer slots. Each step is a directory
written by Orbax:

    checkpoints/step_00000012/
      arrays/          every leaf of the three trees as an array (TensorStore),
                       keyed weights.0, weights.1, ..., state.0, slots.0, ...
      meta/metadata    JSON: the format, the step and each tree's nesting
      _CHECKPOINT_METADATA, commit_success.txt    Orbax's own

Loading reads arrays and JSON only and rebuilds the trees from the nesting,
so a run directory from someone else cannot run code here. Orbax writes into
step_XXXXXXXX.orbax-checkpoint-tmp and renames it when complete; only
directories with the final name count, so a run killed while saving keeps its
previous checkpoints. An unreadable newest checkpoint (a damaged disk) is
skipped for the one before.

Earlier versions wrote pickles (checkpoints/step_XXXXXXXX.pkl). They are never
read here; scripts/convert_checkpoints.py converts them when the user asks.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
from typing import Any

import jax
import numpy as np

from experiments import distributed
from experiments.errors import one_line
from experiments.run_dir import RunDirError

SUBDIR = 'checkpoints'
PICKLE_SUBDIR = 'checkpoints_pickle'  # where the conversion moves old pickles
CONVERT = 'python -m scripts.convert_checkpoints --output_dir={}'
FORMAT = 1
TREES = ('weights', 'state', 'slots')
_NAME = re.compile(r'^step_(\d+)$')
_PICKLE_NAME = re.compile(r'^step_(\d+)\.pkl$')
# Orbax's temporary directories, and ours for checkpoints being deleted.
_UNFINISHED = ('.orbax-checkpoint-tmp', '.deleting')
_LEAF = '*'


class CheckpointError(RunDirError):
    """A checkpoint cannot be used (unreadable, in the old pickle format, or
    not fitting the model); meant for the user."""


def _orbax():
    # Imported when a checkpoint is read or written: commands that never
    # touch one (--dry_run, report) do not pay for it.
    import orbax.checkpoint as ocp
    if not isinstance(sys.unraisablehook, _DropClosedLoopReports):
        sys.unraisablehook = _DropClosedLoopReports(sys.unraisablehook)
    return ocp


class _DropClosedLoopReports:
    """When one array of a damaged checkpoint fails to read, Orbax closes
    its event loop; the reads of the others still finish and report to the
    closed loop from TensorStore's threads, each a traceback on stderr
    beside the command's one-line error. This unraisable-exception hook
    drops those reports and passes any other on."""

    def __init__(self, next_hook):
        self.next_hook = next_hook

    def __call__(self, info) -> None:
        if not (isinstance(info.exc_value, RuntimeError)
                and str(info.exc_value) == 'Event loop is closed'):
            self.next_hook(info)


@contextlib.contextmanager
def _quiet():
    """Orbax logs warnings and errors (with tracebacks) through absl, and
    asyncio logs its failed concurrent reads, in lines that would join a
    command's one-line error; this module reports what matters, and
    exceptions still propagate."""
    loggers = [logging.getLogger(name) for name in ('absl', 'asyncio')]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def path_for(output_dir: str, step: int) -> str:
    """The directory of the checkpoint for `step`."""
    return os.path.join(output_dir, SUBDIR, f'step_{step:08d}')


def _matches(output_dir: str, pattern: re.Pattern) -> list[tuple[int, str]]:
    """(step, path) of the entries of the checkpoint directory whose names
    match `pattern`, by step."""
    directory = os.path.join(output_dir, SUBDIR)
    if not os.path.isdir(directory):
        return []
    return sorted((int(m.group(1)), os.path.join(directory, m.group(0)))
                  for m in map(pattern.match, os.listdir(directory)) if m)


def list_steps(output_dir: str) -> list[int]:
    """Steps of the complete checkpoints in `output_dir`, ascending."""
    return [step for step, _ in _matches(output_dir, _NAME)]


def pickle_files(output_dir: str) -> list[tuple[int, str]]:
    """(step, path) of the old-format pickle checkpoints, ascending."""
    return _matches(output_dir, _PICKLE_NAME)


def size_bytes(*trees) -> int:
    """Bytes the arrays in `trees` take in a checkpoint."""
    return sum(getattr(leaf, 'nbytes', 0)
               for leaf in jax.tree_util.tree_leaves(trees))


def _nesting(tree, leaves: list):
    """`tree`'s nesting as JSON (a tuple is a list, a list {"list": [...]},
    a dict {"dict": {...}}, None null, a leaf "*"); appends its leaves to
    `leaves` as numpy arrays, in the order _rebuild takes them back."""
    if type(tree) is tuple:
        return [_nesting(x, leaves) for x in tree]
    if type(tree) is list:
        return {'list': [_nesting(x, leaves) for x in tree]}
    if type(tree) is dict and all(isinstance(k, str) for k in tree):
        return {'dict': {k: _nesting(tree[k], leaves) for k in sorted(tree)}}
    if tree is None:
        return None
    if not isinstance(tree, (np.ndarray, np.generic, jax.Array, int, float)):
        raise TypeError(f'cannot checkpoint a {type(tree).__name__}')
    leaves.append(np.asarray(tree))
    return _LEAF


def flatten(tree) -> tuple[Any, list[np.ndarray]]:
    """(nesting, leaves) of `tree`; TypeError if it holds anything but
    tuples, lists, dicts with string keys, None and numbers or arrays."""
    leaves = []
    return _nesting(tree, leaves), leaves


def _rebuild(nesting, leaves):
    """The tree `nesting` describes, its leaves taken from the iterator
    `leaves`; raises ValueError on anything _nesting does not write."""
    if nesting == _LEAF:
        leaf = next(leaves, None)
        if leaf is None:
            raise ValueError('fewer arrays than the nesting has leaves')
        return leaf
    if nesting is None:
        return None
    if type(nesting) is list:
        return tuple(_rebuild(x, leaves) for x in nesting)
    if type(nesting) is dict and len(nesting) == 1:
        (kind, body), = nesting.items()
        if kind == 'list' and type(body) is list:
            return [_rebuild(x, leaves) for x in body]
        if kind == 'dict' and type(body) is dict:
            return {k: _rebuild(body[k], leaves) for k in sorted(body)}
    raise ValueError(f'unknown node {str(nesting)[:40]!r} in the nesting')


def _remove(path: str) -> None:
    """Removes a checkpoint directory: renamed first, so a kill midway
    never leaves a half-deleted directory under a checkpoint's name."""
    doomed = path + _UNFINISHED[1]
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def _remove_unfinished(directory: str) -> None:
    """Leftovers of saves or deletions that a kill interrupted (the run
    directory's lock means no other process is writing them)."""
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            if name.startswith('step_') and any(s in name for s in _UNFINISHED):
                shutil.rmtree(os.path.join(directory, name),
                              ignore_errors=True)


def save(output_dir: str, step: int, *, weights, state, slots,
         keep: int = 3) -> str:
    """Writes the checkpoint for `step` (replacing one already there);
    keeps the newest `keep` of them. Synchronous: on return it is on disk.
    In a run over several processes every process calls this with the same
    (replicated) trees; Orbax writes them once, and only process 0 tidies."""
    ocp = _orbax()
    arrays, nesting = {}, {}
    for name, tree in zip(TREES, (weights, state, slots)):
        nesting[name], leaves = flatten(tree)
        arrays[name] = {str(i): leaf for i, leaf in enumerate(leaves)}
    primary = distributed.is_primary()
    if primary:
        _remove_unfinished(os.path.join(output_dir, SUBDIR))
    path = path_for(output_dir, step)
    meta = {'format': FORMAT, 'step': step, 'nesting': nesting}
    with _quiet(), ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as c:
        c.save(os.path.abspath(path), force=True, args=ocp.args.Composite(
            arrays=ocp.args.StandardSave(arrays),
            meta=ocp.args.JsonSave(meta)))
    if primary:
        for old in list_steps(output_dir)[:-keep]:
            _remove(path_for(output_dir, old))
    return path


def _read(path: str, step: int) -> dict[str, Any]:
    """The checkpoint in `path`; ValueError if it cannot be read."""
    ocp = _orbax()
    try:
        with _quiet(), ocp.Checkpointer(
                ocp.CompositeCheckpointHandler()) as c:
            restored = c.restore(os.path.abspath(path),
                                 args=ocp.args.Composite(
                                     arrays=ocp.args.StandardRestore(),
                                     meta=ocp.args.JsonRestore()))
        meta, arrays = restored['meta'], restored['arrays']
        if (type(meta) is not dict or meta.get('format') != FORMAT
                or meta.get('step') != step):
            raise ValueError(f'meta/metadata is not a format-{FORMAT} '
                             f'checkpoint of step {step}')
        checkpoint = {'step': step}
        for name in TREES:
            stored = arrays.get(name) or {}
            leaves = iter([np.asarray(stored[str(i)])
                           for i in range(len(stored))])
            checkpoint[name] = _rebuild(meta['nesting'][name], leaves)
            if next(leaves, None) is not None:
                raise ValueError(f'more {name} arrays than the nesting has '
                                 'leaves')
        return checkpoint
    except Exception as e:  # whatever damaged files make Orbax raise
        # asyncio logs each other failed read ("Future exception was never
        # retrieved") when its future is collected, which can be after
        # _quiet has ended; the first failure is what the user gets.
        logging.getLogger('asyncio').setLevel(logging.CRITICAL)
        raise ValueError(one_line(e, limit=200)) from e


def _misfit(checkpoint: dict, like: dict) -> str | None:
    """How `checkpoint`'s trees differ from `like`'s, or None."""
    for name in TREES:
        got, want = checkpoint[name], like[name]
        if (jax.tree_util.tree_structure(got)
                != jax.tree_util.tree_structure(want)):
            return f'its {name} are nested differently'
        for i, (a, b) in enumerate(zip(jax.tree_util.tree_leaves(got),
                                       jax.tree_util.tree_leaves(want))):
            b_dtype = b.dtype if hasattr(b, 'dtype') else np.asarray(b).dtype
            if a.shape != np.shape(b) or a.dtype != b_dtype:
                return (f'{name} array {i} is {a.dtype}{list(a.shape)}, the '
                        f"model's {b_dtype}{list(np.shape(b))}")
    return None


def load(output_dir: str, step: int | None = None,
         like: dict | None = None) -> dict[str, Any] | None:
    """The checkpoint at `step` (default: the newest readable one) as
    {'step', 'weights', 'state', 'slots'} of numpy trees, or None if there is
    none. With `like` ({'weights', 'state', 'slots'}: the model's fresh
    trees) it must have their nesting, shapes and dtypes. Raises
    CheckpointError, one line for the user, on anything else."""
    steps = list_steps(output_dir)
    if not steps and pickle_files(output_dir):
        raise CheckpointError(
            f'{output_dir} holds checkpoints in the old pickle format, which '
            'are not loaded (unpickling can run code); if you trust the '
            f'directory, convert them with: {CONVERT.format(output_dir)}')
    if step is not None and step not in steps:
        raise CheckpointError(f'no checkpoint for step {step} in {output_dir} '
                              f'(available: {steps or "none"})')
    candidates = [step] if step is not None else steps[::-1]
    skipped = []
    for candidate in candidates:
        path = path_for(output_dir, candidate)
        try:
            checkpoint = _read(path, candidate)
        except ValueError as e:
            skipped.append(f'{path}: {e}')
            continue
        for problem in skipped:
            # Only a damaged disk gets here (saves are atomic); an older
            # checkpoint is still better than starting over.
            print(f'warning: skipping unreadable checkpoint {problem}',
                  file=sys.stderr)
        misfit = like is not None and _misfit(checkpoint, like)
        if misfit:
            raise CheckpointError(f'the checkpoint {path} does not fit the '
                                  f'model: {misfit}')
        return checkpoint
    if skipped:
        older = f' (and {len(skipped) - 1} older)' if len(skipped) > 1 else ''
        raise CheckpointError(f'no readable checkpoint in {output_dir}: '
                              f'{skipped[0]}{older}')
    return None
