r"""Decodes with a trained checkpoint in predict mode.

    python -m experiments.decode --output_dir=runs/reformer_copy --num_examples=8
    python -m experiments.decode --output_dir=runs/reformer_copy \
        --prompt="0 5 9 3 17 0"

Without --prompt, prints task examples (prompt, target answer, the answer the
model generated, and whether it is exactly right) and the exact-match share.
With --prompt (repeatable; one batch), prints each prompt's completion up to
--length tokens in all. Decoding is greedy unless --temperature > 0. The
run's config.gin gives the model; --gin_param bindings may change settings
that keep the weights' shapes, as for experiments.evaluate.
"""
from __future__ import annotations

import math
import sys
from typing import Sequence

from absl import flags
from absl import logging
import numpy as np

from experiments import cli, compile_cache, decoding, errors
from experiments import restore, training

FLAGS = flags.FlagValues()
flags.DEFINE_string('output_dir', None, 'Run directory to decode with.',
                    flag_values=FLAGS)
flags.DEFINE_integer('num_examples', 8, 'Task examples to decode.',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum('split', 'eval', ['eval', 'train'], 'Where the examples '
                  'come from.', flag_values=FLAGS)
flags.DEFINE_multi_string('prompt', [], 'Token ids separated by spaces, e.g. '
                          '"0 5 9 3 17 0"; repeatable.', flag_values=FLAGS)
flags.DEFINE_integer('length', None, 'Total tokens per prompted sequence '
                     '(default: the task length).', lower_bound=2,
                     flag_values=FLAGS)
flags.DEFINE_float('temperature', 0.0, '0 for greedy decoding, else sample '
                   'from softmax(logits / temperature).', lower_bound=0.0,
                   flag_values=FLAGS)
flags.DEFINE_integer('seed', 0, 'Seed for sampling (temperature > 0).',
                     lower_bound=0, upper_bound=2**32 - 1, flag_values=FLAGS)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).',
                     flag_values=FLAGS)
flags.DEFINE_multi_string('gin_param', [], 'Gin binding applied after the '
                          "run's config.gin; repeatable.", flag_values=FLAGS)


def _tokens(row) -> str:
    return ' '.join(str(int(t)) for t in row)


def parse_prompt(text: str, vocab_size: int) -> list[int]:
    """'0 5 9' -> [0, 5, 9], each a token id of the model."""
    try:
        tokens = [int(t) for t in text.replace(',', ' ').split()]
    except ValueError:
        raise errors.ConfigError(f'--prompt={text!r}: give token ids '
                                 '(ints) separated by spaces') from None
    if not tokens:
        raise errors.ConfigError('--prompt is empty')
    bad = [t for t in tokens if not 0 <= t < vocab_size]
    if bad:
        raise errors.ConfigError(f'--prompt={text!r}: token ids must be '
                                 f'in [0, {vocab_size}), got {bad}')
    return tokens


def task_examples(task, split: str, n: int) -> decoding.Examples:
    """The first `n` examples of `split`, as prompt and answer."""
    batches = [task.batch(split, i)
               for i in range(-(-n // task.batch_size))]
    return decoding.Examples.from_batch(
        [np.concatenate(parts)[:n] for parts in zip(*batches)])


def show_examples(restored, split: str, n: int, temperature: float,
                  seed: int) -> None:
    exp = restored.experiment
    # All n are decoded as one batch.
    training.check_memory(f'--num_examples={n}', training.activation_size(
        exp.model, n, exp.task.length))
    examples = task_examples(exp.task, split, n)
    decoder = decoding.decoder_for(exp.model, exp.task.length, seed=exp.seed)
    generated = decoding.generate_answers(decoder, restored.weights, examples,
                                          temperature, seed)
    correct = examples.correct(generated)
    for i, (target, mask, output) in enumerate(zip(
            examples.targets, examples.answer_mask, generated)):
        start = examples.prompt_lengths[i]
        print(f'#{i} prompt: {_tokens(target[:start])}')
        print(f'   target: {_tokens(target[mask])}')
        print(f'   output: {_tokens(output[mask])}   '
              f'{"exact" if correct[i] else "WRONG"}')
    print(f'exact match: {int(correct.sum())}/{n} = {correct.mean():.4f}')


def complete_prompts(restored, texts: Sequence[str], length: int | None,
                     temperature: float, seed: int) -> None:
    exp = restored.experiment
    prompts = [parse_prompt(t, exp.model.vocab_size) for t in texts]
    length = length or exp.task.length
    longest = max(map(len, prompts))
    if longest >= length:
        raise errors.ConfigError(
            f'a prompt has {longest} tokens; --length={length} leaves '
            'nothing to generate')
    padded = np.zeros((len(prompts), longest), np.int32)
    for row, prompt in zip(padded, prompts):
        row[:len(prompt)] = prompt
    decoder = decoding.decoder_for(exp.model, length, seed=exp.seed)
    output = np.asarray(decoder.decode(
        restored.weights, padded, [len(p) for p in prompts],
        temperature=temperature, seed=seed))
    for prompt, row in zip(prompts, output):
        print(f'prompt: {_tokens(prompt)}')
        print(f'output: {_tokens(row[len(prompt):])}')


def run(output_dir: str | None, *, num_examples: int = 8,
        split: str = 'eval', prompts: Sequence[str] = (),
        length: int | None = None, temperature: float = 0.0, seed: int = 0,
        step: int | None = None, gin_params: Sequence[str] = ()) -> int:
    """The whole command after flag parsing; returns the exit status."""
    logging.set_verbosity(logging.WARNING)
    if not output_dir:
        raise errors.ConfigError('give --output_dir, the run to decode with')
    if not math.isfinite(temperature):
        raise errors.ConfigError(
            f'--temperature must be a finite number >= 0, got {temperature}')
    if length is not None and not prompts:
        raise errors.ConfigError(
            '--length applies to --prompt; task examples have the task '
            "length (change it with --gin_param='tasks.<task>.length=...')")
    restored = restore.restore(output_dir, gin_params, step)
    mode = (f'temperature {temperature}, seed {seed}' if temperature
            else 'greedy')
    print(f'{output_dir} at step {restored.step}, {mode}:')
    if prompts:
        complete_prompts(restored, prompts, length, temperature, seed)
    else:
        show_examples(restored, split, num_examples, temperature, seed)
    return 0


def _command(args: list[str]) -> int:
    compile_cache.enable()
    return run(FLAGS.output_dir, num_examples=FLAGS.num_examples,
               split=FLAGS.split, prompts=FLAGS.prompt, length=FLAGS.length,
               temperature=FLAGS.temperature, seed=FLAGS.seed,
               step=FLAGS.step, gin_params=FLAGS.gin_param)


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
