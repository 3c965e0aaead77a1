"""Synthetic sequence tasks; the only place this package registers with gin.

A gin file selects a task with e.g.:

    import tasks
    experiments.Experiment.task = @tasks.copy()
    tasks.copy.length = 64
"""
import gin

from tasks.sequence_tasks import SequenceTask

__all__ = ['SequenceTask', 'copy', 'reversal']


@gin.configurable(module='tasks')
def copy(*, vocab_size: int, length: int, batch_size: int,
         seed: int = 0,
         min_length: int | None = None) -> SequenceTask:
    """Copy task: "0 w 0 w"."""
    return SequenceTask('copy', vocab_size, length, batch_size, seed,
                        min_length)


@gin.configurable(module='tasks')
def reversal(*, vocab_size: int, length: int, batch_size: int,
             seed: int = 0,
             min_length: int | None = None) -> SequenceTask:
    """Reversal task: "0 w 0 reverse(w)"."""
    return SequenceTask('reversal', vocab_size, length, batch_size, seed,
                        min_length)
