"""The commands around experiments: sweeps, their reports, benchmarks and
the paper reproductions.

    python -m scripts.sweep --gin_file=sweeps/reformer_lsh.gin   # run a sweep
    python -m scripts.report runs/sweeps/reformer_lsh            # its tables
    python -m scripts.convert_checkpoints --output_dir=runs/...  # old runs
    python -m scripts.benchmarks.<train|decode|length|solve|startup|profile_step>
    python -m scripts.benchmarks.tables                       # docs/ tables from their JSON
    python -m scripts.paper.table2                               # Reformer's Table 2

sweeps/ holds what the sweep command is made of (sweep files and their
trials, the sweep directory, the local and Cloud TPU runners).
"""
from experiments import moved

moved.register({
    **{f'scripts.bench_{name}': f'scripts.benchmarks.{name}'
       for name in ('decode', 'length', 'length_workers', 'solve', 'startup',
                    'train')},
    'scripts.profile_step': 'scripts.benchmarks.profile_step',
    'scripts.table2': 'scripts.paper.table2',
})
