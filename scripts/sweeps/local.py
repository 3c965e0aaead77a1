"""Runs a sweep's trials on this machine, N processes at a time.

Each trial is `python -m experiments.main ...` in its own process (and
session, so a terminal's Ctrl-C reaches only this runner, which then stops
the trials in order). Output goes to the trial's trial.log; trial.json records
how it ended. Trials already finished are skipped; the others run again with
the same command, which resumes them from their latest checkpoint.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Sequence, TextIO

from experiments import run_dir
from scripts.sweeps import layout
from scripts.sweeps.spec import Sweep, Trial, main_args

_STOP_GRACE_S = 30  # for a trial to close its files after SIGINT
_POLL_S = 0.5
_TAIL_BYTES = 16384  # the last progress and error lines are in the tail


def _log_tail(path: str, offset: int) -> str:
    """The end of a trial's log, from `offset` (this attempt's start) on."""
    try:
        with open(path, 'rb') as f:
            f.seek(max(offset, f.seek(0, os.SEEK_END) - _TAIL_BYTES))
            return f.read().decode(errors='replace')
    except FileNotFoundError:
        return ''


def progress(trial_dir: str) -> str:
    """`step 200/600 acc 0.9700 seq_acc 0.5000 3.1 steps/s`, from the
    progress file the trial's run writes at each evaluation."""
    last = run_dir.read_progress(trial_dir)
    if last is None:
        return 'starting'
    evals = last['eval']
    accuracy = (f'acc {evals["accuracy"]:.4f} '
                f'seq_acc {evals["sequence_accuracy"]:.4f}')
    if last['finished']:
        return f'final {accuracy}'
    return (f'step {last["step"]}/{last["n_steps"]} {accuracy} '
            f'{last["steps_per_second"]:.1f} steps/s')


def error_line(log_text: str) -> str:
    """The `error: ...` line a trial printed last, else its last line."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith('error: ')]
    if errors:
        return errors[-1][len('error: '):]
    return lines[-1] if lines else 'no output'


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f'{minutes}m{seconds:02d}s'


class StatusBoard:
    """One line per trial. On a terminal the block is redrawn in place;
    otherwise (a log file, CI) a line is printed whenever a trial's state
    changes."""

    def __init__(self, names: Sequence[str], out: TextIO):
        self._out = out
        self._live = out.isatty()
        self._width = max(len(n) for n in names)
        self._lines = {n: ('pending', '') for n in names}
        self._drawn = 0

    def set(self, name: str, state: str, detail: str = '') -> None:
        changed = self._lines[name][0] != state
        self._lines[name] = (state, detail)
        if changed and not self._live:
            self._out.write(self._format(name) + '\n')
            self._out.flush()

    def _format(self, name: str) -> str:
        state, detail = self._lines[name]
        return f'{name:<{self._width}}  {state:<11} {detail}'.rstrip()

    def draw(self) -> None:
        if not self._live:
            return
        columns = shutil.get_terminal_size().columns
        text = ''.join(f'\x1b[2K{self._format(n)[:columns - 1]}\n'
                       for n in self._lines)
        # Move up over the previous block, then overwrite it.
        self._out.write((f'\x1b[{self._drawn}F' if self._drawn else '') + text)
        self._out.flush()
        self._drawn = len(self._lines)


@dataclasses.dataclass
class _Running:
    trial: Trial
    trial_dir: str
    process: subprocess.Popen
    started: float
    log_offset: int
    status: dict


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class LocalRunner:
    """Runs the given trials of one sweep into `root` (the sweep directory)."""

    def __init__(self, sweep: Sweep, manifest: dict, root: str,
                 parallel: int = 1, out: TextIO | None = None,
                 mirror_to: str | None = None):
        self.sweep = sweep
        self.mirror_to = mirror_to  # trials copy themselves under it
        self.manifest = manifest
        self.root = root
        self.parallel = parallel
        self.out = out or sys.stdout
        self._running: list[_Running] = []
        self._failed: list[str] = []

    def _say(self, text: str) -> None:
        self.out.write(text + '\n')
        self.out.flush()

    def _start(self, trial: Trial, board: StatusBoard) -> None:
        trial_dir = os.path.join(self.root, trial.name)
        os.makedirs(trial_dir, exist_ok=True)
        layout.write_trial_hparams(trial_dir, self.manifest, trial)
        command = [sys.executable] + main_args(self.sweep, trial, trial_dir)
        if self.mirror_to:
            command.append(f'--mirror_to={self.mirror_to}/{trial.name}')
        log_path = os.path.join(trial_dir, layout.LOG)
        status = layout.read_status(trial_dir) or {}
        status.update(name=trial.name, state=layout.RUNNING,
                      command=shlex.join(command),
                      attempts=status.get('attempts', 0) + 1,
                      exit_code=None, error=None,
                      wall_time_s=status.get('wall_time_s', 0.0),
                      # Clock times of this attempt, for the sweep's span.
                      started_at=round(time.time(), 1), ended_at=None,
                      parallel=self.parallel)
        with open(log_path, 'a') as log:
            log.write(f'# attempt {status["attempts"]}, '
                      f'{time.strftime("%Y-%m-%d %H:%M:%S")}: '
                      f'{status["command"]}\n')
            log.flush()
            offset = log.tell()
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, 'PYTHONUNBUFFERED': '1'})
        status['pid'] = process.pid
        layout.write_status(trial_dir, status)
        self._running.append(_Running(trial, trial_dir, process,
                                      time.monotonic(), offset, status))
        board.set(trial.name, 'running')

    def _end(self, run: _Running, board: StatusBoard,
             interrupted: bool = False) -> None:
        log_text = _log_tail(os.path.join(run.trial_dir, layout.LOG),
                             run.log_offset)
        exit_code = run.process.returncode
        if exit_code == 0:
            state = layout.FINISHED  # also if it finished as Ctrl-C came
        else:
            state = layout.INTERRUPTED if interrupted else layout.FAILED
        wall = run.status['wall_time_s'] + time.monotonic() - run.started
        run.status.update(state=state, exit_code=exit_code,
                          wall_time_s=round(wall, 1),
                          ended_at=round(time.time(), 1),
                          error=None if exit_code == 0 else error_line(
                              log_text))
        layout.write_status(run.trial_dir, run.status)
        detail = (progress(run.trial_dir) if state == layout.FINISHED
                  else run.status['error']) or ''
        board.set(run.trial.name, state, f'{_duration(wall)}  {detail}')
        if state == layout.FAILED:
            self._failed.append(run.trial.name)
        self._running.remove(run)

    def _stop_all(self, board: StatusBoard) -> None:
        """SIGINT to every trial, then SIGKILL to those still up after the
        grace period (or at a second Ctrl-C)."""
        for run in self._running:
            _signal_group(run.process, signal.SIGINT)
        deadline = time.monotonic() + _STOP_GRACE_S
        try:
            for run in self._running:
                run.process.wait(max(0.0, deadline - time.monotonic()))
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            pass
        for run in list(self._running):
            _signal_group(run.process, signal.SIGKILL)
            run.process.wait()
            self._end(run, board, interrupted=True)

    def run(self, trials: Sequence[Trial]) -> int:
        """Runs the unfinished trials; returns the exit status (0 all
        finished, 1 some failed, 130 interrupted)."""
        board = StatusBoard([t.name for t in trials], self.out)
        pending = []
        for trial in trials:
            status = layout.read_status(os.path.join(self.root, trial.name))
            if layout.is_finished(status):
                board.set(trial.name, 'done', 'finished earlier')
            else:
                pending.append(trial)
        previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            while pending or self._running:
                while pending and len(self._running) < self.parallel:
                    self._start(pending.pop(0), board)
                for run in list(self._running):
                    if run.process.poll() is not None:
                        self._end(run, board)
                    else:
                        board.set(run.trial.name, 'running', (
                            f'{_duration(time.monotonic() - run.started)}  '
                            f'{progress(run.trial_dir)}'))
                board.draw()
                time.sleep(_POLL_S)
        except KeyboardInterrupt:
            self._stop_all(board)
            board.draw()
            self._say('Interrupted. Rerun the same command to resume the '
                      'unfinished trials from their checkpoints.')
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
        board.draw()
        if self._failed:
            self._say(f'{len(self._failed)} trial(s) failed (see trial.log in '
                      'their directories); rerunning the sweep retries them.')
            return 1
        return 0


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
