"""Entry points (main, and later decode/evaluate), the training root, and the
bridge that lets trax 1.4.1 run on current JAX."""
