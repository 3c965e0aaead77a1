"""scripts/benchmarks/length.py at a tiny size: real runs, watchdog, outputs."""
import json
import os

import pytest

from experiments import main as experiments_main
from scripts.benchmarks import length as bench_length
from scripts.benchmarks import length_workers as workers

TINY = ['--d_model=16', '--d_ff=32', '--n_heads=2', '--chunk_len=16',
        '--tokens_per_interval=64', '--intervals=1', '--progress_every=5']


def _run(tmp_path, *flags):
    json_path = tmp_path / 'out' / 'length.json'
    status = bench_length.main(['bench_length', *TINY, f'--json={json_path}',
                                f'--work_dir={tmp_path}/work', *flags])
    return status, json_path


def _is_png(path):
    with open(path, 'rb') as f:
        return f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_tiny_run_measures_each_model_in_its_own_process(tmp_path, capsys):
    # One experiments.main run (TransformerLM's differs only in bindings,
    # checked below) and reformer-pytorch where installed.
    status, json_path = _run(tmp_path, '--lengths=64',
                             '--models=reformer,pytorch_reformer')
    out = capsys.readouterr().out
    assert status == 0, out
    result = json.loads(json_path.read_text())
    expected = ['reformer']
    if bench_length.torch_missing():  # as in CI: one line, not an error
        assert ("reformer-pytorch: skipped, PyTorch or reformer-pytorch is "
                "not installed (install the benchmark extra: pip install -c "
                "constraints.txt -e '.[bench]')") in out
    else:
        expected.append('pytorch_reformer')
    assert [r['model'] for r in result['rows']] == expected
    for row in result['rows']:
        assert row['status'] == 'ok', row
        assert row['length'] == 64 and row['interval_steps'] == 2
        for key in ('seconds_per_step', 'tokens_per_second', 'peak_rss_gb'):
            assert row[key] > 0, (key, row)
        assert row['tokens_per_second'] == pytest.approx(
            64 / row['seconds_per_step'])
        assert f'| {row["label"]} | 64 |' in out
    assert result['longest'] == {
        m: {'longest_ok': 64, 'stopped_by': None} for m in expected}
    assert result['machine']['cpu_count'] == os.cpu_count()
    assert result['machine']['trax'] == '1.4.1'
    assert result['plots'] == ['length_time_per_token.png',
                               'length_memory.png']
    assert all(_is_png(json_path.parent / p) for p in result['plots'])
    assert '[1/' in out and 'elapsed' in out  # progress lines
    # The runs' directories are removed; their logs stay.
    assert not (tmp_path / 'work' / 'runs' / 'reformer_64').exists()
    assert (tmp_path / 'work' / 'logs' / 'reformer_64.log').exists()
    assert sorted(os.listdir(json_path.parent)) == [
        'length.json', 'length_memory.png', 'length_time_per_token.png']


def test_watchdog_kills_a_run_over_the_limit_and_skips_longer_lengths(
        tmp_path, capsys):
    status, json_path = _run(tmp_path, '--lengths=64,128',
                             '--models=transformer', '--memory_limit_gb=0.2')
    out = capsys.readouterr().out
    assert status == 0, out
    result = json.loads(json_path.read_text())
    [row] = result['rows']  # 128 never ran
    assert row['length'] == 64
    assert row['status'] == 'out of memory (> 0.2 GB)'
    assert row['peak_rss_gb'] > 0.2
    assert result['longest'] == {'transformer': {
        'longest_ok': None, 'stopped_by': '64: out of memory (> 0.2 GB)'}}
    assert all(_is_png(json_path.parent / p) for p in result['plots'])
    assert '| TransformerLM (this project) | none |' in out


def test_raw_trax_worker_times_steps():
    cfg = dict(length=32, vocab_size=8, batch_size=1, seed=0, d_model=16,
               d_ff=32, n_layers=1, n_heads=2, n_hashes=2, chunk_len=16,
               ff_chunk_size=16)
    [seconds] = workers.time_steps(workers.trax_step(cfg), 2, 1)
    assert seconds > 0


@pytest.mark.parametrize('key', ['reformer', 'transformer'])
def test_bindings_make_a_valid_experiment(key, capsys):
    settings = bench_length.Settings(
        d_model=32, d_ff=64, n_layers=1, n_heads=4, n_hashes=4, chunk_len=32,
        ff_chunk_size=64, batch_size=2, vocab_size=16, seed=3)
    model = bench_length.MODELS[key]
    params = bench_length.gin_params(model, settings, 128, 2, 2)
    assert experiments_main.run([model.gin_file], params, dry_run=True) == 0
    config = capsys.readouterr().out
    for line in ('n_steps = 6', 'eval_every = 2', 'n_eval_batches = 1',
                 'd_model = 32', 'max_len = 128'):
        assert line in config
    if key == 'reformer':
        assert 'ff_chunk_size = 64' in config and 'n_hashes = 4' in config


def test_interval_steps_keep_trax_second_compile_in_the_warm_up():
    assert bench_length.interval_steps(1024, 1, 32768) == 32
    assert bench_length.interval_steps(65536, 1, 32768) == 2
    assert bench_length.interval_steps(64, 1, 64) == 2


@pytest.mark.parametrize('flags, message', [
    (['--lengths=96', '--chunk_len=64'], 'not a multiple of --chunk_len'),
    (['--lengths=x'], '--lengths must be ints'),
    (['--models=reformer,gpt'], '--models: unknown gpt'),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, flags, message):
    assert bench_length.main(['bench_length', *flags,
                              f'--json={tmp_path}/x.json',
                              f'--work_dir={tmp_path}/work']) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err
    assert not os.listdir(tmp_path)


def test_without_torch_the_pytorch_column_is_skipped(tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.setattr(bench_length, 'torch_missing', lambda: True)
    assert bench_length.main(['bench_length', '--models=pytorch_reformer',
                              f'--json={tmp_path}/x.json']) == 2
    captured = capsys.readouterr()
    assert "-e '.[bench]'" in captured.out
    assert 'error: no model left to measure' in captured.err
