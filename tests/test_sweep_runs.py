"""A tiny sweep run here end to end, then read back by scripts.report.

One module-scoped run serves every test: two trials, two at a time. Before
it, trial A is left as a killed run with a checkpoint at step 2, and trial B
is blocked (a file where its checkpoints go), so the first sweep resumes A
and records B as failed; the second, unblocked, skips A and retries B.
The last test interrupts a long sweep of its own.
"""
import contextlib
import csv
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from experiments import checkpoints
from experiments import main as experiments_main
from experiments.summaries import read_scalars
from scripts import report, sweep
from scripts.sweeps import layout, spec

TINY = """# Two tiny TransformerLMs on copy (tests only).
import scripts.sweeps
scripts.Sweep.base = 'codelab.gin'
scripts.Sweep.bindings = [
    'experiments.Experiment.n_steps = {n_steps}',
    'experiments.Experiment.eval_every = 2',
    'experiments.Experiment.checkpoint_every = 2',
    'experiments.Experiment.n_eval_batches = 1',
    'models.TransformerLM.d_model = 16',
    'models.TransformerLM.n_layers = 1',
    'tasks.copy.batch_size = 4',
    # The test process's pool: trial A's killed run, made here, resumes as
    # a trial (a resume with another pool is refused).
    'experiments.Experiment.cpu_threads = 2',
]
scripts.Sweep.axes = {{
    'models.TransformerLM.d_ff': [16, 32],
    'models.TransformerLM.n_heads': [1, 2],
}}
scripts.Sweep.mode = 'zip'
"""
A, B = 'd_ff=16,n_heads=1', 'd_ff=32,n_heads=2'


def _sweep(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = sweep.main(['scripts.sweep', *args])
    return status, out.getvalue()


def _status(root, name):
    return layout.read_status(os.path.join(root, name))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('sweep')
    sweep_file = base / 'tiny.gin'
    sweep_file.write_text(TINY.format(n_steps=4))
    root = str(base / 'runs')
    args = [f'--gin_file={sweep_file}', f'--output_dir={root}', '--parallel=2']

    loaded = spec.load(str(sweep_file))
    trial_a = next(t for t in spec.expand(loaded) if t.name == A)
    killed = list(trial_a.bindings) + ['experiments.Experiment.n_steps = 2']
    with contextlib.redirect_stdout(io.StringIO()):
        assert experiments_main.run(['codelab.gin'], killed,
                                    os.path.join(root, A)) == 0
    blocker = os.path.join(root, B, 'checkpoints')
    os.makedirs(os.path.dirname(blocker))
    open(blocker, 'w').close()

    first = _sweep(*args)
    after_first = {n: _status(root, n) for n in (A, B)}
    os.remove(blocker)
    second = _sweep(*args)
    return dict(root=root, first=first, second=second,
                after_first=after_first)


def test_failed_trial_is_recorded_and_the_other_goes_on(tiny):
    status, out = tiny['first']
    assert status == 1
    a, b = tiny['after_first'][A], tiny['after_first'][B]
    assert a['state'] == 'finished' and a['exit_code'] == 0
    assert b['state'] == 'failed' and b['exit_code'] not in (0, None)
    assert 'checkpoints' in b['error'], b['error']
    assert f'{B}  failed' in out and f'{A}  finished' in out
    assert '1 trial(s) failed' in out


def test_rerun_skips_finished_trials_and_retries_failed_ones(tiny):
    status, out = tiny['second']
    assert status == 0
    assert f'{A}  done        finished earlier' in out
    a, b = _status(tiny['root'], A), _status(tiny['root'], B)
    assert a['attempts'] == 1 and b['attempts'] == 2
    assert b['state'] == 'finished' and b['error'] is None
    assert b['wall_time_s'] > tiny['after_first'][B]['wall_time_s']
    with open(os.path.join(tiny['root'], A, layout.LOG)) as f:
        assert f.read().count('# attempt') == 1


def test_unfinished_trial_resumed_from_its_checkpoint(tiny):
    trial = os.path.join(tiny['root'], A)
    with open(os.path.join(trial, layout.LOG)) as f:
        log = f.read()
    assert 'Resuming from the checkpoint at step 2 (last start: ' in log
    assert 'step 2/4' not in log and 'step 4/4' in log
    assert checkpoints.list_steps(trial)[-1] == 4
    for run in ('train', 'eval'):  # each step logged once across the resume
        steps = [s for s, _ in read_scalars(
            os.path.join(trial, run))['metrics/loss']]
        assert steps == [2, 4], run


def test_trial_command_reruns_by_hand(tiny, capsys):
    """trial.json's command is an experiments.main run; resuming it in the
    trial's directory is allowed (same config)."""
    status = _status(tiny['root'], B)
    args = shlex.split(status['command'].split(' -m experiments.main ')[1])
    gin_files = [a.split('=', 1)[1] for a in args if a.startswith('--gin_f')]
    params = [a.split('=', 1)[1] for a in args if a.startswith('--gin_p')]
    output_dir = [a.split('=', 1)[1] for a in args if a.startswith('--out')]
    assert output_dir == [os.path.join(tiny['root'], B)]
    assert experiments_main.run(gin_files, params, output_dir[0],
                                dry_run=True) == 0


def _hparams_sessions(logdir):
    """What TensorBoard's HParams dashboard lists: its own request handler
    over its own event multiplexer."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import (
        plugin_event_multiplexer as multiplexer)
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context
    from tensorboard.plugins.hparams import list_session_groups

    mux = multiplexer.EventMultiplexer(tensor_size_guidance={'scalars': 0})
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    tb_context = base_plugin.TBContext(
        logdir=logdir, multiplexer=mux,
        data_provider=data_provider.MultiplexerDataProvider(mux, logdir))
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=10, allowed_statuses=[
            api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS,
            api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING])
    return list_session_groups.Handler(
        context.RequestContext(), backend_context.Context(tb_context), '',
        request).run().session_groups


def test_tensorboard_hparams_dashboard_shows_every_trial(tiny):
    groups = {g.name: g for g in _hparams_sessions(tiny['root'])}
    assert set(groups) == {A, B}
    b = groups[B]
    assert {k: v.number_value for k, v in b.hparams.items()} == {
        'd_ff': 32.0, 'n_heads': 2.0}
    metrics = {(m.name.group, m.name.tag): m for m in b.metric_values}
    assert metrics[('eval', 'metrics/loss')].training_step == 4
    assert metrics[('eval', 'metrics/loss')].value > 0
    assert ('train', 'training/steps_per_second') in metrics
    # Written once: reruns add no second config or second session start.
    for logdir in (tiny['root'], os.path.join(tiny['root'], A)):
        events = [f for f in os.listdir(logdir) if f.startswith('events.')]
        assert len(events) == 1, logdir


def test_report_writes_table_and_plots(tiny, tmp_path):
    out = tmp_path / 'report'
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert report.main(['scripts.report', tiny['root'],
                            f'--output_dir={out}']) == 0
    with open(out / 'report.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['trial'] for r in rows] == [A, B]
    assert [(r['d_ff'], r['n_heads']) for r in rows] == [('16', '1'),
                                                       ('32', '2')]
    for row in rows:
        assert row['status'] == 'finished' and row['steps'] == '4'
        assert 0 <= float(row['eval_accuracy']) <= float(
            row['best_eval_accuracy']) <= 1
        assert float(row['best_eval_loss']) <= float(row['eval_loss'])
        assert float(row['steps_per_second']) > 0
        assert float(row['wall_time_s']) > 0
        assert int(row['n_parameters']) > 0
    with open(out / 'report.json') as f:
        data = json.load(f)
    assert [r['trial'] for r in data['rows']] == [A, B]
    for name in (A, B):  # each attempt's clock times, for the sweep's span
        status = layout.read_status(os.path.join(tiny['root'], name))
        assert 0 < status['started_at'] <= status['ended_at']
    # B is wider (d_ff 32 against 16), so it has more parameters.
    assert int(rows[0]['n_parameters']) < int(rows[1]['n_parameters'])
    final_b = read_scalars(os.path.join(tiny['root'], B, 'eval'))[
        'metrics/accuracy'][-1][1]
    assert float(rows[1]['eval_accuracy']) == pytest.approx(final_b)

    markdown = (out / 'report.md').read_text()
    assert markdown in printed.getvalue()
    assert markdown.splitlines()[2].startswith('| trial | d_ff | n_heads | '
                                               'status |')
    assert f'| {B} | 32 | 2 | finished | 4 |' in markdown
    plots = sorted(os.listdir(out / 'plots'))
    assert plots == ['eval_accuracy_over_steps.png',
                     'eval_accuracy_vs_d_ff.png',
                     'eval_accuracy_vs_n_heads.png']
    for name in plots:
        data = (out / 'plots' / name).read_bytes()
        assert data.startswith(b'\x89PNG') and len(data) > 10_000


def test_ctrl_c_stops_trials_cleanly_and_they_resume(tmp_path):
    """Ctrl-C at a sweep command while a trial trains: the trial is stopped
    (SIGINT, so it exits by itself), marked interrupted, and listed to run
    again. The sweep is a real process, as a user's is, started with
    SIGINT's default action, so the signal depends neither on what earlier
    tests did to this process's handlers nor on how the suite was launched
    (a background job of a non-interactive shell ignores SIGINT, and its
    children inherit that)."""
    sweep_file = tmp_path / 'long.gin'
    sweep_file.write_text(TINY.format(n_steps=10**6).replace(
        "[16, 32]", "[16]").replace("[1, 2]", "[1]"))
    root = str(tmp_path / 'runs')
    log = os.path.join(root, A, layout.LOG)
    with open(tmp_path / 'sweep.out', 'w') as out:
        command = subprocess.Popen(
            [sys.executable, '-m', 'scripts.sweep',
             f'--gin_file={sweep_file}', f'--output_dir={root}'],
            stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 600
        while not (os.path.exists(log) and re.search(
                r'^step +4/', open(log).read(), re.M)):
            assert command.poll() is None, 'the sweep ended by itself'
            assert time.monotonic() < deadline, 'the trial never trained'
            time.sleep(0.5)
        command.send_signal(signal.SIGINT)
        assert command.wait(timeout=120) == 130
    finally:  # never leave a sweep or its trial training
        if command.poll() is None:
            command.kill()
        pid = (_status(root, A) or {}).get('pid')
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    assert 'Rerun the same command to resume' in (
        tmp_path / 'sweep.out').read_text()
    status = _status(root, A)
    assert status['state'] == 'interrupted'
    assert status['exit_code'] != -signal.SIGKILL  # it stopped by itself
    with pytest.raises(ProcessLookupError):
        os.kill(status['pid'], 0)  # and is gone
    assert checkpoints.list_steps(os.path.join(root, A))  # to resume from
    status, printed = _sweep(f'--gin_file={sweep_file}',
                             f'--output_dir={root}', '--dry_run')
    assert status == 0 and f'# {A}: to run' in printed


ZOO = """# A tiny attention zoo (tests only): FAVOR x 2 tasks x 2 seeds.
import scripts.sweeps
scripts.Sweep.base = 'zoo/model.gin'
scripts.Sweep.bindings = [
    'STEPS = 2',  # each task file's budget (n_steps, decode_eval_every)
    'experiments.Experiment.eval_every = 2',
    'experiments.Experiment.n_eval_batches = 1',
    'models.ReformerLM.d_model = 16',
    'models.ReformerLM.d_ff = 16',
    'models.ReformerLM.n_layers = 1',
    'BATCH_SIZE = 4',
]
scripts.Sweep.axes = {
    'models.ReformerLM.attention': ['favor'],
    'task': {'copy': 'zoo/copy.gin', 'mqar': 'zoo/mqar.gin'},
}
scripts.Sweep.seeds = [0, 1]
scripts.Sweep.leaderboard = ['exact_match', 'accuracy@2x']
"""


def test_a_tiny_zoo_end_to_end_with_seeds_and_a_leaderboard(tmp_path):
    """The zoo's shape (a bundle axis of task files, an attention axis,
    seeds, a leaderboard) through the real runner and report."""
    sweep_file = tmp_path / 'zoo.gin'
    sweep_file.write_text(ZOO)
    root = str(tmp_path / 'runs')
    status, out = _sweep(f'--gin_file={sweep_file}', f'--output_dir={root}',
                         '--parallel=2')
    assert status == 0, out
    names = sorted(os.listdir(root))
    assert 'attention=favor,task=mqar,seed=1' in names
    assert report.main(['scripts.report', root]) == 0
    with open(os.path.join(root, 'report.json')) as f:
        data = json.load(f)
    assert len(data['rows']) == 4
    assert {r['n_parameters'] > 0 for r in data['rows']} == {True}
    assert [r['exact_match_n'] for r in data['over_seeds']] == [2] * 2
    for metric in ('exact_match', 'accuracy@2x'):
        board = data['leaderboards'][metric]
        assert board['rows'] == ['favor']
        assert board['columns'] == ['copy', 'mqar']
        assert all(0 <= c <= 1 for row in board['cells'] for c in row)
    with open(os.path.join(root, 'leaderboard.csv')) as f:
        assert len(list(csv.reader(f))) == 2 * 2  # a header and a row each
    plots = os.listdir(os.path.join(root, 'plots'))
    assert {'leaderboard_exact_match.png', 'leaderboard_accuracy_2x.png',
            'eval_accuracy_vs_length.png'} <= set(plots)
