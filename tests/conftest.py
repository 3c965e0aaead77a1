"""Shared pytest fixtures."""
import os
import tempfile

from experiments import compile_cache
from experiments import xla_cpu
import gin
import pytest

# Commands the tests run share one compilation cache of their own (inherited by
# xdist workers and subprocesses), never the user's.
if not os.environ.get('SEQ_LAB_TEST_CACHE'):
    os.environ['SEQ_LAB_TEST_CACHE'] = tempfile.mkdtemp(prefix='jax-cache-')
os.environ[compile_cache.ENV] = os.environ['SEQ_LAB_TEST_CACHE']
compile_cache.enable()  # in this process too

# Runs inside the test process compile with the XLA:CPU settings that commands
# start with, on the default pool (2 threads, whatever the cores here; an
# experiment that sets another, codelab.gin's 1, runs on this one in-process,
# so in-process runs are compared with in-process runs only).
xla_cpu.start()


@pytest.fixture(autouse=True)
def clear_gin():
    """Every test starts and ends with an empty gin config."""
    gin.clear_config()
    yield
    gin.clear_config()


UPSTREAM = 'test_trax_upstream.py::test_trax_upstream_tests_pass'


def pytest_itemcollected(item):
    """Under pytest-xdist (`--dist loadgroup`): a module's tests stay on one
    worker, so its shared fixtures are built once, except trax's own test
    runs, which spread over the workers: they are the longest. Marked as
    each test is collected because pytest-xdist reads the marks in its
    pytest_collection_modifyitems, which runs before this file's."""
    if UPSTREAM not in item.nodeid:
        item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def pytest_collection_modifyitems(items):
    """trax's own test runs start first."""
    items.sort(key=lambda item: UPSTREAM not in item.nodeid)
