"""Gin-configured experiments on efficient sequence models with trax."""
from setuptools import find_packages, setup

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
    package_data={'gin_configs': ['*.gin', 'common/*.gin', 'sweeps/*.gin']},
    install_requires=[
        'trax==1.4.1',  # the last release; models/trax_bridge.py makes it
                        # run on current JAX
        'jax',
        'jaxlib',
        'numpy',
        'gin-config',
        'absl-py',
        'tensorboard',  # TensorFlow no longer brings it
        'matplotlib',  # sweep report plots
        'orbax-checkpoint',  # checkpoints as arrays and JSON, not pickles
    ],
    extras_require={
        'test': ['pytest', 'pytest-xdist', 'hypothesis'],
        # scripts/benchmarks/length.py's reformer-pytorch column (CPU wheel of
        # torch 2.13.0 where pip finds one; PyPI's default build is CUDA's).
        'bench': ['torch==2.13.0', 'reformer-pytorch==1.4.4'],
    },
    entry_points={'console_scripts': [
        'seq-lab-train = experiments.main:console',
    ]},
)
