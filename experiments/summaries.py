"""TensorBoard event writing with the tensorboard package alone (no TF)."""
from __future__ import annotations

import time

from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.scalar import summary_v2 as scalar_summary
from tensorboard.plugins.text import summary_v2 as text_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class SummaryWriter:
    """Writes scalars and text for one TensorBoard run directory."""

    def __init__(self, logdir: str):
        self._writer = EventFileWriter(logdir)

    def _add(self, summary, step: int) -> None:
        self._writer.add_event(event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=summary))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self._add(scalar_summary.scalar_pb(tag, float(value)), step)

    def text(self, step: int, tag: str, markdown: str) -> None:
        self._add(text_summary.text_pb(tag, markdown), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in `logdir`'s event files: {tag: [(step, value), ...]}.

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
            scalars[tag] = sorted((e.step, float(v))
                                  for e, v in zip(events, values))
    return scalars
