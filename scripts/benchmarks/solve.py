r"""Time to solve: steps and wall time until each shipped experiment first
reaches 0.99 eval accuracy.

    python -m scripts.benchmarks.solve                        # every experiment
    python -m scripts.benchmarks.solve --gin_files=codelab.gin --eval_every=50

Runs `python -m experiments.main` on each file as shipped, except that it
evaluates every --eval_every steps (finer than the files' own cadence, so the
step is known closely), in a fresh output directory and with the compilation
cache off (a first run, as a new user sees it). It stops a run once an eval
reaches --target. Wall time counts from the command's start, so it includes
importing trax and compiling. Prints a table and saves it as JSON (--json).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from absl import flags

from experiments import cli, compile_cache
from scripts.benchmarks import common

EXPERIMENTS = ['codelab.gin', 'transformer_copy.gin',
               'transformer_reversal.gin', 'reformer_copy.gin',
               'reformer_reversal.gin']

FLAGS = flags.FlagValues()
flags.DEFINE_list('gin_files', EXPERIMENTS, 'Experiments to time.',
                  flag_values=FLAGS)
flags.DEFINE_integer('eval_every', 50, 'Eval cadence while timing.',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_float('target', 0.99, 'Eval accuracy that counts as solved.',
                   flag_values=FLAGS)
flags.DEFINE_string('json', 'bench_solve.json', 'Where to save the results.',
                    flag_values=FLAGS)


def time_to_solve(gin_file: str, eval_every: int, target: float) -> dict:
    """Runs the experiment until an eval reaches `target` (or the run ends);
    returns the step and wall time of that eval."""
    from experiments.summaries import read_scalars
    with tempfile.TemporaryDirectory() as out:
        start = time.time()
        process = subprocess.Popen(
            [sys.executable, '-m', 'experiments.main',
             f'--gin_file={gin_file}', f'--output_dir={out}',
             f'--gin_param=experiments.Experiment.eval_every={eval_every}',
             '--gin_param=experiments.Experiment.decode_eval_every=0'],
            env={**os.environ, compile_cache.ENV: ''},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        solved = None
        while solved is None:
            finished = process.poll() is not None
            evals = os.path.join(out, 'eval')
            points = (read_scalars(evals, wall_time=True).get(
                'metrics/accuracy', []) if os.path.isdir(evals) else [])
            solved = next((p for p in points if p[1] >= target), None)
            if finished:
                break
            time.sleep(1)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # stops like Ctrl-C
        _, stderr = process.communicate()
        if solved is None and process.returncode:
            raise RuntimeError(f'experiments.main on {gin_file} failed (exit '
                               f'{process.returncode}):\n{stderr[-3000:]}')
    if solved is None:
        return {'gin_file': gin_file, 'solved': False,
                'final_accuracy': points[-1][1] if points else None}
    step, accuracy, wall_time = solved
    return {'gin_file': gin_file, 'solved': True, 'step': step,
            'accuracy': accuracy, 'seconds': wall_time - start}


def format_table(rows: Sequence[dict], target: float) -> str:
    lines = [f'| experiment | steps to {target} eval accuracy | wall time '
             '(command start, s) |', '|---|---|---|']
    for r in rows:
        lines.append(f'| {r["gin_file"]} | {r["step"]} | {r["seconds"]:.0f} |'
                     if r['solved'] else
                     f'| {r["gin_file"]} | not reached (final accuracy '
                     f'{r["final_accuracy"]}) | - |')
    return '\n'.join(lines)


def _command(args: list[str]) -> int:
    common.check_inputs(FLAGS.json, FLAGS.gin_files)
    rows = []
    for gin_file in FLAGS.gin_files:
        print(f'  {gin_file} ...', flush=True)
        rows.append(time_to_solve(gin_file, FLAGS.eval_every, FLAGS.target))
    print(f'\nTime to {FLAGS.target} eval accuracy on {common.machine()}:')
    print(format_table(rows, FLAGS.target))
    common.save_json(FLAGS.json, {'eval_every': FLAGS.eval_every,
                                    'target': FLAGS.target, 'rows': rows})
    return 0


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
