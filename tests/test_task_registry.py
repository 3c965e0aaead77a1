"""Tests for the task registry: names, duplicates, and what registering a
new task gives (a gin configurable tasks.<name> over the task's fields)."""
import dataclasses
import uuid

import gin
import numpy as np
import pytest

import tasks
from tasks import registry

BUILT_IN = ('associative_recall', 'copy', 'induction_heads', 'mqar',
            'reversal', 'selective_copying')


@pytest.fixture
def scratch_registry(monkeypatch):
    """Tasks registered in a test leave the registry when it ends (gin
    keeps their configurables, under names no other test uses)."""
    monkeypatch.setattr(registry, '_TASKS', dict(registry._TASKS))


def test_built_in_names():
    assert set(BUILT_IN) <= set(tasks.names())
    assert list(tasks.names()) == sorted(tasks.names())
    for name in BUILT_IN:
        assert tasks.get(name).name == name
        assert issubclass(tasks.get(name), tasks.Task)


def test_get_unknown_lists_the_names():
    with pytest.raises(ValueError, match=r"no task named 'copyy'.*'copy'"):
        tasks.get('copyy')


def test_duplicate_name_is_refused(scratch_registry):
    @dataclasses.dataclass(frozen=True)
    class AnotherCopy(tasks.Copy):
        """Another copy: "0 w 0 w"."""

    with pytest.raises(ValueError,
                       match=r"task named 'copy' is already registered "
                             r"\(tasks\.copy\.Copy\)"):
        tasks.register(AnotherCopy)
    assert tasks.get('copy') is tasks.Copy


@pytest.mark.parametrize('thing', [int, tasks.Copy(5, 6, 1), 'copy'])
def test_only_task_classes(thing):
    with pytest.raises(TypeError, match='only Task dataclasses'):
        tasks.register(thing)


def test_name_must_be_an_identifier(scratch_registry):
    @dataclasses.dataclass(frozen=True)
    class Nameless(tasks.Task):
        """Nameless."""

    with pytest.raises(ValueError, match='Nameless.name must be an '
                                         'identifier, got None'):
        tasks.register(Nameless)


def test_a_new_task_is_one_class_and_one_register(scratch_registry):
    name = f'constant_{uuid.uuid4().hex[:8]}'

    @dataclasses.dataclass(frozen=True)
    class Constant(tasks.Task):
        """Constant: "0 c c ... c"."""
        format = '0 c c ... c'
        c: int = 1

        def generate(self, rng):
            tokens = np.full((self.batch_size, self.length), self.c,
                             np.int32)
            tokens[:, 0] = 0
            weights = np.ones(tokens.shape, np.float32)
            weights[:, 0] = 0.0
            return tokens, weights

    Constant.name = name
    assert tasks.register(Constant) is Constant
    assert tasks.get(name) is Constant and name in tasks.names()
    gin.parse_config(f'''
        tasks.{name}.vocab_size = 5
        tasks.{name}.length = 4
        tasks.{name}.batch_size = 2
        tasks.{name}.c = 3
    ''')
    task = gin.get_configurable(f'tasks.{name}')()
    assert task == Constant(5, 4, 2, c=3) and type(task) is Constant
    inputs, _, weights = task.batch('train', 0)
    np.testing.assert_array_equal(inputs, [[0, 3, 3, 3]] * 2)
    with pytest.raises(ValueError, match='already registered'):
        tasks.register(Constant)


def test_gin_rejects_a_parameter_the_task_lacks():
    with pytest.raises(ValueError, match='n_pairs'):
        gin.parse_config('tasks.copy.n_pairs = 3')
