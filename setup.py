"""Gin-configured experiments on efficient sequence models with trax."""
from setuptools import find_packages, setup

# trax 1.4.1, the last release (models/trax_bridge.py makes it run on current
# JAX), is installed on its own with --no-deps (the README's set-up commands:
# pip install -c constraints.txt --no-deps trax): it declares TensorFlow,
# tensorflow-text, tensorflow-datasets and gym, 2.4 GB that training,
# evaluating and decoding never import (the bridge stands in for them while
# trax imports). The rest of what trax uses is in REQUIRED.
REQUIRED = [
    'jax',
    'jaxlib',
    'numpy',
    'scipy',  # trax.fastmath.numpy
    'six',  # trax.supervised.history
    'psutil',  # trax's training.Loop logs memory use
    'gin-config',
    'absl-py',
    'tensorboard',  # events (TensorFlow no longer brings it)
    'matplotlib',  # sweep report plots
    'orbax-checkpoint',  # checkpoints as arrays and JSON, not pickles
]
# trax's own tests (python -m experiments.trax_upstream_tests) and the
# trax features that use TensorFlow (weight files, the TF-NumPy backend,
# trax.AsKeras, trax.jaxboard, trax.data).
UPSTREAM = [
    'tensorflow',
    'funcsigs',  # trax.tf_numpy, the TF-NumPy backend
]

setup(
    name='trax-seq-lab',
    version='0.1.0',
    description=__doc__,
    python_requires='>=3.10',
    packages=find_packages(
        include=['experiments', 'tasks', 'models', 'scripts', 'gin_configs',
                 'gin_configs.*']),
    # Experiment files ship with the code, so `--gin_file=reformer_copy.gin`
    # works from an installed package too.
    package_data={'gin_configs': ['*.gin', 'common/*.gin', 'sweeps/*.gin',
                                  'zoo/*.gin']},
    install_requires=REQUIRED,
    extras_require={
        'upstream': UPSTREAM,
        'test': ['pytest', 'pytest-xdist', 'hypothesis', *UPSTREAM],
        # scripts/benchmarks/length.py's reformer-pytorch column (CPU wheel of
        # torch 2.13.0 where pip finds one; PyPI's default build is CUDA's).
        'bench': ['torch==2.13.0', 'reformer-pytorch==1.4.4'],
    },
    entry_points={'console_scripts': [
        'seq-lab-train = experiments.main:console',
    ]},
)
