"""Seeded synthetic sequence tasks (copy, reversal) as language-model batches.

Plain numpy on purpose: the trainer and tests import this without paying for
a trax/jax import, and batches must be reproducible from (seed, split, index)
alone so that a killed run can resume mid-stream and eval sees fixed batches.
"""
import dataclasses
import itertools
from typing import Iterator

import numpy as np

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]

TASK_NAMES = ('copy', 'reversal')
# Split ids feed the RNG seed; they must never change or old runs stop
# reproducing their data.
_SPLIT_IDS = {'train': 0, 'eval': 1}
_INT32_LIMIT = 2**31 - 1


def _is_int(value) -> bool:
    # bool is an int subclass, but `length=True` is always a config mistake.
    return isinstance(value, (int, np.integer)) and not isinstance(
        value, (bool, np.bool_))


def _split_id(split: str) -> int:
    if split not in _SPLIT_IDS:
        raise ValueError(
            f'split must be one of {sorted(_SPLIT_IDS)}, got {split!r}')
    return _SPLIT_IDS[split]


def _check_index(name: str, value) -> int:
    if not _is_int(value) or value < 0:
        raise ValueError(f'{name} must be an int >= 0, got {value!r}')
    return int(value)


@dataclasses.dataclass(frozen=True)
class SequenceTask:
    """Copy "0 w 0 w" or reversal "0 w 0 reverse(w)", right-padded with 0.

    Attributes:
      name: 'copy' or 'reversal'.
      vocab_size: symbols of w are uniform over 1..vocab_size-1; 0 is both
        the separator and the padding token.
      length: total sequence length 2 * (len(w) + 1); even and >= 4.
      batch_size: examples per batch.
      seed: non-negative base seed; with (split, index) it fixes a batch.
      min_length: if set, each example's length is uniform over the even
        lengths in [min_length, length] and right-padded with 0 to `length`.
    """
    name: str
    vocab_size: int
    length: int
    batch_size: int
    seed: int = 0
    min_length: int | None = None

    def __post_init__(self):
        if self.name not in TASK_NAMES:
            raise ValueError(
                f'name must be one of {list(TASK_NAMES)}, got {self.name!r}')
        for field in ('vocab_size', 'length', 'batch_size', 'seed'):
            value = getattr(self, field)
            if not _is_int(value):
                raise ValueError(
                    f'{field} must be an int, got {value!r} '
                    f'of type {type(value).__name__}')
            # Normalise numpy ints so equality/hashing/repr behave as ints.
            object.__setattr__(self, field, int(value))
        if not 3 <= self.vocab_size <= _INT32_LIMIT:
            # Below 3 there is at most one symbol and nothing to learn;
            # above the limit symbols would not fit the int32 batches.
            raise ValueError(
                f'vocab_size must be an int in [3, {_INT32_LIMIT}], '
                f'got {self.vocab_size}')
        if self.length < 4 or self.length % 2:
            raise ValueError(
                f'length must be an even int >= 4, got {self.length}')
        if self.batch_size < 1:
            raise ValueError(
                f'batch_size must be an int >= 1, got {self.batch_size}')
        if self.seed < 0:
            # np.random.SeedSequence rejects negative entropy.
            raise ValueError(f'seed must be an int >= 0, got {self.seed}')
        if self.min_length is not None:
            if not _is_int(self.min_length):
                raise ValueError(
                    f'min_length must be an int or None, got '
                    f'{self.min_length!r} of type '
                    f'{type(self.min_length).__name__}')
            object.__setattr__(self, 'min_length', int(self.min_length))
            if (self.min_length < 4 or self.min_length % 2
                    or self.min_length > self.length):
                raise ValueError(
                    f'min_length must be an even int in [4, length='
                    f'{self.length}] or None, got {self.min_length}')

    def batch(self, split: str, index: int) -> Batch:
        """Returns (inputs, targets, loss_weights): batch `index` of `split`.

        inputs == targets (int32, [batch_size, length]): the model predicts
        each token from the ones before it. loss_weights (float32) is 1.0
        exactly on the second copy of w, the only tokens a perfect model can
        predict; w itself, separators and padding get 0.0.
        """
        rng = np.random.default_rng(
            [self.seed, _split_id(split), _check_index('index', index)])
        max_n = self.length // 2 - 1
        # Draw w at full width before the lengths, so min_length=None and
        # min_length=length yield identical batches.
        w = rng.integers(1, self.vocab_size, size=(self.batch_size, max_n),
                         dtype=np.int32)
        if self.min_length is None:
            # Fast path (3-10x faster): every row has |w| = max_n, so slices do.
            tokens = np.zeros((self.batch_size, self.length), np.int32)
            tokens[:, 1:max_n + 1] = w
            tokens[:, max_n + 2:] = w if self.name == 'copy' else w[:, ::-1]
            weights = np.zeros((self.batch_size, self.length), np.float32)
            weights[:, max_n + 2:] = 1.0
            return tokens, tokens.copy(), weights
        n = rng.integers(self.min_length // 2, max_n + 2,
                         size=(self.batch_size, 1)) - 1
        pos = np.arange(self.length)[None, :]
        first = (pos >= 1) & (pos <= n)
        second = (pos >= n + 2) & (pos <= 2 * n + 1)
        if self.name == 'copy':
            src = pos - n - 2
        else:
            src = 2 * n + 1 - pos
        # One gather for both halves; out-of-example positions read w[:, 0]
        # and are zeroed afterwards.
        src = np.where(first, pos - 1, np.where(second, src, 0))
        tokens = np.take_along_axis(w, src, axis=1)
        tokens[~(first | second)] = 0
        weights = second.astype(np.float32)
        return tokens, tokens.copy(), weights

    def stream(self, split: str, start: int = 0) -> Iterator[Batch]:
        """Yields batch(split, start), batch(split, start + 1), ... forever."""
        # Validate now rather than on the first next(), where a typo'd split
        # would surface far from the call that caused it.
        _split_id(split)
        start = _check_index('start', start)
        return (self.batch(split, i) for i in itertools.count(start))
