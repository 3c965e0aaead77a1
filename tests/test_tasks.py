"""Tests for the synthetic tasks: each format exactly, weights only on the
answers, seeding, validation, and the gin route."""
import dataclasses
import itertools
import math
import pathlib
import subprocess
import sys
from unittest import mock

import gin
import numpy as np
import pytest

import tasks
from tasks import (MQAR, AssociativeRecall, Copy, InductionHeads, Reversal,
                   SelectiveCopying)
from tasks.base import distinct
from tasks.induction_heads import TRIGGER
from tasks.selective_copying import NOISE

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A small setting of every task, with and without its range; the tests
# below that take `name, kwargs` run on each.
SMALL = {
    'copy': dict(vocab_size=7, length=12, batch_size=32),
    'reversal': dict(vocab_size=7, length=12, batch_size=32),
    'associative_recall': dict(vocab_size=40, length=16, batch_size=32),
    'induction_heads': dict(vocab_size=6, length=12, batch_size=32),
    'mqar': dict(vocab_size=20, length=24, batch_size=32, n_pairs=4,
                 n_queries=3),
    'selective_copying': dict(vocab_size=6, length=16, batch_size=32,
                              n_tokens=4),
}
RANGES = {'copy': 4, 'reversal': 6, 'associative_recall': 6,
          'induction_heads': 5}
SETTINGS = [(name, kwargs) for name, kwargs in SMALL.items()] + [
    (name, dict(SMALL[name], min_length=m)) for name, m in RANGES.items()]
SETTING_IDS = [f'{name}-{"range" if "min_length" in kwargs else "fixed"}'
               for name, kwargs in SETTINGS]
settings = pytest.mark.parametrize('name, kwargs', SETTINGS, ids=SETTING_IDS)


def _task(name: str, *args, **kwargs) -> tasks.Task:
    return tasks.get(name)(*args, **kwargs)


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_every_task_is_tested():
    ours = {n for n in tasks.names()
            if tasks.get(n).__module__.startswith('tasks.')}
    assert ours == set(SMALL)
    for name in ours:
        cls = tasks.get(name)
        assert cls.name == name
        assert cls.format and '\n' not in cls.format
        assert cls.__doc__.splitlines()[0].strip()
        assert (ROOT / 'gin_configs' / 'common' / f'{name}.gin').exists()


# --- Every task: the batch contract, and weights only on what a perfect
# --- model can predict.

@settings
def test_batch_contract(name, kwargs):
    task = _task(name, **kwargs)
    inputs, targets, weights = task.batch('train', 0)
    shape = (kwargs['batch_size'], kwargs['length'])
    assert inputs.shape == targets.shape == weights.shape == shape
    assert inputs.dtype == targets.dtype == np.int32
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(inputs, targets)
    assert inputs.min() >= 0 and inputs.max() < kwargs['vocab_size']
    assert set(np.unique(weights)) <= {0.0, 1.0}
    assert (weights.sum(axis=1) >= 1).all()
    np.testing.assert_array_equal(inputs[:, 0], 0)  # the start token


def _predict(task: tasks.Task, prefix: np.ndarray) -> int:
    """The next token, from the visible prefix alone, as a perfect model
    would compute it."""
    if task.name in ('copy', 'reversal'):
        n = int(np.argmax(prefix[1:] == 0))  # w ends at the first 0
        w, j = prefix[1:n + 1], len(prefix) - n - 2
        return w[j] if task.name == 'copy' else w[n - 1 - j]
    if task.name == 'associative_recall':
        pairs, query = prefix[1:-2], prefix[-1]  # "0 k v ... k v 0 q"
        return pairs[1::2][list(pairs[0::2]).index(query)]
    if task.name == 'induction_heads':
        return prefix[list(prefix).index(TRIGGER) + 1]
    if task.name == 'mqar':
        start = 1 + 2 * task.n_pairs
        keys, values = prefix[1:start:2], prefix[2:start:2]
        return values[list(keys).index(prefix[-1])]
    if task.name == 'selective_copying':
        region = prefix[1:task.length - task.n_tokens - 1]
        return region[region != NOISE][len(prefix) - len(region) - 2]
    raise AssertionError(task.name)


@settings
def test_perfect_predictor_gets_every_weighted_position(name, kwargs):
    task = _task(name, **kwargs)
    for split, index in (('train', 0), ('train', 1), ('eval', 0)):
        inputs, _, weights = task.batch(split, index)
        for row, row_weights in zip(inputs, weights):
            for t in np.flatnonzero(row_weights):
                assert _predict(task, row[:t]) == row[t], (split, index, t)


@settings
def test_pure_and_seeded(name, kwargs):
    task = _task(name, **dict(kwargs, seed=1))
    assert _same(task.batch('train', 4), task.batch('train', 4))
    assert _same(task.batch('train', 4),
                 _task(name, **dict(kwargs, seed=1)).batch('train', 4))
    # Each of seed, split and index changes the batch.
    assert not _same(task.batch('train', 4), task.batch('train', 5))
    assert not _same(task.batch('train', 4), task.batch('eval', 4))
    other_seed = _task(name, **dict(kwargs, seed=2))
    assert not _same(task.batch('train', 4), other_seed.batch('train', 4))
    # Independent of what was drawn before.
    task.batch('eval', 9)
    assert _same(task.batch('train', 4),
                 _task(name, **dict(kwargs, seed=1)).batch('train', 4))


@settings
def test_does_not_touch_global_rng(name, kwargs):
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    _task(name, **kwargs).batch('train', 0)
    assert np.random.rand() == expected


@settings
def test_replace_length_is_the_same_task_longer(name, kwargs):
    task = _task(name, **kwargs)
    longer = dataclasses.replace(task, length=2 * task.length)
    assert type(longer) is type(task)
    assert longer == _task(name, **dict(kwargs, length=2 * task.length))
    inputs, _, weights = longer.batch('eval', 0)
    assert inputs.shape == (task.batch_size, 2 * task.length)
    for row, row_weights in zip(inputs, weights):
        for t in np.flatnonzero(row_weights):
            assert _predict(longer, row[:t]) == row[t]


@pytest.mark.parametrize('name', list(SMALL))
def test_long_sequences(name):
    kwargs = dict(SMALL[name], length=65536, batch_size=2)
    if name == 'associative_recall':
        kwargs['vocab_size'] = 2**17  # distinct keys for 32766 pairs
    inputs, _, weights = _task(name, **kwargs).batch('train', 0)
    assert inputs.shape == weights.shape == (2, 65536)
    expected = {'copy': 32767, 'reversal': 32767, 'associative_recall': 1,
                'induction_heads': 1, 'mqar': 3, 'selective_copying': 4}
    np.testing.assert_array_equal(weights.sum(axis=1), expected[name])


@pytest.mark.parametrize('name', list(SMALL))
def test_generic_validation(name):
    for field, value, match in (
            ('batch_size', 0, 'batch_size must be an int >= 1, got 0'),
            ('seed', -1, 'seed must be an int >= 0, got -1'),
            ('vocab_size', 2**31, 'vocab_size must be an int in'),
            ('length', 16.0, 'length must be an int, got 16.0 of type float'),
            ('batch_size', True, 'batch_size must be an int.*True.*bool')):
        with pytest.raises(ValueError, match=match):
            _task(name, **dict(SMALL[name], **{field: value}))



@pytest.mark.parametrize('name, kwargs', SETTINGS, ids=SETTING_IDS)
def test_rows_per_seed_draws_only_the_streams_of_the_rows_asked_for(
        name, kwargs):
    whole = _task(name, **kwargs)  # 32 rows
    for covering in (32, 100):  # one stream for the batch: as without
        assert _same(_task(name, **kwargs, rows_per_seed=covering).batch(
            'train', 3), whole.batch('train', 3))
    assert _same(whole.batch('train', 3, rows=(4, 6)),
                 [x[4:6] for x in whole.batch('train', 3)])
    task = _task(name, **kwargs, rows_per_seed=5)  # 6 streams of 5, one of 2
    full = task.batch('train', 3)
    assert [x.shape for x in full] == [x.shape for x in whole.batch('train', 3)]
    assert not np.array_equal(full[0], whole.batch('train', 3)[0])
    # Rows 5-9 are stream (seed, split, index, 1); rows 30-31 stream 6.
    for j, (first, stop) in ((1, (5, 10)), (6, (30, 32))):
        drawn = _task(name, **dict(kwargs, batch_size=stop - first)).generate(
            np.random.default_rng([0, 0, 3, j]))
        assert _same((full[0][first:stop], full[2][first:stop]), drawn)
    generate = type(task).generate
    for rows, streams in (((0, 32), 7), ((0, 1), 1), ((4, 6), 2),
                          ((5, 10), 1), ((7, 32), 6), ((31, 32), 1)):
        with mock.patch.object(type(task), 'generate', autospec=True,
                               side_effect=generate) as spy:
            part = task.batch('train', 3, rows=rows)
        assert spy.call_count == streams, rows
        assert _same(part, [x[slice(*rows)] for x in full])
        first, stop = task.rows_drawn(rows)
        assert -(-stop // 5) - first // 5 == streams
    for value in (0, -2, True):
        with pytest.raises(ValueError, match='rows_per_seed must be an int'):
            _task(name, **kwargs, rows_per_seed=value)
    for rows in ((5, 5), (-1, 3), (0, 33), (0.0, 2)):
        with pytest.raises(ValueError, match='rows must be'):
            task.batch('train', 0, rows=rows)


@pytest.mark.parametrize('k, n', [(2, 5), (3, 4), (4, 4)])
def test_distinct_draws_every_ordered_choice_equally(k, n):
    # (2, 5) takes the redraw path, the others the partition path.
    picks = distinct(np.random.default_rng(1), 48000, k, n)
    assert picks.min() >= 0 and picks.max() < n
    ordered = np.sort(picks, axis=1)
    assert (ordered[:, 1:] != ordered[:, :-1]).all()
    _, counts = np.unique(picks, axis=0, return_counts=True)
    assert len(counts) == math.perm(n, k)
    expected = 48000 / math.perm(n, k)
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)

# --- copy and reversal: "0 w 0 f(w)", and the same bits as before the
# --- registry.

def _old_sequence_task_batch(name, vocab_size, length, batch_size, seed,
                             min_length, split, index):
    """SequenceTask.batch of the former tasks/sequence_tasks.py, verbatim
    but for `self.`: the reference that keeps old runs' data."""
    rng = np.random.default_rng([seed, {'train': 0, 'eval': 1}[split], index])
    max_n = length // 2 - 1
    # Draw w at full width before the lengths, so min_length=None and
    # min_length=length yield identical batches.
    w = rng.integers(1, vocab_size, size=(batch_size, max_n),
                     dtype=np.int32)
    if min_length is None:
        # Fast path (3-10x faster): every row has |w| = max_n, so slices do.
        tokens = np.zeros((batch_size, length), np.int32)
        tokens[:, 1:max_n + 1] = w
        tokens[:, max_n + 2:] = w if name == 'copy' else w[:, ::-1]
        weights = np.zeros((batch_size, length), np.float32)
        weights[:, max_n + 2:] = 1.0
        return tokens, tokens.copy(), weights
    n = rng.integers(min_length // 2, max_n + 2,
                     size=(batch_size, 1)) - 1
    pos = np.arange(length)[None, :]
    first = (pos >= 1) & (pos <= n)
    second = (pos >= n + 2) & (pos <= 2 * n + 1)
    if name == 'copy':
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


@pytest.mark.parametrize('name', ['copy', 'reversal'])
@pytest.mark.parametrize('vocab_size, length, batch_size, min_length', [
    (7, 10, 16, None), (50, 64, 8, None), (3, 4, 1, None), (5, 20, 32, 6),
    (9, 12, 4, 12), (100, 32, 8, 4), (32, 256, 3, 128)])
@pytest.mark.parametrize('seed', [0, 1, 7])
def test_same_bits_as_the_former_sequence_task(name, vocab_size, length,
                                               batch_size, min_length, seed):
    task = _task(name, vocab_size, length, batch_size, seed,
                 min_length=min_length)
    for split, index in (('train', 0), ('train', 5), ('eval', 3)):
        old = _old_sequence_task_batch(name, vocab_size, length, batch_size,
                                       seed, min_length, split, index)
        new = task.batch(split, index)
        for a, b in zip(old, new):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


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
    task = _task(name, vocab_size=7, length=10, batch_size=16)
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
    copy = Copy(vocab_size=50, length=8, batch_size=1)
    rev = Reversal(vocab_size=50, length=8, batch_size=1)
    (c,), _, (cw,) = copy.batch('eval', 3)
    (r,), _, (rw,) = rev.batch('eval', 3)
    a, b, d = c[1:4]
    # Same seed/split/index draw the same w; only the second half differs.
    np.testing.assert_array_equal(c, [0, a, b, d, 0, a, b, d])
    np.testing.assert_array_equal(r, [0, a, b, d, 0, d, b, a])
    np.testing.assert_array_equal(cw, [0, 0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(rw, cw)


def test_smallest_length():
    (row,), _, (w,) = Reversal(3, 4, 1).batch('train', 0)
    assert row[0] == 0 and row[2] == 0 and row[1] == row[3] in (1, 2)
    np.testing.assert_array_equal(w, [0, 0, 0, 1])


@pytest.mark.parametrize('name', ['copy', 'reversal'])
def test_variable_length_padding_and_mask(name):
    task = _task(name, vocab_size=5, length=20, batch_size=256,
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
    fixed = _task(name, 9, 12, 4, seed=5)
    same = _task(name, 9, 12, 4, seed=5, min_length=12)
    for a, b in zip(fixed.batch('train', 2), same.batch('train', 2)):
        np.testing.assert_array_equal(a, b)


def test_symbols_cover_range():
    inputs, _, weights = Copy(4, 64, 8).batch('train', 0)
    assert set(np.unique(inputs[:, 1:32])) == {1, 2, 3}
    assert set(np.unique(inputs)) == {0, 1, 2, 3}


def test_stream_resumes_at_start():
    task = Copy(10, 16, 2, seed=3)
    resumed = list(itertools.islice(task.stream('train', start=5), 3))
    for k, got in enumerate(resumed, start=5):
        assert _same(got, task.batch('train', k))
    # A fresh eval stream replays the same held-out batches.
    first = list(itertools.islice(task.stream('eval'), 2))
    again = list(itertools.islice(task.stream('eval'), 2))
    assert all(_same(a, b) for a, b in zip(first, again))
    assert _same(first[0], task.batch('eval', 0))


def test_bad_split_and_index():
    task = Copy(10, 16, 2)
    with pytest.raises(ValueError, match=r"split.*'eval'.*'train'.*'test'"):
        task.batch('test', 0)
    # Raised at the call, not deferred to the first next().
    with pytest.raises(ValueError, match='split'):
        task.stream('valid')
    with pytest.raises(ValueError, match='index'):
        task.batch('train', -1)
    with pytest.raises(ValueError, match='start'):
        task.stream('train', start=-2)


def test_unknown_name():
    with pytest.raises(ValueError, match=r"'sort'.*'copy'.*'reversal'"):
        tasks.get('sort')


@pytest.mark.parametrize('name', ['copy', 'reversal'])
@pytest.mark.parametrize('kwargs, match', [
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
def test_validation(name, kwargs, match):
    args = dict(vocab_size=10, length=16, batch_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        _task(name, **args)


def test_numpy_ints_are_accepted_as_ints():
    task = Copy(np.int64(10), np.int32(16), np.int64(2),
                min_length=np.int64(8))
    assert type(task.length) is int and type(task.min_length) is int
    assert task == Copy(10, 16, 2, min_length=8)
    mqar = MQAR(20, np.int64(24), 2, n_pairs=np.int32(4),
                n_queries=np.int64(2))
    assert type(mqar.n_pairs) is int and type(mqar.n_queries) is int
    assert mqar == MQAR(20, 24, 2, n_pairs=4, n_queries=2)


def test_large_batches_shapes():
    inputs, _, weights = Copy(32, 65536, 1).batch('train', 0)
    assert inputs.shape == (1, 65536)
    assert weights.sum() == 32767
    np.testing.assert_array_equal(inputs[0, 32769:], inputs[0, 1:32768])


# --- associative_recall: "0 k1 v1 ... kn vn 0 q v(q)".

def _check_recall_row(row, weights, vocab_size) -> int:
    """Asserts one row is exactly "0 k1 v1 ... kn vn 0 q v(q) 0..." with
    distinct keys and the weight on v(q) alone; returns n."""
    (answer,) = np.flatnonzero(weights)
    n = (answer + 1) // 2 - 2
    half = vocab_size // 2
    keys, values = row[1:2 * n + 1:2], row[2:2 * n + 2:2]
    assert row[0] == 0 and row[2 * n + 1] == 0
    assert len(set(keys)) == n and keys.min() >= 1 and keys.max() < half
    assert values.min() >= half and values.max() < vocab_size
    query = row[2 * n + 2]
    assert query in keys
    assert row[answer] == values[list(keys).index(query)]
    np.testing.assert_array_equal(row[answer + 1:], 0)
    assert weights[answer] == 1.0
    return n


def test_associative_recall_format():
    task = AssociativeRecall(vocab_size=24, length=16, batch_size=64)
    inputs, _, weights = task.batch('train', 0)
    for row, row_weights in zip(inputs, weights):
        assert _check_recall_row(row, row_weights, 24) == 6
    np.testing.assert_array_equal(weights[:, :-1], 0.0)
    np.testing.assert_array_equal(weights[:, -1], 1.0)
    # Each of the six pairs gets asked for.
    queries = inputs[:, -2][:, None]
    asked = np.argmax(inputs[:, 1:13:2] == queries, axis=1)
    assert set(asked) == set(range(6))


def test_associative_recall_smallest():
    (row,), _, (weights,) = AssociativeRecall(4, 6, 1).batch('train', 0)
    # One key (1) and values 2..3: "0 1 v 0 1 v".
    assert list(row[:5]) == [0, 1, row[2], 0, 1] and row[5] == row[2]
    assert row[2] in (2, 3)
    np.testing.assert_array_equal(weights, [0, 0, 0, 0, 0, 1])


def test_associative_recall_range():
    task = AssociativeRecall(vocab_size=24, length=16, batch_size=256,
                             min_length=6)
    inputs, _, weights = task.batch('eval', 2)
    pairs = [_check_recall_row(row, row_weights, 24)
             for row, row_weights in zip(inputs, weights)]
    assert sorted(set(pairs)) == [1, 2, 3, 4, 5, 6]
    fixed = AssociativeRecall(24, 16, 8, seed=3)
    assert _same(fixed.batch('train', 1), AssociativeRecall(
        24, 16, 8, seed=3, min_length=16).batch('train', 1))


# --- induction_heads: "0 s ... T X ... s T X".

def _check_induction_row(row, weights, vocab_size) -> int:
    """Asserts one row is "0 s .. T X .. s T X 0..": T twice, the weight on
    the final X alone; returns the example's length."""
    (answer,) = np.flatnonzero(weights)
    end = answer + 1
    first, second = np.flatnonzero(row == TRIGGER)
    assert 1 <= first <= end - 4 and second == end - 2
    assert row[0] == 0 and row[answer] == row[first + 1]
    content = np.delete(row[1:end], [first - 1, second - 1])
    assert content.min() >= 2 and content.max() < vocab_size
    np.testing.assert_array_equal(row[end:], 0)
    return end


def test_induction_heads_format():
    task = InductionHeads(vocab_size=6, length=12, batch_size=256)
    inputs, _, weights = task.batch('train', 0)
    firsts = set()
    for row, row_weights in zip(inputs, weights):
        assert _check_induction_row(row, row_weights, 6) == 12
        firsts.add(int(np.argmax(row == TRIGGER)))
    # The first trigger lands anywhere it fits, 1..length-4.
    assert firsts == set(range(1, 9))
    (row,), _, (weights,) = InductionHeads(4, 5, 1).batch('eval', 0)
    assert list(row[:4]) == [0, TRIGGER, row[2], TRIGGER]
    assert row[4] == row[2] in (2, 3)
    np.testing.assert_array_equal(weights, [0, 0, 0, 0, 1])


def test_induction_heads_range():
    task = InductionHeads(vocab_size=6, length=12, batch_size=256,
                          min_length=5)
    inputs, _, weights = task.batch('train', 3)
    ends = {_check_induction_row(row, row_weights, 6)
            for row, row_weights in zip(inputs, weights)}
    assert ends == set(range(5, 13))
    assert _same(InductionHeads(6, 12, 8).batch('train', 1),
                 InductionHeads(6, 12, 8, min_length=12).batch('train', 1))


# --- mqar: "0 k1 v1 ... kn vn  x .. q v(q) .. x".

def test_mqar_format():
    task = MQAR(vocab_size=20, length=24, batch_size=256, n_pairs=4,
                n_queries=3)
    inputs, _, weights = task.batch('train', 0)
    start, half = 9, 10
    orders = set()
    for row, row_weights in zip(inputs, weights):
        keys, values = row[1:start:2], row[2:start:2]
        assert row[0] == 0 and row[1:].min() >= 1 and row.max() < 20
        assert len(set(keys)) == 4 and keys.min() >= 1 and keys.max() < half
        assert len(set(values)) == 4 and values.min() >= half
        answers = np.flatnonzero(row_weights)
        assert len(answers) == 3
        # Each answer ends a two-token slot after the pairs: "q v(q)".
        assert ((answers - start) % 2 == 1).all() and answers.min() > start
        asked = row[answers - 1]
        assert len(set(asked)) == 3 and set(asked) <= set(keys)
        for q, v in zip(asked, row[answers]):
            assert v == values[list(keys).index(q)]
        orders.add(tuple(list(keys).index(q) for q in asked))
    assert len(orders) > 20  # which pairs, in which order, varies


def test_mqar_every_slot_taken():
    # length = 1 + 2 * (n_pairs + n_queries): the queries fill the rest.
    (row,), _, (weights,) = MQAR(6, 9, 1, n_pairs=2).batch('eval', 1)
    k1, v1, k2, v2 = row[1:5]
    assert {k1, k2} == {1, 2} and {v1, v2} <= {3, 4, 5} and v1 != v2
    assert list(row[5:]) in ([k1, v1, k2, v2], [k2, v2, k1, v1])
    np.testing.assert_array_equal(weights, [0, 0, 0, 0, 0, 0, 1, 0, 1])


def test_mqar_defaults_query_every_pair():
    task = MQAR(vocab_size=64, length=64, batch_size=4)
    assert task.n_pairs == 8 and task.n_queries is None and task.queries == 8
    _, _, weights = task.batch('train', 0)
    np.testing.assert_array_equal(weights.sum(axis=1), 8)


# --- selective_copying: "0 x ... x 0 d1 ... dn".

def test_selective_copying_format():
    task = SelectiveCopying(vocab_size=6, length=16, batch_size=256,
                            n_tokens=4)
    inputs, _, weights = task.batch('train', 0)
    region = 16 - 2 - 4
    spread = set()
    for row, row_weights in zip(inputs, weights):
        assert row[0] == 0 and row[region + 1] == 0
        data = row[1:region + 1][row[1:region + 1] != NOISE]
        assert len(data) == 4 and data.min() >= 2 and data.max() < 6
        np.testing.assert_array_equal(row[region + 2:], data)
        np.testing.assert_array_equal(row_weights,
                                      [0] * (region + 2) + [1] * 4)
        spread.update(np.flatnonzero(row[1:region + 1] != NOISE))
    assert spread == set(range(region))  # data lands anywhere in the region
    # With no room for noise, the region is the data itself.
    (row,), _, _ = SelectiveCopying(6, 8, 1, n_tokens=3).batch('eval', 0)
    assert row[0] == row[4] == 0 and list(row[1:4]) == list(row[5:])


def test_selective_copying_default_is_mambas():
    assert SelectiveCopying(16, 4096, 1).n_tokens == 16


# --- Impossible settings: one clear line naming the field.

@pytest.mark.parametrize('cls, kwargs, match', [
    (AssociativeRecall, dict(length=15), 'length must be an even int >= 6'),
    (AssociativeRecall, dict(length=4), 'length .*>= 6, got 4'),
    (AssociativeRecall, dict(vocab_size=13),
     r'vocab_size must be >= 14 for 6 distinct keys .*length=16, got 13'),
    (AssociativeRecall, dict(vocab_size=3), r'vocab_size .*\[4, .*got 3'),
    (AssociativeRecall, dict(min_length=7), 'min_length .*even.*7'),
    (AssociativeRecall, dict(min_length=4),
     r'min_length .*\[6, length=16\] or None, got 4'),
    (AssociativeRecall, dict(min_length=18), r'min_length .*got 18'),
    (AssociativeRecall, dict(min_length=6.0),
     'min_length must be an int or None, got 6.0'),
    (InductionHeads, dict(length=4), 'length must be an int >= 5, got 4'),
    (InductionHeads, dict(vocab_size=3), r'vocab_size .*\[4, .*got 3'),
    (InductionHeads, dict(min_length=4),
     r'min_length must be an int in \[5, length=16\] or None, got 4'),
    (InductionHeads, dict(min_length=17), 'min_length .*got 17'),
    (MQAR, dict(n_pairs=0), 'n_pairs must be an int >= 1, got 0'),
    (MQAR, dict(n_pairs=2.0), 'n_pairs must be an int, got 2.0'),
    (MQAR, dict(n_queries=5),
     r'n_queries must be an int in \[1, n_pairs=4\] or None, got 5'),
    (MQAR, dict(n_queries=0), r'n_queries .*got 0'),
    (MQAR, dict(n_queries=True), 'n_queries must be an int or None.*bool'),
    (MQAR, dict(length=16),
     r'length must be >= .* = 17 for n_pairs=4, n_queries=4, got 16'),
    (MQAR, dict(length=14, n_queries=3), 'length .*= 15 .*got 14'),
    (MQAR, dict(vocab_size=9),
     'vocab_size must be >= 10 for n_pairs=4 distinct keys.*got 9'),
    (SelectiveCopying, dict(length=9),
     r'length must be >= 2 \* n_tokens \+ 2 = 10 for n_tokens=4, got 9'),
    (SelectiveCopying, dict(n_tokens=0), 'n_tokens must be an int >= 1'),
    (SelectiveCopying, dict(n_tokens=None),
     'n_tokens must be an int, got None'),
    (SelectiveCopying, dict(vocab_size=3), r'vocab_size .*\[4, .*got 3'),
])
def test_new_task_validation(cls, kwargs, match):
    base = {AssociativeRecall: dict(vocab_size=64, length=16, batch_size=2),
            InductionHeads: dict(vocab_size=8, length=16, batch_size=2),
            MQAR: dict(vocab_size=20, length=24, batch_size=2, n_pairs=4),
            SelectiveCopying: dict(vocab_size=8, length=16, batch_size=2,
                                   n_tokens=4)}[cls]
    with pytest.raises(ValueError, match=match):
        cls(**dict(base, **kwargs))


def test_replace_to_an_impossible_length_raises():
    task = MQAR(vocab_size=20, length=24, batch_size=2, n_pairs=4)
    with pytest.raises(ValueError, match='length must be >= .* = 17'):
        dataclasses.replace(task, length=16)


# --- The gin route.

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
    assert task == Reversal(12, 24, 3, seed=0, min_length=8)
    copy = gin.get_configurable('tasks.copy')(vocab_size=5, length=6,
                                              batch_size=1)
    assert copy == Copy(5, 6, 1, seed=9)


@pytest.mark.parametrize('name', list(SMALL))
def test_each_gin_name_builds_its_task(name):
    kwargs = dict(SMALL[name], seed=4)
    gin.parse_config('\n'.join(f'tasks.{name}.{k} = {v!r}'
                               for k, v in kwargs.items()))
    task = gin.get_configurable(f'tasks.{name}')()
    assert type(task) is tasks.get(name)
    assert task == tasks.get(name)(**kwargs)


@pytest.mark.parametrize('name', list(SMALL))
def test_common_gin_file_builds_its_task(name):
    """gin_configs/common/<name>.gin binds every field it should, and its
    counts are the class defaults."""
    text = (ROOT / 'gin_configs' / 'common' / f'{name}.gin').read_text()
    bindings = [line for line in text.splitlines()
                if not line.startswith('experiments.')]
    assert f'experiments.Experiment.task = @tasks.{name}()' in text
    gin.parse_config(['VOCAB_SIZE = 64', 'LENGTH = 64', 'BATCH_SIZE = 4',
                      'SEED = 3'] + bindings)
    task = gin.get_configurable(f'tasks.{name}')()
    assert task == tasks.get(name)(vocab_size=64, length=64, batch_size=4,
                                   seed=3)


def test_gin_validation_surfaces():
    gin.parse_config('''
        import tasks
        tasks.copy.vocab_size = 12
        tasks.copy.length = 9
        tasks.copy.batch_size = 3
    ''')
    with pytest.raises(ValueError, match='length'):
        gin.get_configurable('tasks.copy')()


def test_no_trax_or_jax_import():
    # A fresh interpreter: other test modules may have imported trax here.
    code = ('import sys, tasks; '
            'sys.exit(any(m in sys.modules for m in ("trax", "jax")))')
    subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)
