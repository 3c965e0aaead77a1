"""The errors a command reports to its user as one `error:` line.

`ConfigError` is the one public type for "the input is wrong" (a gin file,
a binding, a flag, a run directory, a checkpoint): the command exits 2 and
has written nothing. Its subclasses only say which part was wrong.
`TrainingError` is a run that started and could not go on: exit 1.
"""
import re


class ConfigError(Exception):
    """The user's input is wrong; the message names what and where."""


class TrainingError(Exception):
    """A run that cannot go on (it diverged); the message is for the user."""


def one_line(error: Exception, limit: int | None = None) -> str:
    """`error`'s message on one line (at most `limit` characters): its lines
    joined, without the `(<function x at 0x...>)` gin appends to a call."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = ' '.join(re.sub(r' \(<[^>]*>\)', '', line) for line in lines)
    text = text or type(error).__name__
    return text if limit is None or len(text) <= limit else (
        text[:limit - 3] + '...')
