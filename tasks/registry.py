"""Tasks by name; the one module of this package that touches gin.

`register` files a Task class under its `name` and as the gin configurable
`tasks.<name>`, whose parameters are the task's fields.
"""
import dataclasses

import gin

from tasks.base import Task

_TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Registers a Task subclass; returns it, so it works as a decorator."""
    if not (isinstance(cls, type) and issubclass(cls, Task)
            and dataclasses.is_dataclass(cls)):
        raise TypeError(
            f'only Task dataclasses can be registered, got {cls!r}')
    name = getattr(cls, 'name', None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f'{cls.__qualname__}.name must be an identifier, '
                         f'got {name!r}')
    if name in _TASKS:
        raise ValueError(f'a task named {name!r} is already registered '
                         f'({_TASKS[name].__module__}.'
                         f'{_TASKS[name].__qualname__})')
    # The class itself is the configurable (gin builds it, not a subclass),
    # so gin-built tasks compare equal to directly built ones.
    gin.external_configurable(cls, name=name, module='tasks')
    _TASKS[name] = cls
    return cls


def get(name: str) -> type[Task]:
    if name not in _TASKS:
        raise ValueError(f'no task named {name!r}; the tasks are '
                         f'{list(names())}')
    return _TASKS[name]


def names() -> tuple[str, ...]:
    return tuple(sorted(_TASKS))
