"""JAX's persistent compilation cache, on by default for every command.

A second run of an experiment, a resumed run, or the next trial of a sweep
compiles the same programs again; with the cache it reads them from disk.
JAX_COMPILATION_CACHE_DIR (JAX's own variable) moves the cache; set to the
empty string it turns the cache off.
"""
from __future__ import annotations

import os

import jax

ENV = 'JAX_COMPILATION_CACHE_DIR'


def default_dir() -> str:
    cache_home = os.environ.get('XDG_CACHE_HOME') or os.path.join(
        os.path.expanduser('~'), '.cache')
    return os.path.join(cache_home, 'seq-lab', 'jax')


def enable() -> str | None:
    """Points JAX at the cache directory; returns it, or None when off or
    when it cannot be created (then programs compile as usual)."""
    path = os.environ.get(ENV, default_dir())
    if not path:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    jax.config.update('jax_compilation_cache_dir', path)
    # Start-up is many small compiles (init, eval, the step loop); keep them
    # all, not only those over JAX's default one second.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    return path
