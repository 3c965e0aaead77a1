"""The layout of a sweep directory; the one place that reads and writes it.

    runs/sweeps/<sweep>/
      sweep.json               manifest: axes, mode, every trial's bindings
      events.out.tfevents.*    TensorBoard HParams config (axes and metrics)
      <trial>/                 an experiments.main output directory, plus
        trial.json             the runner's status (state, exit code, error
                               line, wall time over all attempts)
        trial.log              the trial's stdout and stderr, every attempt
        events.out.tfevents.*  the trial's HParams values

A trial is finished when its trial.json says so; anything else (no status,
running, failed, interrupted) is run again by the next sweep, resuming from
the trial's latest checkpoint.
"""
from __future__ import annotations

import glob
import json
import os
import time
from typing import Any, Callable, Sequence

from experiments.errors import ConfigError
from experiments.summaries import SummaryWriter
from scripts.sweeps.spec import (LEADERBOARD_METRIC, MODES, SEED_MACRO, Sweep,
                                 Trial, all_axes, axis_keys, short_value)

MANIFEST = 'sweep.json'
STATUS = 'trial.json'
LOG = 'trial.log'
FINISHED, FAILED, RUNNING, INTERRUPTED = (
    'finished', 'failed', 'running', 'interrupted')
# What the HParams dashboard compares: (run under the trial, tag).
HPARAMS_METRICS = (('eval', 'metrics/loss'), ('eval', 'metrics/accuracy'),
                   ('eval', 'metrics/sequence_accuracy'),
                   ('train', 'training/steps_per_second'))


def _write_json(path: str, data: dict) -> None:
    """Writes atomically, so a killed runner never leaves half a file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1, default=repr)
        f.write('\n')
    os.replace(tmp, path)


def _read_json(path: str) -> dict | None:
    """The JSON object in `path`, or None if there is no such file; raises
    ConfigError for anything else (only a hand edit or a bad disk gets
    there: the files are written atomically)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # ValueError: not JSON, not UTF-8
        raise ConfigError(f'cannot read {path}: {e}') from e
    if not isinstance(data, dict):
        raise ConfigError(f'{path} is corrupt: it holds a '
                          f'{type(data).__name__}, not a JSON object')
    return data


def manifest(name: str, sweep: Sweep, trials: Sequence[Trial]) -> dict:
    """sweep.json: the seeds are the last axis (key 'seed'), marked so."""
    axes = all_axes(sweep)
    keys = axis_keys(list(axes))
    return {
        'sweep': name, 'base': list(sweep.base), 'mode': sweep.mode,
        'bindings': list(sweep.bindings),
        'axes': [{'name': a, 'key': keys[a], 'values': list(v),
                  **({'seeds': True} if sweep.seeds and a == SEED_MACRO
                     else {})} for a, v in axes.items()],
        'trials': [{'name': t.name, 'values': t.values,
                    'files': list(t.files), 'bindings': list(t.bindings)}
                   for t in trials],
        'leaderboard': list(sweep.leaderboard),
    }


def read_manifest(sweep_dir: str) -> dict:
    path = os.path.join(sweep_dir, MANIFEST)
    data = _read_json(path)
    if data is None:
        raise ConfigError(f'{sweep_dir} is not a sweep directory (it has no '
                          f'{MANIFEST}; python -m scripts.sweep writes one)')
    problem = _manifest_problem(data)
    if problem:
        raise ConfigError(f'{path} is corrupt: {problem}')
    return data


def _is_name(name: Any) -> bool:
    """Whether `name` can be a trial's directory (one path component)."""
    return (isinstance(name, str) and name not in ('', '.', '..')
            and '/' not in name and '\0' not in name)


def _manifest_problem(data: dict) -> str | None:
    """What makes `data` unlike a manifest that manifest() wrote, if
    anything (the report relies on all of it)."""
    if not isinstance(data.get('sweep'), str):
        return "'sweep' is not a name"
    if data.get('mode') not in MODES:
        return f"'mode' is not one of {MODES}"
    axes, trials = data.get('axes'), data.get('trials')
    if not (isinstance(axes, list) and axes and all(
            isinstance(a, dict) and isinstance(a.get('key'), str)
            and isinstance(a.get('values'), list) and a['values']
            for a in axes)):
        return "'axes' is not a list of {key, values}"
    labels = {a['key']: {short_value(v) for v in a['values']} for a in axes}
    if len(labels) < len(axes):
        return 'two axes have the same key'
    if not (isinstance(trials, list) and trials
            and all(isinstance(t, dict) for t in trials)):
        return "'trials' is not a list of trials"
    names = [t.get('name') for t in trials]
    if not all(map(_is_name, names)) or len(set(names)) < len(names):
        return 'the trial names are not distinct directory names'
    if any(a.get('seeds') for a in axes[:-1]):
        return 'an axis before the last is marked as the seeds'
    board = data.get('leaderboard', [])
    if not (isinstance(board, list) and all(
            isinstance(m, str) and LEADERBOARD_METRIC.fullmatch(m)
            for m in board)):
        return "'leaderboard' is not a list of metric names"
    if board and sum(not a.get('seeds') for a in axes) != 2:
        return "'leaderboard' needs exactly two axes besides the seeds"
    for trial in trials:
        values = trial.get('values')
        if not (isinstance(values, dict) and values.keys() == labels.keys()
                and all(short_value(v) in labels[k]
                        for k, v in values.items())):
            return f'trial {trial["name"]!r} has values off its axes'
    return None


def _hparam_converters(data: dict) -> dict[str, Callable[[Any], Any]]:
    """Axis key -> how its values become HParams values (one type per axis:
    float if every value is a number, else the short text of trial names)."""
    def is_number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    return {axis['key']: float if all(map(is_number, axis['values']))
            else short_value for axis in data['axes']}


def _write_summary(logdir: str, summary) -> None:
    """One summary event in a new event file under `logdir`."""
    writer = SummaryWriter(logdir)
    writer.summary(summary, step=0)
    writer.close()


def write_manifest(sweep_dir: str, data: dict) -> None:
    """Writes sweep.json and, when it is new or changed, the HParams config."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    path = os.path.join(sweep_dir, MANIFEST)
    root_events = glob.glob(os.path.join(sweep_dir, 'events.out.tfevents.*'))
    if _read_json(path) == json.loads(json.dumps(data, default=repr)) and (
            root_events):
        return
    for old in root_events:  # one config per sweep
        os.remove(old)
    _write_json(path, data)
    convert = _hparam_converters(data)
    # dict.fromkeys: a zip axis may repeat a value; HParams lists it once.
    hparams = [hp.HParam(axis['key'], hp.Discrete(list(dict.fromkeys(
        convert[axis['key']](v) for v in axis['values']))))
        for axis in data['axes']]
    metrics = [hp.Metric(tag, group=run, display_name=f'{run} {tag}')
               for run, tag in HPARAMS_METRICS]
    _write_summary(sweep_dir, hp.hparams_config_pb(hparams, metrics))


def write_trial_hparams(trial_dir: str, data: dict, trial: Trial) -> None:
    """The trial's swept values, once, for the HParams dashboard."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    if glob.glob(os.path.join(trial_dir, 'events.out.tfevents.*')):
        return
    convert = _hparam_converters(data)
    _write_summary(trial_dir, hp.hparams_pb(
        {k: convert[k](v) for k, v in trial.values.items()},
        trial_id=trial.name, start_time_secs=time.time()))


def read_status(trial_dir: str) -> dict | None:
    return _read_json(os.path.join(trial_dir, STATUS))


def write_status(trial_dir: str, status: dict) -> None:
    _write_json(os.path.join(trial_dir, STATUS), status)


def is_finished(status: dict | None) -> bool:
    return bool(status) and status.get('state') == FINISHED
