"""XLA:CPU: faster random bits and batched products; threads; memory back.

JAX lowers threefry (every `jax.random` draw: dropout masks, sampling) to a
rolled five-iteration loop on CPU, to keep compiles short. XLA:CPU runs each
iteration of that loop as separate small kernels, which in a small model's
training step costs more than the arithmetic around it (codelab.gin: about a
third of the step). The unrolled form that JAX uses on other platforms gives
bit-identical bits in one fused kernel per draw.

XLA:CPU runs a batched product whose left operand is contracted over any
dimension but its last one (attention's backward pass makes four in each
codelab.gin step: probabilities or score gradients, transposed, times values
or queries) as a loop of tiny Eigen calls, about five times slower than the
same product in standard form, which goes to its fused library kernel
(128 products of 10x10 by 10x4, alone in a compiled loop: 120-140 us
against 25 us, plus 11 us to transpose). `standard_batched_dots` lowers such
products as an explicit transpose, then the standard product: the same sums,
and codelab.gin's step takes 1.45-1.6 ms instead of 1.7-1.8 ms.

A small model's step is hundreds of kernels of a few microseconds each;
XLA:CPU spreads independent ones over its thread pool, and on two cores the
hand-offs cost more than they save (codelab.gin's compiled loop: 2.1-2.6
ms per step with two threads, 1.6-1.75 ms with one; a wider model such as
transformer_copy.gin gains from two: 26 against 40 ms). The pool's size is
fixed when JAX starts its CPU client, so `use_threads` must come first.

Compiling a program (LLVM, in this process) frees hundreds of MB that the C
allocator keeps mapped, so a run's peak resident memory would carry the
compiler's on top of the training step's own (ReformerLM at length 16K:
1.03 GB instead of 0.77 GB). `release_freed_memory` hands it back.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os

from absl import logging
import jax
from jax import lax
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


# Above this many left-operand elements per product, the loop's per-call cost
# is small beside the product itself, and the transposed copy costs more than
# it saves: 64x64 products (transformer_copy.gin's attention) come out even,
# ReformerLM's 64x128 LSH chunks at length 4K slower (0.16-0.19 against
# 0.13 s per step).
_LARGEST_TRANSPOSED_PRODUCT = 32 * 32


def standard_batched_dots() -> bool:
    """Registers, for CPU from now on, a lowering of batched products that
    moves the left operand's contracted dimensions last first; returns False
    (and changes nothing) where this JAX lacks the rule it builds on."""
    try:
        from jax._src.lax import lax as lax_internal
        primitive = lax_internal.dot_general_p
        default = functools.partial(lax_internal._dot_general_lower,
                                    platform='cpu')
    except (ImportError, AttributeError):
        logging.warning('this JAX has no dot_general lowering to build on; '
                        'batched products on CPU use its default')
        return False

    def lower(ctx, lhs, rhs, *, dimension_numbers, **params):
        (contracting, rhs_contracting), (batch, rhs_batch) = dimension_numbers
        shape = ctx.avals_in[0].shape
        rank = len(shape)
        free = [d for d in range(rank) if d not in contracting + batch]
        order = tuple(batch) + tuple(free) + tuple(contracting)
        product_size = math.prod(shape[d] for d in free + list(contracting))
        if (not batch or order == tuple(range(rank))
                or product_size > _LARGEST_TRANSPOSED_PRODUCT):
            return default(ctx, lhs, rhs, dimension_numbers=dimension_numbers,
                           **params)
        kept = len(batch) + len(free)
        standard = ((tuple(range(kept, rank)), rhs_contracting),
                    (tuple(range(len(batch))), rhs_batch))

        def product(lhs, rhs):
            # The barriers keep XLA from folding the transposes (this one,
            # and any its autodiff put after the product) back into the dot.
            lhs = lax.optimization_barrier(lax.transpose(lhs, order))
            return lax.optimization_barrier(lax.dot_general(
                lhs, rhs, standard, precision=params['precision'],
                preferred_element_type=params['preferred_element_type']))

        return mlir.lower_fun(product, multiple_results=False)(ctx, lhs, rhs)

    mlir.register_lowering(primitive, lower, platform='cpu')
    return True


# The variable XLA's CPU client reads for its pool size when it starts.
_POOL_SIZE_VARIABLE = 'PJRT_NPROC'
_threads_started_with = None  # what use_threads started the client with


def use_threads(n: int | None) -> None:
    """Starts JAX's CPU client with `n` threads (None: one per core, XLA's
    default). Where JAX has already started, a different `n` cannot apply:
    it is logged once and this process keeps its threads."""
    global _threads_started_with
    from jax._src import xla_bridge
    if xla_bridge.backends_are_initialized():
        if n != _threads_started_with:
            logging.log_first_n(
                logging.WARNING, 'JAX started before cpu_threads=%s could '
                'apply; this process keeps %s', 1, n,
                f'{_threads_started_with} XLA:CPU thread(s)'
                if _threads_started_with else 'its XLA:CPU threads')
        return
    if n is None:
        return
    previous = os.environ.get(_POOL_SIZE_VARIABLE)
    os.environ[_POOL_SIZE_VARIABLE] = str(n)
    try:
        jax.devices()  # starts the clients, which read the variable now
    finally:  # child processes (sweep trials) choose their own
        if previous is None:
            del os.environ[_POOL_SIZE_VARIABLE]
        else:
            os.environ[_POOL_SIZE_VARIABLE] = previous
    _threads_started_with = n


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
