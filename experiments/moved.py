"""Old module names that moved: importing or running one fails with one line
naming the new spelling (`python -m` of a moved command exits 2)."""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Mapping


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):

    def __init__(self, moved: Mapping[str, str]):
        self.moved = dict(moved)

    def find_spec(self, name, path=None, target=None):
        if name in self.moved:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def _message(self, name: str) -> str:
        return f'{name} is now {self.moved[name]}'

    def exec_module(self, module) -> None:  # `import old.name`
        raise ImportError(self._message(module.__spec__.name))

    def get_code(self, name: str):  # `python -m old.name` runs this code
        return compile(f'import sys\nprint({"error: " + self._message(name)!r}, '
                       'file=sys.stderr)\nsys.exit(2)\n', name, 'exec')

    def get_source(self, name: str):
        return None


def register(moved: Mapping[str, str]) -> None:
    """Makes each old module name fail with its new one (see the docstring)."""
    sys.meta_path.insert(0, _Moved(moved))  # before editable installs' finders
