"""A sweep's per-trial rows aggregated: over seeds, and into leaderboards.

Pure functions of the rows `scripts.report` reads (one dict per trial: its
axis values, `length` and `eval_<metric>` finals); the report writes them.
"""
from __future__ import annotations

import re
import statistics
from typing import Any, Sequence

from scripts.sweeps.spec import short_value

# `exact_match@2x`: the metric at twice each trial's training length.
_MULTIPLE = re.compile(r'(.+)@([0-9]+)x')


def seed_key(manifest: dict) -> str | None:
    """The key of the sweep's seed axis, if it has one."""
    return next((a['key'] for a in manifest['axes'] if a.get('seeds')), None)


def point_keys(manifest: dict) -> list[str]:
    """The axis keys that make a point of the sweep (all but the seeds)."""
    return [a['key'] for a in manifest['axes'] if not a.get('seeds')]


def metric_value(row: dict, metric: str) -> float | None:
    """The trial's final eval `metric`; `<m>@<k>x` is `<m>` at k times the
    trial's training length."""
    match = _MULTIPLE.fullmatch(metric)
    if match:
        if row.get('length') is None:
            return None
        metric = f'{match[1]}@{int(match[2]) * row["length"]}'
    return row.get(f'eval_{metric}')


def label(value: Any) -> Any:
    """A swept value as tables show it: numbers as they are, anything else
    as in trial names (`ReformerLM` for '@models.ReformerLM()')."""
    return value if isinstance(value, (int, float)) else short_value(value)


def over_seeds(manifest: dict, rows: Sequence[dict],
               metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per point of the sweep: its axis values and, per metric,
    `<metric>_mean`, `_min`, `_max` and `_n` (the seeds that have it)."""
    keys = point_keys(manifest)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    out = []
    for point, members in groups.items():
        aggregated: dict[str, Any] = dict(zip(keys, point))
        for metric in metrics:
            values = [v for v in (metric_value(r, metric) for r in members)
                      if v is not None]
            aggregated.update({
                f'{metric}_mean': statistics.fmean(values) if values else None,
                f'{metric}_min': min(values, default=None),
                f'{metric}_max': max(values, default=None),
                f'{metric}_n': len(values)})
        out.append(aggregated)
    return out


def leaderboard(manifest: dict, rows: Sequence[dict], metric: str
                ) -> tuple[list[Any], list[Any], list[list[float | None]]]:
    """(row labels, column labels, cells): the first axis's values as rows,
    the second's as columns, each cell `metric`'s mean over the point's
    seeds (None where no trial has it)."""
    first, second = point_keys(manifest)[:2]
    labels = {a['key']: a['values'] for a in manifest['axes']}
    points = {(p[first], p[second]): p[f'{metric}_mean']
              for p in over_seeds(manifest, rows, [metric])}
    row_labels = [label(v) for v in labels[first]]
    column_labels = [label(v) for v in labels[second]]
    cells = [[points.get((r, c)) for c in column_labels] for r in row_labels]
    return row_labels, column_labels, cells


def parameters(manifest: dict, rows: Sequence[dict]) -> list[str]:
    """Per value of the first axis (a leaderboard's rows), the range of its
    trials' parameter counts, as text ('' if none recorded)."""
    first = point_keys(manifest)[0]
    out = []
    for value in (label(v) for v in manifest['axes'][0]['values']):
        counts = [r['n_parameters'] for r in rows
                  if r[first] == value and r.get('n_parameters')]
        out.append('' if not counts else f'{min(counts):,}' if min(
            counts) == max(counts) else f'{min(counts):,}-{max(counts):,}')
    return out


def average(cells: Sequence[float | None]) -> float | None:
    """A leaderboard row's average, over its cells; None if any is missing
    (an average over fewer tasks would rank unlike with like)."""
    if not cells or any(c is None for c in cells):
        return None
    return statistics.fmean(cells)
