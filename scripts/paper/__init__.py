"""Reproductions of published results: table2 (the Reformer paper's
duplication experiment)."""
