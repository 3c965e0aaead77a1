"""TransformerLM and ReformerLM as validated model specs.

A spec is a frozen dataclass holding exactly the hyperparameters that gin binds;
calling it with a mode builds the trax layer. `check` compares the spec with the
data it will see, so an impossible setting fails before anything compiles.
"""
from __future__ import annotations

import dataclasses
import functools

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


ATTENTION_TYPES = ('lsh', 'full')


@dataclasses.dataclass(frozen=True)
class ReformerLM(LanguageModel):
    """trax's ReformerLM: reversible layers, chunked feed-forward, and LSH or
    full (shared-QK) attention.

    Both attention types share query and key, so their weights have the same
    shapes: a model trained with one can be evaluated with the other.
    n_buckets=None lets trax pick about 2 * length / chunk_len buckets.
    """

    attention: str = 'lsh'
    n_hashes: int = 2
    n_buckets: int | None = None
    chunk_len: int = 64
    n_chunks_before: int = 1
    n_chunks_after: int = 0
    ff_chunk_size: int = 0

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
        # LSH hashing draws n_buckets / 2 random rotations and uses +/- each.
        _require(self.n_buckets is None or (
            _is_int(self.n_buckets) and self.n_buckets >= 2
            and self.n_buckets % 2 == 0),
                 f'{self.name}.n_buckets must be None or an even int >= 2, '
                 f'got {self.n_buckets!r}')

    def check(self, length: int, vocab_size: int) -> None:
        super().check(length, vocab_size)
        if self.attention == 'lsh':
            _require(length % self.chunk_len == 0,
                     f'sequence length {length} is not a multiple of '
                     f'{self.name}.chunk_len={self.chunk_len}')
        if self.ff_chunk_size:
            _require(length % self.ff_chunk_size == 0,
                     f'sequence length {length} is not a multiple of '
                     f'{self.name}.ff_chunk_size={self.ff_chunk_size}')

    def _attention_layer(self):
        d_head = self.d_model // self.n_heads
        common = dict(d_qk=d_head, d_v=d_head, attention_dropout=self.dropout,
                      predict_mem_len=self.max_len,
                      predict_drop_len=self.max_len)
        if self.attention == 'full':
            return functools.partial(tl.SelfAttention, share_qk=True,
                                     chunk_len=None, **common)
        return functools.partial(
            tl.LSHSelfAttention, n_hashes=self.n_hashes,
            n_buckets=self.n_buckets, chunk_len=self.chunk_len,
            n_chunks_before=self.n_chunks_before,
            n_chunks_after=self.n_chunks_after, **common)

    def _build(self, mode):
        d_head = self.d_model // self.n_heads
        return trax.models.ReformerLM(
            vocab_size=self.vocab_size, d_model=self.d_model, d_ff=self.d_ff,
            d_attention_key=d_head, d_attention_value=d_head,
            n_layers=self.n_layers, n_heads=self.n_heads,
            dropout=self.dropout, max_len=self.max_len,
            attention_type=self._attention_layer(),
            ff_chunk_size=self.ff_chunk_size, mode=mode)
