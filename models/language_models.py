"""TransformerLM and ReformerLM as validated model specs.

A spec is a frozen dataclass holding exactly the hyperparameters that gin binds;
calling it with a mode builds the trax layer. `check` compares the spec with the
data it will see, so an impossible setting fails before anything compiles.
"""
from __future__ import annotations

import dataclasses
import functools

from models import favor, visible_self
from models.trax_bridge import tl, trax

MODES = ('train', 'eval', 'predict')


class ModelConfigError(ValueError):
    """A model setting that cannot work with the given data."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ModelConfigError(message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class LanguageModel:
    """Hyperparameters shared by both decoder-only language models."""

    vocab_size: int
    d_model: int = 64
    d_ff: int = 128
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.0
    max_len: int = 2048

    @property
    def name(self) -> str:
        return type(self).__name__

    def __post_init__(self):
        for field in ('vocab_size', 'd_model', 'd_ff', 'n_layers', 'n_heads',
                      'max_len'):
            value = getattr(self, field)
            _require(_is_int(value) and value >= 1,
                     f'{self.name}.{field} must be a positive int, got '
                     f'{value!r}')
        _require(self.d_model % self.n_heads == 0,
                 f'{self.name}.d_model={self.d_model} is not divisible by '
                 f'{self.name}.n_heads={self.n_heads}')
        _require(isinstance(self.dropout, (int, float))
                 and not isinstance(self.dropout, bool)
                 and 0.0 <= self.dropout < 1.0,
                 f'{self.name}.dropout must be in [0, 1), got {self.dropout!r}')

    def check(self, length: int, vocab_size: int) -> None:
        """Raises ModelConfigError if this model cannot take such sequences."""
        _require(length <= self.max_len,
                 f'sequence length {length} exceeds '
                 f'{self.name}.max_len={self.max_len}')
        _require(vocab_size <= self.vocab_size,
                 f'task vocabulary size {vocab_size} exceeds '
                 f'{self.name}.vocab_size={self.vocab_size}')

    def unread(self) -> str:
        """Which settings made this model as configured does not read, as a
        phrase ('' if none)."""
        return ''

    def __call__(self, mode: str = 'train') -> tl.Layer:
        _require(mode in MODES, f'mode must be one of {MODES}, got {mode!r}')
        return self._build(mode)

    def _build(self, mode: str) -> tl.Layer:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class TransformerLM(LanguageModel):
    """trax's TransformerLM: full causal attention, residual layers."""

    def _build(self, mode):
        return trax.models.TransformerLM(
            vocab_size=self.vocab_size, d_model=self.d_model, d_ff=self.d_ff,
            n_layers=self.n_layers, n_heads=self.n_heads,
            max_len=self.max_len, dropout=self.dropout, mode=mode)


ATTENTION_TYPES = ('lsh', 'full', 'local', 'favor')
# ReformerLM's attention settings, and those each type reads.
_LSH_FIELDS = ('n_hashes', 'n_buckets', 'chunk_len', 'n_chunks_before',
               'n_chunks_after')
_ATTENTION_FIELDS = _LSH_FIELDS + ('mask_self',)
_READS = {'lsh': _LSH_FIELDS, 'full': ('mask_self',), 'favor': (),
          'local': ('chunk_len', 'n_chunks_before', 'mask_self')}

# The pos_type values trax 1.4.1's configurable_transformer.PositionalEncoder
# builds and runs here; None is its default, a trainable table of max_len
# rows. Any other string selects axial encoding, which needs pos_axial_shape
# and pos_d_axial_embs, which this spec does not expose.
POS_TYPES = (None, 'sin-cos', 'fixed-base', 'no')
# Values PositionalEncoder names that fail in trax 1.4.1 on current JAX.
_BROKEN_POS_TYPES = {
    'infinite': "trax's InfinitePositionalEncoding calls "
                'jax.random.threefry_2x32, which current JAX does not have',
    'time-bin': "trax builds TimeBinPositionalEncoding without the "
                'time_bin_length it requires',
}
_BROKEN_POS_TYPES['infinite-affine'] = _BROKEN_POS_TYPES['infinite']
# FixedBasePositionalEncoding splits d_model over this many digits (trax's
# default n_digits, which PositionalEncoder leaves as is).
_FIXED_BASE_DIGITS = 8


@dataclasses.dataclass(frozen=True)
class ReformerLM(LanguageModel):
    """trax's ReformerLM: reversible layers, chunked feed-forward, positional
    encoding `pos_type`, and the attention layer `attention` names, all
    trax 1.4.1's own but FAVOR's core (models/favor.py). Besides the shared
    fields, each type reads:

    - 'lsh': tl.LSHSelfAttention; n_hashes, n_buckets, chunk_len,
      n_chunks_before, n_chunks_after, dropout.
    - 'full': tl.SelfAttention, causal over the whole sequence; mask_self,
      dropout.
    - 'local': tl.SelfAttention in chunks of chunk_len, each position
      attending causally to its own chunk and the n_chunks_before before it
      (a window of chunk_len * n_chunks_before + 1 to chunk_len *
      (1 + n_chunks_before) tokens); chunk_len, n_chunks_before,
      mask_self, dropout.
    - 'favor': Performer's FAVOR causal attention (ReLU features, prefix
      sums, linear in length): models.favor.CausalFavor, trax's CausalFavor
      with the same weights and train/eval arithmetic, whose predict mode
      keeps the prefix sums so that it decodes exactly; nothing more (like
      trax's, it drops its dropout argument).

    Fields a type does not read are not errors (a sweep over attention
    types shares one set of bindings), but `unread` names those set away
    from their defaults, and training prints them.
    'lsh', 'full' and 'local' share query and key, so their weights have the
    same shapes: a model trained with one can be evaluated with another.
    All three hide each query's own key from it (its key is the query,
    normalised, so it would score highest); mask_self=False leaves it
    visible in 'full' and 'local' (models.visible_self), for the Table 2
    ablations; LSH always hides it.
    'favor' has its own (query, key, value and output Dense layers, with
    biases). n_buckets=None lets trax pick about 2 * length / chunk_len
    buckets. pos_type is one of POS_TYPES: None keeps trax's default (a
    trainable table of max_len positions), and with it the weights of runs
    from before the field existed; 'sin-cos' and 'fixed-base' (trax's
    defaults for them) start at a random position in half the training
    batches and at 0 otherwise; 'no' adds no position at all.
    """

    attention: str = 'lsh'
    n_hashes: int = 2
    n_buckets: int | None = None
    chunk_len: int = 64
    n_chunks_before: int = 1
    n_chunks_after: int = 0
    ff_chunk_size: int = 0
    pos_type: str | None = None
    mask_self: bool = True

    def __post_init__(self):
        super().__post_init__()
        _require(self.attention in ATTENTION_TYPES,
                 f'{self.name}.attention must be one of {ATTENTION_TYPES}, '
                 f'got {self.attention!r}')
        for field in ('n_hashes', 'chunk_len'):
            value = getattr(self, field)
            _require(_is_int(value) and value >= 1,
                     f'{self.name}.{field} must be a positive int, got '
                     f'{value!r}')
        for field in ('n_chunks_before', 'n_chunks_after', 'ff_chunk_size'):
            value = getattr(self, field)
            _require(_is_int(value) and value >= 0,
                     f'{self.name}.{field} must be a non-negative int, got '
                     f'{value!r}')
        _require(isinstance(self.mask_self, bool),
                 f'{self.name}.mask_self must be True or False, got '
                 f'{self.mask_self!r}')
        # LSH hashing draws n_buckets / 2 random rotations and uses +/- each.
        _require(self.n_buckets is None or (
            _is_int(self.n_buckets) and self.n_buckets >= 2
            and self.n_buckets % 2 == 0),
                 f'{self.name}.n_buckets must be None or an even int >= 2, '
                 f'got {self.n_buckets!r}')
        broken = (_BROKEN_POS_TYPES.get(self.pos_type)
                  if isinstance(self.pos_type, str) else None)
        _require(broken is None,
                 f'{self.name}.pos_type={self.pos_type!r} cannot be used: '
                 f'{broken}; use one of {POS_TYPES}')
        _require(self.pos_type in POS_TYPES,
                 f'{self.name}.pos_type must be one of {POS_TYPES}, got '
                 f'{self.pos_type!r}')
        if self.pos_type == 'fixed-base':
            _require(self.d_model % _FIXED_BASE_DIGITS == 0,
                     f"{self.name}.pos_type='fixed-base' needs d_model "
                     f'divisible by {_FIXED_BASE_DIGITS} (its digits), got '
                     f'{self.name}.d_model={self.d_model}')

    def unread(self) -> str:
        """The attention fields set to other than their defaults that the
        attention type does not read: "attention='full' does not read
        n_hashes=4"."""
        defaults = {f.name: f.default for f in dataclasses.fields(ReformerLM)}
        unread = [f'{name}={getattr(self, name)!r}'
                  for name in _ATTENTION_FIELDS
                  if name not in _READS[self.attention]
                  and getattr(self, name) != defaults[name]]
        return (f'attention={self.attention!r} does not read '
                + ', '.join(unread)) if unread else ''

    def check(self, length: int, vocab_size: int) -> None:
        super().check(length, vocab_size)
        if self.attention in ('lsh', 'local'):
            _require(length % self.chunk_len == 0,
                     f'sequence length {length} is not a multiple of '
                     f'{self.name}.chunk_len={self.chunk_len}')
        if self.attention == 'local':
            # trax's chunked attention finds the chunks before by rolling
            # the chunk axis, so a window reaching past the first chunk
            # wraps around and counts some keys twice.
            n_chunks = length // self.chunk_len
            _require(self.n_chunks_before < n_chunks,
                     f"{self.name}.n_chunks_before={self.n_chunks_before} "
                     f"must be less than the {n_chunks} chunk(s) of length "
                     f"{length} for attention='local' (trax's window would "
                     f"wrap around); lower it, or use attention='full'")
        if self.ff_chunk_size:
            _require(length % self.ff_chunk_size == 0,
                     f'sequence length {length} is not a multiple of '
                     f'{self.name}.ff_chunk_size={self.ff_chunk_size}')

    def _attention_layer(self):
        d_head = self.d_model // self.n_heads
        common = dict(d_qk=d_head, d_v=d_head, attention_dropout=self.dropout)
        # Predict mode remembers the whole sequence (predict_spec sets
        # max_len to the decoded length).
        whole = dict(predict_mem_len=self.max_len,
                     predict_drop_len=self.max_len)
        shared_qk = (tl.SelfAttention if self.mask_self
                     else visible_self.SelfVisibleAttention)
        if self.attention == 'full':
            return functools.partial(shared_qk, share_qk=True,
                                     chunk_len=None, **common, **whole)
        if self.attention == 'local':
            # share_qk=True as in 'lsh' and 'full': equal weight shapes, so
            # the three evaluate each other's weights. No predict_mem_len:
            # trax's default for chunked attention remembers chunk_len *
            # (1 + n_chunks_before) tokens and drops the oldest chunk when
            # full, which is the window of the chunked forward pass. Not
            # n_chunks_after: causal masking hides later chunks, except
            # where trax's roll wraps the last chunk's round to the first.
            return functools.partial(
                shared_qk, share_qk=True, chunk_len=self.chunk_len,
                n_chunks_before=self.n_chunks_before, **common)
        if self.attention == 'favor':
            # trax's DecoderBlock (configurable_transformer's
            # ApplyAttentionLayer) first calls it with d_qk/d_v keywords;
            # CausalFavor takes none, so on the TypeError it builds
            # CausalFavor(d_model, n_heads=, dropout=, mode=) instead. Ours,
            # not tl.CausalFavor: trax's keeps no prefix sums in predict
            # mode; the weights are the same tree.
            return favor.CausalFavor
        return functools.partial(
            tl.LSHSelfAttention, n_hashes=self.n_hashes,
            n_buckets=self.n_buckets, chunk_len=self.chunk_len,
            n_chunks_before=self.n_chunks_before,
            n_chunks_after=self.n_chunks_after, **common, **whole)

    def _build(self, mode):
        d_head = self.d_model // self.n_heads
        return trax.models.ReformerLM(
            vocab_size=self.vocab_size, d_model=self.d_model, d_ff=self.d_ff,
            d_attention_key=d_head, d_attention_value=d_head,
            n_layers=self.n_layers, n_heads=self.n_heads,
            dropout=self.dropout, max_len=self.max_len,
            attention_type=self._attention_layer(), pos_type=self.pos_type,
            ff_chunk_size=self.ff_chunk_size, mode=mode)
