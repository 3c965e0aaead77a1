"""Rebuilding a trained run from its directory, optionally under other settings.

`restore(output_dir, gin_params, step)` parses the run's saved config.gin,
applies the extra bindings, builds the experiment and loads a checkpoint. A
binding may change anything that keeps the trained weights' shapes (LSH
hashes, buckets, chunk length, full vs LSH attention, task length); one that
changes a weight's shape is refused, naming the parameter.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import gin
import jax
import numpy as np
from models.trax_bridge import shapes

from experiments import checkpoints, config, errors, training, xla_cpu
from models.language_models import LanguageModel

@dataclasses.dataclass(frozen=True)
class Restored:
    """A trained run as rebuilt: its experiment (with overrides applied), the
    model's weights and state from the checkpoint, and where it came from."""

    experiment: Any  # experiments.training.Experiment
    weights: Any
    state: Any
    step: int
    output_dir: str
    overrides: tuple[str, ...]


def _parse(saved_config: str, bindings: Sequence[str]):
    """The run's experiment under `bindings`, each of which must be used by
    evaluating or decoding it (config.gin's own are the run's)."""
    gin.clear_config()
    config.parse([saved_config], bindings, check_files=False)
    return config.build_experiment(for_training=False)


def initial_weights(model: LanguageModel, length: int):
    """The shapes of `model`'s freshly initialised weights (traced only:
    nothing is drawn or computed)."""
    signature = shapes.ShapeDtype((1, length), np.int32)
    return jax.eval_shape(lambda: model('eval').init(signature)[0])


def _shape_changers(trained: LanguageModel, model: LanguageModel,
                    length: int, weights) -> list[str] | None:
    """None if `model`'s weights fit the trained `weights`, else the bindings
    that change their shapes: those that do so on their own, else all."""
    if type(trained) is not type(model):
        return [f'experiments.Experiment.model=@models.{model.name}()']
    changed = [f.name for f in dataclasses.fields(model)
               if getattr(trained, f.name) != getattr(model, f.name)]
    alone = [name for name in changed if not _fits_alone(
        trained, name, getattr(model, name), length, weights)]
    if not alone and training.fits(initial_weights(model, length), weights):
        return None
    return [f'models.{model.name}.{name}={getattr(model, name)!r} (trained '
            f'with {getattr(trained, name)!r})' for name in alone or changed]


def _fits_alone(trained: LanguageModel, name: str, value, length: int,
                weights) -> bool:
    """Whether `trained` with `name` set to `value` still fits `weights`. A
    size over twice the trained one is tried at twice it: a shape that
    depends on it changes either way, and an impossible size (2**40 layers)
    is never built."""
    old = getattr(trained, name)
    if all(isinstance(v, int) and not isinstance(v, bool)
           for v in (old, value)) and value > 2 * old:
        value = 2 * old
    try:
        probe = dataclasses.replace(trained, **{name: value})
    except ValueError:  # valid only with the other overrides
        return True
    return training.fits(initial_weights(probe, length), weights)


def restore(output_dir: str, gin_params: Sequence[str] = (),
            step: int | None = None) -> Restored:
    """Rebuilds the run in `output_dir` (replacing the global gin config);
    raises errors.ConfigError on bad input (no run, no such checkpoint, a
    bad or weight-changing binding)."""
    saved_config = os.path.join(output_dir, 'config.gin')
    if not os.path.isdir(output_dir):
        raise errors.ConfigError(f'no run directory {output_dir!r}')
    if not os.path.isfile(saved_config):
        raise errors.ConfigError(f'{output_dir} has no config.gin; is it a '
                                 'run directory written by experiments.main?')
    overrides = tuple(gin_params)
    trained = _parse(saved_config, ())
    experiment = _parse(saved_config, overrides)
    training.check_batch_memory(experiment)
    xla_cpu.start(experiment.cpu_threads)  # the run's pool, before any array
    try:
        checkpoint = checkpoints.load(output_dir, step)
    except checkpoints.CheckpointError as e:
        raise errors.ConfigError(str(e)) from e
    if checkpoint is None:
        raise errors.ConfigError(f'no checkpoint in {output_dir}; train it '
                                 'first with experiments.main')
    try:  # the model's part of (model, loss) trees, as training saves them
        weights, state = checkpoint['weights'][0], checkpoint['state'][0]
    except (TypeError, IndexError, KeyError):
        weights = state = None
    changers = [] if weights is None else _shape_changers(
        trained.model, experiment.model, trained.task.length, weights)
    if changers == []:
        raise errors.ConfigError(f'the checkpoint in {output_dir} does '
                                 'not fit the model in its config.gin')
    if changers:
        raise errors.ConfigError(
            ', '.join(changers) + ' changes the shapes of the trained '
            'weights; overrides may only change settings that keep them '
            '(e.g. n_hashes, n_buckets, chunk_len, attention, the task '
            'length)')
    return Restored(experiment, weights, state, checkpoint['step'],
                    output_dir, overrides)
