r"""Training cost against sequence length: ReformerLM vs TransformerLM.

    python -m scripts.benchmarks.length          # 1K to 64K tokens, all models
    python -m scripts.benchmarks.length --lengths=1024,4096 \
        --models=reformer,transformer --json=runs/benchmarks/length.json

Trains each model at each length (batch --batch_size, the copy task) for a
few steps, every (model, length) point in its own process, one at a time,
and measures steady-state seconds per step, tokens per second and the
process's peak resident set size. Models (--models):

  reformer          this project's ReformerLM (LSH attention, reversible
                    layers, chunked feed-forward) through `experiments.main`
  transformer       this project's TransformerLM, same width and depth
  trax_reformer     trax.models.ReformerLM driven by trax's own Trainer
  pytorch_reformer  reformer-pytorch's ReformerLM (same width, depth, heads,
                    hashes; bucket size = --chunk_len); needs the `bench`
                    extra: pip install -c constraints.txt -e '.[bench]'

Timing: each run has one warm-up interval (it compiles; trax's Trainer
compiles again at its second step) and then --intervals timed ones, each of
--tokens_per_interval / (batch * length) steps (at least 2). This project's
runs are ordinary `python -m experiments.main` runs; their seconds per step
come from the `training/steps_per_second` the trainer logs at each
evaluation (training time only). A point's figure is the median over its
timed intervals.

Memory: a watchdog polls each process's RSS every 50 ms and kills it when
it passes --memory_limit_gb (or when the machine's available memory falls
under --min_available_gb); that length is recorded as out of memory, and the
model's longer lengths are skipped. Peak RSS is the kernel's high-water mark
of the process's resident set (VmHWM), the last one read. Every point runs
with JAX's compilation cache off, so each compiles as a first run does.

Prints a table, saves JSON (--json, default runs/benchmarks/length.json)
and, next to it, log-log plots of time per token and peak memory against
length (<json name>_time_per_token.png, <json name>_memory.png); each run's
output is kept in <--work_dir>/logs/.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from typing import Callable, Sequence

from absl import flags

from experiments import cli, compile_cache
from experiments.errors import ConfigError
from scripts.benchmarks import length_workers as workers

GB = 1e9
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BENCH_EXTRA = "pip install -c constraints.txt -e '.[bench]'"


@dataclasses.dataclass(frozen=True)
class Model:
    key: str
    label: str
    runner: str  # 'ours' (experiments.main) or one of workers.WORKERS
    gin_file: str = ''


MODELS = {m.key: m for m in (
    Model('reformer', 'ReformerLM (this project)', 'ours',
          'reformer_copy.gin'),
    Model('transformer', 'TransformerLM (this project)', 'ours',
          'transformer_copy.gin'),
    Model('trax_reformer', 'ReformerLM (raw trax Trainer)', 'trax'),
    Model('pytorch_reformer', 'reformer-pytorch ReformerLM', 'pytorch'),
)}

FLAGS = flags.FlagValues()
flags.DEFINE_list('lengths', [str(2**k) for k in range(10, 17)],
                  'Sequence lengths, ascending per model.', flag_values=FLAGS)
flags.DEFINE_list('models', list(MODELS), f'Any of {", ".join(MODELS)}.',
                  flag_values=FLAGS)
flags.DEFINE_integer('d_model', 64, 'Model width.', lower_bound=2,
                     flag_values=FLAGS)
flags.DEFINE_integer('d_ff', 128, 'Feed-forward width (a multiple of '
                     'd_model, for reformer-pytorch).', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('n_layers', 2, 'Layers.', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('n_heads', 2, 'Attention heads.', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('n_hashes', 2, 'LSH hashes.', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('chunk_len', 64, 'LSH chunk length (reformer-pytorch '
                     'bucket size).', lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('ff_chunk_size', 4096, 'Reformers\' feed-forward chunk, '
                     'in tokens (capped at the length; 0: unchunked).',
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer('batch_size', 1, 'Sequences per step.', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('vocab_size', 32, 'Copy task vocabulary.', lower_bound=3,
                     flag_values=FLAGS)
flags.DEFINE_integer('tokens_per_interval', 32768, 'Tokens per timed '
                     'interval (sets its steps, at least 2).', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer('intervals', 2, 'Timed intervals after the warm-up one.',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_float('memory_limit_gb', 18.0, 'Kill a run whose RSS passes '
                   'this (GB = 1e9 bytes).', lower_bound=0.01,
                   flag_values=FLAGS)
flags.DEFINE_float('min_available_gb', 1.0, 'Kill a run when the machine\'s '
                   'available memory falls under this.', lower_bound=0.0,
                   flag_values=FLAGS)
flags.DEFINE_integer('timeout_s', 3600, 'Kill a run after this long.',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('progress_every', 30, 'Seconds between progress lines '
                     'while a run goes on.', lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('seed', 0, 'Data and weights seed.', lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_string('json', 'runs/benchmarks/length.json', 'Where to save '
                    'the results; the plots go next to it.',
                    flag_values=FLAGS)
flags.DEFINE_string('work_dir', 'runs/benchmarks/length', 'Each run\'s '
                    'output (logs/) and run directory (runs/, removed after '
                    'reading unless --keep_runs).', flag_values=FLAGS)
flags.DEFINE_bool('keep_runs', False, 'Keep the experiments.main run '
                  'directories.', flag_values=FLAGS)


# ------------------------------------------------------------ a process ----

def rss_bytes(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of `pid`; (0, 0) once it is gone.

    The peak is the kernel's high-water mark of the process's memory since
    its exec. (wait4's ru_maxrss would also count the parent's memory, which
    the child shares between fork and exec.)
    """
    sizes = {}
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith(('VmRSS:', 'VmHWM:')):
                    sizes[line[:5]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return sizes.get('VmRSS', 0), sizes.get('VmHWM', 0)


def available_bytes() -> int:
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no MemAvailable in /proc/meminfo')


def _kill(pid: int) -> None:
    """Kills the process group `pid` leads (the run and anything it
    started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass


@dataclasses.dataclass
class Outcome:
    exit_code: int | None  # None when the watchdog killed it
    killed_for: str | None
    peak_rss_bytes: int
    wall_s: float


def run_watched(command: Sequence[str], log_path: str, limit_bytes: float,
                min_available_bytes: float, timeout_s: float,
                progress: Callable[[float, int], None],
                progress_every: float, poll_s: float = 0.05) -> Outcome:
    """Runs `command` (output to `log_path`), killing it if it passes the
    memory limit, starves the machine or runs past `timeout_s`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    # Every point compiles, as a first run does: peak memory then includes
    # the compiler's, whatever earlier runs left in the cache.
    env[compile_cache.ENV] = ''
    start = time.monotonic()
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
                                start_new_session=True)
    killed_for, peak, next_progress = None, 0, start + progress_every
    try:
        while True:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                break
            rss, high_water = rss_bytes(proc.pid)
            peak = max(peak, rss, high_water)
            now = time.monotonic()
            if killed_for is None:
                if rss > limit_bytes:
                    killed_for = (f'out of memory (> '
                                  f'{limit_bytes / GB:.1f} GB)')
                elif available_bytes() < min_available_bytes:
                    killed_for = (f'stopped: machine\'s available memory '
                                  f'< {min_available_bytes / GB:.1f} GB')
                elif now - start > timeout_s:
                    killed_for = f'timed out (> {timeout_s:.0f} s)'
                if killed_for:
                    _kill(proc.pid)
            if now >= next_progress:
                progress(now - start, rss)
                next_progress += progress_every
            time.sleep(poll_s)
    except BaseException:  # Ctrl-C: no orphan left training
        if proc.returncode is None:
            _kill(proc.pid)
            proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(None if killed_for else proc.returncode, killed_for,
                   peak, time.monotonic() - start)


def last_line(path: str) -> str:
    with open(path, errors='replace') as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1] if lines else '(no output)'


# ---------------------------------------------------------- the points ----

@dataclasses.dataclass(frozen=True)
class Settings:
    d_model: int
    d_ff: int
    n_layers: int
    n_heads: int
    n_hashes: int
    chunk_len: int
    ff_chunk_size: int
    batch_size: int
    vocab_size: int
    seed: int


def interval_steps(length: int, batch_size: int,
                   tokens_per_interval: int) -> int:
    # Two at least, so trax's second compile (step 2) stays in the warm-up.
    return max(2, tokens_per_interval // (batch_size * length))


def ff_chunk(settings: Settings, length: int) -> int:
    return min(settings.ff_chunk_size, length)


def gin_params(model: Model, s: Settings, length: int, steps: int,
               n_intervals: int) -> list[str]:
    """Bindings that turn a shipped copy experiment into this point's run."""
    name = 'ReformerLM' if model.key == 'reformer' else 'TransformerLM'
    sizes = dict(d_model=s.d_model, d_ff=s.d_ff, n_layers=s.n_layers,
                 n_heads=s.n_heads, max_len=length)
    if name == 'ReformerLM':
        sizes.update(n_hashes=s.n_hashes, chunk_len=s.chunk_len,
                     ff_chunk_size=ff_chunk(s, length))
    n_steps = steps * (1 + n_intervals)
    return ([f'LENGTH = {length}', f'VOCAB_SIZE = {s.vocab_size}',
             f'BATCH_SIZE = {s.batch_size}', f'SEED = {s.seed}']
            + [f'models.{name}.{k} = {v}' for k, v in sizes.items()]
            + [f'experiments.Experiment.{k} = {v}' for k, v in dict(
                optimizer='@trax.optimizers.Adam',  # as the baselines
                n_steps=n_steps, eval_every=steps, n_eval_batches=1,
                checkpoint_every=n_steps).items()])


def steady_seconds_per_step(run_dir: str) -> list[float]:
    """Seconds per step of each logged interval after the first (which
    includes compilation), from the run's TensorBoard events."""
    # Imported here: this process should hold as little as it can beside the
    # runs it measures.
    from experiments.summaries import read_scalars
    points = read_scalars(os.path.join(run_dir, 'train')).get(
        'training/steps_per_second', [])
    return [1.0 / v for _, v in points[1:] if v > 0]


def result_seconds(log_path: str) -> list[float]:
    with open(log_path, errors='replace') as f:
        for line in reversed(f.readlines()):
            if line.startswith(workers.RESULT_PREFIX):
                return json.loads(line[len(workers.RESULT_PREFIX):])[
                    'seconds_per_step']
    return []


def point_command(model: Model, s: Settings, length: int, steps: int,
                  n_intervals: int, run_dir: str) -> list[str]:
    if model.runner == 'ours':
        return ([sys.executable, '-m', 'experiments.main',
                 f'--gin_file={model.gin_file}', f'--output_dir={run_dir}']
                + [f'--gin_param={p}' for p in gin_params(
                    model, s, length, steps, n_intervals)])
    cfg = dict(dataclasses.asdict(s), length=length, interval_steps=steps,
               intervals=n_intervals, ff_chunk_size=ff_chunk(s, length))
    return [sys.executable, '-m', 'scripts.benchmarks.length_workers',
            model.runner, json.dumps(cfg)]


def measure(model: Model, s: Settings, length: int, work_dir: str,
            say: Callable[[str], None]) -> dict:
    """Runs one (model, length) point in its own process; its table row."""
    steps = interval_steps(length, s.batch_size, FLAGS.tokens_per_interval)
    run_dir = os.path.join(work_dir, 'runs', f'{model.key}_{length}')
    shutil.rmtree(run_dir, ignore_errors=True)
    log_path = os.path.join(work_dir, 'logs', f'{model.key}_{length}.log')
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    command = point_command(model, s, length, steps, FLAGS.intervals, run_dir)
    load = os.getloadavg()[0]  # other work here slows the run down

    def progress(elapsed: float, rss: int) -> None:
        say(f'    ... {elapsed:.0f} s, RSS {rss / GB:.2f} GB')

    outcome = run_watched(command, log_path, FLAGS.memory_limit_gb * GB,
                          FLAGS.min_available_gb * GB, FLAGS.timeout_s,
                          progress, FLAGS.progress_every)
    row = {'model': model.key, 'label': model.label, 'length': length,
           'batch_size': s.batch_size, 'interval_steps': steps,
           'peak_rss_gb': outcome.peak_rss_bytes / GB,
           'wall_s': outcome.wall_s, 'load_average_before': load,
           # Relative, so a committed JSON names no one's paths.
           'log': os.path.relpath(log_path),
           'command': ['python'] + command[1:]}
    if outcome.killed_for:
        return {**row, 'status': outcome.killed_for}
    if outcome.exit_code:
        return {**row, 'status': f'failed (exit {outcome.exit_code}): '
                                 f'{last_line(log_path)}'}
    seconds = (steady_seconds_per_step(run_dir) if model.runner == 'ours'
               else result_seconds(log_path))
    if not FLAGS.keep_runs:
        shutil.rmtree(run_dir, ignore_errors=True)
    if not seconds:
        return {**row, 'status': 'failed: no steady-state timing recorded'}
    per_step = statistics.median(seconds)
    tokens = s.batch_size * length
    return {**row, 'status': 'ok', 'seconds_per_step': per_step,
            'interval_seconds_per_step': seconds,
            'tokens_per_second': tokens / per_step,
            'seconds_per_token': per_step / tokens}


def longest(rows: Sequence[dict]) -> dict[str, dict]:
    """Per model: the longest length that trained, and what stopped it."""
    summary = {}
    for row in rows:
        entry = summary.setdefault(row['model'], {'longest_ok': None,
                                                  'stopped_by': None})
        if row['status'] == 'ok':
            entry['longest_ok'] = row['length']
        elif entry['stopped_by'] is None:
            entry['stopped_by'] = f'{row["length"]}: {row["status"]}'
    return summary


# ------------------------------------------------------------- output -----

def format_row(row: dict) -> str:
    ok = row['status'] == 'ok'
    cells = [row['label'], f'{row["length"]:,}',
             f'{row["seconds_per_step"]:.3f}' if ok else '-',
             f'{row["tokens_per_second"]:,.0f}' if ok else '-',
             f'{row["peak_rss_gb"]:.2f}', row['status']]
    return '| ' + ' | '.join(cells) + ' |'


def format_table(rows: Sequence[dict]) -> str:
    return '\n'.join(['| model | length | s/step | tokens/s | peak RSS (GB) '
                      '| status |', '|---|---|---|---|---|---|']
                     + [format_row(r) for r in rows])


def format_longest(summary: dict[str, dict]) -> str:
    lines = ['| model | longest length trained | stopped by |',
             '|---|---|---|']
    for key, entry in summary.items():
        ok = entry['longest_ok']
        lines.append(f'| {MODELS[key].label} | '
                     f'{f"{ok:,}" if ok else "none"} | '
                     f'{entry["stopped_by"] or "-"} |')
    return '\n'.join(lines)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    with open('/proc/meminfo') as f:
        total = int(f.readline().split()[1]) * 1024
    return {'cpu': cpu, 'cpu_count': os.cpu_count(), 'ram_gb': total / GB,
            'python': platform.python_version(),
            'load_average': os.getloadavg(),
            **{package: _version(package) for package in (
                'jax', 'jaxlib', 'trax', 'tensorflow', 'torch',
                'reformer-pytorch')}}


def _short(n: int) -> str:
    return f'{n // 1024}K' if n % 1024 == 0 else str(n)


def plot(rows: Sequence[dict], limit_gb: float, title: str,
         prefix: str) -> list[str]:
    """Log-log plots of time per token and peak RSS against length."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    from matplotlib import ticker

    paths = []
    for name, key, scale, ylabel in (
            ('time_per_token', 'seconds_per_token', 1e6,
             'training time per token (µs)'),
            ('memory', 'peak_rss_gb', 1, 'peak RSS (GB)')):
        figure, axes = plt.subplots(figsize=(6.4, 4.4))
        for model in dict.fromkeys(r['model'] for r in rows):
            mine = [r for r in rows if r['model'] == model]
            ok = [r for r in mine if r['status'] == 'ok']
            line, = axes.plot([r['length'] for r in ok],
                              [r[key] * scale for r in ok], marker='o',
                              label=MODELS[model].label)
            failed = [r for r in mine if r['status'] != 'ok']
            if failed and key == 'peak_rss_gb':  # where it was stopped
                axes.plot([r['length'] for r in failed],
                          [r[key] * scale for r in failed], marker='x',
                          linestyle='none', color=line.get_color(),
                          markersize=10)
        if key == 'peak_rss_gb':
            axes.axhline(limit_gb, color='gray', linestyle='--', linewidth=1,
                         label=f'limit {limit_gb:g} GB (x: stopped)')
        if any(r['status'] == 'ok' for r in rows) or key == 'peak_rss_gb':
            axes.set_yscale('log')  # (not on an empty plot: nothing > 0)
            axes.yaxis.set_major_formatter(
                ticker.FuncFormatter(lambda v, _: f'{v:g}'))
        axes.set_xscale('log', base=2)
        lengths = sorted({r['length'] for r in rows})
        axes.set_xticks(lengths, [_short(n) for n in lengths])
        axes.xaxis.set_minor_locator(ticker.NullLocator())
        axes.set_title('\n'.join(textwrap.wrap(
            title, 75, break_on_hyphens=False)), fontsize=9)
        axes.grid(True, which='major', alpha=0.3)
        axes.set_xlabel('sequence length (tokens)')
        axes.set_ylabel(ylabel)
        axes.legend(fontsize=8)
        figure.tight_layout()
        path = f'{prefix}_{name}.png'
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths


# ------------------------------------------------------------ command -----

def parse_lengths(values: Sequence[str]) -> list[int]:
    try:
        lengths = [int(v) for v in values]
    except ValueError:
        raise ConfigError(f'--lengths must be ints, got '
                          f'{",".join(values)}') from None
    if not lengths or any(n < 4 or n % 2 for n in lengths):
        raise ConfigError('--lengths must be even ints >= 4 (the copy task)')
    return sorted(set(lengths))


def _check(s: Settings, lengths: Sequence[int], keys: Sequence[str]) -> None:
    if s.d_model % s.n_heads:
        raise ConfigError(f'--d_model={s.d_model} is not divisible by '
                          f'--n_heads={s.n_heads}')
    reformers = [k for k in keys if k != 'transformer']
    for length in lengths if reformers else []:
        if length % s.chunk_len:
            raise ConfigError(f'length {length} is not a multiple of '
                              f'--chunk_len={s.chunk_len}')
        if s.ff_chunk_size and length % ff_chunk(s, length):
            raise ConfigError(f'length {length} is not a multiple of '
                              f'--ff_chunk_size={s.ff_chunk_size}')
    if 'pytorch_reformer' in keys:
        if s.d_ff % s.d_model:
            raise ConfigError(f'--d_ff={s.d_ff} must be a multiple of '
                              f'--d_model={s.d_model} for reformer-pytorch')
        for length in lengths:
            if length % (2 * s.chunk_len):
                raise ConfigError(
                    f'reformer-pytorch needs lengths that are multiples of '
                    f'2 * --chunk_len = {2 * s.chunk_len}, got {length}')


def torch_missing() -> bool:
    return any(importlib.util.find_spec(name) is None
               for name in ('torch', 'reformer_pytorch'))


def describe(s: Settings) -> str:
    return (f'd_model {s.d_model}, d_ff {s.d_ff}, {s.n_layers} layers, '
            f'{s.n_heads} heads, LSH {s.n_hashes} hashes, chunk '
            f'{s.chunk_len}, feed-forward chunk {s.ff_chunk_size}, '
            f'batch {s.batch_size}')


def command_line() -> str:
    """The command that reproduces this run, with the flags it was given."""
    given = [FLAGS[name].serialize() for name in FLAGS if FLAGS[name].present]
    return ' '.join(['python -m scripts.benchmarks.length'] + given)


def _command(args: list[str]) -> int:
    lengths = parse_lengths(FLAGS.lengths)
    unknown = [k for k in FLAGS.models if k not in MODELS]
    if unknown or not FLAGS.models:
        raise ConfigError(f'--models: unknown {", ".join(unknown) or "(none)"}'
                          f'; choose from {", ".join(MODELS)}')
    keys = list(dict.fromkeys(FLAGS.models))
    settings = Settings(FLAGS.d_model, FLAGS.d_ff, FLAGS.n_layers,
                        FLAGS.n_heads, FLAGS.n_hashes, FLAGS.chunk_len,
                        FLAGS.ff_chunk_size, FLAGS.batch_size,
                        FLAGS.vocab_size, FLAGS.seed)
    _check(settings, lengths, keys)
    if 'pytorch_reformer' in keys and torch_missing():
        print(f'reformer-pytorch: skipped, PyTorch or reformer-pytorch is not '
              f'installed (install the benchmark extra: {BENCH_EXTRA})')
        keys.remove('pytorch_reformer')
    if not keys:
        raise ConfigError('no model left to measure')
    json_path = os.path.abspath(FLAGS.json)
    work_dir = os.path.abspath(FLAGS.work_dir)
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    info = machine()

    def say(line: str) -> None:
        print(line, flush=True)

    load = info['load_average'][0]
    if load > info['cpu_count'] / 2:
        say(f'warning: load average {load:.1f} on {info["cpu_count"]} CPUs: '
            f'other work is running, so timings will be slower and noisier '
            f'(PyTorch\'s threads suffer most)')
    say(f'{info["cpu_count"]} CPUs, {info["ram_gb"]:.1f} GB; memory limit '
        f'{FLAGS.memory_limit_gb:g} GB per run; logs in '
        f'{os.path.join(work_dir, "logs")}')
    rows, stopped, start = [], set(), time.monotonic()
    # Length by length, so every model at a length sees the machine alike.
    for i, length in enumerate(lengths):
        for key in keys:
            if key in stopped:
                continue
            done = {(r['model'], r['length']) for r in rows}
            total = len(rows) + sum(
                (k, n) not in done for k in keys if k not in stopped
                for n in lengths[i:])
            say(f'[{len(rows) + 1}/{total}] {MODELS[key].label}, length '
                f'{length:,} (elapsed {time.monotonic() - start:.0f} s)')
            rows.append(measure(MODELS[key], settings, length, work_dir, say))
            say(format_row(rows[-1]) + f' ({rows[-1]["wall_s"]:.0f} s)')
            if rows[-1]['status'] != 'ok':
                stopped.add(key)  # longer lengths would fail too
    rows.sort(key=lambda r: (keys.index(r['model']), r['length']))
    summary = longest(rows)
    say(f'\n{describe(settings)}; {info["cpu_count"]} x {info["cpu"]}:')
    say(format_table(rows))
    say('\n' + format_longest(summary))
    prefix = os.path.splitext(json_path)[0]
    plots = plot(rows, FLAGS.memory_limit_gb, describe(settings), prefix)
    info['load_average_end'] = os.getloadavg()
    with open(json_path, 'w') as f:
        json.dump({'machine': info, 'settings': {
            **dataclasses.asdict(settings), 'lengths': lengths,
            'models': keys, 'tokens_per_interval': FLAGS.tokens_per_interval,
            'intervals': FLAGS.intervals,
            'memory_limit_gb': FLAGS.memory_limit_gb,
            'min_available_gb': FLAGS.min_available_gb},
            'command': command_line(),
            'total_wall_s': time.monotonic() - start,
            'longest': summary, 'rows': rows,
            'plots': [os.path.basename(p) for p in plots]}, f, indent=2)
    say(f'wrote {json_path} and {", ".join(plots)}')
    return 0


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
