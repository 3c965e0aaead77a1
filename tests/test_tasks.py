"""Tests for the synthetic sequence tasks and their gin registration."""
import itertools
import pathlib
import subprocess
import sys

import gin
import numpy as np
import pytest

import tasks
from tasks import SequenceTask


def _example_length(row: np.ndarray) -> int:
    """Returns n = |w| of one row (symbols are never 0, so w ends at a 0)."""
    return int(np.argmax(row[1:] == 0))


def _check_row(name: str, row: np.ndarray, weights: np.ndarray,
               vocab_size: int) -> int:
    """Asserts one row is exactly "0 w 0 f(w) 0..." and returns |w|."""
    n = _example_length(row)
    w = row[1:n + 1]
    expected_second = w if name == 'copy' else w[::-1]
    assert row[0] == 0 and row[n + 1] == 0
    np.testing.assert_array_equal(row[n + 2:2 * n + 2], expected_second)
    np.testing.assert_array_equal(row[2 * n + 2:], 0)
    assert np.all((w >= 1) & (w < vocab_size))
    expected_weights = np.zeros_like(weights)
    expected_weights[n + 2:2 * n + 2] = 1.0
    np.testing.assert_array_equal(weights, expected_weights)
    return n


@pytest.mark.parametrize('name', ['copy', 'reversal'])
def test_fixed_length_format_and_mask(name):
    task = SequenceTask(name, vocab_size=7, length=10, batch_size=16)
    inputs, targets, weights = task.batch('train', 0)
    assert inputs.shape == targets.shape == weights.shape == (16, 10)
    assert inputs.dtype == targets.dtype == np.int32
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(inputs, targets)
    for row, row_weights in zip(inputs, weights):
        assert _check_row(name, row, row_weights, 7) == 4
    # Weighted exactly on the second half, never separators or first half.
    np.testing.assert_array_equal(weights[:, :6], 0.0)
    np.testing.assert_array_equal(weights[:, 6:], 1.0)


def test_explicit_example_layout():
    copy = SequenceTask('copy', vocab_size=50, length=8, batch_size=1)
    rev = SequenceTask('reversal', vocab_size=50, length=8, batch_size=1)
    (c,), _, (cw,) = copy.batch('eval', 3)
    (r,), _, (rw,) = rev.batch('eval', 3)
    a, b, d = c[1:4]
    # Same seed/split/index draw the same w; only the second half differs.
    np.testing.assert_array_equal(c, [0, a, b, d, 0, a, b, d])
    np.testing.assert_array_equal(r, [0, a, b, d, 0, d, b, a])
    np.testing.assert_array_equal(cw, [0, 0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(rw, cw)


def test_smallest_length():
    (row,), _, (w,) = SequenceTask('reversal', 3, 4, 1).batch('train', 0)
    assert row[0] == 0 and row[2] == 0 and row[1] == row[3] in (1, 2)
    np.testing.assert_array_equal(w, [0, 0, 0, 1])


@pytest.mark.parametrize('name', ['copy', 'reversal'])
def test_variable_length_padding_and_mask(name):
    task = SequenceTask(name, vocab_size=5, length=20, batch_size=256,
                        min_length=6)
    inputs, targets, weights = task.batch('train', 1)
    np.testing.assert_array_equal(inputs, targets)
    assert inputs.dtype == np.int32 and weights.dtype == np.float32
    lengths = [_check_row(name, row, row_weights, 5)
               for row, row_weights in zip(inputs, weights)]
    np.testing.assert_array_equal(weights.sum(axis=1), lengths)
    # Example lengths 2(n+1) cover every even length in [6, 20].
    assert sorted({2 * (n + 1) for n in lengths}) == list(range(6, 21, 2))


@pytest.mark.parametrize('name', ['copy', 'reversal'])
def test_min_length_equal_to_length_matches_fixed(name):
    # Also pins the fixed-length fast path to the general variable path.
    fixed = SequenceTask(name, 9, 12, 4, seed=5)
    same = SequenceTask(name, 9, 12, 4, seed=5, min_length=12)
    for a, b in zip(fixed.batch('train', 2), same.batch('train', 2)):
        np.testing.assert_array_equal(a, b)


def test_symbols_cover_range():
    inputs, _, weights = SequenceTask('copy', 4, 64, 8).batch('train', 0)
    assert set(np.unique(inputs[:, 1:32])) == {1, 2, 3}
    assert set(np.unique(inputs)) == {0, 1, 2, 3}


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_pure_and_seeded():
    task = SequenceTask('reversal', 100, 32, 8, seed=1, min_length=4)
    assert _same(task.batch('train', 4), task.batch('train', 4))
    assert _same(task.batch('train', 4),
                 SequenceTask('reversal', 100, 32, 8, seed=1,
                              min_length=4).batch('train', 4))
    assert not _same(task.batch('train', 4), task.batch('train', 5))
    assert not _same(task.batch('train', 4), task.batch('eval', 4))
    other_seed = SequenceTask('reversal', 100, 32, 8, seed=2, min_length=4)
    assert not _same(task.batch('train', 4), other_seed.batch('train', 4))


def test_does_not_touch_global_rng():
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    SequenceTask('copy', 10, 16, 2).batch('train', 0)
    assert np.random.rand() == expected


def test_stream_resumes_at_start():
    task = SequenceTask('copy', 10, 16, 2, seed=3)
    resumed = list(itertools.islice(task.stream('train', start=5), 3))
    for k, got in enumerate(resumed, start=5):
        assert _same(got, task.batch('train', k))
    # A fresh eval stream replays the same held-out batches.
    first = list(itertools.islice(task.stream('eval'), 2))
    again = list(itertools.islice(task.stream('eval'), 2))
    assert all(_same(a, b) for a, b in zip(first, again))
    assert _same(first[0], task.batch('eval', 0))


def test_bad_split_and_index():
    task = SequenceTask('copy', 10, 16, 2)
    with pytest.raises(ValueError, match=r"split.*'eval'.*'train'.*'test'"):
        task.batch('test', 0)
    # Raised at the call, not deferred to the first next().
    with pytest.raises(ValueError, match='split'):
        task.stream('valid')
    with pytest.raises(ValueError, match='index'):
        task.batch('train', -1)
    with pytest.raises(ValueError, match='start'):
        task.stream('train', start=-2)


@pytest.mark.parametrize('kwargs, match', [
    (dict(name='sort'), r"name.*'copy'.*'reversal'.*'sort'"),
    (dict(length=7), 'length.*even.*7'),
    (dict(length=2), 'length.*>= 4.*2'),
    (dict(length=0), 'length.*0'),
    (dict(vocab_size=2), r'vocab_size.*\[3, .*2'),
    (dict(vocab_size=2**31), 'vocab_size'),
    (dict(batch_size=0), 'batch_size.*>= 1.*0'),
    (dict(seed=-1), 'seed.*>= 0.*-1'),
    (dict(min_length=5), 'min_length.*even.*5'),
    (dict(min_length=2), r'min_length.*\[4, length=16\].*2'),
    (dict(min_length=18), r'min_length.*\[4, length=16\].*18'),
    (dict(length=16.0), 'length must be an int.*16.0.*float'),
    (dict(vocab_size='8'), "vocab_size must be an int.*'8'.*str"),
    (dict(batch_size=True), 'batch_size must be an int.*True.*bool'),
    (dict(seed=None), 'seed must be an int.*None'),
    (dict(min_length=8.0), 'min_length must be an int or None.*8.0'),
])
def test_validation(kwargs, match):
    args = dict(name='copy', vocab_size=10, length=16, batch_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SequenceTask(**args)


def test_numpy_ints_are_accepted_as_ints():
    task = SequenceTask('copy', np.int64(10), np.int32(16), np.int64(2),
                        min_length=np.int64(8))
    assert type(task.length) is int and type(task.min_length) is int
    assert task == SequenceTask('copy', 10, 16, 2, min_length=8)


def test_large_batches_shapes():
    inputs, _, weights = SequenceTask('copy', 32, 65536, 1).batch('train', 0)
    assert inputs.shape == (1, 65536)
    assert weights.sum() == 32767
    np.testing.assert_array_equal(inputs[0, 32769:], inputs[0, 1:32768])


@gin.configurable(module='test_tasks')
def consume(task=None):
    """Stands in for the trainer's `train.task` parameter."""
    return task


def test_gin_route():
    gin.parse_config('''
        import tasks
        test_tasks.consume.task = @tasks.reversal()
        tasks.reversal.vocab_size = 12
        tasks.reversal.length = 24
        tasks.reversal.batch_size = 3
        tasks.reversal.min_length = 8
        tasks.copy.seed = 9
    ''')
    task = consume()
    assert task == SequenceTask('reversal', 12, 24, 3, seed=0, min_length=8)
    copy = tasks.copy(vocab_size=5, length=6, batch_size=1)
    assert copy == SequenceTask('copy', 5, 6, 1, seed=9)


def test_gin_validation_surfaces():
    gin.parse_config('''
        import tasks
        tasks.copy.vocab_size = 12
        tasks.copy.length = 9
        tasks.copy.batch_size = 3
    ''')
    with pytest.raises(ValueError, match='length'):
        tasks.copy()


def test_no_trax_or_jax_import():
    # A fresh interpreter: other test modules may have imported trax here.
    code = ('import sys, tasks; '
            'sys.exit(any(m in sys.modules for m in ("trax", "jax")))')
    subprocess.run([sys.executable, '-c', code], check=True,
                   cwd=pathlib.Path(__file__).resolve().parents[1])
