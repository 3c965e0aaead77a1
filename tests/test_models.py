"""Model specs: validation before compilation, and the layers they build."""
import jax
import numpy as np
import pytest

from models.trax_bridge import shapes

from models import ModelConfigError, ReformerLM, TransformerLM


@pytest.mark.parametrize('kwargs, match', [
    (dict(d_model=30, n_heads=4), r'd_model=30 is not divisible by TransformerLM.n_heads=4'),
    (dict(n_layers=0), r'n_layers'),
    (dict(dropout=1.5), r'dropout'),
])
def test_transformer_rejects_bad_settings(kwargs, match):
    with pytest.raises(ModelConfigError, match=match):
        TransformerLM(vocab_size=8, **kwargs)


@pytest.mark.parametrize('kwargs, match', [
    (dict(attention='sparse'), r"attention must be one of \('lsh', 'full'\)"),
    (dict(n_buckets=3), r'n_buckets must be None or an even int'),
    (dict(n_hashes=0), r'n_hashes'),
    (dict(chunk_len=-4), r'chunk_len'),
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


@pytest.mark.parametrize('spec', [
    TransformerLM(vocab_size=11, d_model=16, d_ff=32, n_heads=2),
    ReformerLM(vocab_size=11, d_model=16, d_ff=32, n_heads=2, chunk_len=8),
    ReformerLM(vocab_size=11, d_model=16, d_ff=32, n_heads=2,
               attention='full'),
], ids=['transformer', 'reformer-lsh', 'reformer-full'])
def test_builds_a_language_model(spec):
    layer = spec('eval')
    tokens = np.zeros((2, 16), np.int32)
    layer.init(shapes.signature(tokens))
    logits = layer(tokens)
    assert logits.shape == (2, 16, 11)
    assert np.all(np.isfinite(logits))


def test_lsh_and_full_attention_weights_are_interchangeable():
    """Evaluating an LSH-trained model with full attention needs equal shapes."""
    signature = shapes.signature(np.zeros((1, 16), np.int32))
    common = dict(vocab_size=11, d_model=16, d_ff=32, n_heads=2, chunk_len=8)
    lsh_weights, _ = ReformerLM(attention='lsh', **common)('eval').init(signature)
    full_weights, _ = ReformerLM(attention='full', **common)('eval').init(
        signature)
    shapes_of = lambda w: [x.shape for x in jax.tree_util.tree_leaves(w)]
    assert shapes_of(lsh_weights) == shapes_of(full_weights)


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
