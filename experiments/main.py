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

from absl import app
from absl import flags
from absl import logging

from experiments import config, errors
from experiments import run_dir

_GIN_FILE = flags.DEFINE_multi_string(
    'gin_file', [], 'Gin file (name under gin_configs/ or path); repeatable.')
_GIN_PARAM = flags.DEFINE_multi_string(
    'gin_param', [], 'Gin binding applied after the files; repeatable.')
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Run directory (default: runs/<experiment name>).')
_DRY_RUN = flags.DEFINE_bool(
    'dry_run', False, 'Parse and validate, print the config, train nothing.')
_OVERWRITE = flags.DEFINE_bool(
    'overwrite', False, 'Start over in --output_dir, deleting the run there.')


def _error(message: str, status: int) -> int:
    print(f'error: {message}', file=sys.stderr)
    return status


def run(gin_files, gin_params, output_dir=None, dry_run=False,
        overwrite=False) -> int:
    """The whole command; returns the process exit status."""
    logging.set_verbosity(logging.WARNING)  # our own progress lines say enough
    import gin
    try:
        config.parse(gin_files, gin_params)
        experiment = config.build_experiment()
        output_dir = output_dir or os.path.join(
            'runs', config.experiment_name(gin_files))
        run_dir.guard(output_dir, gin.config_str(), overwrite)
    except (errors.ConfigError, run_dir.RunDirError) as e:
        return _error(str(e), 2)
    if dry_run:
        print(gin.config_str())
        print(f'# dry run: valid; would write to {output_dir}')
        return 0
    from experiments import compile_cache
    from experiments import training
    compile_cache.enable()
    try:
        with run_dir.exclusive(output_dir):
            if overwrite:
                run_dir.clear(output_dir)
            training.train(experiment, output_dir)
    except run_dir.RunDirError as e:
        return _error(str(e), 2)
    except training.TrainingError as e:
        return _error(str(e), 1)
    except KeyboardInterrupt:
        return _error('interrupted; rerun the same command to resume from '
                      'the last checkpoint', 130)
    return 0


def main(argv):
    if len(argv) > 1:
        print(f'error: unexpected arguments {argv[1:]}', file=sys.stderr)
        return 2
    return run(_GIN_FILE.value, _GIN_PARAM.value, _OUTPUT_DIR.value,
               _DRY_RUN.value, _OVERWRITE.value)


def _parse_flags(argv):
    """absl's parser, but a bad flag is one `error:` line and exit 2 (absl
    prints several lines and exits 1)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = str(e).replace('\r', '\\r').replace('\n', '\\n')
        print(f'error: {message}', file=sys.stderr)
        sys.exit(2)


def console():
    """The `seq-lab-train` console script."""
    app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
    console()
