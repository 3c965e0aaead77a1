"""Bad input gets one clear message, a non-zero exit, and writes nothing."""
import os
import subprocess
import sys

import pytest

from experiments import config, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def guarded_dir(tmp_path):
    """An output directory with a file in it that must stay untouched."""
    out = tmp_path / 'run'
    out.mkdir()
    (out / 'keep.txt').write_text('precious')
    return out


def _assert_untouched(out):
    assert sorted(os.listdir(out)) == ['keep.txt']
    assert (out / 'keep.txt').read_text() == 'precious'


@pytest.mark.parametrize('gin_files, params, message', [
    (['nope.gin'], [], "gin file not found: 'nope.gin'"),
    ([], [], 'give at least one --gin_file'),
    (['codelab.gin'], ['models.TransformerLMX.d_model = 3'],
     'models.TransformerLMX'),
    (['codelab.gin'], ['models.TransformerLM.d_modle = 64'], 'd_modle'),
    (['codelab.gin'], ['experiments.Experiment.n_steps = '], 'n_steps'),
    (['codelab.gin'], ['tasks.copy.length = 11'],
     "length must be an even int >= 4, got 11 In call to configurable 'copy'"),
    (['codelab.gin'], ['tasks.copy.length = 4096'],
     'sequence length 4096 exceeds TransformerLM.max_len=2048'),
    (['codelab.gin'], ['tasks.copy.length = @tasks.copy()'],
     'refer to each other in a cycle: tasks.copy.length (--gin_param) is '
     'bound to a call of tasks.copy itself'),
    (['codelab.gin'], ['experiments.Experiment.eval_lengths = [4096]'],
     'Experiment.eval_lengths: at 4096: sequence length 4096 exceeds'),
    (['codelab.gin'], ['experiments.Experiment.eval_lengths = 20'],
     'Experiment.eval_lengths must be a list of positive ints'),
    (['reformer_copy.gin'], ['tasks.copy.length = 72'],
     'sequence length 72 is not a multiple of ReformerLM.chunk_len=16'),
    (['codelab.gin'], ['experiments.Experiment.n_steps = "ten"'],
     "n_steps must be a positive int, got 'ten'"),
    (['reformer_copy.gin'], ['LSHSelfAttention.chunk_len = 32'],
     'gin binding LSHSelfAttention.chunk_len (--gin_param) is never used: '
     'trax.layers.LSHSelfAttention is called with chunk_len set by its '
     'caller; bind models.ReformerLM.chunk_len instead'),
])
def test_bad_input(gin_files, params, message, guarded_dir, capsys):
    status = main.run(gin_files, params, output_dir=str(guarded_dir))
    err = capsys.readouterr().err
    assert status == 2
    assert message in err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    _assert_untouched(guarded_dir)


def test_gin_syntax_error_names_file_and_line(tmp_path, guarded_dir, capsys):
    bad = tmp_path / 'bad.gin'
    bad.write_text("include 'gin_configs/codelab.gin'\n"
                   "experiments.Experiment.n_steps = = 3\n")
    assert main.run([str(bad)], [], output_dir=str(guarded_dir)) == 2
    err = capsys.readouterr().err
    assert 'bad.gin' in err and 'line 2' in err, err
    _assert_untouched(guarded_dir)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, '-m', 'experiments.main', *args],
                          cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': REPO})


def test_cli_exit_code_and_message(tmp_path):
    """The real command, from another directory: exit 2, one line, no runs/."""
    result = _cli('--gin_file=codelab.gin',
                  '--gin_param=models.TransformerLM.d_modle=64', cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith('error: ')
    assert 'd_modle' in result.stderr.strip().splitlines()[-1]
    assert 'Traceback' not in result.stderr
    assert os.listdir(tmp_path) == []
    result = _cli('--gin_file=codelab.gin', '--n_steps=5', cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: Unknown command line flag 'n_steps'")
    assert os.listdir(tmp_path) == []


def test_cli_dry_run_from_another_directory(tmp_path):
    result = _cli('--gin_file=reformer_copy.gin', '--dry_run', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'models.ReformerLM.n_hashes = 2' in result.stdout
    assert os.listdir(tmp_path) == []


def test_lsh_self_attention_settings_it_does_not_set_reach_the_layer(
        tmp_path):
    """models.ReformerLM passes trax's LSHSelfAttention its hashing settings
    (a binding of those is refused: tests/test_bindings.py), not the rest,
    which gin supplies."""
    assert main.run(['reformer_copy.gin'],
                    ['LSHSelfAttention.use_reference_code = True'],
                    output_dir=str(tmp_path / 'run'), dry_run=True) == 0
    layers, lsh = [config.build_experiment().model('eval')], []
    while layers:
        layer = layers.pop()
        layers.extend(layer.sublayers)
        if type(layer).__name__ == 'LSHSelfAttention':
            lsh.append(layer._use_reference_code)  # noqa: SLF001
    assert lsh == [True, True]  # one per layer of reformer_copy.gin
