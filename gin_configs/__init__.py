"""The shipped experiment files, as package data so `--gin_file=<name>` finds them from an installed package too (experiments/config.py looks here)."""
