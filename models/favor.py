"""Performer's FAVOR causal attention with an exact predict (decoding) mode.

trax's `tl.CausalFavorAttention` is linear attention with ReLU features,
phi(x) = relu(x) + numerical_stabilizer, computed with prefix sums over the
sequence: position t's output is

    (sum_{s<=t} phi(q_t) . phi(k_s) v_s) / (sum_{s<=t} phi(q_t) . phi(k_s)).

It keeps no state in predict mode, so each predict-mode call restarts its
sums from zero and a token fed alone attends only to itself
(tests/test_attention_types.py shows it). The sums are a recurrence, so
decoding can be exact: `CausalFavorAttention` here computes in 'train' and
'eval' mode exactly what trax's does (it calls trax's layer, custom
gradients included), and in 'predict' mode keeps the running numerator
sum phi(k_s) v_s^T [batch * heads, d_k, d_v] and denominator sum phi(k_s)
[batch * heads, d_k] as its state, continues them over the tokens of each
call (one or several) and returns what the whole forward pass returns at
those positions. `CausalFavor` is trax's builder of the same name with this
layer inside: the same weights tree (four Dense layers with biases), the
same random initialisation, so runs trained with trax's layer load as they
are.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from models.trax_bridge import tl


def _features(x, numerical_stabilizer):
    """FAVOR's ReLU features, written as trax's layer writes them."""
    return jnp.where(x <= 0, jnp.zeros_like(x), x) + numerical_stabilizer


class CausalFavorAttention(tl.Layer):
    """(Q, K, V) -> causal FAVOR attention, per head (heads folded into the
    batch, as trax's SplitIntoHeads leaves them: [batch * heads, length, d]).

    'train' and 'eval': trax's tl.CausalFavorAttention itself. 'predict':
    the state holds the prefix sums of all tokens seen so far (zeros after
    init, for the batch size of the input signature); each call adds its
    tokens' terms in order and outputs each position's attention from the
    sums up to it.
    """

    def __init__(self, numerical_stabilizer=0.001, mode='train'):
        super().__init__(n_in=3, n_out=1)
        self._numerical_stabilizer = numerical_stabilizer
        self._mode = mode
        # Not a sublayer (it has no weights or state): the weights tree
        # stays trax's, where this position holds an empty tuple.
        self._trax_layer = tl.CausalFavorAttention(numerical_stabilizer, mode)

    def forward(self, inputs):
        if self._mode != 'predict':
            return self._trax_layer.forward(inputs)
        query, key, value = inputs
        query = _features(query, self._numerical_stabilizer)
        key = _features(key, self._numerical_stabilizer)

        def step(sums, qkv):
            # The same terms in the same order as trax's two scans.
            numerator, denominator = sums
            q, k, v = qkv
            numerator = numerator + jnp.einsum('...m,...d->...md', k, v)
            denominator = denominator + k
            w = jnp.einsum('...m,...md->...d', q, numerator)
            r = jnp.einsum('...m,...m->...', q, denominator)
            return (numerator, denominator), (w, r)

        time_major = [jnp.moveaxis(x, 1, 0) for x in (query, key, value)]
        self.state, (w, r) = jax.lax.scan(step, tuple(self.state),
                                          tuple(time_major))
        w = jnp.moveaxis(w, 0, 1)
        r = jnp.moveaxis(r, 0, 1)
        return w * jnp.expand_dims(jnp.reciprocal(r), -1)

    def init_weights_and_state(self, input_signature):
        """Predict mode: zero prefix sums for the signature's batch (float32,
        as trax's forward pass starts its sums)."""
        if self._mode != 'predict':
            return
        _, key, value = input_signature
        batch, d_k, d_v = key.shape[0], key.shape[-1], value.shape[-1]
        self.state = (jnp.zeros((batch, d_k, d_v)), jnp.zeros((batch, d_k)))


def CausalFavor(d_feature, n_heads=1, dropout=0.0,
                numerical_stabilizer=0.001, mode='train'):
    """trax's tl.CausalFavor (query, key, value and output Dense layers of
    d_feature around the attention) with this module's attention layer.
    Like trax's, it ignores dropout and takes no d_qk / d_v keywords, so
    trax's configurable_transformer.ApplyAttentionLayer builds it as
    CausalFavor(d_model, n_heads=, dropout=, mode=)."""
    del dropout
    return tl.ConfigurableAttention(
        tl.Dense(d_feature), tl.Dense(d_feature), tl.Dense(d_feature),
        tl.Dense(d_feature), n_heads=n_heads,
        qkv_attention_layer=CausalFavorAttention(numerical_stabilizer, mode))
