r"""Training throughput: `experiments.main` against trax's own Trainer.

    python -m scripts.benchmarks.train                        # codelab, reformer_copy
    python -m scripts.benchmarks.train --gin_files=codelab.gin --steps=50 --repeats=1
    python -m scripts.benchmarks.train --cpu_threads=cores,1  # what the pool costs

For each gin file, in the same run and alternating, --repeats times:
- ours: `python -m experiments.main` on the file (n_steps = 2 x steps, one
  eval in the middle); its steady-state steps/s is what the run logs for
  the second half (training time only; the first half holds the compiles).
- trax: a minimal script driving `trax.optimizers.Trainer` on the same model,
  optimizer, schedule and batches, one `one_step` per step as trax's own
  training loop does; timed after 3 warm-up steps (the Trainer compiles again
  at its second step), until the last loss is ready. It runs with XLA:CPU's
  defaults, as such a script does, and again with this project's XLA:CPU
  settings (the experiment's `cpu_threads`, loops kept rolled: see
  experiments/xla_cpu.py), to show what those settings alone give.
Each runs in a fresh process. Also measured here: this machine's float32
matrix-multiply rate and a training step's floating-point operations (XLA's
cost analysis of one compiled step), giving the achieved FLOP rate.
Prints a table (medians over repeats) and saves everything as JSON (--json).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from typing import Sequence

from absl import flags

from experiments.errors import ConfigError
from scripts.benchmarks import common
from experiments import cli

FLAGS = flags.FlagValues()
flags.DEFINE_list('gin_files', ['codelab.gin', 'reformer_copy.gin'],
                  'Experiments to time.', flag_values=FLAGS)
flags.DEFINE_integer('steps', None, 'Timed steps per run (default: 2000 for '
                     'codelab.gin, 200 otherwise).', lower_bound=2,
                     flag_values=FLAGS)
flags.DEFINE_integer('repeats', 3, 'Runs of each side (medians reported).',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_list('cpu_threads', [], 'Also time ours with these XLA:CPU pool '
                  'sizes (integers, or "cores" for one thread per usable '
                  'core, the default before the pool was fixed at 2).',
                  flag_values=FLAGS)
flags.DEFINE_string('json', 'bench_train.json', 'Where to save the results.',
                    flag_values=FLAGS)
flags.DEFINE_string('worker', None, 'Internal: run one side in this process '
                    '("trax", "trax_our_xla" or "flops") and print its '
                    'JSON.',
                    flag_values=FLAGS)

WARMUP_STEPS = 3


def _parse(gin_file: str, gin_params: Sequence[str] = ()) -> None:
    import gin
    from experiments import config
    gin.clear_config()  # the parent reads one file after another
    config.parse([gin_file], gin_params)


def _experiment(gin_file: str, xla_defaults: bool = False):
    """Builds the experiment and starts JAX with this project's XLA:CPU
    settings, or with XLA's own if `xla_defaults`."""
    import jax
    from experiments import config, training
    if xla_defaults:
        from experiments import xla_cpu
        jax.devices()
        _parse(gin_file, ['experiments.Experiment.cpu_threads = '
                          f'{xla_cpu.pool_size()}'])
    else:
        _parse(gin_file)
    experiment = config.build_experiment()
    training.start_jax(experiment)
    return experiment


def _cpu_threads(gin_file: str) -> int:
    """The experiment's `cpu_threads`, read from its config without building
    it (which would try to apply it to this process's running JAX)."""
    import gin
    from experiments.training import Experiment
    _parse(gin_file)
    try:
        return gin.query_parameter('experiments.Experiment.cpu_threads')
    except ValueError:  # not bound
        return Experiment.cpu_threads


def _model_and_optimizer(experiment):
    """The model with its loss, initialised, and its optimizer, as trax's
    training loop builds them."""
    import jax
    from models.trax_bridge import shapes, tl
    model_with_loss = tl.Serial(experiment.model('train'),
                                tl.WeightedCategoryCrossEntropy())
    model_with_loss.init(shapes.signature(experiment.task.batch('train', 0)),
                         rng=jax.random.PRNGKey(experiment.seed))
    optimizer = experiment.optimizer()
    optimizer.tree_init(model_with_loss.weights)
    return model_with_loss, optimizer


def trax_steps_per_second(gin_file: str, steps: int,
                          xla_defaults: bool = True) -> float:
    """Steady-state steps/s of trax's Trainer on the experiment, with
    XLA:CPU's defaults or with this project's settings."""
    import jax
    from models.trax_bridge import trax
    experiment = _experiment(gin_file, xla_defaults)
    model_with_loss, optimizer = _model_and_optimizer(experiment)
    trainer = trax.optimizers.Trainer(model_with_loss, optimizer, n_devices=1)
    rng = jax.random.PRNGKey(experiment.seed)
    schedule = experiment.lr_schedule

    def one_step(step):
        loss, _ = trainer.one_step(
            experiment.task.batch('train', step - 1),
            jax.random.fold_in(rng, step), step=step,
            learning_rate=schedule(step) if schedule else None)
        return loss

    for step in range(1, WARMUP_STEPS + 1):
        one_step(step).block_until_ready()
    start = time.perf_counter()
    for step in range(WARMUP_STEPS + 1, WARMUP_STEPS + steps + 1):
        loss = one_step(step)
    loss.block_until_ready()
    return steps / (time.perf_counter() - start)


def step_flops(gin_file: str) -> float:
    """Floating-point operations of one training step (forward, backward and
    optimizer update), from XLA's cost analysis of the compiled step."""
    import jax
    experiment = _experiment(gin_file)
    model_with_loss, optimizer = _model_and_optimizer(experiment)
    grad_fn = jax.value_and_grad(model_with_loss.pure_fn, argnums=1,
                                 has_aux=True)

    def step(weights, slots, state, batch, rng):
        (loss, state), grads = grad_fn(batch, weights, state, rng)
        return optimizer.tree_update(1, grads, weights, slots,
                                     optimizer.opt_params, store_slots=False)

    compiled = jax.jit(step).lower(
        model_with_loss.weights, optimizer.slots, model_with_loss.state,
        experiment.task.batch('train', 0), jax.random.PRNGKey(0)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost['flops'])


def matmul_flops_per_second(n: int = 2048, repeats: int = 10) -> float:
    """This machine's float32 matrix-multiply rate (best of `repeats`)."""
    import jax
    import numpy as np
    a = jax.device_put(np.random.default_rng(0).standard_normal(
        (n, n), np.float32))
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


WORKERS = ('trax', 'trax_our_xla', 'flops')


def _worker(kind: str, gin_file: str, steps: int) -> dict:
    result = common.run_python(
        ['-m', 'scripts.benchmarks.train', f'--worker={kind}',
         f'--gin_files={gin_file}', f'--steps={steps}'],
        f'{kind} worker on {gin_file}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def ours_steps_per_second(gin_file: str, steps: int,
                          cpu_threads: int | None = None) -> float:
    """Steady-state steps/s that `experiments.main` logs for the second half
    of a 2 x steps run (the first half holds the compiles), with the file's
    pool size or `cpu_threads`."""
    from experiments.summaries import read_scalars
    pool = ([] if cpu_threads is None else
            [f'--gin_param=experiments.Experiment.cpu_threads={cpu_threads}'])
    with tempfile.TemporaryDirectory() as out:
        common.run_python(
            ['-m', 'experiments.main', f'--gin_file={gin_file}',
             f'--output_dir={out}',
             f'--gin_param=experiments.Experiment.n_steps={2 * steps}',
             f'--gin_param=experiments.Experiment.eval_every={steps}',
             f'--gin_param=experiments.Experiment.checkpoint_every='
             f'{2 * steps}',
             '--gin_param=experiments.Experiment.decode_eval_every=0',
             *pool],
            f'experiments.main on {gin_file}')
        logged = read_scalars(os.path.join(out, 'train'))
        return dict(logged['training/steps_per_second'])[2 * steps]


def _pool_sizes(values: Sequence[str]) -> list[int]:
    """--cpu_threads as integers, "cores" read as this process's usable
    cores."""
    from experiments import xla_cpu
    try:
        pools = [len(os.sched_getaffinity(0)) if v == 'cores' else int(v)
                 for v in values]
    except ValueError:
        pools = [0]
    if not all(1 <= n <= xla_cpu.MAX_THREADS for n in pools):
        raise ConfigError(f'--cpu_threads takes integers from 1 to '
                          f'{xla_cpu.MAX_THREADS} or "cores", got '
                          f'{",".join(values)}')
    return pools


def bench_one(gin_file: str, steps: int, repeats: int,
              matmul_rate: float, pools: Sequence[int] = ()) -> dict:
    ours, trax, trax_ours = [], [], []
    at_pool = {n: [] for n in pools}
    for i in range(repeats):
        print(f'  {gin_file}: run {i + 1}/{repeats}', flush=True)
        ours.append(ours_steps_per_second(gin_file, steps))
        for n, runs in at_pool.items():
            runs.append(ours_steps_per_second(gin_file, steps, n))
        trax.append(_worker('trax', gin_file, steps)['steps_per_second'])
        trax_ours.append(_worker('trax_our_xla', gin_file,
                                 steps)['steps_per_second'])
    flops = _worker('flops', gin_file, steps)['flops']
    ours_median = statistics.median(ours)
    same = statistics.median(trax_ours)
    return {'gin_file': gin_file, 'steps': steps,
            'cpu_threads': _cpu_threads(gin_file),
            'ours_steps_per_s': ours_median,
            'trax_steps_per_s': statistics.median(trax),
            'speedup': ours_median / statistics.median(trax),
            'trax_our_xla_steps_per_s': same,
            'speedup_our_xla': ours_median / same,
            'ours_runs': ours, 'trax_runs': trax,
            'trax_our_xla_runs': trax_ours,
            'ours_at_cpu_threads': [{'cpu_threads': n, 'runs': r,
                                     'steps_per_s': statistics.median(r)}
                                    for n, r in at_pool.items()],
            'step_gflop': flops / 1e9,
            'ours_gflop_per_s': flops * ours_median / 1e9,
            'share_of_matmul_rate': flops * ours_median / matmul_rate}


def format_table(rows: Sequence[dict], matmul_rate: float) -> str:
    lines = ['| experiment | ours steps/s | trax Trainer steps/s | speed-up '
             '| trax Trainer, our XLA:CPU settings | speed-up | GFLOP per step '
             '| ours GFLOP/s | share of matmul rate |',
             '|---|---|---|---|---|---|---|---|---|']
    lines += [f'| {r["gin_file"]} | {r["ours_steps_per_s"]:,.1f} | '
              f'{r["trax_steps_per_s"]:,.1f} | {r["speedup"]:.1f}x | '
              f'{r["trax_our_xla_steps_per_s"]:,.1f} | '
              f'{r["speedup_our_xla"]:.1f}x | '
              f'{r["step_gflop"]:.4f} | {r["ours_gflop_per_s"]:.2f} | '
              f'{r["share_of_matmul_rate"]:.1%} |' for r in rows]
    pools = [(r, at) for r in rows for at in r['ours_at_cpu_threads']]
    if pools:
        lines.append('')
    lines += [f'{r["gin_file"]}: ours with cpu_threads = {at["cpu_threads"]}: '
              f'{at["steps_per_s"]:,.1f} steps/s against '
              f'{r["ours_steps_per_s"]:,.1f} at the file\'s {r["cpu_threads"]} '
              f'({at["steps_per_s"] / r["ours_steps_per_s"]:.2f}x)'
              for r, at in pools]
    lines.append(f'\nfloat32 matmul rate (2048 x 2048): '
                 f'{matmul_rate / 1e9:.1f} GFLOP/s')
    return '\n'.join(lines)


def _default_steps(gin_file: str) -> int:
    return 2000 if os.path.basename(gin_file) == 'codelab.gin' else 200


def _command(args: list[str]) -> int:
    if FLAGS.worker:
        if FLAGS.worker not in WORKERS or len(FLAGS.gin_files) != 1:
            raise ConfigError(f'--worker takes one of {", ".join(WORKERS)} '
                              'and one --gin_files entry')
        gin_file, steps = FLAGS.gin_files[0], FLAGS.steps or 2
        if FLAGS.worker == 'flops':
            print(json.dumps({'flops': step_flops(gin_file)}))
        else:
            print(json.dumps({'steps_per_second': trax_steps_per_second(
                gin_file, steps, FLAGS.worker == 'trax')}))
        return 0
    common.check_inputs(FLAGS.json, FLAGS.gin_files)
    pools = _pool_sizes(FLAGS.cpu_threads)
    matmul_rate = matmul_flops_per_second()
    print(f'float32 matmul: {matmul_rate / 1e9:.1f} GFLOP/s', flush=True)
    rows = [bench_one(gin_file, FLAGS.steps or _default_steps(gin_file),
                      FLAGS.repeats, matmul_rate, pools)
            for gin_file in FLAGS.gin_files]
    print(f'\nTraining steps/s (median of {FLAGS.repeats}) on '
          f'{common.machine()}:')
    print(format_table(rows, matmul_rate))
    common.save_json(FLAGS.json, {'matmul_flops_per_s': matmul_rate,
                                    'repeats': FLAGS.repeats, 'rows': rows})
    return 0


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
