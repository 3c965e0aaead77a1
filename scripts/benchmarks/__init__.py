"""Benchmarks, each a command printing its figures and saving them as JSON:
train (against trax's Trainer), decode (against trax's sampler), length
(cost against sequence length, with trax and reformer-pytorch), solve (time
to solve), startup (time to the first step), profile_step (a step's kernels).
tables writes docs/performance.md's tables from their saved JSON; common
holds what they share."""
