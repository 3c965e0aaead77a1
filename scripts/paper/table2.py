r"""The Reformer paper's duplication experiment (its Table 2), end to end.

    python -m scripts.paper.table2
    python -m scripts.paper.table2 --parallel=1 --eval_batches=16

Kitaev et al. (2020), section 5, train 1-layer models on "0 w 0 w" with full
attention and with LSH attention of 4, 2 and 1 hashes, and evaluate each
with full attention and with LSH of 8, 4, 2 and 1 hashes. This command

1. trains the sweep's models (scripts.sweep, --parallel at a time; finished
   trials are skipped, unfinished ones resume from their checkpoints);
2. evaluates each trained model under the five settings (experiments.evaluate,
   teacher-forced, on --eval_batches batches of --eval_batch_size held-out
   sequences; LSH's random rotations are seeded by the experiment's seed);
   each result is saved under <trial>/evaluations/ and reused when rerun;
3. writes table2.md, table2.csv and table2.png into the sweep directory:
   accuracy on the second copy of w (the paper's measure) and sequence
   accuracy (the whole copy right), beside the paper's Table 2.

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
# Evaluated-with column -> the bindings that evaluate under it.
COLUMNS = {
    'full': ("models.ReformerLM.attention = 'full'",),
    **{f'LSH-{n}': ("models.ReformerLM.attention = 'lsh'",
                    f'models.ReformerLM.n_hashes = {n}')
       for n in (8, 4, 2, 1)},
}
METRICS = ('accuracy', 'sequence_accuracy')
# Kitaev, Kaiser and Levskaya, "Reformer: The Efficient Transformer" (ICLR
# 2020), Table 2: accuracy on the second half, trained with (rows) and
# evaluated with (columns, in COLUMNS order).
PAPER = {
    FULL: (1.000, 0.948, 0.925, 0.769, 0.525),
    'LSH-4': (0.008, 1.000, 0.999, 0.994, 0.919),
    'LSH-2': (0.008, 1.000, 0.999, 0.981, 0.868),
    'LSH-1': (0.008, 0.999, 0.996, 0.948, 0.779),
}
OUTPUTS = ('table2.md', 'table2.csv', 'table2.png')


@dataclasses.dataclass(frozen=True)
class Row:
    """A trained-with row: its label, sweep trial and built experiment."""

    label: str
    trial: str
    experiment: Any  # experiments.training.Experiment


def row_label(model) -> str:
    """'full attention' or 'LSH-<n_hashes>' for a ReformerLM."""
    if getattr(model, 'attention', None) == 'full':
        return FULL
    return f'LSH-{model.n_hashes}'


def plan_rows(sweep_file: str) -> list[Row]:
    """One row per trial of the sweep; raises ConfigError unless every trial
    builds a ReformerLM (whose attention can be switched) with its own
    label."""
    loaded = spec.load(sweep_file)
    rows = []
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
        rows.append(Row(row_label(experiment.model), trial.name, experiment))
    labels = [r.label for r in rows]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError(f'{sweep_file}: two trials train {twice[0]}; each '
                          'row of the table needs its own setting')
    return rows


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


def evaluate_all(rows: list[Row], root: str, n_batches: int,
                 batch_size: int) -> dict[str, dict[str, dict[str, float]]]:
    """{row label: {column: metrics}}, printing a line per evaluation."""
    results = {}
    n_cells = len(rows) * len(COLUMNS)
    done = 0
    for row in rows:
        task = row.experiment.task.name
        eval_size = (f'tasks.{task}.batch_size = {batch_size}',)
        results[row.label] = {}
        for column, bindings in COLUMNS.items():
            start = time.time()
            metrics, reused = evaluate_cell(
                os.path.join(root, row.trial), bindings + eval_size,
                n_batches, n_batches * batch_size)
            results[row.label][column] = metrics
            done += 1
            when = ('saved earlier' if reused
                    else f'{time.time() - start:.0f} s')
            print(f'[{done:>2}/{n_cells}] trained with {row.label}, evaluated '
                  f'with {column}: accuracy {metrics["accuracy"]:.4f} '
                  f'sequence_accuracy {metrics["sequence_accuracy"]:.4f} '
                  f'({when})', flush=True)
    return results


def _percent(value: float | None) -> str:
    return '' if value is None else f'{100 * value:.1f}%'


def markdown_table(values: dict[str, list[float | None]]) -> list[str]:
    lines = ['| trained with \\ evaluated with | ' + ' | '.join(COLUMNS)
             + ' |', '|---' * (len(COLUMNS) + 1) + '|']
    for label, row in values.items():
        lines.append(f'| {label} | ' + ' | '.join(map(_percent, row)) + ' |')
    return lines


def tables(results: dict) -> dict[tuple[str, str], dict[str, list]]:
    """{(source, metric): {row label: values in COLUMNS order}}: what was
    measured, and the paper's accuracies for the rows it has."""
    out = {('measured', metric): {
        label: [cells[c].get(metric) for c in COLUMNS]
        for label, cells in results.items()} for metric in METRICS}
    out[('paper', 'accuracy')] = {label: list(PAPER[label])
                                  for label in results if label in PAPER}
    return out


# The tables table2.md shows (and docs/reformer_table2.md, made from the
# CSV by scripts.benchmarks.tables), in order.
SECTIONS = [('measured', 'accuracy', 'Measured: accuracy on the second copy '
             'of w (per token, teacher-forced)'),
            ('paper', 'accuracy', 'Paper (Kitaev et al. 2020, Table 2): '
             'accuracy on the second half'),
            ('measured', 'sequence_accuracy', 'Measured: sequence accuracy '
             '(every token of the second copy right)')]


def write_markdown(path: str, found: dict, about: str) -> None:
    lines = ['# Reformer Table 2 (duplication task) at CPU scale', '', about]
    for source, metric, title in SECTIONS:
        lines += ['', f'## {title}', ''] + markdown_table(
            found[(source, metric)])
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def write_csv(path: str, found: dict) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['source', 'metric', 'trained_with', *COLUMNS])
        for (source, metric), values in found.items():
            for label, row in values.items():
                writer.writerow([source, metric, label, *[
                    '' if v is None else f'{v:.4f}' for v in row]])


def read_csv(path: str) -> dict[tuple[str, str], dict[str, list]]:
    """What write_csv wrote, as tables() returns it."""
    found: dict[tuple[str, str], dict[str, list]] = {}
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            found.setdefault((row['source'], row['metric']), {})[
                row['trained_with']] = [float(row[c]) if row[c] else None
                                        for c in COLUMNS]
    return found


def write_heatmaps(path: str, found: dict, title: str) -> None:
    """Measured accuracy, the paper's, and measured sequence accuracy, side
    by side, each cell annotated."""
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    from matplotlib import pyplot as plt

    panels = [(('measured', 'accuracy'), 'measured accuracy'),
              (('paper', 'accuracy'), 'paper accuracy (Table 2)'),
              (('measured', 'sequence_accuracy'),
               'measured sequence accuracy')]
    figure, axes = plt.subplots(1, len(panels), figsize=(16, 4.2),
                                layout='constrained')
    for ax, (key, name) in zip(axes, panels):
        values = found[key]
        labels = list(values)
        grid = [[float('nan') if v is None else v for v in values[label]]
                for label in labels]
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap='viridis')
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                ax.text(j, i, _percent(None if value != value else value),
                        ha='center', va='center', fontsize=9,
                        color='black' if value > 0.6 else 'white')
        ax.set_xticks(range(len(COLUMNS)), list(COLUMNS))
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
    model, task = exp.model, exp.task
    lsh = (f'LSH chunk_len {model.chunk_len}, n_buckets '
           f'{model.n_buckets or "auto"}, n_chunks_before '
           f'{model.n_chunks_before}')
    return (f'ReformerLM, {model.n_layers} layer(s), d_model {model.d_model}, '
            f'd_ff {model.d_ff}, {model.n_heads} heads, {lsh}; task '
            f'{task.name}, length {task.length} (w of {task.length // 2 - 1} '
            f'symbols from 1..{task.vocab_size - 1}), trained {exp.n_steps} '
            f'steps at batch {task.batch_size}; each cell over {n_examples} '
            'held-out sequences. Rows: trained with; columns: evaluated with.')


def _command(args: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)
    compile_cache.enable()  # the 20 evaluations compile what reruns reuse
    started = time.time()
    gin_file = _GIN_FILE.value
    root = _OUTPUT_DIR.value or os.path.join(
        'runs', 'sweeps', spec.sweep_name(gin_file))
    rows = plan_rows(gin_file)
    print(f'Table 2: {len(rows)} model(s) ({", ".join(r.label for r in rows)})'
          f' x {len(COLUMNS)} evaluation settings, in {root}', flush=True)
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
