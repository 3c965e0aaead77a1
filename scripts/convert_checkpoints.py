r"""Converts a run's old pickle checkpoints to the current (Orbax) format.

    python -m scripts.convert_checkpoints --output_dir=runs/reformer_copy

WARNING: this UNPICKLES <output_dir>/checkpoints/step_*.pkl, and unpickling a
file can run code. Use it only on run directories that you or someone you
trust wrote. (It refuses pickles that refer to anything but numpy arrays,
which narrows the risk without removing it.) Nothing else in this project
reads these files: training, evaluate and decode refuse a directory that has
only them, naming this command.

Each pickle becomes checkpoints/step_XXXXXXXX/ in the current format; then all
the pickles are moved to <output_dir>/checkpoints_pickle/ (delete it once the
run resumes as it should). Exit status: 0 converted, 2 bad input (nothing
converted), 130 interrupted.
"""
from __future__ import annotations

import os
import pickle
import sys
from typing import Sequence

from absl import flags

from experiments import checkpoints, cli, run_dir
from experiments.errors import ConfigError

FLAGS = flags.FlagValues()
flags.DEFINE_string('output_dir', None, 'Run directory whose pickle '
                    'checkpoints to convert.', flag_values=FLAGS)

# All that an old checkpoint (a dict of numpy arrays in tuples and lists)
# refers to, as numpy 1 and 2 pickle arrays.
_NUMPY_GLOBALS = {(module, name)
                  for core in ('numpy.core', 'numpy._core')
                  for module, name in ((f'{core}.numeric', '_frombuffer'),
                                       (f'{core}.multiarray', '_reconstruct'),
                                       (f'{core}.multiarray', 'scalar'))}
_NUMPY_GLOBALS |= {('numpy', 'ndarray'), ('numpy', 'dtype')}


class _NumpyOnly(pickle.Unpickler):
    """Refuses any global but numpy's array constructors."""

    def find_class(self, module, name):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(
                f'it refers to {module}.{name}, which a checkpoint never '
                'holds; not converted')
        return super().find_class(module, name)


def _read_pickle(path: str, step: int) -> dict:
    """The old checkpoint in `path`; ValueError if it is not one."""
    try:
        with open(path, 'rb') as f:
            payload = _NumpyOnly(f).load()
    except Exception as e:  # a damaged pickle raises almost anything
        raise ValueError(' '.join(str(e).split()) or type(e).__name__) from e
    if (type(payload) is not dict
            or set(payload) != {'step', *checkpoints.TREES}
            or payload['step'] != step):
        raise ValueError(f'not a checkpoint of step {step} (a dict of step, '
                         'weights, state and slots)')
    for name in checkpoints.TREES:
        try:
            checkpoints.flatten(payload[name])
        except TypeError as e:
            raise ValueError(f'its {name}: {e}') from e
    return payload


def convert(output_dir: str, log=print) -> list[int]:
    """Converts every pickle checkpoint in `output_dir` that can be read,
    then moves all of them to checkpoints_pickle/; returns the converted
    steps. Raises ConfigError, having written nothing, if none can be."""
    if not os.path.isdir(output_dir):
        raise ConfigError(f'no run directory {output_dir!r}')
    files = checkpoints.pickle_files(output_dir)
    if not files:
        raise ConfigError(f'no pickle checkpoints ({checkpoints.SUBDIR}/'
                          f'step_*.pkl) in {output_dir}; nothing to convert')
    payloads, problems = {}, []
    for step, path in files:
        try:
            payloads[step] = _read_pickle(path, step)
        except ValueError as e:
            problems.append(f'{path}: {e}')
    if not payloads:
        raise ConfigError(f'no pickle checkpoint in {output_dir} could be '
                          f'read: {problems[0]}')
    for problem in problems:
        print(f'warning: not converted: {problem}', file=sys.stderr)
    keep = len(files) + len(checkpoints.list_steps(output_dir))
    try:
        with run_dir.exclusive(output_dir):  # no run may save meanwhile
            for step, payload in payloads.items():
                checkpoints.save(output_dir, step, keep=keep, **{
                    name: payload[name] for name in checkpoints.TREES})
                log(f'converted step {step}: '
                    f'{checkpoints.path_for(output_dir, step)}')
            moved = os.path.join(output_dir, checkpoints.PICKLE_SUBDIR)
            os.makedirs(moved, exist_ok=True)
            for _, path in files:
                os.replace(path, os.path.join(moved, os.path.basename(path)))
    except run_dir.RunDirError as e:
        raise ConfigError(str(e)) from e
    log(f'moved the pickles to {moved}; delete it once the run resumes')
    return list(payloads)


def _command(_: list[str]) -> int:
    if not FLAGS.output_dir:
        raise ConfigError('--output_dir is required')
    convert(FLAGS.output_dir)
    return 0


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
