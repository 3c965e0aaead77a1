r"""Where a training step's time goes on CPU: XLA's kernels, timed by JAX's
profiler.

    python -m scripts.benchmarks.profile_step --gin_file=codelab.gin
    python -m scripts.benchmarks.profile_step --gin_file=reformer_copy.gin --calls=2 \
        --top=30 --gin_param='models.ReformerLM.n_hashes = 4'

Builds the experiment's training run (as `experiments.main` does, in a
temporary directory), runs two untimed calls of its compiled step loop (the
first compiles), then traces --calls calls of up to 100 steps each. Prints,
per training step: the wall time, the time XLA:CPU's threads were busy
(summed over threads, so it can exceed the wall time), the number of
kernels run, and the --top kernels by busy time with their HLO names (the
names `jax.jit(...).lower(...).compile().as_text()` shows).
"""
from __future__ import annotations

import collections
import glob
import os
import sys
import tempfile
import time
from typing import Sequence

from absl import flags

from experiments import cli, config
from experiments.errors import ConfigError

FLAGS = flags.FlagValues()
flags.DEFINE_string('gin_file', None, 'The experiment to profile.',
                    flag_values=FLAGS)
flags.DEFINE_multi_string('gin_param', [], 'Extra gin bindings.',
                          flag_values=FLAGS)
flags.DEFINE_integer('calls', 5, 'Traced calls of the step loop.',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('top', 20, 'Kernels to list.', lower_bound=1,
                     flag_values=FLAGS)

# XLA:CPU runs a program's kernels on threads of this name; one
# `ThunkExecutor::Execute` event per thread spans the kernels it ran. The
# threads' other events mark a kernel's end or the pool's bookkeeping.
_KERNEL_THREAD = 'tf_XLAEigen'
_EXECUTOR = 'ThunkExecutor::'
_NOT_KERNELS = ('end: ', 'ThreadpoolListener::')


def kernel_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter, int]:
    """Per kernel name: total ns and count; and the threads' busy ns."""
    import jax
    paths = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'),
                      recursive=True)
    if not paths:
        raise RuntimeError(f'the profiler wrote no trace under {trace_dir}')
    total, count, busy = collections.Counter(), collections.Counter(), 0
    for plane in jax.profiler.ProfileData.from_file(paths[0]).planes:
        for line in plane.lines:
            if not line.name.startswith(_KERNEL_THREAD):
                continue
            for event in line.events:
                if event.name.startswith(_EXECUTOR):
                    busy += event.duration_ns
                elif not event.name.startswith(_NOT_KERNELS):
                    total[event.name] += event.duration_ns
                    count[event.name] += 1
    return total, count, busy


def format_report(total: collections.Counter, count: collections.Counter,
                  busy_ns: int, wall_s: float, steps: int, top: int) -> str:
    per_step = lambda ns: ns / steps / 1e3  # noqa: E731  (us per step)
    lines = [f'{steps} steps: wall {wall_s / steps * 1e6:.0f} us/step; '
             f'XLA threads busy {per_step(busy_ns):.0f} us/step; '
             f'{sum(count.values()) / steps:.0f} kernels/step',
             '| kernel | us/step | share of busy | runs/step |',
             '|---|---|---|---|']
    for name, ns in total.most_common(top):
        lines.append(f'| {name} | {per_step(ns):.1f} | '
                     f'{ns / max(busy_ns, 1):.1%} | '
                     f'{count[name] / steps:.0f} |')
    return '\n'.join(lines)


def _command(args: list[str]) -> int:
    if not FLAGS.gin_file:
        raise ConfigError('give --gin_file, the experiment to profile')
    config.parse([FLAGS.gin_file], FLAGS.gin_param)
    experiment = config.build_experiment()
    import jax
    import numpy as np
    from experiments import training
    training.start_jax(experiment)
    if jax.default_backend() != 'cpu':
        raise ConfigError('profile_step reads XLA:CPU traces; this JAX runs '
                          f'on {jax.default_backend()}')
    with tempfile.TemporaryDirectory() as tmp:
        run = training.TrainingRun(experiment, os.path.join(tmp, 'run'))
        stream = experiment.task.stream('train')

        def call() -> int:
            batches = [next(stream) for _ in range(run.steps_per_call)]
            np.asarray(run.train_steps(batches))  # waits for the call
            return len(batches)

        print(f'compiling and warming up ({run.steps_per_call} steps per '
              'call) ...', flush=True)
        call(), call()
        trace_dir = os.path.join(tmp, 'trace')
        with jax.profiler.trace(trace_dir):
            start = time.perf_counter()
            steps = sum(call() for _ in range(FLAGS.calls))
            wall_s = time.perf_counter() - start
        total, count, busy = kernel_times(trace_dir)
    print(f'{FLAGS.gin_file}, {type(experiment.model).__name__}:')
    print(format_report(total, count, busy, wall_s, steps, FLAGS.top))
    return 0


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
