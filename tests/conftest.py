"""Shared pytest fixtures."""
import experiments.trax_bridge  # noqa: F401  (before anything imports trax)
import gin
import pytest


@pytest.fixture(autouse=True)
def clear_gin():
    """Every test starts and ends with an empty gin config."""
    gin.clear_config()
    yield
    gin.clear_config()
