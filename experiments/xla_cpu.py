"""XLA:CPU: faster random bits with the same numbers; compiler memory back.

JAX lowers threefry (every `jax.random` draw: dropout masks, sampling) to a
rolled five-iteration loop on CPU, to keep compiles short. XLA:CPU runs each
iteration of that loop as separate small kernels, which in a small model's
training step costs more than the arithmetic around it (codelab.gin: about a
third of the step). The unrolled form that JAX uses on other platforms gives
bit-identical bits in one fused kernel per draw.

Compiling a program (LLVM, in this process) frees hundreds of MB that the C
allocator keeps mapped, so a run's peak resident memory would carry the
compiler's on top of the training step's own (ReformerLM at length 16K:
1.03 GB instead of 0.77 GB). `release_freed_memory` hands it back.
"""
from __future__ import annotations

import ctypes
import ctypes.util

from absl import logging
from jax.interpreters import mlir


def unroll_threefry() -> bool:
    """Registers JAX's unrolled threefry lowering for CPU from now on;
    returns False (and changes nothing) where this JAX lacks it."""
    try:
        from jax._src.random import threefry2x32
        primitive = threefry2x32.threefry2x32_p
        rule = threefry2x32._threefry2x32_lowering_rule
    except (ImportError, AttributeError):
        logging.warning('this JAX has no unrolled threefry lowering; random '
                        'bits on CPU use its default (rolled) loop')
        return False
    mlir.register_lowering(primitive, rule, platform='cpu')
    return True


def _malloc_trim():
    name = ctypes.util.find_library('c')
    function = getattr(ctypes.CDLL(name), 'malloc_trim', None) if name else None
    return function  # glibc only; None elsewhere (musl, macOS)


_MALLOC_TRIM = _malloc_trim()


def release_freed_memory() -> bool:
    """Returns the C heap's free pages to the system (glibc's malloc_trim);
    False where the C library has no such call."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
