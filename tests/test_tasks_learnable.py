"""Each new task is learnable to the last token: a tiny TransformerLM
trained a few hundred steps from gin reaches eval accuracy and decoded
exact match 1.0, which it could not if a weighted position were
unpredictable from the tokens before it."""
import contextlib
import io
import json
import os

import pytest

from experiments import main

# name -> bindings of a small instance (the codelab's model and schedule).
TASKS = {
    'associative_recall': ['VOCAB_SIZE = 16', 'LENGTH = 12'],  # 4 pairs
    'induction_heads': ['VOCAB_SIZE = 8', 'LENGTH = 12'],
    'mqar': ['VOCAB_SIZE = 12', 'LENGTH = 12', 'tasks.mqar.n_pairs = 3',
             'tasks.mqar.n_queries = 2'],
    'selective_copying': ['VOCAB_SIZE = 8', 'LENGTH = 12',
                          'tasks.selective_copying.n_tokens = 3'],
}


@pytest.mark.parametrize('name', sorted(TASKS))
def test_a_tiny_model_solves_the_task(name, tmp_path):
    params = [
        f'experiments.Experiment.task = @tasks.{name}()',
        f'tasks.{name}.vocab_size = %VOCAB_SIZE',
        f'tasks.{name}.length = %LENGTH',
        f'tasks.{name}.batch_size = %BATCH_SIZE',
        f'tasks.{name}.seed = %SEED',
        'models.TransformerLM.dropout = 0.0',
        'experiments.Experiment.n_steps = 600',
        'experiments.Experiment.eval_every = 300',
        'experiments.Experiment.decode_eval_every = 600',
        *TASKS[name]]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main.run(['codelab.gin'], params, str(tmp_path)) == 0
    with open(os.path.join(tmp_path, 'progress.json')) as f:
        evals = json.load(f)['eval']
    assert evals['accuracy'] == 1.0, evals
    assert evals['exact_match'] == 1.0, evals
