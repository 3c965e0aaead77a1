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
