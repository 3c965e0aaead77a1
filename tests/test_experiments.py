"""A tiny end-to-end run of every shipped experiment, and resumption.

Each test parses the real gin file, shrinks it with bindings, trains a few
steps into a temporary directory and checks what it wrote.
"""
import math
import os

import pytest

from experiments import checkpoints, main, run_dir
from experiments.summaries import read_scalars

SHRINK = {
    'codelab.gin': [],
    'transformer_copy.gin': ['models.TransformerLM.d_model = 16',
                             'models.TransformerLM.d_ff = 32',
                             'tasks.copy.batch_size = 4'],
    'transformer_reversal.gin': ['models.TransformerLM.d_model = 16',
                                 'models.TransformerLM.d_ff = 32',
                                 'tasks.reversal.batch_size = 4'],
    'reformer_copy.gin': ['models.ReformerLM.d_model = 16',
                          'models.ReformerLM.d_ff = 32',
                          'tasks.copy.batch_size = 4'],
    'reformer_reversal.gin': ['models.ReformerLM.d_model = 16',
                              'models.ReformerLM.d_ff = 32',
                              'tasks.reversal.batch_size = 4'],
}
STEPS = ['experiments.Experiment.n_steps = 3',
         'experiments.Experiment.eval_every = 2',
         'experiments.Experiment.checkpoint_every = 2',
         'experiments.Experiment.n_eval_batches = 1']
TRAIN_TAGS = {'metrics/loss', 'metrics/accuracy', 'metrics/sequence_accuracy',
              'training/learning_rate', 'training/steps_per_second'}
EVAL_TAGS = {'metrics/loss', 'metrics/accuracy', 'metrics/sequence_accuracy'}


def _train(name, out, extra=()):
    status = main.run([name], SHRINK[name] + STEPS + list(extra),
                      output_dir=str(out))
    assert status == 0


@pytest.mark.parametrize('name', sorted(SHRINK))
def test_tiny_run_writes_config_events_and_checkpoints(name, tmp_path, capsys):
    out = tmp_path / 'run'
    _train(name, out)
    printed = capsys.readouterr().out
    assert 'step 2/3 | train loss' in printed and 'steps/s' in printed
    assert 'Final eval: loss' in printed

    for config_file in ('config.gin', 'operative_config.gin'):
        text = (out / config_file).read_text()
        assert 'Experiment.n_steps = 3' in text
    assert checkpoints.list_steps(str(out)) == [2, 3]

    train, evals = read_scalars(str(out / 'train')), read_scalars(
        str(out / 'eval'))
    assert TRAIN_TAGS <= set(train) and EVAL_TAGS <= set(evals)
    for scalars in (train, evals):
        for tag, points in scalars.items():
            assert [step for step, _ in points] == [2, 3], tag
            assert all(math.isfinite(v) for _, v in points), tag
    for _, accuracy in evals['metrics/accuracy']:
        assert 0.0 <= accuracy <= 1.0
    # Untrained on 31 (or 4) symbols, the cross-entropy is near log(vocab).
    assert 0.5 * math.log(32) < evals['metrics/loss'][0][1] < 2 * math.log(32)
    # What sweep runners read: the last evaluation, as logged.
    progress = run_dir.read_progress(str(out))
    assert progress['step'] == progress['n_steps'] == 3 and progress['finished']
    assert progress['eval'] == pytest.approx(  # events hold float32s
        {tag.split('/')[1]: points[-1][1] for tag, points in evals.items()},
        rel=1e-6)


def test_resume_continues_at_the_saved_step(tmp_path, capsys):
    """Stopping at step 2 and rerunning to step 3 matches one run to step 3."""
    name = 'reformer_copy.gin'
    resumed = tmp_path / 'resumed'
    _train(name, resumed, ['experiments.Experiment.n_steps = 2'])
    capsys.readouterr()
    _train(name, resumed)
    printed = capsys.readouterr().out
    assert 'Resuming from the checkpoint at step 2 (last start: ' in printed
    assert 'step 2/3' not in printed and 'step 3/3' in printed
    assert checkpoints.list_steps(str(resumed)) == [2, 3]

    straight = tmp_path / 'straight'
    _train(name, straight)
    final = lambda out: read_scalars(str(out / 'eval'))['metrics/loss'][-1]
    assert final(resumed) == final(straight)
    # Each step is logged once, even across the resume.
    steps = [s for s, _ in read_scalars(str(resumed / 'eval'))['metrics/loss']]
    assert steps == [2, 3]
    assert os.path.exists(resumed / 'operative_config.gin')


@pytest.mark.parametrize('name', ['codelab.gin', 'reformer_copy.gin'])
def test_steps_per_call_do_not_change_the_numbers(name, tmp_path):
    """Ten steps in one compiled call equal ten calls of one step, bit for
    bit: the loop only removes host round trips."""
    import gin
    import jax
    import numpy as np
    from experiments import config, training

    def train(steps_per_call):
        gin.clear_config()
        config.parse([name], SHRINK[name])
        experiment = config.build_experiment()
        run = training.TrainingRun(experiment,
                                   str(tmp_path / str(steps_per_call)))
        batches = [experiment.task.batch('train', i) for i in range(10)]
        losses = np.concatenate([
            np.asarray(run.train_steps(batches[i:i + steps_per_call]))
            for i in range(0, 10, steps_per_call)])
        return losses, jax.tree_util.tree_leaves(run.weights)

    (one_loss, one_weights), (ten_loss, ten_weights) = train(1), train(10)
    np.testing.assert_array_equal(one_loss, ten_loss)
    assert len(set(one_loss.tolist())) == 10  # the steps really differ
    for a, b in zip(one_weights, ten_weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_learning_rates_follow_the_schedule_without_jax(monkeypatch):
    """The rates for a call are the schedule's (within float32 rounding: NumPy
    evaluates in float64) and are computed without a JAX op, which would wait
    for the training call running on the device."""
    import gin
    import jax
    import numpy as np
    from experiments import config, training

    gin.clear_config()
    config.parse(['codelab.gin'], [])
    experiment = config.build_experiment()
    run = training.TrainingRun(experiment, '/nonexistent/not-written')
    expected = np.float32([experiment.lr_schedule(s) for s in range(1, 1201)])

    def no_jax(*args, **kwargs):
        raise AssertionError('the schedule ran a JAX op')

    monkeypatch.setattr(jax.numpy, 'minimum', no_jax)
    monkeypatch.setattr(jax.numpy, 'sqrt', no_jax)
    rates = run.learning_rates(1, 1200)
    assert rates.dtype == np.float32 and rates.shape == (1200,)
    np.testing.assert_allclose(rates, expected, rtol=2e-7)
    assert rates[0] < rates[399] and rates[1199] < rates[399]  # warm-up, decay
    assert run.learning_rate(400) == rates[399]


def test_unrolled_threefry_draws_the_same_bits():
    """experiments.xla_cpu swaps JAX's rolled CPU loop for the unrolled form:
    the same random bits, with no loop left in the compiled program."""
    import subprocess
    import sys
    script = '''
import json, jax, numpy as np
from experiments import xla_cpu
key = jax.random.PRNGKey(7)
def draw(k):
    return jax.random.bits(k, (3, 1000)), jax.random.bernoulli(k, 0.9, (257,))
rolled = jax.jit(draw)
before = [np.asarray(x).tolist() for x in rolled(key)]
rolled_hlo = rolled.lower(key).compile().as_text()
assert xla_cpu.unroll_threefry()
unrolled = jax.jit(lambda k: draw(k))
after = [np.asarray(x).tolist() for x in unrolled(key)]
print(json.dumps({'same': before == after,
                  'rolled_loops': rolled_hlo.count(' while('),
                  'unrolled_loops': unrolled.lower(key).compile().as_text()
                  .count(' while(')}))
'''
    result = subprocess.run([sys.executable, '-c', script],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
    import json
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {'same': True, 'rolled_loops': outcome['rolled_loops'],
                       'unrolled_loops': 0}
    assert outcome['rolled_loops'] > 0


def test_freed_heap_memory_goes_back_to_the_system():
    """xla_cpu.release_freed_memory returns free C-heap pages (what a
    compile leaves behind) to the system: resident memory falls."""
    import subprocess
    import sys
    script = '''
from experiments import xla_cpu
def rss_mb():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('VmRSS')) / 1024
blocks = [bytes(2000) for _ in range(100_000)]  # 200 MB of malloc'd blocks
keep = blocks[-1]  # pins the heap's top, so freeing alone returns nothing
del blocks
before = rss_mb()
released = xla_cpu.release_freed_memory()
print(released, round(before - rss_mb()))
'''
    result = subprocess.run([sys.executable, '-c', script],
                            capture_output=True, text=True, check=True)
    released, freed_mb = result.stdout.split()
    if released == 'False':
        pytest.skip('this C library has no malloc_trim')
    assert int(freed_mb) > 100, result.stdout


def test_small_products_are_lowered_in_standard_form():
    """xla_cpu.standard_form_dots: a small product contracting the left
    operand over a dimension other than its last (attention's backward pass,
    batched; a weight gradient, unbatched) gives the same numbers, and
    compiles to a standard-form dot (contracting the last dimension) instead
    of XLA:CPU's slow form; a large one keeps XLA's form. In a fresh
    process: the lowering, once registered, stays."""
    import json
    import subprocess
    import sys
    script = '''
import json, re, jax, numpy as np
from jax import lax
from experiments import xla_cpu
rng = np.random.default_rng(0)
cases = [  # (left, right, dimension numbers, the same product in einsum)
    ((6, 5, 3), (6, 5, 4), (((1,), (1,)), ((0,), (0,))), 'nki,nkj->nij'),
    ((40, 8), (40, 4), (((0,), (0,)), ((), ())), 'ki,kj->ij'),
    ((1024, 64), (1024, 4), (((0,), (0,)), ((), ())), 'ki,kj->ij')]
def products():
    out = []
    for left, right, dims, einsum in cases:
        a = rng.standard_normal(left, np.float32)
        b = rng.standard_normal(right, np.float32)
        f = jax.jit(lambda a, b: lax.dot_general(a, b, dims))
        hlo = f.lower(a, b).compile().as_text()
        error = np.abs(np.asarray(f(a, b)) - np.einsum(einsum, a, b)).max()
        out.append([re.findall(r' dot\\(.*?lhs_contracting_dims=\\{([\\d,]+)\\}', hlo),
                    float(error / np.abs(np.einsum(einsum, a, b)).max())])
    return out
before = products()
registered = xla_cpu.standard_form_dots()
print(json.dumps([before, registered, products()]))
'''
    result = subprocess.run([sys.executable, '-c', script],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
    before, registered, after = json.loads(
        result.stdout.strip().splitlines()[-1])
    assert registered
    assert [dims for dims, _ in before] == [['1'], ['0'], ['0']]
    assert [dims for dims, _ in after] == [['2'], ['1'], ['0']]
    assert all(error < 1e-5 for _, error in before + after)


def test_experiments_start_xla_with_their_settings(tmp_path):
    """Building an experiment starts nothing; training.start_jax, as the
    commands call it, starts JAX with its cpu_threads as XLA:CPU's pool size
    (also above the cores here) and with loops kept rolled, on top of the
    user's XLA_FLAGS; neither setting leaks into child processes."""
    import json
    import subprocess
    import sys
    script = '''
import glob, json, os, sys
from experiments import config, training
from models import jax_private
config.parse(['codelab.gin'], sys.argv[2:])
experiment = config.build_experiment()
started = jax_private.get('jax._src.xla_bridge', 'backends_are_initialized')
pure = not started()
training.start_jax(experiment)
import jax, jax.numpy as jnp
jax.jit(jnp.exp).lower(jnp.ones((16, 10, 32))).compile()
tasks = os.listdir('/proc/self/task')
names = [open(f'/proc/self/task/{t}/comm').read().strip() for t in tasks]
options = open(glob.glob(os.path.join(sys.argv[1], '*jit_exp.debug_options'))[0]).read()
print(json.dumps({'pure': pure, 'threads': experiment.cpu_threads,
                  'pool': names.count('tf_XLAEigen'),
                  'rolled': 'xla_cpu_disable_loop_unrolling' in options,
                  'dumped': sys.argv[1] in options,
                  'leaked': 'PJRT_NPROC' in os.environ
                            or os.environ['XLA_FLAGS'] != '--xla_dump_to=' + sys.argv[1]}))
'''
    outcomes = []
    # 3 threads: any count applies, whatever the cores here.
    for i, params in enumerate(([], ['experiments.Experiment.cpu_threads = 3'])):
        dump = str(tmp_path / str(i))
        env = {k: v for k, v in os.environ.items()
               if k not in ('PJRT_NPROC', 'NPROC')}
        env['XLA_FLAGS'] = f'--xla_dump_to={dump}'
        result = subprocess.run([sys.executable, '-c', script, dump, *params],
                                capture_output=True, text=True, check=True,
                                env=env)
        outcomes.append(json.loads(result.stdout.strip().splitlines()[-1]))
    settings = {'pure': True, 'rolled': True, 'dumped': True, 'leaked': False}
    assert outcomes[0] == {'threads': 1, 'pool': 1, **settings}
    assert outcomes[1] == {'threads': 3, 'pool': 3, **settings}


def test_devices_are_checked_where_they_are_used_and_at_a_dry_run(
        tmp_path, capsys):
    """A file's validity does not depend on the machine parsing it: building
    takes any n_devices; the dry run (as training) checks this machine's."""
    from experiments import config
    too_many = ['experiments.Experiment.n_devices = 64']
    config.parse(['codelab.gin'], too_many)
    assert config.build_experiment().n_devices == 64
    assert main.run(['codelab.gin'], too_many, output_dir=str(tmp_path / 'r'),
                    dry_run=True) == 2
    assert capsys.readouterr().err == (
        'error: Experiment.n_devices=64, but 1 device(s) are '
        'available\n')
    assert not (tmp_path / 'r').exists()


def test_the_default_thread_pool_is_fixed_not_one_per_core():
    """Other pool sizes give other bits (experiments/xla_cpu.py), so an
    experiment that does not set cpu_threads gets the same pool on every
    machine."""
    from experiments import training, xla_cpu
    assert training.Experiment.cpu_threads == xla_cpu.DEFAULT_THREADS == 2
