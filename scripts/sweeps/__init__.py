"""What `scripts.sweep` is made of: spec (sweep files and their trials; sweep
files `import scripts.sweeps` to bind `scripts.Sweep`), layout (the sweep
directory), local and cloud_tpu (the runners)."""
from scripts.sweeps import spec  # noqa: F401  (registers scripts.Sweep)
