"""The shared shape of this package's commands: absl flags, `error: ...`
on bad input with exit status 2, 130 on Ctrl-C."""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import flags

from experiments.config import ConfigError


def run(flag_values: flags.FlagValues, argv: Sequence[str], doc: str,
        body: Callable[[list[str]], int]) -> int:
    """Parses `argv` into `flag_values` (from their defaults, so tests can
    call it repeatedly) and returns `body(positional arguments)`'s status."""
    if '--help' in argv or '-h' in argv:
        print(doc + '\n' + flag_values.get_help())
        return 0
    flag_values.unparse_flags()
    try:
        rest = flag_values(list(argv))
        return body(rest[1:])
    except (flags.Error, ConfigError) as e:
        # absl quotes a flag's value as given, line breaks included.
        message = str(e).replace('\r', '\\r').replace('\n', '\\n')
        print(f'error: {message}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('Interrupted.', file=sys.stderr)
        return 130
