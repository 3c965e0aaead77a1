r"""Trains one experiment described by gin files.

    python -m experiments.main --gin_file=reformer_copy.gin
    python -m experiments.main --gin_file=codelab.gin \
        --gin_param='experiments.Experiment.n_steps=100' --dry_run

Gin files are looked up as given, then in gin_configs/ (so the bare name works
from any directory). Output goes to --output_dir, by default
runs/<name of the first gin file>; rerunning the same command resumes from the
latest checkpoint there. A directory holding a run with other bindings is
refused unless --overwrite is given (only n_steps may change, to extend a run),
and so is a directory another process is training in.

One run over several processes (one per host of a TPU slice, or on one
machine for a test): start the same command in every process with
--coordinator_address, --num_processes and --process_id (on a multi-host
Cloud TPU slice they come from the environment); see
experiments/distributed.py. --mirror_to=gs://... keeps a copy of the run
directory in a bucket, updated at every checkpoint (experiments/mirror.py).

Exit status: 0 done, 1 training failed (diverged), 2 bad input or unusable
output directory (nothing written), 130 interrupted (resume with the same
command).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Sequence

from absl import flags
from absl import logging

from experiments import (cli, compile_cache, config, distributed, mirror,
                         run_dir, training)

FLAGS = flags.FlagValues()
flags.DEFINE_multi_string(
    'gin_file', [], 'Gin file (name under gin_configs/ or path); repeatable.',
    flag_values=FLAGS)
flags.DEFINE_multi_string(
    'gin_param', [], 'Gin binding applied after the files; repeatable.',
    flag_values=FLAGS)
flags.DEFINE_string(
    'output_dir', None, 'Run directory (default: runs/<experiment name>).',
    flag_values=FLAGS)
flags.DEFINE_bool(
    'dry_run', False, 'Parse and validate, print the config, train nothing.',
    flag_values=FLAGS)
flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, in a run over '
    'several processes (jax.distributed).', flag_values=FLAGS)
flags.DEFINE_integer(
    'num_processes', None, 'Processes of a run over several.',
    flag_values=FLAGS)
flags.DEFINE_integer(
    'process_id', None, 'This process, 0 to num_processes - 1.',
    flag_values=FLAGS)
flags.DEFINE_float(
    'initialization_timeout', distributed.DEFAULT_TIMEOUT_S,
    'Seconds the processes of a run over several wait for each other.',
    flag_values=FLAGS)
flags.DEFINE_string(
    mirror.FLAG, None, 'gs:// path: copy the run directory there after each '
    'checkpoint and at the end (gcloud storage rsync), so that a run on a '
    'VM that can be preempted resumes elsewhere; see experiments/mirror.py.',
    flag_values=FLAGS)
flags.DEFINE_bool(
    'overwrite', False, 'Start over in --output_dir, deleting the run there.',
    flag_values=FLAGS)

RESUME_HINT = ('interrupted; rerun the same command to resume from the last '
               'checkpoint')


def _train(gin_files, gin_params, output_dir, dry_run, overwrite,
           cluster, timeout_s, mirror_to) -> int:
    import gin
    mirror_to = mirror.checked(mirror_to)
    config.parse(gin_files, gin_params)
    experiment = config.build_experiment()
    output_dir = output_dir or os.path.join(
        'runs', config.experiment_name(gin_files))
    run_dir.guard(output_dir, gin.config_str(), overwrite)
    if dry_run:
        training.start_jax(experiment)  # this process's devices only
        print(gin.config_str())
        print(f'# dry run: valid; would write to {output_dir}'
              + (f' from {cluster.num_processes} processes' if cluster
                 else ''))
        return 0
    distributed.start(cluster, timeout_s)
    training.start_jax(experiment)
    compile_cache.enable()
    # Process 0 holds the directory for the run; the others write nothing.
    primary = distributed.is_primary()
    with (run_dir.exclusive(output_dir) if primary
          else contextlib.nullcontext()):
        if overwrite and primary:
            run_dir.clear(output_dir)
        distributed.barrier('run directory ready')
        training.train(experiment, output_dir, mirror_to=mirror_to)
    return 0


def run(gin_files, gin_params, output_dir=None, dry_run=False,
        overwrite=False, cluster=None,
        timeout_s=distributed.DEFAULT_TIMEOUT_S, mirror_to=None) -> int:
    """The whole command, from parsed flags; returns the exit status.
    `cluster` (distributed.Cluster) makes this one process of a run over
    several; `mirror_to` is --mirror_to."""
    logging.set_verbosity(logging.WARNING)  # our own progress lines say enough
    return cli.status_of(lambda: _train(gin_files, gin_params, output_dir,
                                        dry_run, overwrite, cluster,
                                        timeout_s, mirror_to), RESUME_HINT)


def _cluster() -> distributed.Cluster | None:
    return (distributed.from_flags(FLAGS.coordinator_address,
                                   FLAGS.num_processes, FLAGS.process_id)
            or distributed.from_environment())


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, lambda args: run(
        FLAGS.gin_file, FLAGS.gin_param, FLAGS.output_dir, FLAGS.dry_run,
        FLAGS.overwrite, _cluster(), FLAGS.initialization_timeout,
        FLAGS.mirror_to),
        interrupted=RESUME_HINT)


def console() -> None:
    """The `seq-lab-train` console script."""
    sys.exit(main(sys.argv))


if __name__ == '__main__':
    console()
