"""Faster random bits on CPU, with the same numbers.

JAX lowers threefry (every `jax.random` draw: dropout masks, sampling) to a
rolled five-iteration loop on CPU, to keep compiles short. XLA:CPU runs each
iteration of that loop as separate small kernels, which in a small model's
training step costs more than the arithmetic around it (codelab.gin: about a
third of the step). The unrolled form that JAX uses on other platforms gives
bit-identical bits in one fused kernel per draw.
"""
from __future__ import annotations

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
