r"""The docs' tables of measured figures, made from docs/benchmarks/*.json.

    python -m scripts.benchmarks.tables           # rewrite the tables
    python -m scripts.benchmarks.tables --check   # exit 1 naming a stale page

A page asks for a table by naming the JSON file a benchmark saved:

    <!-- table: train.json -->
    (whatever is here is replaced)
    <!-- end table -->

The table between the markers is the one the benchmark itself prints (its
own format functions), followed by the machine the JSON says it ran on, so
no measured figure in the docs is typed by hand: rerun a benchmark with
--json=docs/benchmarks/<name>.json, then this command.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import sys
from typing import Callable, Sequence

from absl import flags

from experiments import cli
from experiments.errors import ConfigError
from scripts.benchmarks import (decode, length, profile_step, settings, solve,
                                startup, train)
from scripts.paper import table2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BENCHMARKS = os.path.join(ROOT, 'docs', 'benchmarks')

FLAGS = flags.FlagValues()
flags.DEFINE_bool('check', False, 'Write nothing; exit 1 naming each page '
                  'whose tables differ from the JSON files.',
                  flag_values=FLAGS)

START = re.compile(r'<!-- table: (\S+) -->\n')
BLOCK = re.compile(r'(<!-- table: (\S+) -->\n)(.*?)(<!-- end table -->)',
                   re.S)


# ------------------------------------------------------- one table each ----

def _runs(values: Sequence[float]) -> str:
    """A median's single runs, as their range."""
    return f'{min(values):,.1f}-{max(values):,.1f}'


def train_table(data: dict) -> str:
    # Rows saved before --cpu_threads existed lack its list.
    rows = [{'ours_at_cpu_threads': [], **row} for row in data['rows']]
    runs = ['| experiment | ours, single runs | trax Trainer | trax Trainer, '
            'our XLA:CPU settings |', '|---|---|---|---|']
    runs += [f'| {r["gin_file"]} | {_runs(r["ours_runs"])} | '
             f'{_runs(r["trax_runs"])} | {_runs(r["trax_our_xla_runs"])} |'
             for r in rows]
    return (train.format_table(rows, data['matmul_flops_per_s'])
            + f'\n\nSteps/s of the {data["repeats"]} single runs behind '
            'each median:\n\n' + '\n'.join(runs))


def pool_table(data: dict) -> str:
    """Ours at the experiment file's pool size and at the --cpu_threads
    sizes, each a median (and range) of the same number of runs."""
    first = data['rows'][0]
    pools = [at['cpu_threads'] for at in first['ours_at_cpu_threads']]
    lines = ['| experiment | file\'s cpu_threads | ours, file\'s pool '
             + ''.join(f'| ours, cpu_threads = {n} ' for n in pools) + '|',
             '|---|---|---' + '|---' * len(pools) + '|']
    for r in data['rows']:
        cells = [(r['ours_steps_per_s'], r['ours_runs'])] + [
            (at['steps_per_s'], at['runs']) for at in r['ours_at_cpu_threads']]
        lines.append(f'| {r["gin_file"]} | {r["cpu_threads"]} | ' + ' | '.join(
            f'{median:,.1f} ({_runs(runs)})' for median, runs in cells) + ' |')
    return (f'Steps/s, median of {data["repeats"]} runs (their range):\n\n'
            + '\n'.join(lines) + f'\n\nfloat32 matmul rate in the same run: '
            f'{data["matmul_flops_per_s"] / 1e9:.1f} GFLOP/s')


def startup_table(data: dict) -> str:
    return startup.format_table(data['gin_file'], data)


def solve_table(data: dict) -> str:
    return solve.format_table(data['rows'], data['target'])


def length_table(data: dict) -> str:
    names = [field.name for field in dataclasses.fields(length.Settings)]
    settings = length.Settings(**{n: data['settings'][n] for n in names})
    return (length.describe(settings) + ':\n\n'
            + length.format_table(data['rows']) + '\n\n'
            + length.format_longest(data['longest']))


def profile_table(data: dict) -> str:
    return profile_step.summary_table(data['results'],
                                      data['matmul_flops_per_s'])


def decode_table(data: dict) -> str:
    s = data['settings']
    return (f'd_model {s["d_model"]}, d_ff {s["d_ff"]}, {s["n_layers"]} '
            f'layers, {s["n_heads"]} heads, vocabulary {s["vocab_size"]}, LSH '
            f'with {s["n_hashes"]} hashes and chunk {s["chunk_len"]}, max_len '
            f'{s["max_len"]}; generated tokens per second, best of '
            f'{s["repeats"]} calls after a compiling one:\n\n'
            + decode.format_table(data['rows']))


def sweep_table(data: dict) -> str:
    """A sweep's report.json: its span and one row per trial."""
    span = (f'{data["span_s"] / 60:.1f} min from the first trial\'s start to '
            f'the last one\'s end' if data['span_s'] is not None
            else 'span unknown (trials were rerun or did not finish)')
    columns = [('parameters', 'n_parameters', ',d'), ('steps', 'steps', 'd'),
               ('eval accuracy', 'eval_accuracy', '.3f'),
               ('eval sequence accuracy', 'eval_sequence_accuracy', '.3f'),
               ('steps/s', 'steps_per_second', '.1f'),
               ('wall time (min)', 'wall_time_min', '.1f')]
    rows = [{**r, 'wall_time_min': None if r['wall_time_s'] is None
             else r['wall_time_s'] / 60} for r in data['rows']]
    # Reports from before runs recorded their parameter count lack it.
    columns = [c for c in columns if any(r.get(c[1]) is not None
                                         for r in rows)]
    lines = [f'`{data["sweep"]}`, {len(rows)} trials, '
             f'--parallel={data["parallel"]}: {span}.', '',
             '| trial | ' + ' | '.join(c[0] for c in columns) + ' |',
             '|---|' + '---|' * len(columns)]
    for r in rows:
        lines.append(f'| {r["trial"]} | ' + ' | '.join(
            '' if r.get(key) is None else format(r[key], form)
            for _, key, form in columns) + ' |')
    return '\n'.join(lines)


def settings_table(data: dict) -> str:
    return f'{data["about"]}:\n\n{settings.format_table(data["rows"])}'


def leaderboard_table(data: dict) -> str:
    """A sweep's report.json with leaderboards: its span, then each
    leaderboard (rows and columns as the sweep's first two axes)."""
    lines = [sweep_table(data).split('\n\n')[0]]
    for metric, board in data['leaderboards'].items():
        lines += ['', f'{metric}:', '',
                  '| | ' + ' | '.join(map(str, board['columns']))
                  + ' | average | parameters |',
                  '|---|' + '---|' * (len(board['columns']) + 2)]
        for label, cells, mean, count in zip(
                board['rows'], board['cells'], board['average'],
                board['parameters']):
            lines.append(f'| {label} | ' + ' | '.join(
                '' if c is None else f'{c:.2f}' for c in cells + [mean])
                + f' | {count} |')
    return '\n'.join(lines)


def table2_table(found: dict) -> str:
    """scripts.paper.table2's CSV: its tables, as its table2.md shows them."""
    lines = []
    for source, metric, title in table2.SECTIONS:
        lines += [f'{table2.section_title(found, source, title)}:', ''
                  ] + table2.markdown_table(
                      table2.cell_texts(found, source, metric)) + ['']
    return '\n'.join(lines[:-1])


TABLES: dict[str, Callable[[dict], str]] = {
    'reformer_table2.csv': table2_table,
    'reformer_table2_chunk8.csv': table2_table,
    'sweep_attention_zoo.json': leaderboard_table,
    'decode.json': decode_table,
    'settings.json': settings_table,
    'sweep_reformer_lsh.json': sweep_table,
    'sweep_model_sizes.json': sweep_table,
    'train.json': train_table,
    'train_cpu_threads.json': pool_table,
    'startup.json': startup_table,
    'solve.json': solve_table,
    'length.json': length_table,
    'length_long.json': length_table,
    'length_2m.json': length_table,
    'profile_length.json': profile_table,
}


def machine(data: dict) -> str:
    """The machine line of a JSON file: a string, or length's fuller dict."""
    m = data['machine']
    if isinstance(m, str):
        return m
    versions = ', '.join(f'{name} {m[name]}' for name in (
        'python', 'jax', 'trax', 'torch', 'reformer-pytorch') if m.get(name))
    return (f'{m["cpu_count"]} x {m["cpu"]}, {m["ram_gb"]:.0f} GB, '
            f'{versions}; '
            f'load average {m["load_average"][0]:.2f} at the start, '
            f'{m["load_average_end"][0]:.2f} at the end')


def block(name: str) -> str:
    """What goes between the markers of `name`'s table."""
    if name not in TABLES:
        raise ConfigError(f'no table is made from {name}; known: '
                          f'{", ".join(TABLES)}')
    path = os.path.join(BENCHMARKS, name)
    if not os.path.exists(path):
        raise ConfigError(f'no docs/benchmarks/{name}: run its benchmark '
                          f'with --json=docs/benchmarks/{name}')
    if name.endswith('.csv'):  # Table 2's; it names no machine, its page does
        return (f'{TABLES[name](table2.read_csv(path))}\n\n'
                f'(docs/benchmarks/{name})\n')
    with open(path) as f:
        data = json.load(f)
    return (f'{TABLES[name](data)}\n\nMeasured on: {machine(data)} '
            f'(docs/benchmarks/{name}).\n')


# ------------------------------------------------------------- pages -----

def filled(text: str, where: str) -> str:
    """`text` with every marked table made anew."""
    if len(START.findall(text)) != len(BLOCK.findall(text)):
        raise ConfigError(f'{where}: a "<!-- table: ... -->" marker has no '
                          '"<!-- end table -->" after it')
    return BLOCK.sub(lambda m: m[1] + '\n' + block(m[2]) + '\n' + m[4], text)


def pages() -> list[str]:
    return [os.path.join(ROOT, 'README.md')] + sorted(
        glob.glob(os.path.join(ROOT, 'docs', '*.md')))


def _command(args: list[str]) -> int:
    stale = []
    for path in pages():
        with open(path) as f:
            text = f.read()
        new = filled(text, os.path.relpath(path, ROOT))
        if new == text:
            continue
        stale.append(os.path.relpath(path, ROOT))
        if not FLAGS.check:
            with open(path, 'w') as f:
                f.write(new)
            print(f'wrote {stale[-1]}')
    if FLAGS.check and stale:
        for page in stale:
            print(f'{page}: its tables differ from docs/benchmarks/; run '
                  'python -m scripts.benchmarks.tables', file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
