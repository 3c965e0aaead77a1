"""Model specs: validation before compilation, and the layers they build."""
import dataclasses

import jax
import numpy as np
import pytest

from models.trax_bridge import shapes, trax

from models import ModelConfigError, POS_TYPES, ReformerLM, TransformerLM


@pytest.mark.parametrize('kwargs, match', [
    (dict(d_model=30, n_heads=4), r'd_model=30 is not divisible by TransformerLM.n_heads=4'),
    (dict(n_layers=0), r'n_layers'),
    (dict(dropout=1.5), r'dropout'),
])
def test_transformer_rejects_bad_settings(kwargs, match):
    with pytest.raises(ModelConfigError, match=match):
        TransformerLM(vocab_size=8, **kwargs)


@pytest.mark.parametrize('kwargs, match', [
    (dict(attention='sparse'),
     r"attention must be one of \('lsh', 'full', 'local', 'favor'\)"),
    (dict(n_buckets=3), r'n_buckets must be None or an even int'),
    (dict(n_hashes=0), r'n_hashes'),
    (dict(chunk_len=-4), r'chunk_len'),
    (dict(pos_type='axial'), r"pos_type must be one of \(None, 'sin-cos', "),
    (dict(pos_type='infinite'),
     r"pos_type='infinite' cannot be used: .*jax.random.threefry_2x32"),
    (dict(pos_type='time-bin'),
     r"pos_type='time-bin' cannot be used: .*time_bin_length"),
    (dict(pos_type='fixed-base', d_model=12, n_heads=2),
     r"pos_type='fixed-base' needs d_model divisible by 8"),
    (dict(mask_self=0), r'mask_self must be True or False, got 0'),
])
def test_reformer_rejects_bad_settings(kwargs, match):
    with pytest.raises(ModelConfigError, match=match):
        ReformerLM(vocab_size=8, **kwargs)


def test_check_names_both_values():
    with pytest.raises(ModelConfigError,
                       match=r'length 128 exceeds TransformerLM.max_len=64'):
        TransformerLM(vocab_size=8, max_len=64).check(length=128, vocab_size=8)
    with pytest.raises(ModelConfigError,
                       match=r'length 96 is not a multiple of '
                             r'ReformerLM.chunk_len=64'):
        ReformerLM(vocab_size=8, chunk_len=64).check(length=96, vocab_size=8)
    with pytest.raises(ModelConfigError,
                       match=r'vocabulary size 16 exceeds '
                             r'ReformerLM.vocab_size=8'):
        ReformerLM(vocab_size=8, chunk_len=8).check(length=16, vocab_size=16)


def test_full_attention_ignores_chunking():
    ReformerLM(vocab_size=8, attention='full', chunk_len=64).check(
        length=96, vocab_size=8)
    ReformerLM(vocab_size=8, attention='favor', chunk_len=64).check(
        length=96, vocab_size=8)


def test_local_attention_needs_whole_chunks_and_a_window_inside():
    local = dict(vocab_size=8, attention='local', chunk_len=8)
    with pytest.raises(ModelConfigError, match=r'length 20 is not a multiple '
                       r'of ReformerLM.chunk_len=8'):
        ReformerLM(**local).check(length=20, vocab_size=8)
    # trax rolls the chunk axis for the chunks before: 2 chunks, 2 before
    # would count the sequence's own chunk twice.
    with pytest.raises(ModelConfigError, match=r'ReformerLM.n_chunks_before=2 '
                       r'must be less than the 2 chunk\(s\) of length 16'):
        ReformerLM(n_chunks_before=2, **local).check(length=16, vocab_size=8)
    ReformerLM(n_chunks_before=1, **local).check(length=16, vocab_size=8)


@pytest.mark.parametrize('spec', [
    TransformerLM(vocab_size=11, d_model=16, d_ff=32, n_heads=2),
    ReformerLM(vocab_size=11, d_model=16, d_ff=32, n_heads=2, chunk_len=8),
    ReformerLM(vocab_size=11, d_model=16, d_ff=32, n_heads=2,
               attention='full'),
    ReformerLM(vocab_size=11, d_model=16, d_ff=32, n_heads=2,
               attention='local', chunk_len=4),
    ReformerLM(vocab_size=11, d_model=16, d_ff=32, n_heads=2,
               attention='favor'),
], ids=['transformer', 'reformer-lsh', 'reformer-full', 'reformer-local',
        'reformer-favor'])
def test_builds_a_language_model(spec):
    layer = spec('eval')
    tokens = np.zeros((2, 16), np.int32)
    layer.init(shapes.signature(tokens))
    logits = layer(tokens)
    assert logits.shape == (2, 16, 11)
    assert np.all(np.isfinite(logits))


def _weight_shapes(spec, length=16):
    weights, _ = spec('eval').init(
        shapes.signature(np.zeros((1, length), np.int32)))
    return [x.shape for x in jax.tree_util.tree_leaves(weights)]


def test_lsh_full_and_local_attention_weights_are_interchangeable():
    """Evaluating an LSH-trained model with full or local attention (all
    three share query and key) needs equal shapes; FAVOR has its own."""
    common = dict(vocab_size=11, d_model=16, d_ff=32, n_heads=2, chunk_len=8)
    lsh = _weight_shapes(ReformerLM(attention='lsh', **common))
    assert _weight_shapes(ReformerLM(attention='full', **common)) == lsh
    assert _weight_shapes(ReformerLM(attention='local', **common)) == lsh
    assert _weight_shapes(ReformerLM(attention='favor', **common)) != lsh


@pytest.mark.parametrize('pos_type', POS_TYPES)
def test_each_positional_encoding_builds_and_runs(pos_type):
    spec = ReformerLM(vocab_size=11, d_model=16, d_ff=32, n_layers=1,
                      n_heads=2, attention='full', pos_type=pos_type)
    tokens = np.random.default_rng(0).integers(1, 11, (2, 16), np.int32)
    for mode in ('train', 'eval'):
        layer = spec(mode)
        layer.init(shapes.signature(tokens))
        logits = layer(tokens)
        assert logits.shape == (2, 16, 11)
        assert np.all(np.isfinite(logits))


def test_default_positional_encoding_keeps_the_weights_of_before():
    """pos_type=None builds exactly what the spec built before the field
    existed (trax's ReformerLM without pos_type): same tree, same values."""
    spec = ReformerLM(vocab_size=11, d_model=16, d_ff=32, n_layers=1,
                      n_heads=2, chunk_len=8)
    before = trax.models.ReformerLM(
        vocab_size=11, d_model=16, d_ff=32, d_attention_key=8,
        d_attention_value=8, n_layers=1, n_heads=2, dropout=0.0,
        max_len=2048, attention_type=spec._attention_layer(),
        ff_chunk_size=0, mode='eval')
    signature = shapes.signature(np.zeros((1, 16), np.int32))
    rng = jax.random.PRNGKey(3)
    ours, _ = spec('eval').init(signature, rng=rng)
    theirs, _ = before.init(signature, rng=rng)
    assert (jax.tree_util.tree_structure(ours)
            == jax.tree_util.tree_structure(theirs))
    for a, b in zip(jax.tree_util.tree_leaves(ours),
                    jax.tree_util.tree_leaves(theirs)):
        np.testing.assert_array_equal(a, b)


def test_unknown_mode():
    with pytest.raises(ModelConfigError, match='mode must be one of'):
        TransformerLM(vocab_size=8)('training')


def test_gin_builds_our_specs_not_trax_models():
    import gin
    gin.parse_config(['models.ReformerLM.vocab_size = 8',
                      'models.ReformerLM.chunk_len = 8'])
    spec = gin.get_configurable('models.ReformerLM')()
    assert isinstance(spec, ReformerLM)
    assert (spec.vocab_size, spec.chunk_len) == (8, 8)


def test_settings_an_attention_type_does_not_read_are_named():
    assert ReformerLM(vocab_size=8).unread() == ''
    assert ReformerLM(vocab_size=8, n_hashes=4, chunk_len=16).unread() == ''
    full = ReformerLM(vocab_size=8, attention='full', n_hashes=4,
                      chunk_len=16)
    assert full.unread() == ("attention='full' does not read n_hashes=4, "
                             'chunk_len=16')
    assert dataclasses.replace(full, attention='local').unread() == (
        "attention='local' does not read n_hashes=4")
    assert ReformerLM(vocab_size=8, mask_self=False).unread() == (
        "attention='lsh' does not read mask_self=False")
    assert dataclasses.replace(full, mask_self=False, n_hashes=2,
                               chunk_len=64).unread() == ''
    assert TransformerLM(vocab_size=8).unread() == ''
