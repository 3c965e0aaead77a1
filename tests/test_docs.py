"""The README stays a front door, and the docs point at things that exist."""
import glob
import importlib.util
import os
import re

import pytest

from experiments.errors import ConfigError
from scripts.benchmarks import tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')
PAGES = [README] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))

LINK = re.compile(r'\]\(([^)\s]+)\)')  # [text](target) and ![alt](target)
# A command may wrap between `-m` and the module name.
PYTHON_M = re.compile(r'python3?\s+-m\s+([A-Za-z_][\w.]*\w)')


def _read(path):
    with open(path) as f:
        return f.read()


def _name(path):
    return os.path.relpath(path, ROOT)


def test_the_readme_is_at_most_10_kb():
    assert os.path.getsize(README) <= 10240


@pytest.mark.parametrize('page', PAGES, ids=_name)
def test_every_relative_link_points_at_a_file(page):
    targets = [t for t in LINK.findall(_read(page))
               if not re.match(r'[a-z]+:', t) and not t.startswith('#')]
    missing = [t for t in targets if not os.path.exists(os.path.join(
        os.path.dirname(page), t.split('#')[0]))]
    assert not missing, f'{_name(page)} links to missing files: {missing}'


def _wrong(module):
    """What is wrong with `python -m module`, or None."""
    top = module.split('.')[0]
    if not os.path.isdir(os.path.join(ROOT, top)):
        # Finding a submodule imports its package: `trax.trainer` would
        # import trax here, unpatched, before the bridge. Another project's
        # module names are that project's to keep.
        module = top
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # its parent package is missing
        spec = None
    if spec is None:
        return f'{module} does not exist'
    # experiments/moved.py keeps old names findable, so that running one
    # names the new spelling; its loader holds the mapping.
    new = getattr(spec.loader, 'moved', {}).get(module)
    return new and f'{module} is now {new}'


@pytest.mark.parametrize('page', PAGES, ids=_name)
def test_every_python_m_names_a_module_that_exists(page):
    wrong = [_wrong(m) for m in sorted(set(PYTHON_M.findall(_read(page))))]
    wrong = [w for w in wrong if w]
    assert not wrong, f'{_name(page)}: {"; ".join(wrong)}'


def test_the_module_check_sees_missing_and_moved_names():
    assert _wrong('scripts.no_such_command') == ('scripts.no_such_command '
                                                 'does not exist')
    assert _wrong('scripts.bench_train') == ('scripts.bench_train is now '
                                             'scripts.benchmarks.train')
    assert _wrong('scripts.benchmarks.train') is None


def test_the_measured_tables_match_their_json():
    assert tables.main(['tables', '--check']) == 0


def test_a_stale_table_is_made_anew_and_an_unclosed_one_refused():
    stale = '<!-- table: solve.json -->\n| old |\n<!-- end table -->\n'
    assert '| codelab.gin | 650 |' in tables.filled(stale, 'page')
    with pytest.raises(ConfigError, match='no "<!-- end table -->"'):
        tables.filled('<!-- table: solve.json -->\n', 'page')


def test_ci_runs_the_readmes_test_command_verbatim():
    with open(os.path.join(ROOT, '.ci', 'run')) as f:
        command = f.read().strip().splitlines()[-1]
    assert command.endswith('&& pytest')
    with open(os.path.join(ROOT, 'README.md')) as f:
        assert '    ' + command + '\n' in f.read()
