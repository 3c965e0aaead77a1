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

Exit status: 0 done, 1 training failed (diverged), 2 bad input or unusable
output directory (nothing written), 130 interrupted (resume with the same
command).
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import flags
from absl import logging

from experiments import cli, compile_cache, config, run_dir, training

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
flags.DEFINE_bool(
    'overwrite', False, 'Start over in --output_dir, deleting the run there.',
    flag_values=FLAGS)

RESUME_HINT = ('interrupted; rerun the same command to resume from the last '
               'checkpoint')


def _train(gin_files, gin_params, output_dir, dry_run, overwrite) -> int:
    import gin
    config.parse(gin_files, gin_params)
    experiment = config.build_experiment()
    output_dir = output_dir or os.path.join(
        'runs', config.experiment_name(gin_files))
    run_dir.guard(output_dir, gin.config_str(), overwrite)
    training.start_jax(experiment)  # also a step of the dry run
    if dry_run:
        print(gin.config_str())
        print(f'# dry run: valid; would write to {output_dir}')
        return 0
    compile_cache.enable()
    with run_dir.exclusive(output_dir):
        if overwrite:
            run_dir.clear(output_dir)
        training.train(experiment, output_dir)
    return 0


def run(gin_files, gin_params, output_dir=None, dry_run=False,
        overwrite=False) -> int:
    """The whole command, from parsed flags; returns the exit status."""
    logging.set_verbosity(logging.WARNING)  # our own progress lines say enough
    return cli.status_of(lambda: _train(gin_files, gin_params, output_dir,
                                        dry_run, overwrite), RESUME_HINT)


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, lambda args: run(
        FLAGS.gin_file, FLAGS.gin_param, FLAGS.output_dir, FLAGS.dry_run,
        FLAGS.overwrite), interrupted=RESUME_HINT)


def console() -> None:
    """The `seq-lab-train` console script."""
    sys.exit(main(sys.argv))


if __name__ == '__main__':
    console()
