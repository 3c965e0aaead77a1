r"""Decoding throughput: our compiled loop vs trax's autoregressive_sample.

    python -m scripts.benchmarks.decode                      # lengths 64, 256, 1024
    python -m scripts.benchmarks.decode --lengths=16 --d_model=16 --batch_size=2

For TransformerLM and ReformerLM (LSH) with the same seeded random weights,
each decoder completes a batch of random prompts (the first half of each
sequence) greedily to the full length. Prints a table of generated tokens per
second (best of --repeats calls, after a first call that compiles) and the
share of generated tokens the two agree on, and saves it as JSON (--json).

trax's loop calls the jitted model once per token from Python and feeds the
prompt in one call; ours runs prompt and generation in one compiled scan.
"trax" runs on our predict model (memory = the decoded length), which
isolates the loop; "trax, max_len memory" runs trax's recipe as is, on a
model whose predict memory is --max_len long.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Sequence

from absl import flags
import jax
import numpy as np
from models.trax_bridge import shapes, tl, trax

from experiments import cli, decoding
from experiments.errors import ConfigError
from scripts.benchmarks import common
from models.language_models import LanguageModel, ReformerLM, TransformerLM

FLAGS = flags.FlagValues()
flags.DEFINE_list('lengths', ['64', '256', '1024'], 'Sequence lengths.',
                  flag_values=FLAGS)
flags.DEFINE_integer('batch_size', 8, 'Sequences decoded at once.',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('d_model', 128, 'Model width.', lower_bound=2,
                     flag_values=FLAGS)
flags.DEFINE_integer('n_layers', 2, 'Layers.', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('n_heads', 4, 'Attention heads.', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('vocab_size', 32, 'Vocabulary size.', lower_bound=2,
                     flag_values=FLAGS)
flags.DEFINE_integer('chunk_len', 16, 'ReformerLM LSH chunk length.',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('n_hashes', 2, 'ReformerLM LSH hashes.', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('max_len', 2048, 'Trained max_len (ReformerLM predict '
                     'memory in trax\'s recipe).', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('repeats', 3, 'Timed calls per decoder (best counts).',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('seed', 0, 'Seed of weights and prompts.', lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_string('json', 'bench_decode.json', 'Where to save the results.',
                    flag_values=FLAGS)


def _timed(call: Callable[[], np.ndarray], repeats: int):
    """(first call's seconds, best later call's seconds, its output)."""
    start = time.perf_counter()
    output = np.asarray(call())
    first = time.perf_counter() - start
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        output = np.asarray(call())
        best = min(best, time.perf_counter() - start)
    return first, best, output


def bench_one(spec: LanguageModel, length: int, batch_size: int,
              repeats: int, seed: int) -> dict:
    """Times both decoders on one model and length."""
    rng = np.random.default_rng(seed)
    prompt_len = length // 2
    prompts = rng.integers(1, spec.vocab_size, (batch_size, prompt_len),
                           dtype=np.int32)
    prompts[:, 0] = 0
    weights, _ = spec('eval').init(shapes.ShapeDtype((1, length), np.int32),
                                   rng=jax.random.PRNGKey(seed))
    generated = batch_size * (length - prompt_len)

    ours = decoding.decoder_for(spec, length, seed=seed)
    lengths = np.full(batch_size, prompt_len, np.int32)
    ours_first, ours_best, ours_out = _timed(
        lambda: ours.decode(weights, prompts, lengths), repeats)

    def trax_sampler(predict_spec, predict_weights):
        model = predict_spec('predict')
        _, empty = model.init(shapes.ShapeDtype((batch_size, 1), np.int32),
                              rng=jax.random.PRNGKey(seed))
        model.weights = predict_weights
        # Accelerated once here: autoregressive_sample(accelerate=True)
        # would wrap and recompile the model on every call.
        accelerated = tl.Accelerate(model)

        def sample():
            accelerated.state = empty  # the cache the previous call filled
            return trax.supervised.decoding.autoregressive_sample(
                accelerated, inputs=prompts, batch_size=batch_size,
                temperature=0.0, eos_id=-1, max_length=length - prompt_len,
                accelerate=False)
        return sample

    # trax on our predict model (max_len = length) isolates the compiled
    # loop; on the model as trained (a max_len-long predict memory) it is
    # what trax's own recipe runs.
    same = trax_sampler(ours.spec, ours.predict_weights(weights))
    trained = trax_sampler(spec, weights)
    trax_first, trax_best, trax_out = _timed(same, repeats)
    _, trained_best, _ = _timed(trained, repeats)
    return {'model': spec.name, 'length': length, 'batch_size': batch_size,
            'generated_tokens': generated,
            'ours_tokens_per_s': generated / ours_best,
            'trax_tokens_per_s': generated / trax_best,
            'trax_full_memory_tokens_per_s': generated / trained_best,
            'speedup': trax_best / ours_best,
            'ours_first_call_s': ours_first, 'trax_first_call_s': trax_first,
            'agreement': float(np.mean(ours_out[:, prompt_len:] == trax_out))}


def format_table(rows: Sequence[dict]) -> str:
    header = ('| model | length | batch | ours tok/s | trax tok/s | speed-up '
              '| trax, max_len memory tok/s | first call ours / trax (s) '
              '| same tokens |\n|---|---|---|---|---|---|---|---|---|')
    lines = [f'| {r["model"]} | {r["length"]} | {r["batch_size"]} | '
             f'{r["ours_tokens_per_s"]:,.0f} | {r["trax_tokens_per_s"]:,.0f} '
             f'| {r["speedup"]:.1f}x | '
             f'{r["trax_full_memory_tokens_per_s"]:,.0f} | '
             f'{r["ours_first_call_s"]:.1f} / {r["trax_first_call_s"]:.1f} '
             f'| {r["agreement"]:.2f} |' for r in rows]
    return '\n'.join([header] + lines)


def _command(args: list[str]) -> int:
    try:
        lengths = [int(n) for n in FLAGS.lengths]
    except ValueError:
        raise ConfigError(f'--lengths must be ints, got '
                                  f'{",".join(FLAGS.lengths)}') from None
    common.check_inputs(FLAGS.json)
    sizes = dict(vocab_size=FLAGS.vocab_size, d_model=FLAGS.d_model,
                 d_ff=2 * FLAGS.d_model, n_layers=FLAGS.n_layers,
                 n_heads=FLAGS.n_heads, max_len=FLAGS.max_len)
    try:
        specs = [TransformerLM(**sizes),
                 ReformerLM(**sizes, chunk_len=FLAGS.chunk_len,
                            n_hashes=FLAGS.n_hashes)]
    except ValueError as e:
        raise ConfigError(str(e)) from None
    rows = []
    for spec in specs:
        for length in lengths:
            decoding.check_decodable(spec, length)
            rows.append(bench_one(spec, length, FLAGS.batch_size,
                                  FLAGS.repeats, FLAGS.seed))
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    print(f'\nGreedy decoding, generated tokens/s on {common.machine()}:')
    print(format_table(rows))
    common.save_json(FLAGS.json, {
        'settings': {**sizes, 'chunk_len': FLAGS.chunk_len,
                     'n_hashes': FLAGS.n_hashes, 'repeats': FLAGS.repeats},
        'rows': rows})
    return 0


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
