"""Data parallelism over local devices, shown on two forced CPU devices."""
import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh process: the device count is fixed when JAX starts.
SCRIPT = textwrap.dedent('''
    import json, sys, tempfile
    import gin, jax
    from experiments import config, training

    def run(n_devices):
        gin.clear_config()
        config.parse(['codelab.gin'], [
            f'experiments.Experiment.n_devices = {n_devices}',
            'models.TransformerLM.dropout = 0.0',  # no per-device masks
            'tasks.copy.batch_size = 8',
            # No warm-up, so 20 steps move the weights visibly.
            'experiments.Experiment.lr_schedule = @lr_schedules.constant()',
            'lr_schedules.constant.value = 0.01'])
        experiment = config.build_experiment()
        run = training.TrainingRun(experiment, tempfile.mkdtemp())
        stream = experiment.task.stream('train')
        losses = run.train_steps([next(stream) for _ in range(20)])
        return {'losses': [float(x) for x in losses], 'eval': run.evaluate()}

    print(json.dumps({'devices': jax.local_device_count(),
                      'one': run(1), 'two': run(2)}))
''')


def test_two_devices_match_one_with_the_same_global_batch():
    env = {**os.environ, 'PYTHONPATH': REPO,
           'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
    result = subprocess.run([sys.executable, '-c', SCRIPT], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out['devices'] == 2
    one, two = out['one'], out['two']
    # Same global batch (8 = 2 x 4) and seed: each device averages its half,
    # the halves have equal weight, so only float rounding differs.
    for step, (a, b) in enumerate(zip(one['losses'], two['losses'])):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (step, a, b)
    # The steps really update the model (the batches alone vary far less).
    assert max(one['losses']) - min(one['losses']) > 0.05
    for name, value in one['eval'].items():
        assert abs(value - two['eval'][name]) <= 1e-3, name
