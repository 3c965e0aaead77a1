"""Property-based: no malformed input makes an entry point show a traceback.

Random and mutated `--gin_param` strings, gin files with syntax errors,
unknown configurables, wrong types and impossible sizes go through
`experiments.main --dry_run`; each either is valid (exit 0) or exits 2 with
one `error: ...` line, and nothing is written either way.
"""
import os
import string

import gin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from experiments import main

EXAMPLES = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# Every field a shipped experiment binds, by configurable.
FIELDS = {
    'experiments.Experiment': ['n_steps', 'eval_every', 'n_eval_batches',
                               'checkpoint_every', 'seed', 'n_devices',
                               'task', 'model', 'optimizer', 'lr_schedule',
                               'cpu_threads', 'decode_eval_every',
                               'eval_lengths'],
    'models.TransformerLM': ['vocab_size', 'd_model', 'd_ff', 'n_layers',
                             'n_heads', 'dropout', 'max_len'],
    'models.ReformerLM': ['vocab_size', 'd_model', 'd_ff', 'n_layers',
                          'n_heads', 'dropout', 'max_len', 'attention',
                          'n_hashes', 'n_buckets', 'chunk_len',
                          'n_chunks_before', 'n_chunks_after',
                          'ff_chunk_size', 'pos_type'],
    'tasks.copy': ['vocab_size', 'length', 'batch_size', 'seed',
                   'min_length'],
    'tasks.reversal': ['vocab_size', 'length', 'batch_size', 'seed',
                       'min_length'],
    'tasks.mqar': ['vocab_size', 'length', 'batch_size', 'seed', 'n_pairs',
                   'n_queries'],
}
SELECTORS = [f'{c}.{f}' for c, fields in FIELDS.items() for f in fields]
BASES = {'models.ReformerLM': 'reformer_copy.gin',
         'tasks.reversal': 'transformer_reversal.gin',
         'tasks.mqar': 'favor_mqar.gin'}

identifiers = st.text(string.ascii_letters + '_', min_size=1, max_size=12)
gin_values = st.one_of(
    st.integers(-2**70, 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8).map(repr),
    st.sampled_from(['None', 'True', 'False', '[]', '()', '{}', '%LENGTH',
                     '%UNDEFINED', '@models.TransformerLM()', '@tasks.copy',
                     '@trax.optimizers.Adam', '@tasks.copy()', '']),
    identifiers.map(lambda name: f'@{name}()'),
    identifiers.map(lambda name: f'@models.{name}()'),
    st.text(max_size=12))


def check(gin_files, params, out, capsys):
    """Runs the dry run; asserts exit 0, or exit 2 with one error line, which
    it returns."""
    gin.clear_config()
    before = sorted(os.listdir(out))
    status = main.run(gin_files, params, output_dir=str(out / 'run'),
                      dry_run=True)
    err = capsys.readouterr().err
    assert status in (0, 2), (params, status, err)
    if status == 2:
        assert err.startswith('error: ') and 'Traceback' not in err, err
        assert err.strip() and '\n' not in err.strip(), err
    assert sorted(os.listdir(out)) == before
    return err


@pytest.fixture
def out(tmp_path):
    return tmp_path


@EXAMPLES
@given(st.text(max_size=60))
def test_random_gin_params(out, capsys, text):
    check(['codelab.gin'], [text], out, capsys)


@EXAMPLES
@given(st.sampled_from(SELECTORS), gin_values)
def test_wrong_values_for_every_parameter(out, capsys, selector, value):
    base = BASES.get(selector.rsplit('.', 1)[0], 'codelab.gin')
    err = check([base], [f'{selector} = {value}'], out, capsys)
    assert not err or selector.rsplit('.', 1)[1] in err, err


@EXAMPLES
@given(st.sampled_from(['experiments.Experiment.task',
                        'experiments.Experiment.model']), identifiers)
def test_unknown_tasks_and_models_are_refused(out, capsys, field, name):
    gin.clear_config()
    status = main.run(['codelab.gin'], [f'{field} = @{name}()'],
                      output_dir=str(out / 'run'), dry_run=True)
    err = capsys.readouterr().err
    assert status == 2 and err.startswith('error: ') and err.count('\n') == 1
    assert name in err


@EXAMPLES
@given(st.lists(st.text(max_size=40), min_size=1, max_size=4))
def test_gin_files_with_syntax_errors(out, capsys, lines):
    bad = out / 'bad.gin'
    bad.write_text("include 'gin_configs/codelab.gin'\n" + '\n'.join(lines)
                   + '\n')
    check([str(bad)], [], out, capsys)


def test_a_wrong_type_and_an_impossible_size_each_name_the_parameter(
        out, capsys):
    """Anchors for the properties above: these inputs must fail."""
    for param, message in [
            ("models.TransformerLM.n_heads = 'two'",
             "TransformerLM.n_heads must be a positive int, got 'two'"),
            ('models.TransformerLM.n_heads = 5',
             'TransformerLM.d_model=32 is not divisible by '
             'TransformerLM.n_heads=5'),
            # A configurable (trax's `train`) whose required parameter
            # nothing binds: gin raises RuntimeError, not ValueError.
            ('experiments.Experiment.n_steps = @train()',
             "Required bindings for `train` not provided in config: "
             "['model'] (referenced by: Experiment.n_steps = @train())")]:
        gin.clear_config()
        assert main.run(['codelab.gin'], [param], output_dir=str(out / 'r'),
                        dry_run=True) == 2
        assert message in capsys.readouterr().err


def test_a_batch_bigger_than_the_machine_is_refused(out, capsys):
    assert main.run(['codelab.gin'], ['tasks.copy.batch_size = 1099511627776'],
                    output_dir=str(out / 'r'), dry_run=True) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: a batch of tasks.copy.batch_size=') and (
        'GiB at once' in err), err
    assert not (out / 'r').exists()
