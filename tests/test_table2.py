"""scripts.paper.table2 end to end at a tiny size, then rerun, then bad input.

One module-scoped run: two rows of the shipped Table 2 sweep (its base
experiment, its first and last settings: LSH-1 and the own-key-visible
ablation) over seeds 0 and 1, shrunk to d_model 16 and length 16 and trained
2 steps, each model evaluated under the six settings; the checks are on the
table's shape, statistics and files, not on the paper's numbers. Three of
the models are trained here in-process and marked finished, as a rerun finds
them, and the sweep trains the fourth in its own process: each such process
spends about 40 s of CPU importing trax, which would make four of them most
of the test's time.
"""
import contextlib
import csv
import io
import json
import os
import re

import pytest

from experiments import main as experiments_main
from scripts.paper import table2
from scripts.sweeps import layout, spec

SHRINK = [
    'models.ReformerLM.d_model = 16', 'models.ReformerLM.d_ff = 16',
    'models.ReformerLM.n_heads = 2', 'LENGTH = 16', 'BATCH_SIZE = 4',
    'models.ReformerLM.chunk_len = 4', 'models.ReformerLM.n_buckets = 4',
    'experiments.Experiment.n_steps = 2',
    'experiments.Experiment.eval_every = 2',
    'experiments.Experiment.checkpoint_every = 2',
    'experiments.Experiment.n_eval_batches = 1',
]
ROWS = ['LSH-1', 'full attention, own key visible']
SEEDS = [0, 1]
EVAL = ['--eval_batches=2', '--eval_batch_size=4']
N_EVALS = len(ROWS) * len(SEEDS) * len(table2.COLUMNS)


def _sweep_file(path, axes, base='reformer_copy_table2.gin', bindings=(),
                seeds=()):
    path.write_text(
        '# A tiny Table 2 sweep (tests only).\nimport scripts.sweeps\n'
        f'scripts.Sweep.base = {base!r}\n'
        f'scripts.Sweep.bindings = {SHRINK + list(bindings)!r}\n'
        f'scripts.Sweep.axes = {axes!r}\n'
        f'scripts.Sweep.seeds = {list(seeds)!r}\n'
        "scripts.Sweep.mode = 'zip'\n")
    return str(path)


def _table2(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = table2.main(['scripts.paper.table2', *args])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('table2')
    shipped = spec.load('sweeps/reformer_table2.gin')
    sweep_file = _sweep_file(
        base / 'tiny.gin', {k: [v[0], v[-1]] for k, v in shipped.axes.items()},
        seeds=SEEDS)
    root = str(base / 'runs')
    loaded = spec.load(sweep_file)
    for trial in spec.expand(loaded)[:3]:
        trial_dir = os.path.join(root, trial.name)
        with contextlib.redirect_stdout(io.StringIO()):
            assert experiments_main.run(list(loaded.base),
                                        list(trial.bindings), trial_dir) == 0
        layout.write_status(trial_dir, {'name': trial.name,
                                           'state': layout.FINISHED})
    args = [f'--gin_file={sweep_file}', f'--output_dir={root}',
            '--parallel=2', *EVAL]
    first = _table2(*args)
    tables = _read(root, 'table2.csv'), _read(root, 'table2.md')
    second = _table2(*args)
    return root, first, second, tables


def _read(root, name):
    with open(os.path.join(root, name)) as f:
        return f.read()


def _csv(root):
    return list(csv.DictReader(io.StringIO(_read(root, 'table2.csv'))))


def test_the_shipped_sweep_is_five_rows_over_three_seeds():
    rows = table2.plan_rows('sweeps/reformer_table2.gin')
    assert [(r.label, r.seed) for r in rows] == [
        (label, seed) for label in ('full attention', 'LSH-4', 'LSH-2',
                                    'LSH-1', 'full attention, own key visible')
        for seed in (0, 1, 2)]


def test_the_run_trains_evaluates_and_writes_the_tables(tiny):
    root, (status, out, err) = tiny[:2]
    assert status == 0, err
    assert 'Sweep tiny: 4 trial(s), 2 at a time' in out
    assert out.count('finished earlier') == 3
    last = spec.expand(spec.load(os.path.join(os.path.dirname(root),
                                              'tiny.gin')))[-1]
    assert layout.is_finished(layout.read_status(os.path.join(root,
                                                              last.name)))
    evaluations = re.findall(
        rf'^\[ *\d+/{N_EVALS}\] trained with (.+?) \(seed (\d)\), '
        r'evaluated with (.+?): accuracy', out, re.M)
    assert sorted(evaluations) == sorted(
        (row, str(seed), column) for row in ROWS for seed in SEEDS
        for column in table2.COLUMNS)
    for name in table2.OUTPUTS:
        assert os.path.getsize(os.path.join(root, name)) > 0, name
    with open(os.path.join(root, 'table2.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_the_csv_holds_each_seed_their_mean_and_range_and_the_paper(tiny):
    rows = _csv(tiny[0])
    columns = list(table2.COLUMNS)
    assert list(rows[0]) == ['source', 'metric', 'statistic', 'trained_with',
                             *columns]
    for metric in ('accuracy', 'sequence_accuracy'):
        measured = {}
        for r in rows:
            if (r['source'], r['metric']) == ('measured', metric):
                measured.setdefault(r['statistic'], {})[r['trained_with']] = [
                    float(r[c]) for c in columns]
        assert sorted(measured) == ['max', 'mean', 'min', 'seed=0', 'seed=1']
        assert all(list(by_row) == ROWS for by_row in measured.values())
        for label in ROWS:
            seed0, seed1 = measured['seed=0'][label], measured['seed=1'][label]
            assert all(0.0 <= v <= 1.0 for v in seed0 + seed1)
            assert measured['mean'][label] == pytest.approx(
                [(a + b) / 2 for a, b in zip(seed0, seed1)], abs=1e-4)
            assert measured['min'][label] == list(map(min, seed0, seed1))
            assert measured['max'][label] == list(map(max, seed0, seed1))
    paper = {r['trained_with']: [float(r[c]) if r[c] else None
                                 for c in columns]
             for r in rows if r['source'] == 'paper'}
    assert paper == {'LSH-1': list(table2.PAPER['LSH-1'])}


def test_the_markdown_has_three_tables_of_means_and_ranges(tiny):
    text = _read(tiny[0], 'table2.md')
    headers = re.findall(r'^\| trained with \\ evaluated with \| (.*) \|$',
                         text, re.M)
    assert headers == [' | '.join(table2.COLUMNS)] * 3
    assert text.count('mean of 2 seeds (min-max)') == 2
    percent = r'\d{1,3}\.\d'
    for label in ROWS:
        cells = re.findall(rf'^\| {label} \|(.*)\|$', text, re.M)
        assert len(cells) == (3 if label in table2.PAPER else 2)
        for line in cells[:1] + cells[-1:]:  # measured, not the paper's
            values = [c.strip() for c in line.split('|')]
            assert len(values) == len(table2.COLUMNS)
            assert all(re.fullmatch(rf'{percent}% \({percent}-{percent}\)',
                                    v) for v in values), values
    paper = '| LSH-1 | 0.8% | 99.9% | 99.6% | 94.8% | 77.9% |  |'
    assert paper in text


def test_the_markdown_shows_what_the_csv_holds(tiny):
    """The docs' copy of a table is made from the CSV; it must read as
    table2.md does, figure for figure."""
    found = table2.read_csv(os.path.join(tiny[0], 'table2.csv'))
    text = _read(tiny[0], 'table2.md')
    for source, metric, _ in table2.SECTIONS:
        assert '\n'.join(table2.markdown_table(
            table2.cell_texts(found, source, metric))) in text


def test_each_evaluation_is_saved_beside_its_run(tiny):
    root = tiny[0]
    for trial in os.listdir(root):
        if os.path.isdir(os.path.join(root, trial)):
            saved = os.listdir(os.path.join(root, trial, 'evaluations'))
            assert len(saved) == len(table2.COLUMNS), trial
            with open(os.path.join(root, trial, 'evaluations',
                                   saved[0])) as f:
                assert json.load(f)['n_examples'] == 8


def test_a_rerun_trains_nothing_and_reuses_every_evaluation(tiny):
    root, _, (status, out, err), tables = tiny
    assert status == 0, err
    assert out.count('finished earlier') == 4
    assert out.count('(saved earlier)') == N_EVALS
    assert (_read(root, 'table2.csv'), _read(root, 'table2.md')) == tables


@pytest.mark.parametrize('setup, message', [
    (lambda p: str(p / 'missing.gin'), 'gin file not found'),
    (lambda p: _sweep_file(p / 'twice.gin', {
        'models.ReformerLM.chunk_len': [4, 8]}),
     'trials chunk_len=4 and chunk_len=8 both train LSH-2'),
    (lambda p: _sweep_file(p / 'mixed.gin', {
        'models.ReformerLM.chunk_len': [4, 8]}, seeds=[0, 1]),
     'both train LSH-2; the trials of a row may differ only in their seed'),
    (lambda p: _sweep_file(p / 'transformer.gin', {
        'models.TransformerLM.d_model': [16, 32]},
        bindings=['experiments.Experiment.model = @models.TransformerLM()',
                  'models.TransformerLM.vocab_size = 128']),
     'trains TransformerLM; the table needs ReformerLM'),
])
def test_bad_input_is_one_error_line_and_runs_nothing(tmp_path, setup,
                                                      message):
    root = tmp_path / 'runs'
    status, out, err = _table2(f'--gin_file={setup(tmp_path)}',
                               f'--output_dir={root}')
    assert status == 2
    assert err.count('\n') == 1 and err.startswith('error: ')
    assert message in err
    assert not root.exists()
