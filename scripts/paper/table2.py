r"""The Reformer paper's duplication experiment (its Table 2), end to end.

    python -m scripts.paper.table2
    python -m scripts.paper.table2 --parallel=1 --eval_batches=16

Kitaev et al. (2020), section 5, train 1-layer models on "0 w 0 w" with full
attention and with LSH attention of 4, 2 and 1 hashes, and evaluate each
with full attention and with LSH of 8, 4, 2 and 1 hashes. This command

1. trains the sweep's models (scripts.sweep, --parallel at a time; finished
   trials are skipped, unfinished ones resume from their checkpoints);
2. evaluates each trained model under the six settings of COLUMNS: the
   paper's five and full attention with each query's own key visible
   (experiments.evaluate, teacher-forced, on --eval_batches batches of
   --eval_batch_size held-out sequences; LSH's random rotations are seeded
   by the experiment's seed); each result is saved under
   <trial>/evaluations/ and reused when rerun;
3. writes table2.md, table2.csv and table2.png into the sweep directory:
   accuracy on the second copy of w (the paper's measure) and sequence
   accuracy (the whole copy right), the mean over the sweep's seeds and
   their range, beside the paper's Table 2.

A row is a training setting (row_label); the trials of one row differ only
in their seed.

Exit status: 0 done, 1 a model failed to train, 2 bad input (nothing run),
130 interrupted (rerun to resume).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
import time
from typing import Any

from absl import flags
from absl import logging
import gin

from experiments import checkpoints, compile_cache, config, evaluate, restore
from experiments.errors import ConfigError
from models.language_models import ReformerLM
from experiments import cli
from scripts import sweep
from scripts.sweeps import spec

FLAGS = flags.FlagValues()
_GIN_FILE = flags.DEFINE_string(
    'gin_file', 'sweeps/reformer_table2.gin', 'Sweep file of the models '
    'to train (one ReformerLM per trial).', flag_values=FLAGS)
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Sweep directory (default: runs/sweeps/<sweep name>).',
    flag_values=FLAGS)
_PARALLEL = flags.DEFINE_integer(
    'parallel', 2, 'Models training at once.', lower_bound=1,
    flag_values=FLAGS)
_EVAL_BATCHES = flags.DEFINE_integer(
    'eval_batches', 8, 'Held-out batches per evaluation.', lower_bound=1,
    flag_values=FLAGS)
_EVAL_BATCH_SIZE = flags.DEFINE_integer(
    'eval_batch_size', 64, 'Sequences per evaluation batch; each sequence '
    'of a batch hashes with its own random rotations.', lower_bound=1,
    flag_values=FLAGS)

FULL = 'full attention'
# trax's shared-QK attention (LSH and full) hides each query's own key;
# models.ReformerLM.mask_self = False shows it (full attention only here).
VISIBLE = 'full attention, own key visible'
_HIDDEN = 'models.ReformerLM.mask_self = True'
# Evaluated-with column -> the bindings that evaluate under it.
COLUMNS = {
    'full': ("models.ReformerLM.attention = 'full'", _HIDDEN),
    **{f'LSH-{n}': ("models.ReformerLM.attention = 'lsh'",
                    f'models.ReformerLM.n_hashes = {n}', _HIDDEN)
       for n in (8, 4, 2, 1)},
    'full, own key visible': ("models.ReformerLM.attention = 'full'",
                              'models.ReformerLM.mask_self = False'),
}
METRICS = ('accuracy', 'sequence_accuracy')
# Kitaev, Kaiser and Levskaya, "Reformer: The Efficient Transformer" (ICLR
# 2020), Table 2: accuracy on the second half, trained with (rows) and
# evaluated with (columns, in COLUMNS order; the paper has no last column).
PAPER = {
    FULL: (1.000, 0.948, 0.925, 0.769, 0.525, None),
    'LSH-4': (0.008, 1.000, 0.999, 0.994, 0.919, None),
    'LSH-2': (0.008, 1.000, 0.999, 0.981, 0.868, None),
    'LSH-1': (0.008, 0.999, 0.996, 0.948, 0.779, None),
}
# A measured cell's statistics over its row's seeds (the CSV's `statistic`
# column also holds each seed's value, as 'seed=<n>'; the paper's, 'value').
STATISTICS = {'mean': lambda v: sum(v) / len(v), 'min': min, 'max': max}
DIGITS = 4  # decimals of a measured value, in the CSV and every table
OUTPUTS = ('table2.md', 'table2.csv', 'table2.png')


@dataclasses.dataclass(frozen=True)
class Row:
    """A trained model: its row's label, seed, sweep trial and built
    experiment."""

    label: str
    seed: int
    trial: str
    experiment: Any  # experiments.training.Experiment


def row_label(model) -> str:
    """'full attention', 'full attention, own key visible' or
    'LSH-<n_hashes>' for a ReformerLM."""
    if getattr(model, 'attention', None) == 'full':
        return FULL if model.mask_self else VISIBLE
    return f'LSH-{model.n_hashes}'


def _row_order(label: str) -> tuple:
    """The paper's order (full attention, then LSH by hashes, most first),
    then the ablation."""
    if label.startswith('LSH-'):
        return (1, -int(label[4:]))
    return (0 if label == FULL else 2, 0)


def plan_rows(sweep_file: str) -> list[Row]:
    """One Row per trial of the sweep, in table order; raises ConfigError
    unless every trial builds a ReformerLM (whose attention can be switched)
    and the trials of each row differ only in their seed."""
    loaded = spec.load(sweep_file)
    rows, settings = [], {}
    for trial in spec.expand(loaded):
        gin.clear_config()
        try:
            config.parse(loaded.base, trial.bindings)
            experiment = config.build_experiment()
        except ConfigError as e:
            raise ConfigError(f'trial {trial.name}: {e}') from e
        finally:
            gin.clear_config()
        if not isinstance(experiment.model, ReformerLM):
            raise ConfigError(
                f'trial {trial.name} trains {experiment.model.name}; the '
                'table needs ReformerLM models, whose attention can be '
                'switched between full and LSH')
        row = Row(row_label(experiment.model), experiment.seed, trial.name,
                  experiment)
        rest = {k: v for k, v in trial.values.items() if k != 'seed'}
        first, first_rest = settings.setdefault(row.label, (trial.name, rest))
        if first_rest != rest:
            raise ConfigError(f'{sweep_file}: trials {first} and {trial.name} '
                              f'both train {row.label}; the trials of a row '
                              'may differ only in their seed')
        rows.append(row)
    return sorted(rows, key=lambda r: (_row_order(r.label), r.seed))


def _saved_metrics(path: str, n_examples: int) -> dict | None:
    """The metrics saved at `path` if they cover `n_examples` sequences."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return saved['metrics'] if saved.get('n_examples') == n_examples else None


def evaluate_cell(run_dir: str, bindings: tuple[str, ...], n_batches: int,
                  n_examples: int) -> tuple[dict[str, float], bool]:
    """(metrics, whether they were saved by an earlier run) of the run's
    latest checkpoint under `bindings`."""
    steps = checkpoints.list_steps(run_dir)
    if steps:
        path = evaluate.results_path(run_dir, steps[-1], bindings)
        saved = _saved_metrics(path, n_examples)
        if saved is not None:
            return saved, True
    restored = restore.restore(run_dir, bindings)
    metrics = evaluate.evaluate(restored, n_batches, decode=False)
    evaluate.save(restored, metrics, n_examples)
    return metrics, False


Results = dict[str, dict[str, dict[int, dict[str, float]]]]


def evaluate_all(rows: list[Row], root: str, n_batches: int,
                 batch_size: int) -> Results:
    """{row label: {column: {seed: metrics}}}, printing a line per
    evaluation."""
    results: Results = {}
    n_cells = len(rows) * len(COLUMNS)
    width = len(str(n_cells))
    done = 0
    for row in rows:
        task = row.experiment.task.name
        eval_size = (f'tasks.{task}.batch_size = {batch_size}',)
        cells = results.setdefault(row.label, {})
        for column, bindings in COLUMNS.items():
            start = time.time()
            metrics, reused = evaluate_cell(
                os.path.join(root, row.trial), bindings + eval_size,
                n_batches, n_batches * batch_size)
            cells.setdefault(column, {})[row.seed] = metrics
            done += 1
            when = ('saved earlier' if reused
                    else f'{time.time() - start:.0f} s')
            print(f'[{done:>{width}}/{n_cells}] trained with {row.label} '
                  f'(seed {row.seed}), evaluated with {column}: accuracy '
                  f'{metrics["accuracy"]:.4f} sequence_accuracy '
                  f'{metrics["sequence_accuracy"]:.4f} ({when})', flush=True)
    return results


Found = dict[tuple[str, str, str], dict[str, list]]


def tables(results: Results) -> Found:
    """{(source, metric, statistic): {row label: values in COLUMNS order}}:
    the measured mean, min, max and each seed's value, and the paper's
    accuracies ('value') for the rows it has. Measured values are rounded
    to the CSV's DIGITS, so that every table made from it (table2.md, the
    heat maps, the docs' copy) shows the same figures."""
    out: Found = {}
    for metric in METRICS:
        for label, cells in results.items():
            per_seed = [cells[c] for c in COLUMNS]
            seeds = sorted(per_seed[0])
            values = [[by_seed[s][metric] for s in seeds]
                      for by_seed in per_seed]
            for name, reduce in STATISTICS.items():
                out.setdefault(('measured', metric, name), {})[label] = [
                    round(reduce(v), DIGITS) for v in values]
            for i, seed in enumerate(seeds):
                out.setdefault(('measured', metric, f'seed={seed}'), {})[
                    label] = [round(v[i], DIGITS) for v in values]
    out[('paper', 'accuracy', 'value')] = {
        label: list(PAPER[label]) for label in results if label in PAPER}
    return out


def n_seeds(found: Found) -> int:
    """How many seeds the measured cells average over."""
    return sum(1 for source, metric, statistic in found
               if (source, metric) == ('measured', 'accuracy')
               and statistic.startswith('seed='))


def _percent(value: float | None) -> str:
    return '' if value is None else f'{100 * value:.1f}%'


def cell_texts(found: Found, source: str, metric: str) -> dict[str, list]:
    """{row label: cell texts}: the paper's value, or the measured mean and,
    over more than one seed, its range ('99.1% (98.0-100.0)')."""
    if source == 'paper':
        return {label: [_percent(v) for v in row] for label, row in
                found[(source, metric, 'value')].items()}
    means = found[(source, metric, 'mean')]
    lows, highs = (found[(source, metric, s)] for s in ('min', 'max'))
    ranged = n_seeds(found) > 1
    return {label: [
        _percent(m) + (f' ({100 * lo:.1f}-{100 * hi:.1f})' if ranged else '')
        for m, lo, hi in zip(row, lows[label], highs[label])]
        for label, row in means.items()}


def markdown_table(cells: dict[str, list[str]]) -> list[str]:
    lines = ['| trained with \\ evaluated with | ' + ' | '.join(COLUMNS)
             + ' |', '|---' * (len(COLUMNS) + 1) + '|']
    for label, row in cells.items():
        lines.append(f'| {label} | ' + ' | '.join(row) + ' |')
    return lines


# The tables table2.md shows (and docs/reformer_table2.md, made from the
# CSV by scripts.benchmarks.tables), in order.
SECTIONS = [('measured', 'accuracy', 'Measured: accuracy on the second copy '
             'of w (per token, teacher-forced)'),
            ('paper', 'accuracy', 'Paper (Kitaev et al. 2020, Table 2): '
             'accuracy on the second half'),
            ('measured', 'sequence_accuracy', 'Measured: sequence accuracy '
             '(every token of the second copy right)')]


def section_title(found: Found, source: str, title: str) -> str:
    """`title`, saying over how many seeds a measured table averages."""
    n = n_seeds(found)
    if source == 'paper' or n == 1:
        return title
    return f'{title}, mean of {n} seeds (min-max)'


def write_markdown(path: str, found: Found, about: str) -> None:
    lines = ['# Reformer Table 2 (duplication task) at CPU scale', '', about]
    for source, metric, title in SECTIONS:
        lines += ['', f'## {section_title(found, source, title)}', ''
                  ] + markdown_table(cell_texts(found, source, metric))
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


CSV_FIELDS = ('source', 'metric', 'statistic', 'trained_with')


def write_csv(path: str, found: Found) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow([*CSV_FIELDS, *COLUMNS])
        for key, values in found.items():
            for label, row in values.items():
                writer.writerow([*key, label, *[
                    '' if v is None else f'{v:.{DIGITS}f}' for v in row]])


def read_csv(path: str) -> Found:
    """What write_csv wrote, as tables() returns it."""
    found: Found = {}
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            key = (row['source'], row['metric'], row['statistic'])
            found.setdefault(key, {})[row['trained_with']] = [
                float(row[c]) if row[c] else None for c in COLUMNS]
    return found


def write_heatmaps(path: str, found: Found, title: str) -> None:
    """Measured accuracy, the paper's, and measured sequence accuracy, side
    by side, each cell annotated as the tables show it."""
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    from matplotlib import pyplot as plt

    panels = [(('measured', 'accuracy'), 'measured accuracy'),
              (('paper', 'accuracy'), 'paper accuracy (Table 2)'),
              (('measured', 'sequence_accuracy'),
               'measured sequence accuracy')]
    figure, axes = plt.subplots(1, len(panels), figsize=(21, 5),
                                layout='constrained')
    for ax, ((source, metric), name) in zip(axes, panels):
        values = found[(source, metric,
                        'value' if source == 'paper' else 'mean')]
        texts = cell_texts(found, source, metric)
        labels = list(values)
        grid = [[float('nan') if v is None else v for v in values[label]]
                for label in labels]
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap='viridis')
        for i, label in enumerate(labels):
            for j, value in enumerate(grid[i]):
                ax.text(j, i, texts[label][j].replace(' ', '\n'),
                        ha='center', va='center', fontsize=7,
                        color='black' if value > 0.6 else 'white')
        ax.set_xticks(range(len(COLUMNS)),
                      [c.replace(', ', ',\n') for c in COLUMNS])
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel('evaluated with')
        ax.set_title(name)
    axes[0].set_ylabel('trained with')
    figure.colorbar(image, ax=list(axes), shrink=0.8)
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _about(rows: list[Row], n_examples: int) -> str:
    exp = rows[0].experiment
    seeds = sorted({r.seed for r in rows})
    model, task = exp.model, exp.task
    lsh = (f'LSH chunk_len {model.chunk_len}, n_buckets '
           f'{model.n_buckets or "auto"}, n_chunks_before '
           f'{model.n_chunks_before}')
    return (f'ReformerLM, {model.n_layers} layer(s), d_model {model.d_model}, '
            f'd_ff {model.d_ff}, {model.n_heads} heads, {lsh}; task '
            f'{task.name}, length {task.length} (w of {task.length // 2 - 1} '
            f'symbols from 1..{task.vocab_size - 1}), trained {exp.n_steps} '
            f'steps at batch {task.batch_size}, seeds '
            f'{", ".join(map(str, seeds))}; each cell over {n_examples} '
            'held-out sequences per seed. Rows: trained with; columns: '
            'evaluated with ("full": trax\'s shared-QK full attention, each '
            'query\'s own key hidden as LSH hides it).')


def _command(args: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)
    compile_cache.enable()  # the 20 evaluations compile what reruns reuse
    started = time.time()
    gin_file = _GIN_FILE.value
    root = _OUTPUT_DIR.value or os.path.join(
        'runs', 'sweeps', spec.sweep_name(gin_file))
    rows = plan_rows(gin_file)
    labels = list(dict.fromkeys(r.label for r in rows))
    print(f'Table 2: {len(rows)} model(s) ({len(labels)} row(s): '
          f'{", ".join(labels)}) x {len(COLUMNS)} evaluation settings, in '
          f'{root}', flush=True)
    status = sweep.main(['scripts.sweep', f'--gin_file={gin_file}',
                         f'--output_dir={root}',
                         f'--parallel={_PARALLEL.value}'])
    if status == 1:
        print('error: a model did not finish training (see its trial.log '
              'and trial.json); rerun to retry it', file=sys.stderr)
    if status:
        return status
    n_examples = _EVAL_BATCHES.value * _EVAL_BATCH_SIZE.value
    results = evaluate_all(rows, root, _EVAL_BATCHES.value,
                           _EVAL_BATCH_SIZE.value)
    found = tables(results)
    paths = [os.path.join(root, name) for name in OUTPUTS]
    write_markdown(paths[0], found, _about(rows, n_examples))
    write_csv(paths[1], found)
    write_heatmaps(paths[2], found, f'Reformer Table 2 at CPU scale '
                   f'({spec.sweep_name(gin_file)})')
    with open(paths[0]) as f:
        print(f.read())
    print(f'Wrote {", ".join(paths)} ({(time.time() - started) / 60:.1f} '
          'min in all)')
    return 0


def main(argv: list[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
