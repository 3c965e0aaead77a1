"""Each training benchmark runs once at a tiny size, so it keeps working.

The figures are not checked against goals here (that is what running the
benchmarks by hand is for), only that they are measured and saved.
"""
import importlib.util
import itertools
import json
import re

from scripts.benchmarks import profile_step
from scripts.benchmarks import solve as bench_solve
from scripts.benchmarks import startup as bench_startup
from scripts.benchmarks import train as bench_train


def _run(main, tmp_path, *flags):
    path = tmp_path / 'out.json'
    assert main(['prog', f'--json={path}', *flags]) == 0
    return json.loads(path.read_text())


def test_train_benchmark(tmp_path, capsys):
    result = _run(bench_train.main, tmp_path, '--gin_files=codelab.gin',
                  '--steps=3', '--repeats=1', '--cpu_threads=2')
    assert result['matmul_flops_per_s'] > 1e8
    (row,) = result['rows']
    assert row['gin_file'] == 'codelab.gin'
    for key in ('ours_steps_per_s', 'trax_steps_per_s', 'step_gflop'):
        assert row[key] > 0, key
    assert row['speedup'] == row['ours_steps_per_s'] / row['trax_steps_per_s']
    # trax's Trainer also runs with our XLA:CPU settings (codelab.gin's one
    # thread among them).
    assert row['cpu_threads'] == 1 and row['trax_our_xla_steps_per_s'] > 0
    assert row['speedup_our_xla'] == (
        row['ours_steps_per_s'] / row['trax_our_xla_steps_per_s'])
    # ours again with another pool, what the fixed default costs.
    (at_two,) = row['ours_at_cpu_threads']
    assert at_two['cpu_threads'] == 2 and len(at_two['runs']) == 1
    assert at_two['steps_per_s'] == at_two['runs'][0] > 0
    out = capsys.readouterr().out
    assert '| codelab.gin |' in out
    assert 'codelab.gin: ours with cpu_threads = 2: ' in out


def test_startup_benchmark(tmp_path):
    # The sweep half is left out here: it is four more processes, and
    # tests/test_sweep_runs.py runs sweeps.
    result = _run(bench_startup.main, tmp_path, '--gin_file=codelab.gin',
                  '--nosweep')
    assert 'sweep_first_trial_s' not in result
    # trax alone needs gym, which the README's installs leave out.
    gym = importlib.util.find_spec('gym') is not None
    assert (result['import_trax_s'] is None) is not gym
    for key in ('import_bridged_trax_s', 'first_run_s',
                'second_run_s', 'no_cache_run_s'):
        assert result[key] > 0, key
    # Timings of separate processes swing with the machine's load, so only
    # the derived figure is checked, not one timing against another.
    assert result['second_run_speedup'] == (result['first_run_s']
                                            / result['second_run_s'])


def test_solve_benchmark(tmp_path):
    result = _run(bench_solve.main, tmp_path, '--gin_files=codelab.gin',
                  '--eval_every=2', '--target=0.0')
    (row,) = result['rows']
    assert row['solved'] and row['step'] == 2 and row['seconds'] > 0


def test_a_typo_is_refused_before_any_run(tmp_path, capsys):
    for main in (bench_train.main, bench_startup.main, bench_solve.main):
        flag = ('--gin_file=nope.gin' if main is bench_startup.main
                else '--gin_files=nope.gin')
        assert main(['prog', f'--json={tmp_path}/x.json', flag]) == 2
        err = capsys.readouterr().err
        assert err.startswith('error: ') and 'nope.gin' in err
        assert not (tmp_path / 'x.json').exists()
    for pools in ('--cpu_threads=zero', '--cpu_threads=0'):
        assert bench_train.main(['prog', f'--json={tmp_path}/x.json',
                                 pools]) == 2
        assert '--cpu_threads takes integers' in capsys.readouterr().err
        assert not (tmp_path / 'x.json').exists()


def test_profile_lists_the_costliest_kernels_of_a_step(capsys):
    assert profile_step.main(['prog', '--gin_file=codelab.gin', '--calls=1',
                              '--top=3']) == 0
    out = capsys.readouterr().out
    summary = next(line for line in out.splitlines() if 'kernels/step' in line)
    steps, wall, busy, kernels = (float(x) for x in re.findall(
        r'([\d.]+) (?:steps|us/step|kernels/step)', summary))
    assert steps == 100 and wall > 0 and busy > 0
    assert kernels > 100  # codelab's step: hundreds of small kernels
    lines = out.splitlines()
    first = lines.index('| kernel | us/step | share of busy | runs/step |') + 2
    rows = [line.split(' | ') for line in itertools.takewhile(
        lambda line: line.startswith('| '), lines[first:])]
    times = [float(row[1]) for row in rows]
    assert len(rows) == 3 and times == sorted(times, reverse=True)
    assert all(t > 0 for t in times) and sum(times) < busy


def test_profile_counts_a_product_as_often_as_its_loop_runs_it():
    """XLA's cost analysis counts a loop body once; product_flops multiplies
    it by the trip count."""
    import jax
    import jax.numpy as jnp
    x = jnp.ones((64, 48), jnp.float32)
    w = jnp.ones((48, 48), jnp.float32)

    def f(x, w):
        return jax.lax.fori_loop(0, 3, lambda i, y: jnp.tanh(y @ w), x)

    hlo = jax.jit(f).lower(x, w).compile().as_text()
    assert profile_step.product_flops(hlo) == 3 * 2 * 64 * 48 * 48


def test_profile_at_a_length_splits_the_time_of_reformers_step(tmp_path,
                                                                capsys):
    result = _run(profile_step.main, tmp_path, '--lengths=128', '--calls=1',
                  '--top=2')
    (row,) = result['results']
    assert row['label'] == 'ReformerLM at 128' and row['steps'] == 2
    assert row['step_gflop'] > 0 and 0 < row['share_of_matmul_rate'] < 1
    for axis in ('kind', 'layer', 'pass'):
        assert abs(sum(row['shares'][axis].values()) - 1) < 1e-9, axis
    # LSH sorts; trax's attention recomputes its forward in its backward.
    assert row['shares']['kind']['sorts'] > 0
    assert row['shares']['layer']['attention'] > 0.3
    assert row['shares']['pass']['recomputed forward'] > 0
    assert 0 <= row['host_share'] < 1
    out = capsys.readouterr().out
    assert '| ReformerLM at 128 |' in out and 'by pass: forward' in out


def test_profile_takes_lengths_or_a_gin_file_not_both(capsys):
    assert profile_step.main(['prog', '--lengths=128',
                              '--gin_file=codelab.gin']) == 2
    assert 'not both' in capsys.readouterr().err
    assert profile_step.main(['prog', '--lengths=7']) == 2
    assert 'even ints' in capsys.readouterr().err


def test_profile_refuses_a_missing_or_unknown_experiment(capsys):
    assert profile_step.main(['prog']) == 2
    assert 'give --gin_file' in capsys.readouterr().err
    assert profile_step.main(['prog', '--gin_file=nope.gin']) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'nope.gin' in err
