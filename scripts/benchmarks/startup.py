r"""Start-up time: from the command to the first training step, with and
without JAX's persistent compilation cache.

    python -m scripts.benchmarks.startup                      # reformer_copy.gin
    python -m scripts.benchmarks.startup --gin_file=codelab.gin --json=startup.json

Times, each in a fresh process and a fresh output directory:
- `import trax` alone, and through models.trax_bridge as every
  command imports it (the floor);
- `experiments.main` running one step (one eval batch, one checkpoint), first
  with an empty cache, then again with the cache it filled, then with the
  cache off;
- a two-trial sweep of the same experiment (seeds 0 and 1, one step each,
  one trial at a time) with an empty cache: each trial's wall time from its
  trial.json, so the second trial shows what the first left in the cache.
Prints a table and saves it as JSON (--json).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
from typing import Sequence

from absl import flags

from experiments import cli, compile_cache
from scripts.benchmarks import common

FLAGS = flags.FlagValues()
flags.DEFINE_string('gin_file', 'reformer_copy.gin', 'Experiment to start.',
                    flag_values=FLAGS)
flags.DEFINE_string('json', 'bench_startup.json', 'Where to save the results.',
                    flag_values=FLAGS)
flags.DEFINE_bool('sweep', True, 'Also time a two-trial sweep.',
                  flag_values=FLAGS)

ONE_STEP = ['experiments.Experiment.n_steps = 1',
            'experiments.Experiment.n_eval_batches = 1',
            'experiments.Experiment.decode_eval_every = 0']


def _timed(args: list[str], cache_dir: str) -> float:
    """Wall seconds of `python args` with the compilation cache in
    cache_dir ('' = off)."""
    start = time.perf_counter()
    common.run_python(args, env={**os.environ, compile_cache.ENV: cache_dir})
    return time.perf_counter() - start


def _one_step_run(gin_file: str, output_dir: str, cache_dir: str) -> float:
    return _timed(['-m', 'experiments.main', f'--gin_file={gin_file}',
                   f'--output_dir={output_dir}']
                  + [f'--gin_param={p}' for p in ONE_STEP], cache_dir)


def _sweep_trial_seconds(gin_file: str, work: str, cache_dir: str) -> list:
    sweep_file = os.path.join(work, 'startup_sweep.gin')
    with open(sweep_file, 'w') as f:
        f.write('import scripts.sweeps\n'
                f'scripts.Sweep.base = {gin_file!r}\n'
                f'scripts.Sweep.bindings = {ONE_STEP!r}\n'
                "scripts.Sweep.axes = {'experiments.Experiment.seed': [0, 1]}\n")
    sweep_dir = os.path.join(work, 'sweep')
    _timed(['-m', 'scripts.sweep', f'--gin_file={sweep_file}',
            f'--output_dir={sweep_dir}', '--parallel=1'], cache_dir)
    seconds = []
    for seed in (0, 1):
        with open(os.path.join(sweep_dir, f'seed={seed}', 'trial.json')) as f:
            seconds.append(json.load(f)['wall_time_s'])
    return seconds


def measure(gin_file: str, sweep: bool) -> dict:
    with tempfile.TemporaryDirectory() as work:
        cache = os.path.join(work, 'cache')
        path = lambda name: os.path.join(work, name)
        print('timing import trax, alone and through the bridge', flush=True)
        # trax alone imports gym, which the lean install leaves out (the
        # bridge stands in for it): None where it cannot be timed.
        alone = importlib.util.find_spec('gym') is not None
        result = {'import_trax_s': _timed(['-c', 'import trax'], '')
                  if alone else None,
                  'import_bridged_trax_s': _timed(
                      ['-c', 'import models.trax_bridge'], '')}
        print('timing a one-step run: empty cache, warm cache, no cache',
              flush=True)
        result['first_run_s'] = _one_step_run(gin_file, path('a'), cache)
        result['second_run_s'] = _one_step_run(gin_file, path('b'), cache)
        result['no_cache_run_s'] = _one_step_run(gin_file, path('c'), '')
        if sweep:
            print('timing a two-trial sweep with an empty cache', flush=True)
            first, second = _sweep_trial_seconds(
                gin_file, work, os.path.join(work, 'sweep_cache'))
            result.update(sweep_first_trial_s=first,
                          sweep_second_trial_s=second,
                          sweep_second_trial_speedup=first / second)
    result['second_run_speedup'] = (result['first_run_s']
                                    / result['second_run_s'])
    return result


def format_table(gin_file: str, r: dict) -> str:
    return '\n'.join([
        f'| {gin_file}, command to first step | seconds |', '|---|---|',
        '| `import trax` alone | ' + (
            'n/a (needs gym, not installed) |' if r['import_trax_s'] is None
            else f'{r["import_trax_s"]:.1f} |'),
        f'| `import trax` through models.trax_bridge (as every command '
        f'does) | {r["import_bridged_trax_s"]:.1f} |',
        f'| first run (empty compilation cache) | {r["first_run_s"]:.1f} |',
        f'| second run (warm cache) | {r["second_run_s"]:.1f} '
        f'({r["second_run_speedup"]:.1f}x sooner) |',
        f'| a run with the cache off | {r["no_cache_run_s"]:.1f} |']
        + ([f'| sweep, first trial (empty cache) | '
            f'{r["sweep_first_trial_s"]:.1f} |',
            f'| sweep, second trial | {r["sweep_second_trial_s"]:.1f} '
            f'({r["sweep_second_trial_speedup"]:.1f}x sooner) |']
           if 'sweep_first_trial_s' in r else []))


def _command(args: list[str]) -> int:
    common.check_inputs(FLAGS.json, [FLAGS.gin_file])
    result = measure(FLAGS.gin_file, FLAGS.sweep)
    print(f'\nStart-up (one-step runs, whole command) on '
          f'{common.machine()}:')
    print(format_table(FLAGS.gin_file, result))
    common.save_json(FLAGS.json, {'gin_file': FLAGS.gin_file, **result})
    return 0


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
