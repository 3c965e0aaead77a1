"""Shared query-key attention that lets each query see its own key.

trax's shared-QK attention layers (SelfAttention with share_qk=True, which
ReformerLM's 'full' and 'local' use, and LSHSelfAttention) take 1e5 off each
query's product with its own key: with keys that are the queries, length
normalised, a query's own key scores highest of all, so it would win most of
the softmax. `SelfVisibleAttention` is trax's SelfAttention with that one
term left out (the causal mask stays), in every mode; ReformerLM builds it
for mask_self=False. docs/reformer_table2.md uses it to test what an
LSH-trained model depends on.
"""
from __future__ import annotations

import contextlib

from models.trax_bridge import tl, trax

_ATTENTION = trax.layers.research.efficient_attention
_MASK = _ATTENTION.mask_self_attention


def _causal_only(dots, q_info, kv_info, causal=True, exclude_self=True,
                 masked=False):
    del exclude_self  # what trax's layer asks for; left out here
    return _MASK(dots, q_info, kv_info, causal=causal, exclude_self=False,
                 masked=masked)


@contextlib.contextmanager
def _own_key_visible():
    # trax's forward functions look the mask up in their module when they
    # run (while JAX traces them), so this swaps it for that long.
    _ATTENTION.mask_self_attention = _causal_only
    try:
        yield
    finally:
        _ATTENTION.mask_self_attention = _MASK


class SelfVisibleAttention(tl.SelfAttention):
    """tl.SelfAttention (same arguments and weights) without the mask on
    each query's own key."""

    def forward_unbatched(self, *args, **kwargs):
        with _own_key_visible():
            return super().forward_unbatched(*args, **kwargs)

    def _incremental_forward_unbatched(self, *args, **kwargs):
        with _own_key_visible():
            return super()._incremental_forward_unbatched(*args, **kwargs)
