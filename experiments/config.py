"""Finding and parsing gin files, and building the experiment root.

Experiment files include shared pieces by package path
(`include 'gin_configs/common/training.gin'`), which gin resolves through the
Python path, so they work from any directory and from an installed package.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import re
from typing import Sequence

import gin
from gin import config_parser

import gin_configs
from experiments.errors import ConfigError, one_line

CONFIG_DIR = os.path.dirname(os.path.abspath(gin_configs.__file__))


def resolve(gin_file: str) -> str:
    """The path of `gin_file`, as given or found under gin_configs/."""
    for candidate in (gin_file, os.path.join(CONFIG_DIR, gin_file)):
        if os.path.isfile(candidate):
            return candidate
    raise ConfigError(f'gin file not found: {gin_file!r} (looked in the '
                      f'current directory and in {CONFIG_DIR})')


def experiment_name(gin_files: Sequence[str]) -> str:
    """`reformer_copy` for `--gin_file=reformer_copy.gin`."""
    return os.path.splitext(os.path.basename(gin_files[0]))[0]


def parse(gin_files: Sequence[str], gin_params: Sequence[str] = (),
          check_files: bool = True) -> None:
    """Parses the files, then the bindings, and notes where each binding came
    from for build_experiment's check that all are used (the files' too
    unless check_files is False: a run's saved config.gin holds every
    binding of the run, also those its command line left unused)."""
    if not gin_files:
        raise ConfigError('give at least one --gin_file')
    paths = [resolve(f) for f in gin_files]
    errors = (ValueError, TypeError, KeyError, SyntaxError, ImportError,
              OSError)
    try:
        gin.parse_config_files_and_bindings(paths, None, finalize_config=False)
    except errors as e:
        raise ConfigError(one_line(e)) from e
    # One at a time, so an error names the binding it comes from.
    for binding in gin_params:
        try:
            gin.parse_config(binding)
        except errors as e:
            raise ConfigError(f'--gin_param={binding!r}: {one_line(e)}') from e
    bindings = []
    for given, path in zip(gin_files, paths):
        with open(path) as f:
            _read_bindings(f.read(), given, check_files, bindings)
    for binding in gin_params:
        _read_bindings(binding, None, True, bindings)
    _parsed[:] = bindings
    _parsed_values.clear()
    _parsed_values.update((b.key, _bound_value(b.key)) for b in bindings)


# ----------------------------------------------- every binding is used ----

@dataclasses.dataclass(frozen=True)
class _Binding:
    """One binding statement of the last parse(), in the order gin read it."""

    key: tuple[str, str, str]  # (scope, configurable, parameter) as gin keys it
    name: str  # as written: 'LSHSelfAttention.n_hashes', a macro's 'LENGTH'
    where: str  # 'my.gin:4' or '--gin_param'
    refers_to: frozenset[str]  # configurables and '%MACRO's its value names
    checked: bool

    @property
    def owner(self) -> str:
        """What the binding sets: a configurable, or '%NAME' for a macro."""
        scope, selector, _ = self.key
        return f'%{scope}' if selector == 'gin.macro' else selector


_parsed: list[_Binding] = []
# What gin held for each key right after parse(). A key gin has cleared or
# rebound since is not this parse's binding any more; one gin does not hold
# (its selector matched another configurable before an import) is not checked.
_parsed_values: dict[tuple[str, str, str], object] = {}
_MISSING = object()


def _bound_value(key):
    scope, selector, parameter = key
    return gin.config._CONFIG.get((scope, selector), {}).get(  # noqa: SLF001
        parameter, _MISSING)


class _Reference(str):
    """A configurable (its full selector) or '%MACRO' that a value names."""


class _References(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_selector, evaluate):
        selector = scoped_selector.rsplit('/', 1)[-1]
        try:
            match = gin.config._REGISTRY.get_match(selector)  # noqa: SLF001
        except KeyError:  # ambiguous; gin has refused it already
            match = None
        return _Reference(match.selector if match else selector)

    def macro(self, macro_name):
        return _Reference(f'%{macro_name}')


def _references(value) -> set[str]:
    if isinstance(value, _Reference):
        return {value}
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return set().union(*map(_references, value))
    return set()


def _include_text(filename: str) -> str:
    """An included file's text, found where gin's parse_config_file finds it
    (as a path, then as a package path such as gin_configs/common/x.gin)."""
    prefixes = ([''] if os.path.isabs(filename)
                else gin.config._LOCATION_PREFIXES)  # noqa: SLF001
    for prefix in prefixes:
        path = os.path.join(prefix, filename)
        for reader, exists in gin.config._FILE_READERS:  # noqa: SLF001
            if exists(path):
                with reader(path) as f:
                    return f.read()
    raise ConfigError(f'gin include not found: {filename!r}')


def _read_bindings(text: str, shown: str | None, checked: bool,
                   out: list[_Binding]) -> None:
    """Appends the bindings of `text` (a gin file named `shown`, or a
    --gin_param when `shown` is None), includes expanded in place."""
    for statement in config_parser.ConfigParser(text, _References()):
        if isinstance(statement, config_parser.IncludeStatement):
            _read_bindings(_include_text(statement.filename),
                           statement.filename, checked, out)
        if not isinstance(statement, config_parser.BindingStatement):
            continue
        scope, selector, parameter, value, location = statement
        scoped = f'{scope}/{selector}' if scope else selector
        if parameter:
            parsed = gin.config.ParsedBindingKey.parse(
                (scope, selector, parameter))
            key = (scope, parsed.complete_selector, parameter)
            name = f'{scoped}.{parameter}'
        else:
            key, name = (scoped, 'gin.macro', 'value'), scoped
        where = (f'{shown}:{location.line_num}' if shown is not None
                 else '--gin_param')
        out.append(_Binding(key, name, where, frozenset(_references(value)),
                            checked))


def _covers(scope: str, call_scope: str) -> bool:
    """Whether a binding in `scope` applies to a call in `call_scope`."""
    return not scope or call_scope == scope or call_scope.startswith(
        scope + '/')


def _called(calls: dict, scope: str, selector: str,
            parameter: str | None = None) -> bool:
    """Whether `calls` (gin's record of configurable calls: (scope, selector)
    -> the parameters bound or defaulted, not those the caller passed) hold
    a call of `selector` that a binding in `scope` (of `parameter`) reached."""
    return any(s == selector and _covers(scope, cs)
               and (parameter is None or parameter in params)
               for (cs, s), params in calls.items())


def _excused(bindings: Sequence[_Binding]) -> set[int]:
    """Bindings left unused on purpose: a later binding replaced the value
    that named their configurable or macro (`tasks.copy.length = 128` over
    `%LENGTH`; `experiments.Experiment.model` switched to another model), so
    what was bound for it before that point is not refused. One bound after
    the replacement is."""
    excused, latest = set(), {}
    for i, binding in enumerate(bindings):
        if binding.key in latest:
            gone = list(bindings[latest[binding.key]].refers_to
                        - binding.refers_to)
            while gone:
                owner = gone.pop()
                for j in range(i):
                    if bindings[j].owner == owner and j not in excused:
                        excused.add(j)
                        gone.extend(bindings[j].refers_to)
        latest[binding.key] = i
    return excused


def _unused(calls: dict) -> list[_Binding]:
    """The checked bindings of the last parse() that no call used."""
    latest = {b.key: i for i, b in enumerate(_parsed)}
    excused = _excused(_parsed)
    return [b for i, b in enumerate(_parsed)
            if b.checked and latest[b.key] == i and i not in excused
            and _parsed_values[b.key] is not _MISSING
            and _bound_value(b.key) is _parsed_values[b.key]
            and not _called(calls, *b.key)]


def _counterpart(selector: str, parameter: str, calls) -> str | None:
    """The binding meant, for a trax configurable that this project calls
    with `parameter` set (or none at all), or for the model not built: the
    same-named field of one of this project's models (the one of the same
    name, else the one built, else any)."""
    from models.language_models import ReformerLM, TransformerLM
    specs = {f'models.{spec.__name__}': spec
             for spec in (ReformerLM, TransformerLM)}
    if not selector.startswith('trax.') and selector not in specs:
        return None
    short = selector.rsplit('.', 1)[-1]
    order = ([s for s in specs if s.endswith(f'.{short}')]
             + [s for s in specs if _called(calls, '', s)] + list(specs))
    for spec in dict.fromkeys(order):
        fields = {f.name for f in dataclasses.fields(specs[spec])}
        if spec != selector and parameter in fields:
            return f'{spec}.{parameter}'
    return None


def _why_unused(binding: _Binding, calls) -> str:
    scope, selector, parameter = binding.key
    if selector == 'gin.macro':
        macros = {b.owner for b in _parsed} | {
            r for b in _parsed for r in b.refers_to if r.startswith('%')}
        near = difflib.get_close_matches(binding.owner, macros - {
            binding.owner}, n=1)
        return (f'gin macro {binding.name} ({binding.where}) is never used: '
                f'nothing refers to %{binding.name}'
                + (f'; did you mean {near[0][1:]}?' if near else ''))
    if _called(calls, scope, selector):
        why = f'{selector} is called with {parameter} set by its caller'
    else:
        why = f'{selector} is never called' + (f' in scope {scope}'
                                                if scope else '')
    instead = _counterpart(selector, parameter, calls)
    return (f'gin binding {binding.name} ({binding.where}) is never used: '
            f'{why}' + (f'; bind {instead} instead' if instead else ''))


@contextlib.contextmanager
def every_binding_used():
    """Raises ConfigError after the block if a binding of the last parse()
    was used by no configurable call in it. The block sees gin's record of
    calls (its operative config) empty; what it held before is merged back
    after, so that record still covers the whole process."""
    record = gin.config._OPERATIVE_CONFIG  # noqa: SLF001
    earlier = {key: dict(params) for key, params in record.items()}
    record.clear()
    try:
        yield
        calls = {key: set(params) for key, params in record.items()}
    finally:
        for key, params in earlier.items():
            merged = record.setdefault(key, {})
            for name, value in params.items():
                merged.setdefault(name, value)
    unused = _unused(calls)
    if unused:
        raise ConfigError(_why_unused(unused[0], calls) + (
            '; also never used: ' + ', '.join(
                f'{b.name} ({b.where})' for b in unused[1:])
            if unused[1:] else ''))


def build_experiment(for_training: bool = True):
    """Calls the gin-configured root; every setting is validated here, and
    every binding of the last parse() must be used by the calls that
    training makes (or, with for_training=False, evaluating and decoding a
    trained run): their layers are constructed, not initialised. Nothing
    here starts JAX or reads the machine (training.start_jax does)."""
    from experiments import training  # noqa: F401  (registers the root)
    with every_binding_used():
        try:
            experiment = gin.get_configurable('experiments.Experiment')()
            _construct_layers(experiment, for_training)
        except (ValueError, TypeError) as e:
            raise ConfigError(_explain(e)) from e
        except RecursionError:
            raise ConfigError(_cycle()) from None
        except RuntimeError as e:
            # gin's one RuntimeError: a referenced configurable (`@name()`)
            # has a required parameter that nothing binds.
            if 'Required bindings for' not in str(e):
                raise
            raise ConfigError(_explain(e)) from e
    return experiment


def _cycle() -> str:
    """What a RecursionError in gin's calls means: a binding whose value
    calls the configurable it binds, named where the parse has one."""
    latest = {b.key: b for b in _parsed}
    own = [b for b in latest.values() if b.owner in b.refers_to]
    where = (f'{own[0].name} ({own[0].where}) is bound to a call of '
             f'{own[0].owner} itself' if own else
             'a configurable is bound to a call of itself')
    return f'the gin bindings refer to each other in a cycle: {where}'


def _construct_layers(experiment, for_training: bool) -> None:
    """Makes the configurable calls a run makes after building the root, so
    gin records the bindings they take: the optimizer, and the layers of each
    mode the run builds (trax's models and layers are configurables too).
    On trax's NumPy backend: trax's optimizers make arrays of their
    settings, and with JAX's that would start JAX."""
    from experiments import decoding, training
    from models.trax_bridge import trax
    # One layer stands for all: trax builds n_layers identical ones, and a
    # binding may ask for 2**40.
    model = dataclasses.replace(experiment.model, n_layers=1)
    with trax.fastmath.use_backend(trax.fastmath.Backend.NUMPY):
        if for_training:
            training.with_loss(model)
            experiment.optimizer()
        training.with_metrics(model)
        if not for_training or experiment.decode_eval_every:
            decoding.predict_spec(model, experiment.task.length)('predict')


# How gin names the configurable whose call failed; a `%NAME` that nothing
# defines fails as a call to 'macro' in scope 'NAME'.
_FAILED_CALL = re.compile(
    r"In call to configurable '([^']+)'.*?(?: in scope '([^']+)')?$",
    re.MULTILINE)
# A configurable called through a reference, with a required parameter unset.
_UNBOUND_CALL = re.compile(r'Required bindings for `([^`]+)`')


def _explain(error: Exception) -> str:
    """One line for a failed build, with the bindings that led to the call
    that failed (gin itself only names the configurable)."""
    match = _FAILED_CALL.search(str(error))
    if match and match.group(1) == 'macro' and match.group(2):
        name = match.group(2)
        uses = _lines_matching(rf'%{re.escape(name)}\b')
        return (f'gin macro %{name} is used but never defined'
                + (f' (in: {"; ".join(uses)})' if uses else ''))
    message = one_line(error)
    unbound = _UNBOUND_CALL.search(str(error))
    failed = match.group(1) if match else unbound and unbound.group(1)
    if failed:
        short = failed.rsplit('.', 1)[-1]
        uses = _lines_matching(rf'@([\w.]*\.)?{re.escape(short)}\(')
        if uses:
            message += f' (referenced by: {"; ".join(uses)})'
    return message


def _lines_matching(pattern: str) -> list[str]:
    return [line.strip() for line in gin.config_str().splitlines()
            if re.search(pattern, line)]
