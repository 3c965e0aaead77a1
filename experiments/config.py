"""Finding and parsing gin files, and building the experiment root.

Experiment files include shared pieces by package path
(`include 'gin_configs/common/training.gin'`), which gin resolves through the
Python path, so they work from any directory and from an installed package.
"""
from __future__ import annotations

import os
import re
from typing import Sequence

import gin

import gin_configs

CONFIG_DIR = os.path.dirname(os.path.abspath(gin_configs.__file__))


class ConfigError(Exception):
    """A bad gin file, binding or setting; its message is meant for the user."""


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


def _one_line(error: Exception) -> str:
    """One line from a gin error: the cause, then where gin says it happened."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # gin appends "In call to configurable 'x' (<function x at 0x...>)".
    lines = [re.sub(r' \(<[^>]*>\)', '', line) for line in lines]
    return ' '.join(lines) or type(error).__name__


def parse(gin_files: Sequence[str], gin_params: Sequence[str] = ()) -> None:
    """Parses the files, then the bindings."""
    if not gin_files:
        raise ConfigError('give at least one --gin_file')
    paths = [resolve(f) for f in gin_files]
    errors = (ValueError, TypeError, KeyError, SyntaxError, ImportError,
              OSError)
    try:
        gin.parse_config_files_and_bindings(paths, None, finalize_config=False)
    except errors as e:
        raise ConfigError(_one_line(e)) from e
    # One at a time, so an error names the binding it comes from.
    for binding in map(translate, gin_params):
        try:
            gin.parse_config(binding)
        except errors as e:
            raise ConfigError(f'--gin_param={binding!r}: {_one_line(e)}') from e


# trax registers its LSHSelfAttention with gin, but models.ReformerLM passes it
# every setting explicitly, so a binding there would silently do nothing.
_LSH_BINDING = re.compile(
    r'^\s*(?:trax\.layers\.|tl\.)?LSHSelfAttention\.(\w+)\s*=(.*)$', re.S)


def lsh_aliases() -> tuple[str, ...]:
    """The LSHSelfAttention settings that models.ReformerLM also has."""
    import dataclasses
    import inspect
    from trax import layers as tl
    from models.language_models import ReformerLM
    return tuple(sorted(
        {f.name for f in dataclasses.fields(ReformerLM)}
        & set(inspect.signature(tl.LSHSelfAttention.__init__).parameters)))


def translate(binding: str) -> str:
    """`LSHSelfAttention.n_hashes = 8` -> `models.ReformerLM.n_hashes = 8`;
    other LSHSelfAttention settings are refused, other bindings kept."""
    match = _LSH_BINDING.match(binding)
    if not match:
        return binding
    name, value = match.groups()
    aliases = lsh_aliases()
    if name not in aliases:
        raise ConfigError(
            f'--gin_param={binding!r}: models.ReformerLM builds '
            f'LSHSelfAttention and sets {name} itself; bind one of '
            + ', '.join(f'models.ReformerLM.{a}' for a in aliases))
    return f'models.ReformerLM.{name} = {value.strip()}'


def activation_size(model, n_sequences: int, length: int) -> int:
    """Numbers in the model's widest activation for `n_sequences`."""
    return n_sequences * length * max(model.d_model, model.d_ff,
                                      model.vocab_size)


def check_memory(what: str, n_numbers: int) -> None:
    """Refuses `what` if `n_numbers` float32s at once exceed this machine's
    memory: an impossible size, reported before anything is allocated."""
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    if 4 * n_numbers > memory:
        raise ConfigError(
            f'{what} needs {4 * n_numbers / 2**30:.3g} GiB at once; this '
            f'machine has {memory / 2**30:.3g} GiB')


def build_experiment():
    """Calls the gin-configured root; every setting is validated here."""
    from experiments import training  # noqa: F401  (registers the root)
    try:
        experiment = gin.get_configurable('experiments.Experiment')()
    except (ValueError, TypeError) as e:
        raise ConfigError(_explain(e)) from e
    except RuntimeError as e:
        # gin's one RuntimeError: a referenced configurable (`@name()`) has
        # a required parameter that nothing binds.
        if 'Required bindings for' not in str(e):
            raise
        raise ConfigError(_explain(e)) from e
    task = experiment.task
    check_memory(
        f'a batch of tasks.{task.name}.batch_size={task.batch_size} x '
        f'length={task.length}',
        activation_size(experiment.model, task.batch_size, task.length))
    return experiment


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
    message = _one_line(error)
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
