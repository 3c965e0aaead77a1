"""models.trax_bridge: quick checks in-process, trax's own tests in a
subprocess (`python -m experiments.trax_upstream_tests`)."""
import functools
import os
import subprocess
import sys
import textwrap

from models import trax_bridge
from models.trax_bridge import shapes, tl, trax
from experiments import trax_upstream_tests
import jax
import numpy as np
import pytest

fastmath = trax.fastmath
decoding = trax.supervised.decoding

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout, env=None):
    """Runs `python args` from the repo root; returns (rc, combined output)."""
    proc = subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, timeout=timeout,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout


def test_apply_is_idempotent():
    cond = fastmath.backend()['cond']
    on_cpu = tl.on_cpu
    trax_bridge.apply()
    trax_bridge._APPLIED = False  # force a second full pass
    trax_bridge.apply()
    assert fastmath.backend()['cond'] is cond
    assert tl.on_cpu is on_cpu


def test_removed_jax_api_is_back():
    assert jax.tree_map(lambda x: x + 1, {'a': 1}) == {'a': 2}
    assert jax.tree_structure((1, 2)) == jax.tree_util.tree_structure((1, 2))
    from jax.config import config  # trax tests' import form
    assert config is jax.config
    hlo = jax.xla_computation(lambda x: x * 2)(np.ones(3, np.float32))
    assert 'multiply' in hlo.as_hlo_text()
    reps = jax.device_put_replicated(np.arange(3), jax.local_devices())
    assert reps.shape == (jax.local_device_count(), 3)



def test_training_and_decoding_never_import_tensorflow(tmp_path):
    """The bridge leaves TensorFlow unimported until something needs it:
    a whole run (train, evaluate, checkpoint, events) and a decode need
    none of it, nor a plot (matplotlib), nor trax's text tokenizer (left to
    load on first use)."""
    script = textwrap.dedent(f'''
        import sys
        from experiments import decode, main
        from models import trax_bridge
        assert not trax_bridge.tensorflow_loaded()
        steps = ['experiments.Experiment.n_steps = 2',
                 'experiments.Experiment.eval_every = 2',
                 'experiments.Experiment.n_eval_batches = 1']
        assert main.run(['codelab.gin'], steps, output_dir={str(tmp_path)!r}) == 0
        assert decode.run({str(tmp_path)!r}, num_examples=1) == 0
        import matplotlib  # which reads TF's is_tensor if TF is listed
        matplotlib.use('Agg')
        from matplotlib import pyplot
        pyplot.plot([1, 2])
        pyplot.savefig({str(tmp_path / 'plot.png')!r})
        real = sorted(n for n in sys.modules if n.startswith('tensorflow.python'))
        tokenizer = type(sys.modules['trax.data.tokenizer']).__name__
        print('LOADED', trax_bridge.tensorflow_loaded(), real[:3], tokenizer)
    ''')
    rc, out = _run(['-c', script], timeout=300)
    assert rc == 0, out
    assert out.strip().splitlines()[-1] == 'LOADED False [] _LazyModule', out
    assert os.listdir(tmp_path / 'checkpoints')
    assert os.listdir(tmp_path / 'train')


def test_tensorflow_loads_when_first_used(tmp_path):
    """What does use TF still works, importing it on first use: trax's
    weight files (tf.io.gfile), shapes from TF objects, the TF-NumPy
    backend, trax.AsKeras and trax.jaxboard; and the text tokenizer."""
    script = textwrap.dedent(f'''
        import os
        from models import trax_bridge
        import numpy as np
        import trax
        from trax import layers as tl, shapes
        assert not trax_bridge.tensorflow_loaded()
        dense = tl.Dense(3)
        dense.init(shapes.ShapeDtype((1, 2)))
        assert not trax_bridge.tensorflow_loaded()  # shapes alone need no TF
        path = os.path.join({str(tmp_path)!r}, 'dense.pkl.gz')
        dense.save_to_file(path, input_signature=shapes.ShapeDtype((1, 2)))
        assert trax_bridge.tensorflow_loaded()
        again = tl.Dense(3)
        again.init_from_file(path, weights_only=True)
        np.testing.assert_array_equal(again.weights[0], dense.weights[0])
        import tensorflow as tf
        assert shapes.ShapeDtype(tf.TensorShape([2, 3])).shape == (2, 3)
        with trax.fastmath.use_backend('tensorflow-numpy'):
            assert trax.fastmath.backend_name() == 'tensorflow-numpy'
            assert isinstance(trax.fastmath.numpy.ones(2), tf.Tensor)
        assert isinstance(trax.AsKeras(tl.Dense(2), batch_size=1),
                          tf.keras.layers.Layer)
        trax.jaxboard.SummaryWriter({str(tmp_path)!r}).close()
        from trax.data import tokenizer  # loaded only now, by this call
        assert tokenizer.encode("Dude - that's so cool.") == [
            'Dude', ' - ', 'that', "'", 's', 'so', 'cool', '.']
        print('OK')
    ''')
    rc, out = _run(['-c', script], timeout=300)
    assert rc == 0, out
    assert out.strip().splitlines()[-1] == 'OK', out


def test_tree_unflatten_with_array_leaves():
    # trax issue 1770: the path that resuming training.Loop takes.
    tree = ((), (np.zeros(2), None), [np.ones(3)])
    flat = [jax.numpy.full(2, 5.0), jax.numpy.full(3, 7.0)]
    new, rest = fastmath.tree_unflatten(flat, tree,
                                        copy_from_tree=[None, ()])
    assert rest == []
    assert new[0] == () and new[1][1] is None
    np.testing.assert_array_equal(new[1][0], [5.0, 5.0])
    np.testing.assert_array_equal(new[2][0], [7.0, 7.0, 7.0])


def test_reformer_lsh_decodes_in_predict_mode():
    attention = functools.partial(
        tl.LSHSelfAttention, n_hashes=2, chunk_len=16, n_buckets=4,
        predict_mem_len=64, predict_drop_len=64)
    model = trax.models.ReformerLM(
        vocab_size=16, d_model=32, d_ff=64, n_layers=2, n_heads=2,
        max_len=64, mode='predict', attention_type=attention)
    model.init(shapes.ShapeDtype((1, 1), np.int32))
    # A multi-token prefix runs the q_len > 1 branch, then one token a step.
    prefix = np.array([[3, 4, 5]], np.int32)
    out = decoding.autoregressive_sample(model, prefix, eos_id=-1,
                                         max_length=4, temperature=0.0)
    assert out.shape == (1, 4)
    assert ((0 <= out) & (out < 16)).all()


_TWO_DEVICE_SCRIPT = textwrap.dedent('''
    import models.trax_bridge
    import sys
    import jax, numpy as np, trax
    from trax import layers as tl, optimizers, shapes
    from trax.supervised import decoding, training
    assert jax.local_device_count() == 2, jax.devices()

    def batches():
        rng = np.random.RandomState(0)
        while True:
            x = rng.randint(2, 16, size=(4, 8)).astype(np.int32)
            yield x, x, np.ones_like(x, np.float32)

    def model(mode):
        return trax.models.TransformerLM(16, d_model=16, d_ff=32, n_layers=1,
                                         n_heads=2, max_len=32, mode=mode)

    def loop(out):
        task = training.TrainTask(batches(), tl.WeightedCategoryCrossEntropy(),
                                  optimizers.Adam(0.01),
                                  n_steps_per_checkpoint=2)
        return training.Loop(model('train'), [task], output_dir=out,
                             n_devices=2)

    out = sys.argv[1]
    first = loop(out)
    first.run(2)
    resumed = loop(out)  # checkpoint restore, replicated slots
    assert resumed.step == 2, resumed.step
    resumed.run(1)

    loss_model = tl.Serial(model('train'), tl.WeightedCategoryCrossEntropy())
    batch = next(batches())
    loss_model.init(shapes.signature(batch))
    opt = optimizers.Adam(0.01)
    opt.tree_init(loss_model.weights)
    trainer = optimizers.Trainer(loss_model, opt, n_devices=2)
    for i in range(2):
        trainer.one_step(batch, jax.random.PRNGKey(i))

    predict = model('predict')
    predict.init_from_file(out + '/model.pkl.gz', weights_only=True,
                           input_signature=shapes.ShapeDtype((1, 1), np.int32))
    # eos_id=-1 forces several steps: each feeds back a pmap result.
    sample = decoding.autoregressive_sample(predict, eos_id=-1, max_length=3)
    assert sample.shape == (1, 3), sample.shape
    print('TWO_DEVICES_OK')
''')


def test_two_device_training_resume_and_decoding(tmp_path):
    env = dict(os.environ,
               XLA_FLAGS='--xla_force_host_platform_device_count=2')
    rc, out = _run(['-c', _TWO_DEVICE_SCRIPT, str(tmp_path / 'run')],
                   timeout=600, env=env)
    assert rc == 0 and 'TWO_DEVICES_OK' in out, out[-6000:]


@pytest.mark.parametrize('run', sorted(trax_upstream_tests.RUNS))
def test_trax_upstream_tests_pass(run):
    """trax 1.4.1's own tests for what we use, known failures xfail(strict)."""
    rc, out = _run(['-m', 'experiments.trax_upstream_tests', f'--only={run}'],
                   timeout=1800)
    if rc != 0:
        pytest.fail(f'upstream trax tests failed (exit {rc}):\n{out[-12000:]}')
