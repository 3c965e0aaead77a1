r"""Runs every trial of a sweep file, here or on Cloud TPU VMs.

    python -m scripts.sweep --gin_file=sweeps/reformer_lsh.gin --parallel=2
    python -m scripts.sweep --gin_file=sweeps/reformer_lsh.gin --dry_run
    python -m scripts.sweep --gin_file=sweeps/reformer_lsh.gin --backend=tpu \
        --tpu_name=lsh --zone=us-central2-b --bucket=gs://my-bucket/sweeps \
        --dry_run

Every trial is validated first (a misspelt axis stops the sweep before any
trial starts). Trials write to <output_dir>/<trial name>, by default under
runs/sweeps/<sweep name>; rerunning the same command skips finished trials and
resumes the others from their checkpoints. See scripts/sweeps/spec.py for the
sweep file format.

Exit status: 0 every trial finished, 1 some failed, 2 bad input (nothing
run), 130 interrupted.
"""
from __future__ import annotations

import os
import shlex
import sys

from absl import flags
from absl import logging

from experiments.errors import ConfigError
from experiments import cli
from experiments import mirror
from scripts.sweeps import layout
from scripts.sweeps import spec

# Our own flag set: tests import this next to experiments.main, whose flags
# share some names.
FLAGS = flags.FlagValues()
_GIN_FILE = flags.DEFINE_string(
    'gin_file', None, 'Sweep file (name under gin_configs/ or path).',
    flag_values=FLAGS)
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Sweep directory (default: runs/sweeps/<sweep name>).',
    flag_values=FLAGS)
_TRIAL = flags.DEFINE_multi_string(
    'trial', [], 'Run only this trial (by name); repeatable.',
    flag_values=FLAGS)
_DRY_RUN = flags.DEFINE_bool(
    'dry_run', False, 'Validate and print what would run; run nothing.',
    flag_values=FLAGS)
_BACKEND = flags.DEFINE_enum(
    'backend', 'local', ['local', 'tpu'], 'Where the trials run.',
    flag_values=FLAGS)
_PARALLEL = flags.DEFINE_integer(
    'parallel', 1, 'Local backend: trials running at once.', lower_bound=1,
    flag_values=FLAGS)
_MIRROR_TO = flags.DEFINE_string(
    'mirror_to', None, 'Local backend: gs:// path; each trial\'s directory '
    'is copied to <mirror_to>/<trial name> after each of its checkpoints '
    '(experiments.main --mirror_to). The TPU backend sets it on its VMs.',
    flag_values=FLAGS)
_TPU_NAME = flags.DEFINE_string(
    'tpu_name', None, 'TPU backend: VM name (<name>-<i> with --num_vms > 1).',
    flag_values=FLAGS)
_ZONE = flags.DEFINE_string('zone', None, 'TPU backend: zone.',
                            flag_values=FLAGS)
_BUCKET = flags.DEFINE_string(
    'bucket', None, 'TPU backend: gs:// path; results go to '
    '<bucket>/<sweep name>.', flag_values=FLAGS)
_PROJECT = flags.DEFINE_string('project', None, 'TPU backend: GCP project '
                               '(default: gcloud\'s).', flag_values=FLAGS)
_ACCELERATOR = flags.DEFINE_string(
    'accelerator_type', 'v4-8', 'TPU backend: accelerator type.',
    flag_values=FLAGS)
_RUNTIME = flags.DEFINE_string(
    'runtime_version', 'tpu-ubuntu2204-base', 'TPU backend: TPU VM software '
    'version (its Python must be >= 3.11 for the pinned JAX).',
    flag_values=FLAGS)
_NUM_VMS = flags.DEFINE_integer(
    'num_vms', 1, 'TPU backend: VMs sharing the trials.', lower_bound=1,
    flag_values=FLAGS)
_SPOT = flags.DEFINE_bool('spot', False, 'TPU backend: spot VMs.',
                          flag_values=FLAGS)
_QUEUED = flags.DEFINE_bool(
    'queued', False, 'TPU backend: request the VMs as queued resources.',
    flag_values=FLAGS)


def _plan() -> tuple[spec.Sweep, list[spec.Trial], list[spec.Trial],
                     str]:
    """The sweep, all its trials, those selected (validated), the sweep dir."""
    if not _GIN_FILE.value:
        raise ConfigError('give the sweep file with --gin_file')
    sweep = spec.load(_GIN_FILE.value)
    trials = selected = spec.expand(sweep)
    if _TRIAL.value:
        known = {t.name for t in trials}
        unknown = [n for n in _TRIAL.value if n not in known]
        if unknown:
            raise ConfigError(f'--trial={unknown[0]} is not a trial of '
                              f'{_GIN_FILE.value}; its trials are: '
                              + ' '.join(sorted(known)))
        selected = [t for t in trials if t.name in _TRIAL.value]
    spec.validate(sweep, selected)
    root = _OUTPUT_DIR.value or os.path.join(
        'runs', 'sweeps', spec.sweep_name(_GIN_FILE.value))
    return sweep, trials, selected, root


def _print_local_plan(sweep, trials, root) -> None:
    for trial in trials:
        trial_dir = os.path.join(root, trial.name)
        done = layout.is_finished(layout.read_status(trial_dir))
        print(f'# {trial.name}: '
              + ('finished, skipped' if done else 'to run'))
        print(shlex.join(['python'] + spec.main_args(sweep, trial,
                                                       trial_dir)))
    print(f'# dry run: {len(trials)} valid trial(s); would write to {root}')


def _run_on_tpu(name: str, trials: list[spec.Trial], root: str) -> int:
    from experiments import config
    from scripts.sweeps import cloud_tpu
    options = cloud_tpu.TpuOptions(
        name=_TPU_NAME.value, zone=_ZONE.value, bucket=_BUCKET.value or '',
        project=_PROJECT.value, accelerator_type=_ACCELERATOR.value,
        runtime_version=_RUNTIME.value, num_vms=_NUM_VMS.value,
        spot=_SPOT.value, queued=_QUEUED.value)
    commands = cloud_tpu.GcloudCommands(options, name,
                                         config.resolve(_GIN_FILE.value))
    return cloud_tpu.TpuRunner(commands, root, _DRY_RUN.value).run(trials)


def _command(args: list[str]) -> int:
    """The command after flag parsing; returns the exit status."""
    logging.set_verbosity(logging.WARNING)
    sweep, all_trials, trials, root = _plan()
    name = spec.sweep_name(_GIN_FILE.value)
    if _BACKEND.value == 'tpu':
        if _MIRROR_TO.value:
            raise ConfigError('--mirror_to is for --backend=local; the TPU '
                              'backend mirrors its trials to --bucket')
        return _run_on_tpu(name, trials, root)
    mirror_to = mirror.checked(_MIRROR_TO.value)
    if _DRY_RUN.value:
        _print_local_plan(sweep, trials, root)
        return 0
    from scripts.sweeps.local import LocalRunner
    manifest = layout.manifest(name, sweep, all_trials)
    layout.write_manifest(root, manifest)
    print(f'Sweep {name}: {len(trials)} trial(s), {_PARALLEL.value} at a '
          f'time, in {root}', flush=True)
    status = LocalRunner(sweep, manifest, root, _PARALLEL.value,
                         mirror_to=mirror_to).run(trials)
    if status != 130:
        print(f'Read the results: python -m scripts.report {root}')
    return status


def main(argv: list[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
