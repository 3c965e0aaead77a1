r"""One trained run evaluated under other attention settings, as a table.

    python -m scripts.benchmarks.settings --output_dir=runs/reformer_copy \
        --json=docs/benchmarks/settings.json

For the run as trained and under each --setting (a gin binding, as for
`experiments.evaluate --gin_param`), the eval split's teacher-forced
accuracy and sequence accuracy and the decoded exact match, through
`experiments.evaluate`'s own evaluation. Prints the table and saves it as
JSON (--json), with where the run was trained.
"""
from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from experiments import cli, compile_cache, evaluate, manifest, restore
from scripts.benchmarks import common

FLAGS = flags.FlagValues()
flags.DEFINE_string('output_dir', 'runs/reformer_copy', 'The trained run.',
                    flag_values=FLAGS)
flags.DEFINE_multi_string(
    'setting', ["models.ReformerLM.attention='full'",
                'models.ReformerLM.n_hashes=1', 'models.ReformerLM.n_hashes=4',
                'models.ReformerLM.n_hashes=8'],
    'A gin binding to evaluate the run under; repeatable.', flag_values=FLAGS)
flags.DEFINE_string('json', 'bench_settings.json', 'Where to save the '
                    'results.', flag_values=FLAGS)

METRICS = ('accuracy', 'sequence_accuracy', 'exact_match')


def format_table(rows: Sequence[dict]) -> str:
    lines = ['| evaluated with | ' + ' | '.join(METRICS) + ' |',
             '|---|' + '---|' * len(METRICS)]
    for row in rows:
        setting = f'`{row["setting"]}`' if row['setting'] else 'as trained'
        lines.append(f'| {setting} | ' + ' | '.join(
            '' if row['metrics'].get(m) is None
            else f'{row["metrics"][m]:.4f}' for m in METRICS) + ' |')
    return '\n'.join(lines)


def _command(args: list[str]) -> int:
    common.check_inputs(FLAGS.json)
    compile_cache.enable()
    # Every setting is checked (restored) before any is evaluated.
    runs = [(setting, restore.restore(FLAGS.output_dir,
                                      [setting] if setting else []))
            for setting in [''] + FLAGS.setting]
    rows = []
    for setting, restored in runs:
        rows.append({'setting': setting,
                     'metrics': evaluate.evaluate(restored)})
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    exp = runs[0][1].experiment
    starts = manifest.read(FLAGS.output_dir)
    trained = (f'{FLAGS.output_dir} at step {runs[0][1].step}, trained on '
               + (manifest.describe(starts[-1]) if starts else 'an unknown '
                  'machine'))
    about = (f'{exp.n_eval_batches * exp.task.batch_size} eval sequences of '
             f'{exp.task.name}, length {exp.task.length}; {trained}')
    print(f'\n{about}:\n{format_table(rows)}')
    common.save_json(FLAGS.json, {'about': about, 'rows': rows})
    return 0


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
