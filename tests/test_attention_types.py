"""ReformerLM's attention types ('lsh', 'full', 'local', 'favor') and
positional encodings as settings of one model: causality, locality, FAVOR's
own layer (trax's weights and arithmetic, with predict-mode prefix sums),
FAVOR training and decoding, and which settings predict mode decodes
exactly (the others are refused), on tiny random or briefly trained models.
"""
import contextlib
import io
import os

import jax
import numpy as np
import pytest
from models.trax_bridge import shapes, tl

from experiments import decode, decoding, evaluate, main, restore
from experiments.summaries import read_scalars
from models import ReformerLM, favor, visible_self

LENGTH = 16
TINY = dict(vocab_size=11, d_model=16, d_ff=32, n_heads=2, chunk_len=4)


def _init(spec, tokens):
    """The eval model, initialised (trax's layers take weights only once
    initialised), its random weights and state."""
    model = spec('eval')
    weights, state = model.init(shapes.signature(tokens),
                                rng=jax.random.PRNGKey(0))
    return model, weights, state


def _eval_logits(model, weights, state, tokens):
    """One eval-mode forward pass over whole sequences."""
    logits, _ = jax.jit(model.pure_fn)(tokens, weights, state,
                                       jax.random.PRNGKey(1))
    return np.asarray(logits)


def _change(spec, position):
    """How much each position's logits (max over batch and vocabulary)
    change when the token at `position` changes, on random weights."""
    tokens = _tokens()
    other = tokens.copy()
    other[:, position] = other[:, position] % 10 + 1
    both = np.concatenate([tokens, other])  # one batch, one compilation
    model, weights, state = _init(spec, both)
    logits = _eval_logits(model, weights, state, both)
    return np.abs(logits[2:] - logits[:2]).max(axis=(0, 2))


def _tokens(batch=2):
    return np.random.default_rng(0).integers(1, 11, (batch, LENGTH), np.int32)


@pytest.mark.parametrize('attention', ['full', 'local', 'favor'])
def test_attention_is_causal(attention):
    """Changing token k changes no logits at positions <= k (they predict
    tokens <= k from tokens < k), and does change later ones."""
    change = _change(ReformerLM(attention=attention, **TINY), 9)
    np.testing.assert_allclose(change[:10], 0.0, atol=1e-6)
    assert (change[10:] > 1e-4).all()


def test_local_attention_sees_only_its_window():
    """One layer of chunk 4, one chunk before: position p (fed token p - 1)
    attends to positions 4 * (p // 4 - 1) .. p, so token 0 (at position 1)
    reaches positions < 8 only."""
    change = _change(ReformerLM(attention='local', n_layers=1,
                                n_chunks_before=1, **TINY), 0)
    assert change[0] == 0.0 and (change[1:8] > 1e-4).all()
    np.testing.assert_array_equal(change[8:], 0.0)


def _predict_logits(spec, weights, tokens):
    """Predict mode, one token at a time, every token teacher-forced."""
    _, logits = decoding.Decoder(spec, LENGTH).decode(
        weights, tokens, np.full(len(tokens), LENGTH), with_logits=True)
    return np.asarray(logits)


# The chunked window decodes with trax's own predict memory for it (the
# window, dropping the oldest chunk when full), here over 4 chunks; the
# positional encodings count positions in predict mode. Tolerance as for
# full attention in tests/test_decoding.py.
@pytest.mark.parametrize('settings', [
    dict(attention='local', n_chunks_before=0),
    dict(attention='local', n_chunks_before=2),
    dict(attention='full', pos_type='sin-cos'),
    dict(attention='full', pos_type='fixed-base'),
    dict(attention='full', pos_type='no'),
    dict(attention='full', mask_self=False),
], ids=lambda s: '-'.join(map(str, s.values())))
def test_predict_logits_equal_one_full_forward_pass(settings):
    spec = ReformerLM(**{**TINY, **settings})
    tokens = _tokens()
    model, weights, state = _init(spec, tokens)
    np.testing.assert_allclose(_predict_logits(spec, weights, tokens),
                               _eval_logits(model, weights, state, tokens),
                               atol=1e-4)


def test_favor_decodes_exactly(monkeypatch):
    """models.favor's layer carries the prefix sums through the reversible
    layers' predict state (one numerator per layer); with trax's
    CausalFavorAttention, which keeps none, the same weights give the same
    eval logits but each predicted token attends only to itself, far from
    the forward pass (why the project has its own)."""
    spec = ReformerLM(attention='favor', **TINY)
    decoding.check_decodable(spec, LENGTH)
    tokens = _tokens()
    model, weights, state = _init(spec, tokens)
    full = _eval_logits(model, weights, state, tokens)
    np.testing.assert_allclose(_predict_logits(spec, weights, tokens), full,
                               atol=1e-5)  # seen: 0.0 (2-core CPU)
    sums = [leaf.shape for leaf in jax.tree_util.tree_leaves(
        spec('predict').init(shapes.ShapeDtype((2, 1), np.int32))[1])]
    heads, d_head = TINY['n_heads'], TINY['d_model'] // TINY['n_heads']
    assert sums.count((2 * heads, d_head, d_head)) == 2  # n_layers
    # The model as built before models.favor existed: the same weights
    # tree and eval logits, but predict mode far off.
    monkeypatch.setattr(ReformerLM, '_attention_layer',
                        lambda self: tl.CausalFavor)
    model, trax_weights, trax_state = _init(spec, tokens)
    tree = jax.tree_util.tree_structure
    assert tree(trax_weights) == tree(weights)
    assert tree(trax_state) == tree(state)
    np.testing.assert_array_equal(
        _eval_logits(model, weights, trax_state, tokens), full)
    assert np.abs(_predict_logits(spec, weights, tokens) - full).max() > 0.1


def test_a_one_token_local_window_cannot_decode():
    spec = ReformerLM(**{**TINY, 'attention': 'local', 'chunk_len': 1,
                         'n_chunks_before': 0})
    with pytest.raises(decoding.DecodeError, match='one-token window'):
        decoding.check_decodable(spec, LENGTH)


# ------------------------------------------------ FAVOR's own layer ----

def _favor_pair(mode, x):
    """trax's CausalFavor and models.favor's, each initialised with the
    same key for inputs like x."""
    layers = [build(16, n_heads=2, mode=mode)
              for build in (tl.CausalFavor, favor.CausalFavor)]
    return [(layer, *layer.init(shapes.signature(x),
                                rng=jax.random.PRNGKey(0)))
            for layer in layers]


def _activations(batch=3, length=LENGTH):
    return np.random.default_rng(1).normal(
        size=(batch, length, 16)).astype(np.float32)


def _shared_qk_attention(x, weights, own_key_visible):
    """Causal shared query-key attention in NumPy, as trax computes it: keys
    are the queries normalised to unit root-mean-square, over sqrt(d); heads
    summed."""
    w_q, w_v, w_o = (np.asarray(w, np.float64) for w in weights)
    length = x.shape[1]
    later = np.triu(np.ones((length, length)), 1)
    mask = 1e9 * later + (0.0 if own_key_visible else 1e5) * np.eye(length)
    out = 0.0
    for h in range(len(w_q)):
        q = x @ w_q[h]
        k = q / np.sqrt((q ** 2).mean(-1, keepdims=True) + 1e-6)
        dots = q @ np.swapaxes(k, 1, 2) / np.sqrt(q.shape[-1]) - mask
        p = np.exp(dots - dots.max(-1, keepdims=True))
        out = out + (p / p.sum(-1, keepdims=True)) @ (x @ w_v[h]) @ w_o[h]
    return out


def test_visible_self_attention_masks_only_later_keys():
    """trax's shared-QK SelfAttention hides each query's own key (1e5 off
    its product); SelfVisibleAttention, with the same weights, shows it and
    hides only later keys; trax's layer is left as it was."""
    x = np.random.default_rng(0).normal(size=(2, 6, 8)).astype(np.float32)
    kwargs = dict(n_heads=2, d_qk=4, d_v=4, share_qk=True, causal=True,
                  chunk_len=None, mode='eval')
    outputs = []
    for layer in (tl.SelfAttention(**kwargs),
                  visible_self.SelfVisibleAttention(**kwargs)):
        weights, state = layer.init(shapes.signature(x),
                                    rng=jax.random.PRNGKey(0))
        out, _ = layer.pure_fn(x, weights, state, jax.random.PRNGKey(1))
        outputs.append(np.asarray(out))
    hidden, visible = outputs
    np.testing.assert_allclose(hidden, _shared_qk_attention(x, weights, False),
                               atol=1e-5)
    np.testing.assert_allclose(visible, _shared_qk_attention(x, weights, True),
                               atol=1e-5)
    assert np.abs(visible - hidden).max(-1)[:, 1:].min() > 1e-3
    np.testing.assert_allclose(visible[:, 0], hidden[:, 0], atol=1e-6)
    from models.trax_bridge import trax
    assert (trax.layers.research.efficient_attention.mask_self_attention
            is visible_self._MASK)


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_favor_layer_has_traxs_weights_and_arithmetic(mode):
    """The same weights tree and initial values as trax's CausalFavor (runs
    trained with it load unchanged), the same state, and bit for bit the
    same outputs and weight gradients."""
    x = _activations()
    (theirs, weights, state), (ours, our_weights, our_state) = _favor_pair(
        mode, x)
    tree = jax.tree_util.tree_structure
    assert tree(our_weights) == tree(weights)
    assert tree(our_state) == tree(state)
    for got, want in zip(jax.tree_util.tree_leaves(our_weights),
                         jax.tree_util.tree_leaves(weights)):
        np.testing.assert_array_equal(got, want)

    def loss(layer, layer_state):
        def total(w):
            out, _ = layer.pure_fn(x, w, layer_state, jax.random.PRNGKey(1))
            return (out ** 2).sum(), out
        return jax.jit(jax.value_and_grad(total, has_aux=True))(weights)

    (_, out), grads = loss(theirs, state)
    (_, our_out), our_grads = loss(ours, our_state)
    np.testing.assert_array_equal(our_out, out)
    for got, want in zip(jax.tree_util.tree_leaves(our_grads),
                         jax.tree_util.tree_leaves(grads)):
        np.testing.assert_array_equal(got, want)


def _fed(layer, weights, state, x, sizes):
    """Predict mode, x fed in pieces of the given lengths."""
    outputs, start = [], 0
    step = jax.jit(layer.pure_fn)
    for size in sizes:
        out, state = step(x[:, start:start + size], weights, state,
                          jax.random.PRNGKey(1))
        outputs.append(np.asarray(out))
        start += size
    return np.concatenate(outputs, axis=1)


def test_favor_layer_predicts_as_its_forward_pass():
    """Fed one token at a time, or several per call (the sums continue),
    our predict mode returns the eval forward pass; trax's restarts its sums
    at every call."""
    x = _activations()
    (theirs, weights, state), _ = _favor_pair('eval', x)
    full = np.asarray(theirs.pure_fn(x, weights, state,
                                     jax.random.PRNGKey(1))[0])
    (theirs, _, their_predict), (ours, _, predict) = _favor_pair(
        'predict', x[:, :1])
    assert [leaf.shape for leaf in jax.tree_util.tree_leaves(predict)] == [
        (3 * 2, 8, 8), (3 * 2, 8)]  # batch * heads; d_head
    for sizes in ([1] * LENGTH, [5, 1, 10]):
        np.testing.assert_allclose(_fed(ours, weights, predict, x, sizes),
                                   full, atol=1e-6)  # seen: 0.0
    assert np.abs(_fed(theirs, weights, their_predict, x, [1] * LENGTH)
                  - full).max() > 0.1


# -------------------------------- FAVOR trains, evaluates and decodes ----

PARAMS = ['VOCAB_SIZE = 8', f'LENGTH = {LENGTH}', 'BATCH_SIZE = 16',
          'models.ReformerLM.d_model = 32', 'models.ReformerLM.d_ff = 64',
          'models.ReformerLM.n_heads = 2', 'models.ReformerLM.n_layers = 1',
          "models.ReformerLM.attention = 'favor'",
          'multifactor.warmup_steps = 20',
          'experiments.Experiment.n_steps = 90',
          'experiments.Experiment.eval_every = 30',
          'experiments.Experiment.decode_eval_every = 90']


@pytest.fixture(scope='module')
def favor_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('favor') / 'run')
    with contextlib.redirect_stdout(io.StringIO()):
        assert main.run(['reformer_copy.gin'], PARAMS, output_dir=out) == 0
    return out


def test_favor_trains(favor_run):
    """Teacher-forced eval loss falls from about ln 8 = 2.08 (seen: 2.10,
    1.78, 0.68; accuracy 0.75 at step 90); the decoding evaluation at the
    end gives exact match equal to sequence_accuracy, as predict mode is
    exact (seen: 0.0625 both, 4 of 64)."""
    evals = read_scalars(os.path.join(favor_run, 'eval'))
    losses = [loss for _, loss in evals['metrics/loss']]
    assert [step for step, _ in evals['metrics/loss']] == [30, 60, 90]
    assert losses[0] > losses[1] > losses[2] and losses[2] < 1.2
    assert evals['metrics/accuracy'][-1][1] > 0.5
    assert evals['metrics/exact_match'] == [
        (90, pytest.approx(evals['metrics/sequence_accuracy'][-1][1]))]


def test_favor_evaluates(favor_run):
    restored = restore.restore(favor_run)
    metrics = evaluate.evaluate(restored)
    final = {tag.split('/')[1]: points[-1][1] for tag, points in
             read_scalars(os.path.join(favor_run, 'eval')).items()}
    assert metrics == pytest.approx(final, abs=1e-6)
    assert 'exact_match' in metrics


def test_favor_decodes_with_the_decode_command(favor_run, capsys):
    assert decode.main(['decode', f'--output_dir={favor_run}',
                        '--num_examples=3']) == 0
    printed = capsys.readouterr().out
    assert printed.count('   output: ') == 3 and 'exact match: ' in printed
