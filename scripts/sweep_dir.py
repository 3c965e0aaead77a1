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

from experiments.config import ConfigError
from experiments.summaries import SummaryWriter
from scripts.sweeps import Sweep, Trial, axis_keys, short_value

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
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def manifest(name: str, sweep: Sweep, trials: Sequence[Trial]) -> dict:
    keys = axis_keys(list(sweep.axes))
    return {
        'sweep': name, 'base': list(sweep.base), 'mode': sweep.mode,
        'bindings': list(sweep.bindings),
        'axes': [{'name': a, 'key': keys[a], 'values': list(v)}
                 for a, v in sweep.axes.items()],
        'trials': [{'name': t.name, 'values': t.values,
                    'bindings': list(t.bindings)} for t in trials],
    }


def read_manifest(sweep_dir: str) -> dict:
    data = _read_json(os.path.join(sweep_dir, MANIFEST))
    if data is None:
        raise ConfigError(f'{sweep_dir} is not a sweep directory (it has no '
                          f'{MANIFEST}; python -m scripts.sweep writes one)')
    return data


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
    hparams = [hp.HParam(axis['key'], hp.Discrete(
        [convert[axis['key']](v) for v in axis['values']]))
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
