"""The shared shape of this package's commands: absl flags, `error: ...`
on bad input with exit status 2, 130 on Ctrl-C."""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import flags

from experiments.errors import ConfigError


def run(flag_values: flags.FlagValues, argv: Sequence[str], doc: str,
        body: Callable[[list[str]], int],
        takes_arguments: bool = False) -> int:
    """Parses `argv` into `flag_values` (from their defaults, so tests can
    call it repeatedly) and returns `body(positional arguments)`'s status;
    positional arguments are refused unless the command takes_arguments."""
    if '--help' in argv or '-h' in argv:
        print(doc + '\n' + flag_values.get_help())
        return 0
    flag_values.unparse_flags()
    try:
        args = flag_values(list(argv))[1:]
        if args and not takes_arguments:
            raise ConfigError(f'unexpected arguments {args}')
        return body(args)
    except (flags.Error, ConfigError) as e:
        # absl quotes a flag's value as given, line breaks included.
        message = str(e).replace('\r', '\\r').replace('\n', '\\n')
        print(f'error: {message}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('Interrupted.', file=sys.stderr)
        return 130
