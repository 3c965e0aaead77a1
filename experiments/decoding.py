"""Fast autoregressive decoding in trax predict mode, and exact-match scoring.

`Decoder` rebuilds a model spec in predict mode (cached keys/values for
TransformerLM and full attention, the LSH memory for ReformerLM, the window's
memory for local attention) and runs the whole per-token loop as one compiled
`jax.lax.scan`: at forced positions (a prompt, or a task's given tokens
between answers) the true token is fed, elsewhere the model's own sampled
token. One compilation serves a (batch size, length, temperature) triple;
weights and the forced mask are arguments, so new weights (during training)
or another mask do not recompile. Settings that predict mode cannot decode
exactly are refused (`why_not_decodable`).

Position t's logits predict token t from tokens < t, exactly as in the eval
model (whose ShiftRight pads with START_ID); see tests/test_decoding.py for
when predict-mode logits equal one full forward pass.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from models.trax_bridge import shapes

from experiments.errors import ConfigError
from models.language_models import LanguageModel, ReformerLM, TransformerLM

# trax's ShiftRight pads with 0, so the predict model starts from token 0.
START_ID = 0
# tl.CausalAttention's key/value cache in predict mode (its
# max_inference_length default, which trax.models.TransformerLM leaves as is).
_TRANSFORMER_CACHE_LEN = 2048
# trax factorises more LSH buckets than this into a list; see predict_spec.
_MAX_PLAIN_BUCKETS = 128


class DecodeError(ConfigError, ValueError):
    """A decoding request the model cannot serve (a ValueError too, like the
    other settings Experiment validates)."""


def max_decode_length(spec: LanguageModel) -> int:
    """The longest sequence `spec` can decode in predict mode."""
    if isinstance(spec, TransformerLM):
        return min(spec.max_len, _TRANSFORMER_CACHE_LEN)
    return spec.max_len  # ReformerLM's predict memory is max_len long


def why_not_decodable(spec: LanguageModel, length: int) -> str | None:
    """Why predict mode cannot decode `length` tokens of `spec` as its
    eval-mode forward pass computes them (one line), or None if it can."""
    limit = max_decode_length(spec)
    if not 1 <= length <= limit:
        return (f'cannot decode {length} tokens with {spec.name} '
                f'(max_len={spec.max_len}); the limit is {limit}')
    if not isinstance(spec, ReformerLM):
        return None
    if spec.attention == 'lsh' and spec.n_chunks_after:
        # trax's incremental LSH attends only to the past.
        return (f'{spec.name} decodes only with n_chunks_after=0, got '
                f'{spec.n_chunks_after}')
    # attention='favor' decodes: models.favor keeps its prefix sums in the
    # predict state (trax's CausalFavorAttention would restart them at
    # every token; tests/test_attention_types.py shows both).
    if (spec.attention == 'local' and spec.chunk_len == 1
            and spec.n_chunks_before == 0):
        # trax's predict memory is the window, chunk_len * (1 +
        # n_chunks_before) tokens; a memory of one is refilled as if the
        # sequence restarted, which trax marks with NaN.
        return (f"{spec.name}.attention='local' with a one-token window "
                '(chunk_len=1, n_chunks_before=0) cannot decode: trax\'s '
                'predict memory turns every token after the first into NaN')
    return None


def check_decodable(spec: LanguageModel, length: int) -> None:
    """Raises DecodeError unless predict mode can decode `length` tokens
    exactly (see why_not_decodable)."""
    reason = why_not_decodable(spec, length)
    if reason:
        raise DecodeError(reason)


def predict_spec(spec: LanguageModel, length: int) -> LanguageModel:
    """`spec` as decoded at `length`.

    max_len becomes `length`: ReformerLM's predict memory is max_len long and
    each token's attention works over all of it, so a 2048-long memory for a
    64-token sequence costs 32 times the work for the same result. LSH with
    n_buckets=None gets the bucket count the eval model picks at `length`,
    not the 2 that trax would derive from a one-token query.
    """
    changes = {'max_len': length}
    if (isinstance(spec, ReformerLM) and spec.attention == 'lsh'
            and spec.n_buckets is None):
        n_buckets = 2 * max(1, length // spec.chunk_len)
        if n_buckets <= _MAX_PLAIN_BUCKETS:
            changes['n_buckets'] = n_buckets
    return dataclasses.replace(spec, **changes)


def _fit_leaf(weight, template):
    """A trained weight for the predict model; only the position table (rows
    = positions < max_len, trainable in trax) differs, and the model reads
    only rows < length of it in any mode, so its first rows are exact."""
    if np.shape(weight) == template.shape:
        return weight
    if (np.ndim(weight) != len(template.shape)
            or np.shape(weight)[-2] < template.shape[-2]
            or np.shape(weight)[-1] != template.shape[-1]):
        raise DecodeError(f'a weight of shape {np.shape(weight)} does not '
                          f'fit the model, which expects {template.shape}')
    return weight[..., :template.shape[-2], :]


class Decoder:
    """Decodes sequences of one length with a predict-mode model.

    seed fixes the predict state's randomness (the LSH hash rotations).
    """

    def __init__(self, spec: LanguageModel, length: int, seed: int = 0):
        check_decodable(spec, length)
        self.spec = predict_spec(spec, length)
        self.length = length
        self._model = self.spec('predict')
        self._init_rng = jax.random.PRNGKey(seed)
        self._states: dict[int, Any] = {}
        self._weight_shapes = None
        self.initial_state(1)  # records the predict model's weight shapes
        self._run = jax.jit(self._scan, static_argnames=(
            'temperature', 'with_logits'))

    def initial_state(self, batch_size: int):
        """The predict model's empty cache for `batch_size` sequences."""
        if batch_size not in self._states:
            weights, state = self._model.init(
                shapes.ShapeDtype((batch_size, 1), np.int32),
                rng=self._init_rng)
            self._states[batch_size] = state
            self._weight_shapes = jax.tree_util.tree_map(
                lambda w: jax.ShapeDtypeStruct(np.shape(w), w.dtype), weights)
        return self._states[batch_size]

    def predict_weights(self, weights):
        """Trained weights (any mode, any max_len >= length) as the predict
        model's."""
        return jax.tree_util.tree_map(_fit_leaf, weights, self._weight_shapes)

    def _scan(self, weights, state, prompts, forced, rng, *,
              temperature: float, with_logits: bool):
        weights = self.predict_weights(weights)
        # Predict mode has no dropout; trax still wants a key per call.
        model_rng, sample_rng = jax.random.split(rng)

        def step(carry, t):
            state, previous = carry
            logits, state = self._model.pure_fn(
                previous[:, None], weights, state, model_rng)
            logits = logits[:, 0, :]
            if temperature:
                sampled = jax.random.categorical(
                    jax.random.fold_in(sample_rng, t), logits / temperature)
            else:
                sampled = jnp.argmax(logits, axis=-1)
            token = jnp.where(forced[:, t], prompts[:, t],
                              sampled.astype(jnp.int32))
            return (state, token), (token, logits if with_logits else None)

        start = jnp.full(prompts.shape[:1], START_ID, jnp.int32)
        _, (tokens, logits) = jax.lax.scan(
            step, (state, start), jnp.arange(self.length))
        tokens = tokens.T
        if with_logits:
            return tokens, jnp.swapaxes(logits, 0, 1)
        return tokens

    def decode(self, weights, prompts: np.ndarray,
               prompt_lengths: np.ndarray | None = None, *,
               forced: np.ndarray | None = None, temperature: float = 0.0,
               seed: int = 0, with_logits: bool = False):
        """Completes each prompt to `length` tokens.

        weights: the model's weights (as trained, any mode).
        prompts: int [batch, >= max prompt length]; row b's prompt is its
          first prompt_lengths[b] tokens (at least 1), the rest is ignored.
        forced: instead of prompt_lengths, bool [batch, length]: the
          positions whose token is taken from `prompts` (which must then
          reach them); the model generates the others, each from the tokens
          before it (forced ones and its own). prompt_lengths p means forced
          = position < p.
        temperature: 0 decodes greedily; > 0 samples from softmax(logits / T)
          with a key derived from `seed` and the position.
        Returns int32 tokens [batch, length] (the forced tokens and what the
        model generated) and, with_logits, the logits [batch, length, vocab]
        that predicted each position.
        """
        prompts = np.asarray(prompts, np.int32)
        if prompts.ndim != 2:
            raise DecodeError('prompts must be [batch, length]')
        width = min(self.length, prompts.shape[1])
        if (prompt_lengths is None) == (forced is None):
            raise DecodeError('give exactly one of prompt_lengths and '
                              'forced')
        if forced is None:
            prompt_lengths = np.asarray(prompt_lengths, np.int32)
            if prompt_lengths.shape != prompts.shape[:1]:
                raise DecodeError('prompts must be [batch, length] with one '
                                  'prompt length per row')
            if prompt_lengths.min() < 1 or prompt_lengths.max() > width:
                raise DecodeError(f'prompt lengths must be in [1, '
                                  f'{self.length}], got '
                                  f'{prompt_lengths.tolist()}')
            forced = np.arange(self.length) < prompt_lengths[:, None]
        else:
            forced = np.asarray(forced, bool)
            if forced.shape != (len(prompts), self.length):
                raise DecodeError(f'forced must be [batch, {self.length}] '
                                  f'bool, got shape {forced.shape}')
            if forced[:, width:].any():
                raise DecodeError(f'forced reaches past the prompts\' '
                                  f'{width} tokens')
        if temperature < 0:
            raise DecodeError(f'temperature must be >= 0, got {temperature}')
        padded = np.zeros((len(prompts), self.length), np.int32)
        padded[:, :width] = prompts[:, :width]
        return self._run(weights, self.initial_state(len(prompts)), padded,
                         forced, jax.random.PRNGKey(seed),
                         temperature=float(temperature),
                         with_logits=with_logits)


@functools.lru_cache(maxsize=8)
def decoder_for(spec: LanguageModel, length: int, seed: int = 0) -> Decoder:
    """A Decoder, shared by callers with the same (frozen) spec, length and
    seed, so that each compiles once per process."""
    return Decoder(spec, length, seed)


@dataclasses.dataclass(frozen=True)
class Examples:
    """Task sequences split into given tokens and answers.

    The answer is the weighted positions of a task batch (the second half
    for copy and reversal; several separate stretches for tasks that
    interleave queries and answers); every other position is given.
    prompt_lengths is the position of each row's first answer.
    """

    targets: np.ndarray  # int [batch, length]
    answer_mask: np.ndarray  # bool [batch, length]
    prompt_lengths: np.ndarray  # int [batch]

    @classmethod
    def from_batch(cls, batch) -> 'Examples':
        _, targets, weights = batch
        answer = np.asarray(weights) > 0
        if not answer.any(axis=1).all():
            raise DecodeError('every example needs at least one weighted '
                              '(answer) position')
        return cls(np.asarray(targets, np.int32), answer,
                   answer.argmax(axis=1).astype(np.int32))

    @property
    def forced(self) -> np.ndarray:
        """The positions decoding feeds from the targets: all but answers.
        For one stretch of answer (copy, reversal) it decodes the answer as
        prompt_lengths would; only the padding after it is fed, not
        generated."""
        return ~self.answer_mask

    def correct(self, generated: np.ndarray) -> np.ndarray:
        """Per example: whether every answer token was generated exactly."""
        wrong = (np.asarray(generated) != self.targets) & self.answer_mask
        return ~wrong.any(axis=1)


def generate_answers(decoder: Decoder, weights, examples: Examples,
                     temperature: float = 0.0, seed: int = 0) -> np.ndarray:
    """The sequences the model generates: each answer token from the given
    tokens and its own earlier answers."""
    return np.asarray(decoder.decode(weights, examples.targets,
                                     forced=examples.forced,
                                     temperature=temperature, seed=seed))


def exact_match(decoder: Decoder, weights, batches: Iterable) -> float:
    """Share of examples whose whole generated answer (greedy; the given
    tokens are fed, the answers are the model's own) equals the target."""
    results = []
    for batch in batches:
        examples = Examples.from_batch(batch)
        results.append(examples.correct(
            generate_answers(decoder, weights, examples)))
    return float(np.concatenate(results).mean())

