r"""Sweep files: a base experiment, axes of gin bindings, and their trials.

A sweep is a gin file that binds `scripts.Sweep`:

    import scripts.sweeps
    scripts.Sweep.base = 'reformer_copy.gin'
    scripts.Sweep.bindings = ['experiments.Experiment.n_steps = 600']
    scripts.Sweep.axes = {
        'models.ReformerLM.n_hashes': [1, 2, 4],
        'models.ReformerLM.chunk_len': [8, 32],
    }
    scripts.Sweep.mode = 'grid'   # or 'zip'
    scripts.Sweep.seeds = [0, 1, 2]   # optional: every trial once per seed

Each trial is the base experiment plus `bindings`, then one binding per axis
(`models.ReformerLM.n_hashes = 2`) and, with seeds, `SEED = 1` (the macro
that gin_configs/common/training.gin feeds to the experiment and its task),
so it is an ordinary `python -m experiments.main` run. An axis is any gin
parameter or macro; a string value starting with `@` or `%` is a reference
or macro and is bound as written (`'@models.ReformerLM()'`), any other value
as a literal. An axis may instead map labels to what each stands for: a
gin file read after the base files, or a list of bindings (one task and
its lengths, say):

    scripts.Sweep.axes = {'task': {'copy': 'zoo/copy.gin',
                                   'mqar': ['tasks.mqar.n_pairs = 4', ...]}}

Trial names come from the values: `n_hashes=2,chunk_len=8` (`...,seed=1`).
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any, Mapping, Sequence

import gin

from experiments import config
from experiments.errors import ConfigError, one_line

MODES = ('grid', 'zip')
# Sweep.seeds bind this macro (trial names and reports call it `seed`).
SEED_MACRO = 'SEED'
# An eval metric, at the training length or at a multiple of it.
LEADERBOARD_METRIC = re.compile(r'[a-z_]+(@[1-9][0-9]*x)?')


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A base experiment and the axes to vary over it.

    base: the experiment's gin file(s), as for `--gin_file`.
    axes: gin parameter or macro name -> the values it takes, in order.
    mode: 'grid' (every combination, the first axis varying slowest) or
      'zip' (the i-th value of every axis together; equal lengths).
    bindings: applied to every trial after `base` and before the axis values.
    seeds: if given, every trial runs once per seed (an innermost axis
      binding the SEED macro); reports aggregate over them.
    leaderboard: eval metrics (`exact_match`, or `exact_match@2x` at twice
      the training length) that the report tabulates with the first axis
      as rows and the second as columns (a grid of exactly two axes).
    """

    base: str | Sequence[str]
    axes: Mapping[str, Sequence[Any]]
    mode: str = 'grid'
    bindings: Sequence[str] = ()
    seeds: Sequence[int] = ()
    leaderboard: Sequence[str] = ()

    def __post_init__(self):
        base = [self.base] if isinstance(self.base, str) else self.base
        if not base or not all(isinstance(f, str) and f for f in base):
            raise ValueError(f'Sweep.base must be a gin file or a list of '
                             f'them, got {self.base!r}')
        if not isinstance(self.axes, Mapping) or not self.axes:
            raise ValueError('Sweep.axes must map gin parameter names to '
                             f'lists of values, got {self.axes!r}')
        for name, values in self.axes.items():
            if isinstance(values, Mapping):
                _check_bundles(name, values)
                continue
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f'Sweep.axes[{name!r}] must be a non-empty '
                                 f'list of values, got {values!r}')
            # A zip may repeat a value (attention 'lsh' with 1, 2, 4 hashes);
            # expand() still rejects two trials with the same values.
            if self.mode != 'zip' and len(set(map(_gin_value, values))) < len(
                    values):
                raise ValueError(f'Sweep.axes[{name!r}] repeats a value: '
                                 f'{values!r}')
        if self.mode not in MODES:
            raise ValueError(f'Sweep.mode must be one of {MODES}, got '
                             f'{self.mode!r}')
        lengths = {name: len(v) for name, v in self.axes.items()}
        if self.mode == 'zip' and len(set(lengths.values())) > 1:
            raise ValueError('Sweep.mode is zip, so every axis needs the '
                             f'same number of values; got {lengths}')
        if isinstance(self.bindings, str) or not all(
                isinstance(b, str) for b in self.bindings):
            raise ValueError('Sweep.bindings must be a list of gin binding '
                             f'strings, got {self.bindings!r}')
        if isinstance(self.seeds, (str, bytes)) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for v in self.seeds) or len(set(self.seeds)) < len(self.seeds):
            raise ValueError('Sweep.seeds must be a list of distinct ints >= '
                             f'0, got {self.seeds!r}')
        if self.seeds and SEED_MACRO in self.axes:
            raise ValueError(f'Sweep.seeds and the axis {SEED_MACRO!r} both '
                             'set the seed; keep one')
        object.__setattr__(self, 'seeds', tuple(self.seeds))
        if isinstance(self.leaderboard, str) or not all(
                isinstance(m, str) and LEADERBOARD_METRIC.fullmatch(m)
                for m in self.leaderboard):
            raise ValueError('Sweep.leaderboard must be a list of eval metric '
                             "names such as 'exact_match' or "
                             f"'accuracy@2x', got {self.leaderboard!r}")
        if self.leaderboard and (self.mode != 'grid' or len(self.axes) != 2):
            raise ValueError('Sweep.leaderboard needs a grid of exactly two '
                             'axes (rows, columns), got a '
                             f'{self.mode} of {len(self.axes)}')
        object.__setattr__(self, 'leaderboard', tuple(self.leaderboard))
        object.__setattr__(self, 'base', tuple(base))
        object.__setattr__(self, 'axes', {
            k: dict(v) if isinstance(v, Mapping) else tuple(v)
            for k, v in self.axes.items()})
        object.__setattr__(self, 'bindings', tuple(self.bindings))


def _check_bundles(axis: str, bundles: Mapping) -> None:
    """A bundle axis: label -> the gin file or the bindings it stands for."""
    def is_bundle_value(b):
        return (isinstance(b, str) and b.endswith('.gin')) or (
            isinstance(b, (list, tuple)) and b
            and all(isinstance(x, str) for x in b))
    if not bundles or not all(
            isinstance(label, str) and re.fullmatch(r'[A-Za-z0-9_.+-]+', label)
            and is_bundle_value(b) for label, b in bundles.items()):
        raise ValueError(f'Sweep.axes[{axis!r}] must map labels (letters, '
                         'digits, _.+-) to a gin file or a non-empty list of '
                         f'gin bindings, got {bundles!r}')


@dataclasses.dataclass(frozen=True)
class Trial:
    """One point of a sweep: its name, swept values and full bindings.

    values: axis key (the short name used in trial names) -> value.
    bindings: the sweep's bindings, then one per axis.
    files: the gin files after the sweep's base that its bundles name.
    """

    name: str
    values: dict[str, Any]
    bindings: tuple[str, ...]
    files: tuple[str, ...] = ()


def _gin_value(value: Any) -> str:
    """`value` as gin text: references and macros verbatim, else a literal."""
    if isinstance(value, str) and value[:1] in ('@', '%'):
        return value
    return repr(value)


def short_value(value: Any) -> str:
    """A readable, path-safe form: `ReformerLM` for '@models.ReformerLM()'."""
    if isinstance(value, str) and value[:1] in ('@', '%'):
        value = value[1:].removesuffix('()').rsplit('.', 1)[-1]
    return re.sub(r'[^A-Za-z0-9.+-]+', '-', str(value)).strip('-') or '-'


def axis_keys(axes: Sequence[str]) -> dict[str, str]:
    """Axis name -> its shortest unique dotted suffix (`n_hashes`).

    Macros (UPPER_SNAKE, no dots) are lower-cased: `D_MODEL` -> `d_model`.
    """
    parts = {a: a.split('.') for a in axes}
    depth = dict.fromkeys(axes, 1)

    def key(axis: str) -> str:
        suffix = '.'.join(parts[axis][-depth[axis]:])
        return suffix if '.' in axis else suffix.lower()

    while True:
        keys = {a: key(a) for a in axes}
        clashes = [a for a in axes if list(keys.values()).count(keys[a]) > 1]
        growable = [a for a in clashes if depth[a] < len(parts[a])]
        if not clashes:
            return keys
        if not growable:
            raise ConfigError(f'axes {clashes} give the same trial-name key '
                              f'{keys[clashes[0]]!r}; rename one')
        for a in growable:
            depth[a] += 1


def is_bundle(values) -> bool:
    """Whether an axis's values are labelled bundles of bindings."""
    return isinstance(values, Mapping)


def all_axes(sweep: Sweep) -> dict[str, tuple | dict]:
    """The sweep's axes, and the seeds as the innermost one if it has any."""
    return {**sweep.axes, **({SEED_MACRO: sweep.seeds} if sweep.seeds else {})}


def expand(sweep: Sweep) -> list[Trial]:
    """The sweep's trials, in grid or zip order, each point's seeds in a
    row."""
    axes = all_axes(sweep)
    keys = axis_keys(list(axes))
    columns = [list(v) for v in sweep.axes.values()]  # a bundle's labels
    combos = (itertools.product(*columns) if sweep.mode == 'grid'
              else zip(*columns))
    if sweep.seeds:
        combos = (combo + (seed,) for combo in combos for seed in sweep.seeds)
    trials = []
    for combo in combos:
        values = {keys[a]: v for a, v in zip(axes, combo)}
        name = ','.join(f'{k}={short_value(v)}' for k, v in values.items())
        bindings, files = sweep.bindings, ()
        for axis, value in zip(axes, combo):
            bundle = axes[axis][value] if is_bundle(axes[axis]) else None
            if isinstance(bundle, str):
                files += (bundle,)
            elif bundle:
                bindings += tuple(bundle)
            else:
                bindings += (f'{axis} = {_gin_value(value)}',)
        trials.append(Trial(name, values, bindings, files))
    names = [t.name for t in trials]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError('two trials would share the name '
                          f'{duplicates[0]!r}; make the axis values distinct')
    return trials


def sweep_name(sweep_file: str) -> str:
    """`reformer_lsh` for `sweeps/reformer_lsh.gin`."""
    return config.experiment_name([sweep_file])


def load(sweep_file: str) -> Sweep:
    """Parses a sweep file, each of whose bindings must be used; gin is left
    clear."""
    gin.clear_config()
    try:
        config.parse([sweep_file])
        with config.every_binding_used():
            return gin.get_configurable('scripts.Sweep')()
    except ConfigError as e:
        raise ConfigError(f'sweep file {sweep_file}: {e}') from e
    except (ValueError, TypeError) as e:
        raise ConfigError(f'sweep file {sweep_file}: {one_line(e)}') from e
    finally:
        gin.clear_config()


def _binding_key(name: str) -> tuple[str, str]:
    """(configurable, parameter) of a binding key, or ('%', macro)."""
    if '.' not in name:
        return '%', name
    parsed = gin.config.ParsedBindingKey.parse(name)
    return parsed.complete_selector, parsed.arg_name


def _operative_keys() -> set[tuple[str, str]]:
    """Keys of the bindings the last build actually used (scopes dropped)."""
    keys = set()
    for name in re.findall(r'^([\w./]+) = ', gin.operative_config_str(), re.M):
        try:
            keys.add(_binding_key(name.rsplit('/', 1)[-1]))
        except ValueError:  # something gin printed but cannot look up again
            pass
    return keys


def validate(sweep: Sweep, trials: Sequence[Trial]) -> None:
    """Parses and builds every trial's experiment in-process; leaves gin clear.

    Raises ConfigError naming the first bad trial (a binding it does not
    use: a bundle's, or the SEED of Sweep.seeds in a base that seeds itself),
    or an axis that no trial uses (a misspelt macro, or a model the
    experiment never builds).
    """
    used = set()
    for trial in trials:
        gin.clear_config()
        try:
            config.parse(sweep.base + trial.files, trial.bindings)
            config.build_experiment()
            used |= _operative_keys()
        except ConfigError as e:
            raise ConfigError(f'trial {trial.name}: {e}') from e
        finally:
            gin.clear_config()
    for axis, values in sweep.axes.items():
        # A bundle's bindings are each checked as used by its trials' builds.
        if not is_bundle(values) and _binding_key(axis) not in used:
            raise ConfigError(
                f'axis {axis!r} has no effect on any trial (no trial uses it; '
                'a misspelt macro, or a configurable the experiment does not '
                'build?)')



def main_args(sweep: Sweep, trial: Trial, output_dir: str) -> list[str]:
    """Arguments after `python` that run one trial by hand."""
    return (['-m', 'experiments.main']
            + [f'--gin_file={f}' for f in sweep.base + trial.files]
            + [f'--gin_param={b}' for b in trial.bindings]
            + [f'--output_dir={output_dir}'])


gin.external_configurable(Sweep, module='scripts')
