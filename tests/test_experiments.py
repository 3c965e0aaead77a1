"""A tiny end-to-end run of every shipped experiment, and resumption.

Each test parses the real gin file, shrinks it with bindings, trains a few
steps into a temporary directory and checks what it wrote.
"""
import math
import os

import pytest

from experiments import checkpoints, main
from experiments.summaries import read_scalars

SHRINK = {
    'codelab.gin': [],
    'transformer_copy.gin': ['models.TransformerLM.d_model = 16',
                             'models.TransformerLM.d_ff = 32',
                             'tasks.copy.batch_size = 4'],
    'transformer_reversal.gin': ['models.TransformerLM.d_model = 16',
                                 'models.TransformerLM.d_ff = 32',
                                 'tasks.reversal.batch_size = 4'],
    'reformer_copy.gin': ['models.ReformerLM.d_model = 16',
                          'models.ReformerLM.d_ff = 32',
                          'tasks.copy.batch_size = 4'],
    'reformer_reversal.gin': ['models.ReformerLM.d_model = 16',
                              'models.ReformerLM.d_ff = 32',
                              'tasks.reversal.batch_size = 4'],
}
STEPS = ['experiments.Experiment.n_steps = 3',
         'experiments.Experiment.eval_every = 2',
         'experiments.Experiment.checkpoint_every = 2',
         'experiments.Experiment.n_eval_batches = 1']
TRAIN_TAGS = {'metrics/loss', 'metrics/accuracy', 'metrics/sequence_accuracy',
              'training/learning_rate', 'training/steps_per_second'}
EVAL_TAGS = {'metrics/loss', 'metrics/accuracy', 'metrics/sequence_accuracy'}


def _train(name, out, extra=()):
    status = main.run([name], SHRINK[name] + STEPS + list(extra),
                      output_dir=str(out))
    assert status == 0


@pytest.mark.parametrize('name', sorted(SHRINK))
def test_tiny_run_writes_config_events_and_checkpoints(name, tmp_path, capsys):
    out = tmp_path / 'run'
    _train(name, out)
    printed = capsys.readouterr().out
    assert 'step 2/3 | train loss' in printed and 'steps/s' in printed
    assert 'Final eval: loss' in printed

    for config_file in ('config.gin', 'operative_config.gin'):
        text = (out / config_file).read_text()
        assert 'Experiment.n_steps = 3' in text
    assert checkpoints.list_steps(str(out)) == [2, 3]

    train, evals = read_scalars(str(out / 'train')), read_scalars(
        str(out / 'eval'))
    assert TRAIN_TAGS <= set(train) and EVAL_TAGS <= set(evals)
    for scalars in (train, evals):
        for tag, points in scalars.items():
            assert [step for step, _ in points] == [2, 3], tag
            assert all(math.isfinite(v) for _, v in points), tag
    for _, accuracy in evals['metrics/accuracy']:
        assert 0.0 <= accuracy <= 1.0
    # Untrained on 31 (or 4) symbols, the cross-entropy is near log(vocab).
    assert 0.5 * math.log(32) < evals['metrics/loss'][0][1] < 2 * math.log(32)


def test_resume_continues_at_the_saved_step(tmp_path, capsys):
    """Stopping at step 2 and rerunning to step 3 matches one run to step 3."""
    name = 'reformer_copy.gin'
    resumed = tmp_path / 'resumed'
    _train(name, resumed, ['experiments.Experiment.n_steps = 2'])
    capsys.readouterr()
    _train(name, resumed)
    printed = capsys.readouterr().out
    assert 'Resuming from the checkpoint at step 2.' in printed
    assert 'step 2/3' not in printed and 'step 3/3' in printed
    assert checkpoints.list_steps(str(resumed)) == [2, 3]

    straight = tmp_path / 'straight'
    _train(name, straight)
    final = lambda out: read_scalars(str(out / 'eval'))['metrics/loss'][-1]
    assert final(resumed) == final(straight)
    # Each step is logged once, even across the resume.
    steps = [s for s, _ in read_scalars(str(resumed / 'eval'))['metrics/loss']]
    assert steps == [2, 3]
    assert os.path.exists(resumed / 'operative_config.gin')
