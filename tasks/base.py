"""What every task shares: its fields and their checks, seeding, batches.

Plain numpy on purpose: the trainer and tests import this without paying for
a trax/jax import, and batches must be reproducible from (seed, split, index)
alone so that a killed run can resume mid-stream and eval sees fixed batches.
"""
import dataclasses
import functools
import itertools
from typing import ClassVar, Iterator

import numpy as np

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]

# Split ids feed the RNG seed; they must never change or old runs stop
# reproducing their data.
SPLIT_IDS = {'train': 0, 'eval': 1}
INT32_LIMIT = 2**31 - 1


def is_int(value) -> bool:
    # bool is an int subclass, but `length=True` is always a config mistake.
    return isinstance(value, (int, np.integer)) and not isinstance(
        value, (bool, np.bool_))


def split_id(split: str) -> int:
    if split not in SPLIT_IDS:
        raise ValueError(
            f'split must be one of {sorted(SPLIT_IDS)}, got {split!r}')
    return SPLIT_IDS[split]


def check_index(name: str, value) -> int:
    if not is_int(value) or value < 0:
        raise ValueError(f'{name} must be an int >= 0, got {value!r}')
    return int(value)


def distinct(rng: np.random.Generator, rows: int, k: int,
             n: int) -> np.ndarray:
    """[rows, k] ints in [0, n), distinct within a row; every ordered
    choice is equally likely."""
    if k * k <= n:
        # Few of many: draw with replacement and redraw the rows that repeat
        # one (each does with probability < 1/2); O(rows * k), not n.
        picks = rng.integers(n, size=(rows, k))
        while True:
            ordered = np.sort(picks, axis=1)
            again = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(1))
            if not again.size:
                return picks
            picks[again] = rng.integers(n, size=(again.size, k))
    # The k smallest of n random keys are a uniform k-subset, in an order
    # that is not random; shuffle it. (rng.permuted of all n is 2-4x slower.)
    subset = np.argpartition(rng.random((rows, n)), k - 1, axis=1)[:, :k]
    return rng.permuted(subset, axis=1)


@dataclasses.dataclass(frozen=True)
class Task:
    """A seeded synthetic task for a decoder-only LM (inputs == targets).

    A task is a frozen dataclass: `dataclasses.replace(task, length=n)` is
    the same task at another length, validated again. Subclasses add their
    own counts (with defaults), set `name` and `format`, check themselves in
    __post_init__ after this one's, and implement `generate`.

    Attributes:
      vocab_size: token ids are in [0, vocab_size). 0 starts every sequence
        and separates and pads its parts: the model's ShiftRight feeds 0
        before the first token, so 0 is what "start" already looks like.
      length: tokens per sequence (the longest example if a task has a
        range).
      batch_size: examples per batch.
      seed: non-negative base seed; with (split, index) it fixes a batch.
      rows_per_seed: rows of a batch drawn from one seeded stream, or None
        for the whole batch. Batch `index`'s rows j*k .. (j+1)*k - 1 (k =
        rows_per_seed) come from the stream (seed, split, index, j), so a
        process of a run over several can draw only the rows it holds (set
        k to the rows per process). A batch that one stream covers (None,
        or k >= batch_size) comes from (seed, split, index), as always.
    """
    name: ClassVar[str]  # the registered (gin) name: tasks.<name>
    format: ClassVar[str]  # the sequence in one line, e.g. '0 w 0 w'
    # Tokens 0 and the task's own specials, plus at least two content
    # symbols: with one there would be nothing to learn.
    min_vocab_size: ClassVar[int] = 3

    vocab_size: int
    length: int
    batch_size: int
    seed: int = 0
    rows_per_seed: int | None = None

    def __post_init__(self):
        for field in ('vocab_size', 'length', 'batch_size', 'seed'):
            self._int_field(field)
        self._int_field('rows_per_seed', optional=True)
        self._require(self.rows_per_seed is None or self.rows_per_seed >= 1,
                      'rows_per_seed', 'an int >= 1 or None')
        # Above the limit tokens would not fit the int32 batches.
        self._require(
            self.min_vocab_size <= self.vocab_size <= INT32_LIMIT,
            'vocab_size', f'an int in [{self.min_vocab_size}, {INT32_LIMIT}]')
        self._require(self.batch_size >= 1, 'batch_size', 'an int >= 1')
        # np.random.SeedSequence rejects negative entropy.
        self._require(self.seed >= 0, 'seed', 'an int >= 0')

    def _int_field(self, field: str, optional: bool = False) -> None:
        """Checks that a field is an int (or None if optional) and
        normalises numpy ints so equality/hashing/repr behave as ints."""
        value = getattr(self, field)
        if optional and value is None:
            return
        if not is_int(value):
            raise ValueError(
                f'{field} must be an int{" or None" if optional else ""}, '
                f'got {value!r} of type {type(value).__name__}')
        object.__setattr__(self, field, int(value))

    def _require(self, ok: bool, field: str, must: str) -> None:
        if not ok:
            raise ValueError(f'{field} must be {must}, got '
                             f'{getattr(self, field)!r}')

    def _check_min_length(self, lowest: int, step: int) -> None:
        """For tasks with a `min_length` field: None, or a length in
        [lowest, length] that the task can build (a multiple of `step`)."""
        self._int_field('min_length', optional=True)
        if self.min_length is not None:
            self._require(
                lowest <= self.min_length <= self.length
                and self.min_length % step == 0, 'min_length',
                f'{"an even" if step == 2 else "an"} int in [{lowest}, '
                f'length={self.length}] or None')

    def _example_lengths(self, rng: np.random.Generator,
                         step: int) -> np.ndarray:
        """Each example's length: `length`, or with a min_length uniform
        over min_length, min_length + step, ..., length."""
        if self.min_length is None:
            return np.full(self.batch_size, self.length)
        return self.min_length + step * rng.integers(
            (self.length - self.min_length) // step + 1,
            size=self.batch_size)

    def generate(self, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        """The task's body: (tokens int32, weights float32), both
        [batch_size, length], drawn from `rng` only."""
        raise NotImplementedError

    def batch(self, split: str, index: int,
              rows: tuple[int, int] | None = None) -> Batch:
        """Returns (inputs, targets, loss_weights): batch `index` of `split`,
        or with `rows` = (start, stop) only those rows of it, drawing only
        the streams that hold them (see rows_per_seed).

        inputs == targets (int32, [batch_size, length]): the model predicts
        each token from the ones before it. loss_weights (float32) is 1.0
        exactly on the answers, the only tokens a perfect model can predict
        from what came before, and 0.0 elsewhere.
        """
        key = [self.seed, split_id(split), check_index('index', index)]
        start, stop = self._checked_rows(rows)
        per_seed = self._rows_per_stream
        if per_seed == self.batch_size:
            tokens, weights = self.generate(np.random.default_rng(key))
            if (start, stop) != (0, self.batch_size):
                tokens, weights = tokens[start:stop], weights[start:stop]
        else:
            parts = []
            for j in range(start // per_seed, (stop - 1) // per_seed + 1):
                first = j * per_seed
                size = min(per_seed, self.batch_size - first)
                drawn = _of_batch_size(self, size).generate(
                    np.random.default_rng(key + [j]))
                keep = slice(max(start - first, 0), min(stop - first, size))
                parts.append([x[keep] for x in drawn])
            tokens, weights = (np.concatenate(x) for x in zip(*parts))
        return tokens, tokens.copy(), weights

    @property
    def _rows_per_stream(self) -> int:
        return min(self.rows_per_seed or self.batch_size, self.batch_size)

    def rows_drawn(self, rows: tuple[int, int]) -> tuple[int, int]:
        """(start, stop) of the rows that batch(..., rows) draws: those of
        the streams that hold `rows`."""
        start, stop = self._checked_rows(rows)
        per_seed = self._rows_per_stream
        return (start // per_seed * per_seed,
                min(-(-stop // per_seed) * per_seed, self.batch_size))

    def _checked_rows(self, rows) -> tuple[int, int]:
        if rows is None:
            return 0, self.batch_size
        start, stop = rows
        if not (is_int(start) and is_int(stop)
                and 0 <= start < stop <= self.batch_size):
            raise ValueError(f'rows must be (start, stop) with 0 <= start < '
                             f'stop <= batch_size={self.batch_size}, got '
                             f'{rows!r}')
        return int(start), int(stop)

    def stream(self, split: str, start: int = 0,
               rows: tuple[int, int] | None = None) -> Iterator[Batch]:
        """Yields batch(split, start, rows), batch(split, start + 1, rows),
        ... forever."""
        # Validate now rather than on the first next(), where a typo'd split
        # would surface far from the call that caused it.
        split_id(split)
        start = check_index('start', start)
        self._checked_rows(rows)
        return (self.batch(split, i, rows) for i in itertools.count(start))


@functools.lru_cache(maxsize=64)
def _of_batch_size(task: Task, batch_size: int) -> Task:
    """`task` drawing `batch_size` rows from one stream (one of its batch's
    rows_per_seed blocks); cached: replace() validates the task again."""
    return dataclasses.replace(task, batch_size=batch_size,
                               rows_per_seed=None)
