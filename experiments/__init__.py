"""Training, decoding and evaluating one experiment; the commands
`experiments.main` (train), `experiments.decode` and `experiments.evaluate`.

config reads gin files into an `Experiment` (training.py), which training
runs; decoding, restore and evaluate serve trained runs; run_dir, manifest,
checkpoints and summaries are what a run directory holds; cli is the one
command-line runner; xla_cpu starts JAX's CPU client with this project's
settings.
"""
from experiments import moved

moved.register({'experiments.trax_bridge': 'models.trax_bridge'})
