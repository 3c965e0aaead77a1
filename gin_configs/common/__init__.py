"""Defaults the experiment files include: the training loop (training.gin), each model family and each task."""
