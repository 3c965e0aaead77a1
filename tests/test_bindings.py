"""No gin binding is silently ignored: one that no call a run makes uses is
refused at `experiments.main` (dry run or not), at the overrides of
`experiments.evaluate` and `experiments.decode`, and in sweep trials, with
one `error:` line naming the binding, where it came from, and the binding
meant where there is one; nothing is written."""
import os
import subprocess
import sys

import pytest

from experiments import decode, evaluate, main, restore
from scripts import sweep
from test_bad_input_commands import snapshot
from test_decoding import _train
from test_sweep import _write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFORMER = "include 'gin_configs/reformer_copy.gin'\n"
# The user's binding: trax's convention, which models.ReformerLM overrides.
LSH8 = 'LSHSelfAttention.n_hashes = 8\n'


def _lsh8_refused(where):
    return (f'error: gin binding LSHSelfAttention.n_hashes ({where}) is never '
            'used: trax.layers.LSHSelfAttention is called with n_hashes set '
            'by its caller; bind models.ReformerLM.n_hashes instead')


def _refused(gin_files, params, tmp_path, capsys):
    """The dry run's one error line (after asserting exit 2, nothing
    written)."""
    out = tmp_path / 'run'
    assert main.run(gin_files, params, output_dir=str(out), dry_run=True) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    assert not out.exists()
    return err.strip()


def _gin_file(tmp_path, text):
    path = tmp_path / 'experiment.gin'
    path.write_text(text)
    return str(path)


def test_lsh_self_attention_in_a_file_names_the_file_line_and_the_model(
        tmp_path, capsys):
    path = _gin_file(tmp_path, REFORMER + LSH8)
    assert _refused([path], [], tmp_path, capsys) == _lsh8_refused(f'{path}:2')


def test_lsh_self_attention_on_the_command_line(tmp_path, capsys):
    assert _refused(['reformer_copy.gin'], [LSH8], tmp_path, capsys) == (
        _lsh8_refused('--gin_param'))


def test_the_real_command_refuses_it_too(tmp_path):
    """The process, not only the function: a real run (no --dry_run) is
    refused before it writes anything."""
    path = _gin_file(tmp_path, REFORMER + LSH8)
    result = subprocess.run(
        [sys.executable, '-m', 'experiments.main', f'--gin_file={path}',
         f'--output_dir={tmp_path / "run"}'],
        cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, 'PYTHONPATH': REPO})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == _lsh8_refused(
        f'{path}:2')
    assert 'Traceback' not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ['experiment.gin']


def test_a_trax_model_setting_that_its_caller_sets(tmp_path, capsys):
    path = _gin_file(tmp_path, REFORMER + '\ntrax.models.ReformerLM.n_layers'
                                          ' = 6\n')
    assert _refused([path], [], tmp_path, capsys) == (
        f'error: gin binding trax.models.ReformerLM.n_layers ({path}:3) is '
        'never used: trax.models.ReformerLM is called with n_layers set by '
        'its caller; bind models.ReformerLM.n_layers instead')


def test_a_configurable_never_called(tmp_path, capsys):
    assert _refused(['codelab.gin'], ['models.ReformerLM.n_hashes = 4'],
                    tmp_path, capsys) == (
        'error: gin binding models.ReformerLM.n_hashes (--gin_param) is '
        'never used: models.ReformerLM is never called')
    assert _refused(['codelab.gin'], ['trax.optimizers.Adam.b1 = 0.5'],
                    tmp_path, capsys) == (
        'error: gin binding trax.optimizers.Adam.b1 (--gin_param) is never '
        'used: trax.optimizers.Adam is never called')


def test_a_misspelt_macro(tmp_path, capsys):
    path = _gin_file(tmp_path, REFORMER + 'LENGHT = 64\n')
    assert _refused([path], [], tmp_path, capsys) == (
        f'error: gin macro LENGHT ({path}:2) is never used: nothing refers '
        'to %LENGHT; did you mean LENGTH?')


def test_an_included_file_is_named_as_included(tmp_path, monkeypatch,
                                              capsys):
    """Includes are found as gin finds them: here by package path, from
    another directory."""
    package = tmp_path / 'lab_extras'
    package.mkdir()
    (package / '__init__.py').write_text('')
    (package / 'lsh.gin').write_text('# More hashes.\n' + LSH8)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / 'elsewhere').mkdir()
    monkeypatch.chdir(tmp_path / 'elsewhere')
    path = _gin_file(tmp_path, REFORMER + "include 'lab_extras/lsh.gin'\n")
    assert _refused([path], [], tmp_path, capsys) == _lsh8_refused(
        'lab_extras/lsh.gin:2')


@pytest.mark.parametrize('params', [
    # Over `tasks.copy.length = %LENGTH`: LENGTH is left unused on purpose.
    ['tasks.copy.length = 128'],
    # Switching the model leaves the file's ReformerLM settings unused.
    ['experiments.Experiment.model = @models.TransformerLM()',
     'models.TransformerLM.vocab_size = 32'],
    # Settings trax's layers take from gin, which models.ReformerLM leaves
    # to them, and the optimizer's, used when training builds it.
    ['LSHSelfAttention.use_reference_code = True',
     'trax.optimizers.Adafactor.beta1 = 0.5'],
])
def test_settings_a_run_uses_or_replaces_pass(params, tmp_path):
    assert main.run(['reformer_copy.gin'], params,
                    output_dir=str(tmp_path / 'run'), dry_run=True) == 0


def test_a_binding_for_the_model_switched_away_from_is_refused(tmp_path,
                                                               capsys):
    assert _refused(['reformer_copy.gin'], [
        'experiments.Experiment.model = @models.TransformerLM()',
        'models.TransformerLM.vocab_size = 32',
        'models.ReformerLM.n_hashes = 4'], tmp_path, capsys) == (
        'error: gin binding models.ReformerLM.n_hashes (--gin_param) is '
        'never used: models.ReformerLM is never called')


# ------------------------------------------------ evaluate and decode ----

@pytest.fixture(scope='module')
def reformer_run(tmp_path_factory):
    """A 1-layer ReformerLM trained for 2 steps, with an optimizer binding
    that only training uses."""
    return _train(tmp_path_factory, 'reformer_copy.gin', 'ReformerLM', 2,
                  ['models.ReformerLM.n_layers = 1',
                   'experiments.Experiment.n_eval_batches = 1',
                   'experiments.Experiment.decode_eval_every = 0',
                   'trax.optimizers.Adafactor.beta1 = 0.5'])


def test_what_the_dry_run_accepts_the_real_run_uses(reformer_run):
    with open(os.path.join(reformer_run.output_dir,
                           'operative_config.gin')) as f:
        assert 'Adafactor.beta1 = 0.5' in f.read().splitlines()


@pytest.mark.parametrize('command, binding, message', [
    # The README's own example before this check: it evaluated with 2 hashes.
    (evaluate, 'LSHSelfAttention.n_hashes=8',
     'gin binding LSHSelfAttention.n_hashes (--gin_param) is never used: '
     'trax.layers.LSHSelfAttention is called with n_hashes set by its '
     'caller; bind models.ReformerLM.n_hashes instead'),
    (decode, 'trax.models.ReformerLM.n_layers=2',
     'gin binding trax.models.ReformerLM.n_layers (--gin_param) is never '
     'used: trax.models.ReformerLM is called with n_layers set by its '
     'caller; bind models.ReformerLM.n_layers instead'),
    (decode, 'models.TransformerLM.d_model=16',
     'gin binding models.TransformerLM.d_model (--gin_param) is never used: '
     'models.TransformerLM is never called; bind models.ReformerLM.d_model '
     'instead'),
    # Evaluating builds no optimizer.
    (evaluate, 'trax.optimizers.Adafactor.beta1=0.9',
     'gin binding trax.optimizers.Adafactor.beta1 (--gin_param) is never '
     'used: trax.optimizers.Adafactor is never called'),
    (evaluate, 'N_HASHES=8', 'gin macro N_HASHES (--gin_param) is never '
     'used: nothing refers to %N_HASHES'),
])
def test_an_unused_override_is_refused(reformer_run, capsys, command,
                                       binding, message):
    root = os.path.dirname(reformer_run.output_dir)
    before = snapshot(root)
    assert command.main(['cmd', f'--output_dir={reformer_run.output_dir}',
                         f'--gin_param={binding}']) == 2
    assert capsys.readouterr().err == f'error: {message}\n'
    assert snapshot(root) == before


def test_the_saved_config_is_not_checked_only_the_overrides(reformer_run):
    """config.gin holds every binding of the run (the optimizer's too,
    which evaluation never uses); an override it replaces is fine."""
    restored = restore.restore(reformer_run.output_dir,
                               ['models.ReformerLM.n_hashes = 4',
                                'tasks.copy.length = 32'])
    assert restored.experiment.model.n_hashes == 4
    assert restored.experiment.task.length == 32


# ------------------------------------------------------------ sweeps ----

def test_an_unused_sweep_binding_stops_the_dry_run(tmp_path, monkeypatch,
                                                   capsys):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "{'models.TransformerLM.n_heads': [1, 2]}",
                  extra="scripts.Sweep.bindings = "
                        "['models.ReformerLM.n_hashes = 4']\n")
    assert sweep.main(['sweep', f'--gin_file={path}', '--dry_run']) == 2
    assert capsys.readouterr().err == (
        'error: trial n_heads=1: gin binding models.ReformerLM.n_hashes '
        '(--gin_param) is never used: models.ReformerLM is never called\n')
    assert sorted(os.listdir(tmp_path)) == ['tiny.gin']


def test_an_unused_binding_in_the_sweep_file_itself(tmp_path, monkeypatch,
                                                    capsys):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "{'models.TransformerLM.n_heads': [1, 2]}",
                  extra='D_MODEL = 32\n')
    assert sweep.main(['sweep', f'--gin_file={path}', '--dry_run']) == 2
    assert capsys.readouterr().err == (
        f'error: sweep file {path}: gin macro D_MODEL ({path}:7) is never '
        'used: nothing refers to %D_MODEL\n')
