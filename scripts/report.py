r"""Tables and plots of a sweep's results, read from its TensorBoard events.

    python -m scripts.report runs/sweeps/reformer_lsh
    python -m scripts.report runs/sweeps/model_sizes --metric=eval/metrics/loss

Writes into the sweep directory (or --output_dir):
  report.md, report.csv   one row per trial: its swept values, status, last
                          step, parameters, final and best eval metrics,
                          steps/s, wall time, error and where it ran (its
                          manifest)
  report.json             the same rows, the machines and the sweep's span
                          (what scripts.benchmarks.tables makes docs from)
  plots/<metric>_vs_<axis>.png   the metric's final value against each axis
  plots/<metric>_over_steps.png  the metric over training steps, per trial

Steps/s is the median over the logged intervals after the first, which
includes compilation. Wall time is the runner's, summed over attempts.
"""
from __future__ import annotations

import csv
import os
import re
import statistics
import sys
from typing import Any

from absl import flags

from experiments import cli, manifest as run_manifest, run_dir
from experiments.errors import ConfigError
from experiments.summaries import read_scalars
from scripts.sweeps import layout, results
from scripts.sweeps.spec import short_value

FLAGS = flags.FlagValues()
_METRIC = flags.DEFINE_string(
    'metric', 'eval/metrics/accuracy', 'What the plots show: <run>/<tag>, '
    'run train or eval.', flag_values=FLAGS)
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Where to write (default: the sweep directory).',
    flag_values=FLAGS)

RUNS = ('train', 'eval')
EVAL_METRICS = ('loss', 'accuracy', 'sequence_accuracy')


def read_trial(trial_dir: str) -> dict[str, list[tuple[int, float]]]:
    """{'<run>/<tag>': [(step, value), ...]} for the trial's train and eval."""
    scalars = {}
    for run in RUNS:
        logdir = os.path.join(trial_dir, run)
        if os.path.isdir(logdir):
            for tag, points in read_scalars(logdir).items():
                scalars[f'{run}/{tag}'] = points
    return scalars


def _steps_per_second(points: list[tuple[int, float]]) -> float | None:
    values = [v for _, v in points]
    if not values:
        return None
    return statistics.median(values[1:] or values)


def eval_metrics(scalars: dict[str, dict]) -> list[str]:
    """The eval metrics in the table: loss and accuracies always, then what
    the trials logged besides (exact_match, `<metric>@<length>`)."""
    logged = {tag.split('/', 2)[2] for found in scalars.values()
              for tag in found if tag.startswith('eval/metrics/')}
    return list(EVAL_METRICS) + sorted(logged - set(EVAL_METRICS))


def table(manifest: dict, sweep_dir: str,
          scalars: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per trial, in sweep order; missing numbers are None."""
    metrics = eval_metrics(scalars)
    rows = []
    for trial in manifest['trials']:
        name = trial['name']
        status = layout.read_status(os.path.join(sweep_dir, name)) or {}
        found = scalars[name]
        row = {'trial': name, **{k: results.label(v)
                                 for k, v in trial['values'].items()},
               'status': status.get('state', 'not run')}
        evals = found.get('eval/metrics/loss', [])
        row['steps'] = evals[-1][0] if evals else None
        progress = run_dir.read_progress(os.path.join(sweep_dir, name)) or {}
        row['length'] = progress.get('length')
        row['n_parameters'] = progress.get('n_parameters')
        for metric in metrics:
            points = found.get(f'eval/metrics/{metric}', [])
            row[f'eval_{metric}'] = points[-1][1] if points else None
            best = min if metric.split('@')[0] == 'loss' else max
            row[f'best_eval_{metric}'] = (
                best(v for _, v in points) if points else None)
        row['steps_per_second'] = _steps_per_second(
            found.get('train/training/steps_per_second', []))
        row['wall_time_s'] = status.get('wall_time_s')
        row['error'] = status.get('error')
        starts = run_manifest.read(os.path.join(sweep_dir, name))
        row['ran_on'] = run_manifest.describe(starts[-1]) if starts else None
        rows.append(row)
    return rows


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ''
    if isinstance(value, float):
        rate_or_time = column in ('steps_per_second', 'wall_time_s')
        return f'{value:.1f}' if rate_or_time else f'{value:.4f}'
    return str(value)


def _markdown_table(rows: list[dict], columns: list[str]) -> list[str]:
    return (['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
            + ['| ' + ' | '.join(_cell(c, row[c]).replace('|', '\\|')
                                 for c in columns) + ' |' for row in rows])


def write_markdown(rows: list[dict], seeds: list[dict], path: str,
                   title: str) -> str:
    # Where trials ran is a long string, shown once per machine below.
    lines = [f'# Sweep {title}', ''] + _markdown_table(
        rows, [c for c in rows[0] if c != 'ran_on'])
    if seeds:
        lines += ['', '## Over seeds (final values: mean, min, max, number '
                  'of seeds)', ''] + _markdown_table(seeds, list(seeds[0]))
    machines: dict[str, list[str]] = {}
    for row in rows:
        if row.get('ran_on'):
            machines.setdefault(row['ran_on'], []).append(row['trial'])
    if machines:
        lines += ['', 'Ran on (each trial\'s last start):']
        lines += [f'- {machine}: {", ".join(trials)}'
                  for machine, trials in machines.items()]
    text = '\n'.join(lines) + '\n'
    with open(path, 'w') as f:
        f.write(text)
    return text


def timing(sweep_dir: str, manifest: dict) -> dict[str, Any]:
    """The runner's --parallel and the seconds from the first trial's start
    to the last one's end; None where trials were rerun, are unfinished or
    ran elsewhere (the span would count pauses, or is unknown)."""
    statuses = [layout.read_status(os.path.join(sweep_dir, t['name'])) or {}
                for t in manifest['trials']]
    parallel = {s.get('parallel') for s in statuses}
    once = all(s.get('attempts') == 1 and s.get('ended_at')
               for s in statuses)
    return {'parallel': parallel.pop() if len(parallel) == 1 else None,
            'span_s': round(max(s['ended_at'] for s in statuses)
                            - min(s['started_at'] for s in statuses), 1)
            if once else None}


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: '' if v is None else v for k, v in row.items()}
                         for row in rows)


def _slug(metric: str) -> str:
    return metric.replace('/metrics/', '_').replace('/', '_')


def _file_name(text: str) -> str:
    """`text` with anything but letters, digits and `_.=+-` replaced."""
    return re.sub(r'[^A-Za-z0-9_.=+-]', '_', text)


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    # Trial names and values are plain text ('$' is no TeX math).
    matplotlib.rcParams['text.parse_math'] = False
    from matplotlib import pyplot as plt
    return plt


def _draw(axes, series: dict[str, dict[Any, list[float]]]) -> None:
    """One line per group through the mean of each x's values (its seeds),
    with their range as error bars where there are several."""
    for group, by_x in series.items():
        xs = sorted(by_x)
        means = [statistics.fmean(by_x[x]) for x in xs]
        spread = [[m - min(by_x[x]) for x, m in zip(xs, means)],
                  [max(by_x[x]) - m for x, m in zip(xs, means)]]
        several = any(len(by_x[x]) > 1 for x in xs)
        axes.errorbar(xs, means, yerr=spread if several else None,
                      marker='o', capsize=3, label=group or None)
    if any(series):
        axes.legend(fontsize='small')


def plot(manifest: dict, scalars: dict[str, dict], rows: list[dict],
         metric: str, plots_dir: str) -> list[str]:
    """The metric's final value against each axis (the mean and range over
    seeds), against evaluation length where trials evaluated others, and
    over steps; returns the files written."""
    plt = _pyplot()
    os.makedirs(plots_dir, exist_ok=True)
    final = {name: found[metric][-1][1] for name, found in scalars.items()
             if found.get(metric)}
    trials = manifest['trials']
    keys = results.point_keys(manifest)
    title = manifest['sweep'] + (
        f' ({len(manifest["axes"][-1]["values"])} seeds)'
        if results.seed_key(manifest) else '')
    written = []
    for axis in (a for a in manifest['axes'] if a['key'] in keys):
        key = axis['key']
        labels = [short_value(v) for v in axis['values']]
        others = [k for k in keys if k != key]
        series: dict[str, dict[int, list[float]]] = {}
        for trial in trials:
            if trial['name'] not in final:
                continue
            # In a grid, one line per setting of the other axes; in a zip
            # the axes move together, so all trials make one line.
            group = ('' if manifest['mode'] == 'zip' else ','.join(
                f'{k}={short_value(trial["values"][k])}' for k in others))
            x = labels.index(short_value(trial['values'][key]))
            series.setdefault(group, {}).setdefault(x, []).append(
                final[trial['name']])
        figure, axes = plt.subplots(figsize=(6, 4))
        _draw(axes, series)
        axes.set_xticks(range(len(labels)), labels)
        axes.set_xlabel(key)
        axes.set_ylabel(f'final {metric}')
        axes.set_title(f'{title}: {metric} vs {key}')
        written.append(_save(figure, os.path.join(
            plots_dir, _file_name(f'{_slug(metric)}_vs_{key}.png'))))

    by_length = _by_length(rows, metric, keys)
    if by_length:
        figure, axes = plt.subplots(figsize=(6, 4))
        _draw(axes, by_length)
        axes.set_xlabel('evaluation length')
        axes.set_ylabel(f'final {metric}')
        axes.set_title(f'{title}: {metric} vs evaluation length')
        written.append(_save(figure, os.path.join(
            plots_dir, _file_name(f'{_slug(metric)}_vs_length.png'))))

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for trial in trials:
        points = scalars[trial['name']].get(metric)
        if points:
            axes.plot(*zip(*points), marker='.', label=trial['name'])
    axes.set_xlabel('step')
    axes.set_ylabel(metric)
    axes.set_title(f'{title}: {metric} over training')
    axes.legend(fontsize='x-small')
    written.append(_save(figure, os.path.join(
        plots_dir, _file_name(f'{_slug(metric)}_over_steps.png'))))
    return written


def _by_length(rows: list[dict], metric: str, keys: list[str]
               ) -> dict[str, dict[int, list[float]]]:
    """Per point of the sweep, length -> the final eval `metric` there
    (the trial's training length and each of its `@<length>`); empty
    unless some trial evaluated at another length."""
    if not metric.startswith('eval/metrics/'):
        return {}
    name = metric.split('/', 2)[2]
    series: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        found = {int(k.rsplit('@', 1)[1]): v for k, v in row.items()
                 if k.startswith(f'eval_{name}@') and v is not None}
        if row.get('length') and row.get(f'eval_{name}') is not None:
            found[row['length']] = row[f'eval_{name}']
        group = ','.join(f'{k}={row[k]}' for k in keys)
        for length, value in found.items():
            series.setdefault(group, {}).setdefault(length, []).append(value)
    return series if any(len(v) > 1 for v in series.values()) else {}


def leaderboards(manifest: dict, rows: list[dict], output_dir: str
                 ) -> dict[str, dict]:
    """The sweep's leaderboard metrics as tables (leaderboard.md, .csv) and
    heat maps (plots/leaderboard_<metric>.png); returns them by metric."""
    boards = {}
    for metric in manifest.get('leaderboard', []):
        row_labels, column_labels, cells = results.leaderboard(
            manifest, rows, metric)
        boards[metric] = {'rows': row_labels, 'columns': column_labels,
                          'cells': cells,
                          'average': [results.average(c) for c in cells],
                          'parameters': results.parameters(manifest, rows)}
    if not boards:
        return boards
    first, second = results.point_keys(manifest)[:2]
    n_seeds = (len(manifest['axes'][-1]['values'])
               if results.seed_key(manifest) else 1)
    lines = [f'# Leaderboard: sweep {manifest["sweep"]}', '',
             f'Rows: {first}; columns: {second}; each cell the final value, '
             f'mean over {n_seeds} seed(s).']
    with open(os.path.join(output_dir, 'leaderboard.csv'), 'w',
              newline='') as f:
        writer = csv.writer(f)
        for metric, board in boards.items():
            writer.writerow(['metric', first, *board['columns'], 'average'])
            lines += ['', f'## {metric}', '',
                      f'| {first} | ' + ' | '.join(map(str, board['columns']))
                      + ' | average | parameters |',
                      '|---|' + '---|' * (len(board['columns']) + 2)]
            for label, cells, mean, count in zip(
                    board['rows'], board['cells'], board['average'],
                    board['parameters']):
                writer.writerow([metric, label, *(
                    '' if c is None else c for c in cells + [mean])])
                lines.append(f'| {label} | ' + ' | '.join(
                    '' if c is None else f'{c:.3f}' for c in cells + [mean])
                    + f' | {count} |')
            _heat_map(manifest['sweep'], metric, first, second, board,
                      os.path.join(output_dir, 'plots'))
    with open(os.path.join(output_dir, 'leaderboard.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return boards


def _heat_map(sweep: str, metric: str, first: str, second: str,
              board: dict, plots_dir: str) -> str:
    plt = _pyplot()
    os.makedirs(plots_dir, exist_ok=True)
    values = [[float('nan') if c is None else c for c in row]
              for row in board['cells']]
    figure, axes = plt.subplots(figsize=(1.3 * len(board['columns']) + 2,
                                         0.6 * len(board['rows']) + 1.5))
    image = axes.imshow(values, cmap='viridis', vmin=0.0, vmax=1.0,
                        aspect='auto')
    for i, row in enumerate(board['cells']):
        for j, cell in enumerate(row):
            if cell is not None:
                axes.text(j, i, f'{cell:.2f}', ha='center', va='center',
                          color='white' if cell < 0.5 else 'black')
    axes.set_xticks(range(len(board['columns'])),
                    [str(c) for c in board['columns']])
    axes.set_yticks(range(len(board['rows'])), [str(r) for r in board['rows']])
    axes.set_xlabel(second)
    axes.set_ylabel(first)
    axes.set_title(f'{sweep}: {metric}')
    figure.colorbar(image, ax=axes)
    return _save(figure, os.path.join(
        plots_dir, _file_name(f'leaderboard_{metric}.png')))


def _save(figure, path: str) -> str:
    from matplotlib import pyplot as plt
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def report(sweep_dir: str, metric: str, output_dir: str) -> str:
    """Writes the table and plots; returns the Markdown table. Raises
    ConfigError, before writing anything, for a bad directory or metric."""
    manifest = layout.read_manifest(sweep_dir)
    run = metric.split('/', 1)[0]
    if run not in RUNS or '/' not in metric:
        raise ConfigError(f'--metric must be <run>/<tag> with run in {RUNS}, '
                          f'got {metric!r}')
    scalars = {t['name']: read_trial(os.path.join(sweep_dir, t['name']))
               for t in manifest['trials']}
    logged = sorted({tag for found in scalars.values() for tag in found})
    if logged and metric not in logged:
        raise ConfigError(f'no trial logged --metric={metric}; logged: '
                          + ', '.join(logged))
    try:
        os.makedirs(output_dir, exist_ok=True)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise ConfigError(f'cannot write the report to {output_dir!r}: '
                          f'{getattr(e, "strerror", None) or e}') from e
    rows = table(manifest, sweep_dir, scalars)
    seeds = (results.over_seeds(manifest, rows, eval_metrics(scalars))
             if results.seed_key(manifest) else [])
    text = write_markdown(rows, seeds, os.path.join(output_dir, 'report.md'),
                          manifest['sweep'])
    write_csv(rows, os.path.join(output_dir, 'report.csv'))
    if seeds:
        write_csv(seeds, os.path.join(output_dir, 'report_over_seeds.csv'))
    boards = leaderboards(manifest, rows, output_dir)
    machines = sorted({r['ran_on'] for r in rows if r['ran_on']})
    run_dir.write_json(os.path.join(output_dir, 'report.json'), {
        'sweep': manifest['sweep'], 'machine': '; '.join(machines),
        **timing(sweep_dir, manifest), 'rows': rows, 'over_seeds': seeds,
        'leaderboards': boards})
    if logged:
        plot(manifest, scalars, rows, metric,
             os.path.join(output_dir, 'plots'))
    return text


def _command(args: list[str]) -> int:
    if len(args) != 1:
        raise ConfigError('give one sweep directory, e.g. '
                          'python -m scripts.report runs/sweeps/reformer_lsh')
    output_dir = _OUTPUT_DIR.value or args[0]
    print(report(args[0], _METRIC.value, output_dir))
    print(f'Wrote report.md, report.csv, report.json and plots/ in '
          f'{output_dir}')
    return 0


def main(argv: list[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command, takes_arguments=True)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
