"""Sweep files for `python -m scripts.sweep` (each binds scripts.Sweep: a base experiment and axes of bindings)."""
