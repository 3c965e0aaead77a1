"""The errors a command reports to its user as one `error:` line.

`ConfigError` is the one public type for "the input is wrong" (a gin file,
a binding, a flag, a run directory, a checkpoint): the command exits 2 and
has written nothing. Its subclasses only say which part was wrong.
`TrainingError` is a run that started and could not go on: exit 1.
"""


class ConfigError(Exception):
    """The user's input is wrong; the message names what and where."""


class TrainingError(Exception):
    """A run that cannot go on (it diverged); the message is for the user."""
