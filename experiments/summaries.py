"""TensorBoard event writing with the tensorboard package alone (no TF)."""
from __future__ import annotations

import glob
import os
import sys
import time
import types

# tensorboard's bundled TF stand-in (file access, CRCs) instead of
# TensorFlow: writing and reading events never needs TF, whose import costs
# 3.5 s and 0.55 GB (see models/trax_bridge.py).
sys.modules.setdefault('tensorboard.compat.notf',
                       types.ModuleType('tensorboard.compat.notf'))

from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.scalar import summary_v2 as scalar_summary
from tensorboard.plugins.text import summary_v2 as text_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class SummaryWriter:
    """Writes scalars and text for one TensorBoard run directory."""

    def __init__(self, logdir: str):
        self._writer = EventFileWriter(logdir)

    def summary(self, summary: summary_pb2.Summary, step: int) -> None:
        """Writes a ready-made summary (e.g. an HParams one) at `step`."""
        self._writer.add_event(event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=summary))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.summary(scalar_summary.scalar_pb(tag, float(value)), step)

    def text(self, step: int, tag: str, markdown: str) -> None:
        self.summary(text_summary.text_pb(tag, markdown), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _event_files(logdir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(logdir, 'events.out.tfevents.*')))


def compact(logdir: str, last_step: int) -> set[tuple[str, int]]:
    """Rewrites `logdir`'s events as one file holding each (tag, step) once,
    dropping steps after `last_step`; returns the (tag, step) pairs kept.

    A resumed run calls this with its checkpoint's step, so the steps it is
    about to redo are not logged twice. The new file is complete before the
    old ones go, and the rewrite is idempotent, so a kill anywhere in between
    is mended by the next resume. A record torn by a kill is skipped.
    """
    from tensorboard.backend.event_processing import event_file_loader

    old_files = _event_files(logdir)
    if not old_files:
        return set()
    kept, seen = [], set()
    for path in old_files:
        for event in event_file_loader.LegacyEventFileLoader(path).Load():
            if event.step > last_step or not event.HasField('summary'):
                continue
            for value in event.summary.value:
                key = (value.tag, event.step)
                if key not in seen:
                    seen.add(key)
                    kept.append(event_pb2.Event(
                        wall_time=event.wall_time, step=event.step,
                        summary=summary_pb2.Summary(value=[value])))
    writer = EventFileWriter(logdir, filename_suffix='.compacted')
    for event in kept:
        writer.add_event(event)
    writer.close()  # flushes and closes the new file before any removal
    for path in old_files:
        os.remove(path)
    return seen


def read_scalars(logdir: str, wall_time: bool = False
                 ) -> dict[str, list[tuple]]:
    """Every scalar in `logdir`'s event files: {tag: [(step, value), ...]},
    or [(step, value, wall time), ...] with `wall_time`.

    Keeps all points (the accumulator samples by default) in step order.
    """
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    accumulator = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    scalars = {}
    for tag in accumulator.Tags()[event_accumulator.TENSORS]:
        events = accumulator.Tensors(tag)
        values = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
        if all(v.ndim == 0 and v.dtype.kind == 'f' for v in values):
            scalars[tag] = sorted(
                (e.step, float(v)) + ((e.wall_time,) if wall_time else ())
                for e, v in zip(events, values))
    return scalars
