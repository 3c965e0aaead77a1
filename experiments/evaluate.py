r"""Evaluates a trained checkpoint, optionally under other settings.

    python -m experiments.evaluate --output_dir=runs/reformer_copy
    python -m experiments.evaluate --output_dir=runs/reformer_copy \
        --gin_param='models.ReformerLM.n_hashes=8'
    python -m experiments.evaluate --output_dir=runs/reformer_copy \
        --lengths=64,128,256     # length generalisation: one row per length

Prints the eval split's teacher-forced metrics (loss, accuracy,
sequence_accuracy, as in training) and exact_match: the share of examples
whose whole answer the model generates itself (greedy, predict mode). Saves
them as JSON under <output_dir>/evaluations/. Bindings may change settings
that keep the weights' shapes (n_hashes, n_buckets, chunk_len, attention,
task length); a binding that nothing uses is refused. --lengths evaluates
the same task at each length (up to the model's max_len); a model that
cannot decode gets no exact_match, and the reason is printed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from typing import Sequence

from absl import flags
from absl import logging
from models.trax_bridge import shapes

from experiments import cli, compile_cache, decoding, errors
from experiments import manifest, restore, training

FLAGS = flags.FlagValues()
flags.DEFINE_string('output_dir', None, 'Run directory to evaluate.',
                    flag_values=FLAGS)
flags.DEFINE_multi_string('gin_param', [], 'Gin binding applied after the '
                          "run's config.gin; repeatable.", flag_values=FLAGS)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).',
                     flag_values=FLAGS)
flags.DEFINE_integer('num_batches', None, 'Eval batches (default: the '
                     "experiment's n_eval_batches).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_list('lengths', [], 'Task lengths to evaluate at, e.g. 64,128 '
                  "(default: the run's own).", flag_values=FLAGS)

RESULTS_DIR = 'evaluations'


def evaluate(restored, n_batches: int | None = None,
             decode: bool = True) -> dict[str, float]:
    """Teacher-forced metrics on the eval split, and (if `decode` and the
    model decodes) the decoded exact match."""
    exp = restored.experiment
    batches = [exp.task.batch('eval', i)
               for i in range(n_batches or exp.n_eval_batches)]
    evaluation = training.Evaluation(exp.model, shapes.signature(batches[0]),
                                     *training.fresh_state_keys(exp.seed))
    metrics = evaluation(restored.weights,
                         evaluation.fitting_state(restored.state), batches)
    if decode and decoding.why_not_decodable(exp.model, exp.task.length) is None:
        decoder = decoding.decoder_for(exp.model, exp.task.length,
                                       seed=exp.seed)
        metrics['exact_match'] = float(decoding.exact_match(
            decoder, restored.weights, batches))
    return metrics


def results_path(output_dir: str, step: int, overrides: Sequence[str],
                 length: int | None = None) -> str:
    """evaluations/step_00002000[__<overrides>][__length=<n>].json in the run
    directory (the length when it is not the trained one)."""
    name = f'step_{step:08d}'
    if overrides:
        slug = '+'.join(re.sub(r'[\s\'"]+', '', b) for b in overrides)
        name += '__' + re.sub(r'[^A-Za-z0-9_.=+-]', '_', slug)
    if length is not None:
        name += f'__length={length}'
    return os.path.join(output_dir, RESULTS_DIR, name + '.json')


def at_length(restored, length: int):
    """`restored` with its task at `length`; ConfigError if the model
    cannot take it (max_len, chunk lengths) or the task cannot be made."""
    exp = restored.experiment
    try:
        return dataclasses.replace(restored, experiment=dataclasses.replace(
            exp, task=exp.task_at(length)))
    except ValueError as e:
        raise errors.ConfigError(f'--lengths={length}: {e}') from e


def parse_lengths(values: Sequence[str]) -> list[int]:
    try:
        lengths = [int(v) for v in values]
    except ValueError:
        raise errors.ConfigError('--lengths must be positive ints separated '
                                 f'by commas, got {",".join(values)}') from None
    if any(n < 1 for n in lengths) or len(set(lengths)) < len(lengths):
        raise errors.ConfigError('--lengths must be distinct positive ints, '
                                 f'got {",".join(values)}')
    return lengths


def run(output_dir: str | None, gin_params: Sequence[str] = (),
        step: int | None = None, num_batches: int | None = None,
        lengths: Sequence[int] = ()) -> int:
    """The whole command after flag parsing; returns the exit status."""
    logging.set_verbosity(logging.WARNING)
    if not output_dir:
        raise errors.ConfigError('give --output_dir, the run to evaluate')
    restored = restore.restore(output_dir, gin_params, step)
    trained_length = restored.experiment.task.length
    # Every length is checked before any is evaluated.
    runs = [at_length(restored, n) for n in lengths] or [restored]
    n_batches = num_batches or restored.experiment.n_eval_batches
    setting = (f'--num_batches={n_batches}' if num_batches else
               f'experiments.Experiment.n_eval_batches={n_batches}')
    for each in runs:
        task = each.experiment.task
        # evaluate() holds every batch (inputs, targets, loss weights).
        training.check_memory(
            f'{setting} batches of {task.batch_size} x {task.length} tokens',
            3 * n_batches * task.batch_size * task.length)
    exp = restored.experiment
    n_examples = n_batches * exp.task.batch_size
    settings = ', '.join(restored.overrides) or 'its trained settings'
    print(f'{output_dir} at step {restored.step} under {settings}, on '
          f'{n_examples} eval examples of {exp.task.name} (trained at length '
          f'{trained_length}):')
    starts = manifest.read(output_dir)
    if starts:
        print(f'  trained on {manifest.describe(starts[-1])}')
    for each in runs:
        length = each.experiment.task.length
        metrics = evaluate(each, num_batches)
        print(f'  length {length}: ' + '  '.join(
            f'{k} {v:.4f}' for k, v in metrics.items()))
        why = decoding.why_not_decodable(each.experiment.model, length)
        if why:
            print(f'    no exact_match: {why}')
        print(f'    wrote {save(each, metrics, n_examples, trained_length)}')
    return 0


def save(restored, metrics: dict[str, float], n_examples: int,
         trained_length: int | None = None) -> str:
    """Writes the metrics (atomically) to results_path(); returns it."""
    exp = restored.experiment
    other_length = (exp.task.length if trained_length not in (
        None, exp.task.length) else None)
    path = results_path(restored.output_dir, restored.step,
                        restored.overrides, other_length)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump({'output_dir': restored.output_dir, 'step': restored.step,
                   'overrides': list(restored.overrides),
                   'task': exp.task.name, 'length': exp.task.length,
                   'n_examples': n_examples, 'metrics': metrics}, f,
                  indent=2)
    os.replace(path + '.tmp', path)
    return path


def _command(args: list[str]) -> int:
    compile_cache.enable()
    return run(FLAGS.output_dir, FLAGS.gin_param, FLAGS.step,
               FLAGS.num_batches, parse_lengths(FLAGS.lengths))


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
