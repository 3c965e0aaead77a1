"""Guarded output directories: one config per directory, one writer at a time,
and unusable directories or disks reported before training starts."""
import collections
import os
import signal
import subprocess
import sys

import gin

from experiments import config, main, run_dir, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _saved_run(out, params=()):
    """A directory as a run with `params` leaves it (its config.gin)."""
    config.parse(['codelab.gin'], params)
    out.mkdir()
    (out / 'config.gin').write_text(gin.config_str())
    gin.clear_config()
    return sorted(os.listdir(out)), (out / 'config.gin').read_text()


def test_a_different_config_is_refused_with_the_differing_bindings(
        tmp_path, capsys):
    out = tmp_path / 'run'
    before = _saved_run(out)
    status = main.run(['codelab.gin'], ['models.TransformerLM.d_model = 64',
                                        'tasks.copy.seed = 3'],
                      output_dir=str(out))
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {out} holds a run with a different config')
    for line in ('- models.TransformerLM.d_model = 32',
                 '+ models.TransformerLM.d_model = 64',
                 '+ copy.seed = 3'):
        assert line in err
    assert '--overwrite' in err and 'n_steps' not in err
    assert (sorted(os.listdir(out)), (out / 'config.gin').read_text()) == before


def test_the_same_config_or_more_steps_may_resume(tmp_path):
    out = tmp_path / 'run'
    _saved_run(out)
    for params in ([], ['experiments.Experiment.n_steps = 3000']):
        assert main.run(['codelab.gin'], params, output_dir=str(out),
                        dry_run=True) == 0


def test_overwrite_accepts_another_config_and_clears_only_run_outputs(
        tmp_path):
    out = tmp_path / 'run'
    _saved_run(out)
    for name in ('checkpoints', 'train', 'eval', 'evaluations'):
        (out / name).mkdir()
        (out / name / 'x').write_text('old')
    (out / 'notes.txt').write_text('mine')
    assert main.run(['codelab.gin'], ['models.TransformerLM.d_model = 64'],
                    output_dir=str(out), dry_run=True, overwrite=True) == 0
    run_dir.clear(str(out))
    assert sorted(os.listdir(out)) == ['notes.txt']


def test_a_second_writer_is_refused(tmp_path, capsys):
    out = tmp_path / 'run'
    with run_dir.exclusive(str(out)):
        status = main.run(['codelab.gin'], [], output_dir=str(out))
    assert status == 2
    err = capsys.readouterr().err
    assert err == (f'error: {out} is in use by another process '
                   f'(pid {os.getpid()}); wait for it or choose another '
                   '--output_dir\n')
    assert sorted(os.listdir(out)) == ['.lock']


def test_a_killed_writer_leaves_no_stuck_lock(tmp_path):
    out = tmp_path / 'run'
    holder = subprocess.Popen(
        [sys.executable, '-c',
         'import sys, time\n'
         'from experiments import run_dir\n'
         f'with run_dir.exclusive({str(out)!r}):\n'
         '    print("locked", flush=True)\n'
         '    time.sleep(600)\n'],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == 'locked\n'
    try:
        try:
            with run_dir.exclusive(str(out)):
                raise AssertionError('the lock was not held')
        except run_dir.RunDirError as e:
            assert f'pid {holder.pid}' in str(e)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_dir.exclusive(str(out)):
        pass


def test_an_output_dir_that_cannot_be_created_is_reported(tmp_path, capsys):
    blocker = tmp_path / 'file.txt'
    blocker.write_text('not a directory')
    status = main.run(['codelab.gin'], [],
                      output_dir=str(blocker / 'sub' / 'run'))
    assert status == 2
    assert capsys.readouterr().err == (
        f'error: cannot use --output_dir={blocker}/sub/run: {blocker} is not '
        'a directory\n')
    assert sorted(os.listdir(tmp_path)) == ['file.txt']


def test_too_little_disk_is_reported_before_anything_is_written(
        tmp_path, monkeypatch, capsys):
    usage = collections.namedtuple('usage', 'total used free')
    monkeypatch.setattr(training.shutil, 'disk_usage',
                        lambda path: usage(2 << 20, 1 << 20, 1 << 20))
    out = tmp_path / 'run'
    status = main.run(['codelab.gin'], [], output_dir=str(out))
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith(f'error: not enough free disk for checkpoints in '
                          f'{out}: 1 MiB free, ')
    assert sorted(os.listdir(out)) == ['.lock']
