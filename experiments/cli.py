"""The one command-line runner of every command (experiments.main, decode,
evaluate, and the scripts): absl flags, and one line to stderr for what went
wrong, with the exit status saying which kind:

    0    done
    1    a run that could not go on (errors.TrainingError)
    2    bad input (a flag, errors.ConfigError): nothing written
    130  interrupted (Ctrl-C)
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import flags

from experiments.errors import ConfigError, TrainingError

INTERRUPTED = 'interrupted'


def _error(message: object, status: int) -> int:
    # absl quotes a flag's value as given, line breaks included.
    text = str(message).replace('\r', '\\r').replace('\n', '\\n')
    print(f'error: {text}', file=sys.stderr)
    return status


def status_of(body: Callable[[], int],
              interrupted: str = INTERRUPTED) -> int:
    """`body()`'s exit status, or the status of what it raised (see the
    module docstring) after printing its one line."""
    try:
        return body()
    except (flags.Error, ConfigError) as e:
        return _error(e, 2)
    except TrainingError as e:
        return _error(e, 1)
    except KeyboardInterrupt:
        return _error(interrupted, 130)


def run(flag_values: flags.FlagValues, argv: Sequence[str], doc: str,
        body: Callable[[list[str]], int], takes_arguments: bool = False,
        interrupted: str = INTERRUPTED) -> int:
    """Parses `argv` into `flag_values` (from their defaults, so tests can
    call it repeatedly) and returns `body(positional arguments)`'s status;
    positional arguments are refused unless the command takes_arguments."""
    if '--help' in argv or '-h' in argv:
        print(doc + '\n' + flag_values.get_help())
        return 0
    flag_values.unparse_flags()

    def parsed() -> int:
        args = flag_values(list(argv))[1:]
        if args and not takes_arguments:
            raise ConfigError(f'unexpected arguments {args}')
        return body(args)

    return status_of(parsed, interrupted)
