"""scripts.report on a synthetic sweep directory (no training): rows for
finished, failed, running and never-run trials, best vs final values, and
bad input. The report of a real sweep run is in test_sweep_runs.py."""
import csv
import json
import os

import pytest

from experiments import run_dir
from experiments.summaries import SummaryWriter
from scripts import report
from scripts.sweeps import layout, spec

SWEEP = spec.Sweep(base='reformer_copy.gin', mode='grid', axes={
    'models.ReformerLM.n_hashes': [1, 2],
    'models.ReformerLM.attention': ['lsh', 'full']})
NAMES = ['n_hashes=1,attention=lsh', 'n_hashes=1,attention=full',
         'n_hashes=2,attention=lsh', 'n_hashes=2,attention=full']


def _log(trial_dir, eval_accuracy, steps_per_second):
    evals = SummaryWriter(os.path.join(trial_dir, 'eval'))
    train = SummaryWriter(os.path.join(trial_dir, 'train'))
    for i, (accuracy, speed) in enumerate(zip(eval_accuracy,
                                              steps_per_second)):
        step = 2 * (i + 1)
        evals.scalars(step, {'metrics/accuracy': accuracy,
                             'metrics/loss': 1 - accuracy,
                             'metrics/sequence_accuracy': accuracy / 2})
        train.scalars(step, {'training/steps_per_second': speed})
    evals.close()
    train.close()


@pytest.fixture
def sweep_root(tmp_path):
    root = str(tmp_path / 'sweep')
    trials = spec.expand(SWEEP)
    assert [t.name for t in trials] == NAMES
    layout.write_manifest(root, layout.manifest('lsh', SWEEP, trials))
    finished, failed, running = (os.path.join(root, n) for n in NAMES[:3])
    _log(finished, [0.5, 0.9, 0.8], [1.0, 50.0, 60.0])
    layout.write_status(finished, {'name': NAMES[0], 'state': 'finished',
                                      'wall_time_s': 12.5, 'error': None})
    _log(failed, [0.1], [2.0])
    layout.write_status(failed, {'name': NAMES[1], 'state': 'failed',
                                    'wall_time_s': 3.0,
                                    'error': 'training diverged | at step 3'})
    _log(running, [0.3, 0.4], [5.0, 7.0])
    layout.write_status(running, {'name': NAMES[2], 'state': 'running'})
    return root


def _rows(path):
    with open(path) as f:
        return {row['trial']: row for row in csv.DictReader(f)}


def test_rows_for_every_trial_with_final_and_best(sweep_root, tmp_path):
    out = str(tmp_path / 'out')
    markdown = report.report(sweep_root, 'eval/metrics/accuracy', out)
    rows = _rows(os.path.join(out, 'report.csv'))
    assert list(rows) == NAMES  # sweep order, including the never-run one
    done = rows[NAMES[0]]
    assert (done['n_hashes'], done['attention']) == ('1', 'lsh')
    assert done['status'] == 'finished' and done['steps'] == '6'
    assert float(done['eval_accuracy']) == pytest.approx(0.8)
    assert float(done['best_eval_accuracy']) == pytest.approx(0.9)
    assert float(done['eval_loss']) == pytest.approx(0.2)
    assert float(done['best_eval_loss']) == pytest.approx(0.1)
    assert float(done['best_eval_sequence_accuracy']) == pytest.approx(0.45)
    # The first interval (compilation) is left out of steps/s.
    assert float(done['steps_per_second']) == 55.0
    assert done['wall_time_s'] == '12.5' and done['error'] == ''
    assert rows[NAMES[1]]['status'] == 'failed'
    assert rows[NAMES[1]]['error'] == 'training diverged | at step 3'
    assert rows[NAMES[2]]['status'] == 'running'
    assert rows[NAMES[3]]['status'] == 'not run'
    assert rows[NAMES[3]]['eval_accuracy'] == ''
    assert 'training diverged \\| at step 3' in markdown  # table intact
    assert (f'| {NAMES[3]} | 2 | full | not run |' + '  |' * 11) in markdown
    assert sorted(os.listdir(os.path.join(out, 'plots'))) == [
        'eval_accuracy_over_steps.png', 'eval_accuracy_vs_attention.png',
        'eval_accuracy_vs_n_hashes.png']


def test_other_metric_names_the_plots(sweep_root, tmp_path):
    out = str(tmp_path / 'out')
    report.report(sweep_root, 'train/training/steps_per_second', out)
    assert 'train_training_steps_per_second_vs_n_hashes.png' in os.listdir(
        os.path.join(out, 'plots'))


@pytest.mark.parametrize('args, message', [
    (['{tmp}'], 'is not a sweep directory (it has no sweep.json'),
    (['{root}', '--metric=accuracy'], '--metric must be <run>/<tag>'),
    (['{root}', '--metric=eval/metrics/acc'],
     'no trial logged --metric=eval/metrics/acc; logged: eval/metrics/'
     'accuracy'),
    ([], 'give one sweep directory'),
])
def test_bad_input(sweep_root, tmp_path, capsys, args, message):
    before = sorted(os.listdir(sweep_root))
    args = [a.format(tmp=tmp_path, root=sweep_root) for a in args]
    assert report.main(['scripts.report', *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    assert message in err
    assert sorted(os.listdir(sweep_root)) == before  # nothing written


def test_hparams_config_written_once_per_sweep(tmp_path):
    root = str(tmp_path)
    trials = spec.expand(SWEEP)
    data = layout.manifest('lsh', SWEEP, trials)

    def events():
        return sorted(f for f in os.listdir(root) if f.startswith('events.'))
    layout.write_manifest(root, data)
    first = events()
    layout.write_manifest(root, data)  # a rerun of the same sweep
    assert events() == first and len(first) == 1
    changed = layout.manifest('lsh', SWEEP, trials[:2])
    layout.write_manifest(root, changed)  # the sweep file was edited
    assert len(events()) == 1 and events() != first
    assert layout.read_manifest(root)['trials'][1]['name'] == NAMES[1]


def test_the_report_says_where_each_trial_ran(sweep_root, tmp_path):
    from experiments import manifest
    start = {'cpu_model': 'Test CPU', 'isa': ['avx2'], 'platform': 'cpu',
             'n_devices': 1, 'threads': 2, 'versions': {'jax': '0.10.2',
                                                        'trax': '1.4.1'},
             'git_commit': 'abcdef0123456789', 'git_dirty': False}
    for name in NAMES[:2]:
        manifest.record(os.path.join(sweep_root, name), [], start)
    out = str(tmp_path / 'out')
    markdown = report.report(sweep_root, 'eval/metrics/accuracy', out)
    ran_on = manifest.describe(start)
    assert ran_on.startswith('Test CPU (avx2), 1 cpu device(s), 2 XLA:CPU '
                             'thread(s); jax 0.10.2, trax 1.4.1; commit '
                             'abcdef0123')
    assert f'- {ran_on}: {NAMES[0]}, {NAMES[1]}' in markdown.splitlines()
    rows = _rows(os.path.join(out, 'report.csv'))
    assert [rows[n]['ran_on'] for n in NAMES] == [ran_on, ran_on, '', '']


def test_report_json_has_the_rows_and_the_span_of_a_sweep_run_once(tmp_path):
    root = str(tmp_path / 'sweep')
    trials = spec.expand(SWEEP)
    layout.write_manifest(root, layout.manifest('lsh', SWEEP, trials))
    for i, name in enumerate(NAMES):
        _log(os.path.join(root, name), [0.5, 0.9], [1.0, 50.0])
        layout.write_status(os.path.join(root, name), {
            'name': name, 'state': 'finished', 'attempts': 1, 'parallel': 2,
            'wall_time_s': 10.0, 'started_at': 1000.0 + 10 * i,
            'ended_at': 1010.0 + 10 * i})
    out = str(tmp_path / 'out')
    report.report(root, 'eval/metrics/accuracy', out)
    with open(os.path.join(out, 'report.json')) as f:
        data = json.load(f)
    assert data['sweep'] == 'lsh' and data['parallel'] == 2
    assert data['span_s'] == 40.0  # first start 1000, last end 1040
    assert [r['trial'] for r in data['rows']] == NAMES
    assert data['rows'][0]['eval_accuracy'] == pytest.approx(0.9)

    # A rerun trial's clock times no longer span one sitting.
    status = layout.read_status(os.path.join(root, NAMES[0]))
    layout.write_status(os.path.join(root, NAMES[0]),
                        {**status, 'attempts': 2})
    report.report(root, 'eval/metrics/accuracy', out)
    with open(os.path.join(out, 'report.json')) as f:
        assert json.load(f)['span_s'] is None


def test_seeds_are_aggregated_and_the_leaderboard_drawn(tmp_path):
    board_sweep = spec.Sweep(
        base='reformer_copy.gin', seeds=[0, 1],
        leaderboard=['accuracy', 'accuracy@2x'],
        axes={'models.ReformerLM.attention': ['lsh', 'full'],
              'models.ReformerLM.n_hashes': [1, 2]})
    root = str(tmp_path / 'sweep')
    trials = spec.expand(board_sweep)
    layout.write_manifest(root, layout.manifest('board', board_sweep, trials))
    final = {}
    for i, trial in enumerate(trials[:-1]):  # the last trial never ran
        trial_dir = os.path.join(root, trial.name)
        final[trial.name] = accuracy = 0.1 * (i + 1)
        writer = SummaryWriter(os.path.join(trial_dir, 'eval'))
        writer.scalars(10, {'metrics/loss': 1.0, 'metrics/accuracy': accuracy,
                            'metrics/accuracy@32': accuracy / 2})
        writer.close()
        run_dir.write_progress(trial_dir, 10, 10, {},
                               {'n_parameters': 100, 'length': 16},
                               finished=True)
    out = str(tmp_path / 'out')
    markdown = report.report(root, 'eval/metrics/accuracy', out)
    with open(os.path.join(out, 'report.json')) as f:
        data = json.load(f)

    # Over seeds: one row per (attention, n_hashes), two seeds each.
    over = {(r['attention'], r['n_hashes']): r for r in data['over_seeds']}
    assert list(over) == [('lsh', 1), ('lsh', 2), ('full', 1), ('full', 2)]
    lsh1 = over[('lsh', 1)]
    assert lsh1['accuracy_n'] == 2
    assert lsh1['accuracy_mean'] == pytest.approx(0.15)
    assert (lsh1['accuracy_min'], lsh1['accuracy_max']) == pytest.approx(
        (0.1, 0.2))
    assert over[('full', 2)]['accuracy_n'] == 1  # one seed ran
    assert '## Over seeds' in markdown
    assert os.path.exists(os.path.join(out, 'report_over_seeds.csv'))

    # The leaderboard: rows attention, columns n_hashes, the seeds' mean;
    # accuracy@2x is each trial's accuracy at twice its length (32).
    board = data['leaderboards']['accuracy']
    assert board['rows'] == ['lsh', 'full'] and board['columns'] == [1, 2]
    assert sum(board['cells'], []) == pytest.approx([0.15, 0.35, 0.55, 0.7])
    assert board['average'] == pytest.approx([0.25, 0.625])
    assert sum(data['leaderboards']['accuracy@2x']['cells'], []) == (
        pytest.approx([0.075, 0.175, 0.275, 0.35]))
    text = open(os.path.join(out, 'leaderboard.md')).read()
    assert '| attention | 1 | 2 | average | parameters |' in text
    assert '| lsh | 0.150 | 0.350 | 0.250 | 100 |' in text
    assert board['parameters'] == ['100', '100']
    with open(os.path.join(out, 'leaderboard.csv')) as f:
        lines = list(csv.reader(f))
    assert lines[0] == ['metric', 'attention', '1', '2', 'average']
    assert lines[1][:2] == ['accuracy', 'lsh']
    plots = os.listdir(os.path.join(out, 'plots'))
    assert {'leaderboard_accuracy.png', 'leaderboard_accuracy_2x.png',
            'eval_accuracy_vs_attention.png', 'eval_accuracy_vs_n_hashes.png',
            'eval_accuracy_vs_length.png'} <= set(plots)
    assert 'eval_accuracy_vs_seed.png' not in plots
