"""Synthetic sequence tasks, one module each, registered with gin as
`tasks.<name>` (tasks.names() lists them); all are tasks.Task dataclasses.

A gin file selects one with e.g.:

    import tasks
    experiments.Experiment.task = @tasks.copy()
    tasks.copy.length = 64

Adding a task: a module with a @register'ed Task subclass, imported here.
"""
from tasks.associative_recall import AssociativeRecall
from tasks.base import Batch, Task
from tasks.copy import Copy
from tasks.induction_heads import InductionHeads
from tasks.mqar import MQAR
from tasks.registry import get, names, register
from tasks.reversal import Reversal
from tasks.selective_copying import SelectiveCopying

__all__ = ['AssociativeRecall', 'Batch', 'Copy', 'InductionHeads', 'MQAR',
           'Reversal', 'SelectiveCopying', 'Task', 'get', 'names',
           'register']
