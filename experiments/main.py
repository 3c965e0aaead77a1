r"""Trains one experiment described by gin files.

    python -m experiments.main --gin_file=reformer_copy.gin
    python -m experiments.main --gin_file=codelab.gin \
        --gin_param='experiments.Experiment.n_steps=100' --dry_run

Gin files are looked up as given, then in gin_configs/ (so the bare name works
from any directory). Output goes to --output_dir, by default
runs/<name of the first gin file>; rerunning in the same directory resumes from
its latest checkpoint.
"""
from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging

from experiments import config

_GIN_FILE = flags.DEFINE_multi_string(
    'gin_file', [], 'Gin file (name under gin_configs/ or path); repeatable.')
_GIN_PARAM = flags.DEFINE_multi_string(
    'gin_param', [], 'Gin binding applied after the files; repeatable.')
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Run directory (default: runs/<experiment name>).')
_DRY_RUN = flags.DEFINE_bool(
    'dry_run', False, 'Parse and validate, print the config, train nothing.')


def run(gin_files, gin_params, output_dir=None, dry_run=False) -> int:
    """The whole command; returns the process exit status."""
    logging.set_verbosity(logging.WARNING)  # our own progress lines say enough
    try:
        config.parse(gin_files, gin_params)
        experiment = config.build_experiment()
    except config.ConfigError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    output_dir = output_dir or os.path.join(
        'runs', config.experiment_name(gin_files))
    if dry_run:
        import gin
        print(gin.config_str())
        print(f'# dry run: valid; would write to {output_dir}')
        return 0
    from experiments import training
    training.train(experiment, output_dir)
    return 0


def main(argv):
    if len(argv) > 1:
        print(f'error: unexpected arguments {argv[1:]}', file=sys.stderr)
        return 2
    return run(_GIN_FILE.value, _GIN_PARAM.value, _OUTPUT_DIR.value,
               _DRY_RUN.value)


def console():
    """The `seq-lab-train` console script."""
    app.run(main)


if __name__ == '__main__':
    console()
