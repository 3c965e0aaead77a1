"""Copy: "0 w 0 w", the duplication task of the Reformer paper
(arXiv 2001.04451, section 5), right-padded with 0.

Tokens: 0 is the separator and the padding; the symbols of w are uniform
over 1..vocab_size-1. The weights are 1.0 on the second w only.
"""
import dataclasses

import numpy as np

from tasks.base import Task
from tasks.registry import register


@dataclasses.dataclass(frozen=True)
class TwoHalves(Task):
    """What copy and reversal share: "0 w 0 f(w)", right-padded with 0.

    Attributes (beyond Task's):
      length: 2 * (len(w) + 1); even and >= 4.
      min_length: if set, each example's length is uniform over the even
        lengths in [min_length, length] and right-padded with 0 to `length`.
    """
    reverse = False  # whether f reverses w
    min_length: int | None = None

    def __post_init__(self):
        super().__post_init__()
        self._require(self.length >= 4 and self.length % 2 == 0, 'length',
                      'an even int >= 4')
        self._check_min_length(4, step=2)

    def generate(self, rng):
        # The algorithm (and its order of draws) of the former
        # tasks.sequence_tasks.SequenceTask: old runs keep their batches.
        max_n = self.length // 2 - 1
        # Draw w at full width before the lengths, so min_length=None and
        # min_length=length yield identical batches.
        w = rng.integers(1, self.vocab_size, size=(self.batch_size, max_n),
                         dtype=np.int32)
        if self.min_length is None:
            # Fast path (3-10x faster): every row has |w| = max_n, so slices do.
            tokens = np.zeros((self.batch_size, self.length), np.int32)
            tokens[:, 1:max_n + 1] = w
            tokens[:, max_n + 2:] = w[:, ::-1] if self.reverse else w
            weights = np.zeros((self.batch_size, self.length), np.float32)
            weights[:, max_n + 2:] = 1.0
            return tokens, weights
        n = rng.integers(self.min_length // 2, max_n + 2,
                         size=(self.batch_size, 1)) - 1
        pos = np.arange(self.length)[None, :]
        first = (pos >= 1) & (pos <= n)
        second = (pos >= n + 2) & (pos <= 2 * n + 1)
        src = 2 * n + 1 - pos if self.reverse else pos - n - 2
        # One gather for both halves; out-of-example positions read w[:, 0]
        # and are zeroed afterwards.
        src = np.where(first, pos - 1, np.where(second, src, 0))
        tokens = np.take_along_axis(w, src, axis=1)
        tokens[~(first | second)] = 0
        return tokens, second.astype(np.float32)


@register
@dataclasses.dataclass(frozen=True)
class Copy(TwoHalves):
    """Copy: "0 w 0 w", right-padded with 0 (see TwoHalves)."""
    name = 'copy'
    format = '0 w 0 w'
