"""Multi-query associative recall: "0 k1 v1 ... kn vn  x .. q v(q) .. x".

After Arora, Eyuboglu et al., "Zoology: Measuring and Improving Recall in
Efficient Language Models" (arXiv 2312.04927) and its code,
HazyResearch/zoology zoology/data/multiquery_ar.py `multiquery_ar`: n_pairs
key-value pairs, then the rest of the sequence in two-token slots, n_queries
of them holding a query key; the answer is that key's value.

Tokens: 0 starts the sequence. Keys are 1..vocab_size//2-1 and values
vocab_size//2..vocab_size-1 (Zoology's halves), each distinct within a
sequence. The queried keys are distinct pairs in random order at random
slots; every other token is noise, uniform over 1..vocab_size-1 (Zoology's
`random_non_queries`), so keys and values recur as noise too. The weights
are 1.0 on the answers v(q) only.

Where this differs from Zoology, and why:
- The answer follows its query in the sequence (Zoology's inputs hold noise
  there and only its labels hold the value): here inputs == targets.
- A 0 start token, and noise drawn from 1..vocab_size-1 (Zoology's from
  0..vocab_size-1): 0 stays the start token only.
- n_queries may be below n_pairs (Zoology queries every pair, our default).
- Query slots are uniform over the rest of the sequence, where Zoology
  draws gaps from a power law (power_a=0.01) that puts most queries just
  after the pairs: uniform slots test recall at every distance equally.
- Zoology asks vocab_size > input_seq_len; only the distinct keys and
  values need room here: vocab_size >= 2 * n_pairs + 2.

Fixed length, no range, as in Zoology: the pairs fix the content and the
rest is noise whose amount already varies each query's distance; evaluate
at other lengths with dataclasses.replace(task, length=...).
"""
import dataclasses

import numpy as np

from tasks.base import Task, distinct
from tasks.registry import register


@register
@dataclasses.dataclass(frozen=True)
class MQAR(Task):
    """MQAR: "0 k1 v1 ... kn vn  x .. q v(q) .. x", queries among noise.

    Attributes (beyond Task's):
      length: >= 1 + 2 * (n_pairs + n_queries).
      n_pairs: key-value pairs, >= 1 (Zoology's num_kv_pairs, default 8).
      n_queries: queries, in [1, n_pairs]; None queries every pair.
    """
    name = 'mqar'
    format = '0 k1 v1 ... kn vn  x .. q v(q) .. x'
    min_vocab_size = 4
    n_pairs: int = 8
    n_queries: int | None = None

    @property
    def queries(self) -> int:
        """n_queries, or n_pairs where that is None."""
        return self.n_pairs if self.n_queries is None else self.n_queries

    def __post_init__(self):
        super().__post_init__()
        self._int_field('n_pairs')
        self._require(self.n_pairs >= 1, 'n_pairs', 'an int >= 1')
        self._int_field('n_queries', optional=True)
        self._require(self.n_queries is None
                      or 1 <= self.n_queries <= self.n_pairs, 'n_queries',
                      f'an int in [1, n_pairs={self.n_pairs}] or None')
        need = 1 + 2 * (self.n_pairs + self.queries)
        self._require(self.length >= need, 'length',
                      f'>= 1 + 2 * (n_pairs + n_queries) = {need} for '
                      f'n_pairs={self.n_pairs}, n_queries={self.queries}')
        self._require(self.vocab_size // 2 - 1 >= self.n_pairs, 'vocab_size',
                      f'>= {2 * self.n_pairs + 2} for n_pairs='
                      f'{self.n_pairs} distinct keys (1..vocab_size//2-1)')

    def generate(self, rng):
        b, n, half = self.batch_size, self.n_pairs, self.vocab_size // 2
        start = 1 + 2 * n  # the first query slot
        keys = 1 + distinct(rng, b, n, half - 1)
        values = half + distinct(rng, b, n, self.vocab_size - half)
        asked = distinct(rng, b, self.queries, n)  # pairs, in query order
        slots = distinct(rng, b, self.queries, (self.length - start) // 2)
        tokens = rng.integers(1, self.vocab_size, size=(b, self.length),
                              dtype=np.int32)
        tokens[:, 0] = 0
        tokens[:, 1:start:2] = keys
        tokens[:, 2:start:2] = values
        at = start + 2 * slots
        np.put_along_axis(tokens, at, np.take_along_axis(keys, asked, 1), 1)
        np.put_along_axis(tokens, at + 1,
                          np.take_along_axis(values, asked, 1), 1)
        weights = np.zeros((b, self.length), np.float32)
        np.put_along_axis(weights, at + 1, 1.0, 1)
        return tokens, weights
