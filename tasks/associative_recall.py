"""Associative recall: "0 k1 v1 ... kn vn 0 q v(q)", right-padded with 0.

After the synthetic task of Fu, Dao et al., "Hungry Hungry Hippos" (H3,
arXiv 2212.14052) and its code, HazyResearch/safari
src/dataloaders/synthetics.py `generate_assoc_recall`: key-value pairs fill
the sequence, then a copy prefix, one of the keys, and its value to recall.

Tokens: 0 starts the sequence, stands for safari's copy prefix "=>" before
the query, and pads. Keys are 1..vocab_size//2-1 and values
vocab_size//2..vocab_size-1, safari's (and Zoology's) halves of the
vocabulary. The weight is 1.0 on v(q) only.

Where this differs from safari, and why:
- Keys are distinct within a sequence (safari draws them with replacement
  from a per-sequence key -> value map), so the answer is one earlier pair,
  never a majority of repeats; the price is a vocabulary that grows with the
  length: n pairs need vocab_size >= 2n + 2.
- Loss on the answer only: safari trains on every next token, but the pairs
  are random, so only v(q) is predictable (safari scores only it too).
- One-token keys (safari's num_keys=1, its default).
"""
import dataclasses

import numpy as np

from tasks.base import Task, distinct
from tasks.registry import register


@register
@dataclasses.dataclass(frozen=True)
class AssociativeRecall(Task):
    """Associative recall: "0 k1 v1 ... kn vn 0 q v(q)", right-padded with 0.

    Attributes (beyond Task's):
      length: 2n + 4 for n pairs; even and >= 6.
      min_length: if set, each example's length is uniform over the even
        lengths in [min_length, length] (fewer pairs), right-padded with 0.
    """
    name = 'associative_recall'
    format = '0 k1 v1 ... kn vn 0 q v(q)'
    min_vocab_size = 4
    min_length: int | None = None

    def __post_init__(self):
        super().__post_init__()
        self._require(self.length >= 6 and self.length % 2 == 0, 'length',
                      'an even int >= 6')
        self._check_min_length(6, step=2)
        n = self.length // 2 - 2
        self._require(self.vocab_size // 2 - 1 >= n, 'vocab_size',
                      f'>= {2 * n + 2} for {n} distinct keys (1..vocab_size'
                      f'//2-1) at length={self.length}')

    def generate(self, rng):
        b, half = self.batch_size, self.vocab_size // 2
        n_max = self.length // 2 - 2
        # Pairs at full width first, so min_length=length changes nothing.
        keys = 1 + distinct(rng, b, n_max, half - 1)
        values = rng.integers(half, self.vocab_size, size=(b, n_max))
        n = self._example_lengths(rng, step=2) // 2 - 2  # pairs per example
        asked = rng.integers(n)  # which of its pairs each example asks for
        rows = np.arange(b)
        tokens = np.zeros((b, self.length), np.int32)
        tokens[:, 1:2 * n_max + 1:2] = keys
        tokens[:, 2:2 * n_max + 2:2] = values
        tokens[np.arange(self.length) > 2 * n[:, None]] = 0
        tokens[rows, 2 * n + 2] = keys[rows, asked]
        tokens[rows, 2 * n + 3] = values[rows, asked]
        weights = np.zeros((b, self.length), np.float32)
        weights[rows, 2 * n + 3] = 1.0
        return tokens, weights
