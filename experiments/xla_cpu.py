"""XLA:CPU: faster random bits, batched products and elementwise loops;
a fixed thread pool; memory back.

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
against 25 us, plus 11 us to transpose). An unbatched one (a weight
gradient: activations, transposed, times output gradients) goes to Eigen
too, where the standard form goes to the library kernel. `standard_form_dots`
lowers small such products as an explicit transpose, then the standard
product: the same sums. codelab.gin's step: 1.45-1.6 ms instead of 1.7-1.8
with the batched ones rewritten; 1.22-1.33 instead of 1.28-1.44 (in one
process, alternating) with the weight gradients rewritten as well.

A small model's step is hundreds of kernels of a few microseconds each;
XLA:CPU spreads independent ones over its thread pool, and on two cores the
hand-offs cost more than they save (codelab.gin's compiled loop: 2.1-2.6
ms per step with two threads, 1.6-1.75 ms with one; a wider model such as
transformer_copy.gin gains from two: 26 against 40 ms).

The pool's size changes the bits, so it is part of an experiment, with a
fixed default rather than one thread per core. XLA:CPU's library kernels
split work by it: YNNPACK's reduction fusions split a sum over the threads
(codelab.gin's weights after 20 steps differ between 1 and 2 threads, and
agree with those fusions off), and products with a long contraction block
it by the pool size (ReformerLM at 4K tokens: the weight gradients, summed
over 4,096 positions, differ between 1 and 2 threads even with YNNPACK off
and Eigen single-threaded). With a fixed size the bits do not depend on
the cores present: 2 threads on one core (taskset) and on two give the
same gradients, and load does not change them.

XLA:CPU unrolls each elementwise loop it emits. Where the innermost
dimension is short (a small model's activations: batch x length x 32), the
unrolled body is not vectorised: alone in a compiled loop, exp over a
16x10x32 array took 14 us, over the same 5,120 numbers as one flat row 1.8
us, and 2.3 us with unrolling off (a multiply: 1.6 against 0.5 us). Some
shapes lose (a multiply over 128x10x10: 4.3 against 10.5 us), but the whole
step gains: codelab.gin through `experiments.main`, 550-569 steps/s with
XLA's unrolling and 657-729 without; transformer_copy.gin and
reformer_copy.gin come out even or slightly faster. Both settings are read
once, when JAX starts its CPU client, so `start` must come first.

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

from models import jax_private


def unroll_threefry() -> bool:
    """Registers JAX's unrolled threefry lowering for CPU from now on;
    returns False (and changes nothing) where this JAX lacks it."""
    try:
        primitive = jax_private.get('jax._src.random.threefry2x32',
                                    'threefry2x32_p')
        rule = jax_private.get('jax._src.random.threefry2x32',
                               '_threefry2x32_lowering_rule')
    except jax_private.MissingPrivateApi:
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
# Unbatched products (weight gradients: activations, transposed, times output
# gradients) are rewritten below this many left-operand elements; longer
# sequences' (ReformerLM from 1K tokens at d_model 64) keep XLA's form rather
# than hold a transposed copy of their activations.
_LARGEST_TRANSPOSED_OPERAND = 64 * 1024


def standard_form_dots() -> bool:
    """Registers, for CPU from now on, a lowering of small products that
    moves the left operand's contracted dimensions last first; returns False
    (and changes nothing) where this JAX lacks the rule it builds on."""
    try:
        primitive = jax_private.get('jax._src.lax.lax', 'dot_general_p')
        default = functools.partial(
            jax_private.get('jax._src.lax.lax', '_dot_general_lower'),
            platform='cpu')
    except jax_private.MissingPrivateApi:
        logging.warning('this JAX has no dot_general lowering to build on; '
                        'products on CPU use its default')
        return False

    def lower(ctx, lhs, rhs, *, dimension_numbers, **params):
        (contracting, rhs_contracting), (batch, rhs_batch) = dimension_numbers
        shape = ctx.avals_in[0].shape
        rank = len(shape)
        free = [d for d in range(rank) if d not in contracting + batch]
        order = tuple(batch) + tuple(free) + tuple(contracting)
        if batch:
            small = math.prod(shape[d] for d in free + list(contracting)) <= (
                _LARGEST_TRANSPOSED_PRODUCT)
        else:
            small = math.prod(shape) < _LARGEST_TRANSPOSED_OPERAND
        if order == tuple(range(rank)) or not small:
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


# What XLA's CPU client reads when it starts: its pool size, and its flags.
_POOL_SIZE_VARIABLE = 'PJRT_NPROC'
_FLAGS_VARIABLE = 'XLA_FLAGS'
# Appended to any XLA_FLAGS of the user's; XLA merges repeated option lists.
_KEEP_LOOPS_ROLLED = '--xla_backend_extra_options=xla_cpu_disable_loop_unrolling'
# An experiment's default pool size (see the module docstring), and the most
# it may ask for: oversubscribing the cores is allowed, not absurd sizes.
DEFAULT_THREADS = 2
MAX_THREADS = 256
_threads_started_with = None  # what `start` started the client with


def _backends_started() -> bool:
    return jax_private.get('jax._src.xla_bridge',
                           'backends_are_initialized')()


def start(threads: int = DEFAULT_THREADS) -> None:
    """Starts JAX's CPU client with this project's settings: a pool of
    `threads` threads and elementwise loops kept rolled. Where JAX has
    already started, they cannot apply: another thread count is logged
    once, and this process keeps the pool it has (`threads()` says which)."""
    global _threads_started_with
    if _backends_started():
        if threads != pool_size():
            logging.log_first_n(
                logging.WARNING, 'JAX started before cpu_threads=%s could '
                'apply; this process keeps %s XLA:CPU thread(s)', 1, threads,
                pool_size())
        return
    settings = {_FLAGS_VARIABLE: (os.environ.get(_FLAGS_VARIABLE, '') + ' '
                                  + _KEEP_LOOPS_ROLLED).strip(),
                _POOL_SIZE_VARIABLE: str(threads)}
    previous = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        jax.devices()  # starts the clients, which read the variables now
    finally:  # child processes (sweep trials) choose their own
        for name, value in previous.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
    _threads_started_with = threads


def pool_size() -> int:
    """The XLA:CPU thread pool this process runs with (starting JAX with the
    default if nothing has): what `start` set, else what a client started
    elsewhere took from the environment, else XLA's one per usable core."""
    if not _backends_started():
        start()
    if _threads_started_with is not None:
        return _threads_started_with
    value = os.environ.get(_POOL_SIZE_VARIABLE, '')
    return int(value) if value.isdigit() else len(os.sched_getaffinity(0))


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
