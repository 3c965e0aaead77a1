"""The code's shape, checked: imports run one way (scripts -> experiments ->
models, tasks) without circles, trax is reached only through the bridge, and
every private JAX API in use is listed and present."""
import ast
import importlib.util
import os

import pytest

from models import jax_private

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A package may import itself and the packages ranked below it.
RANKS = {'gin_configs': 0, 'models': 0, 'tasks': 0, 'experiments': 1,
         'scripts': 2}
BRIDGE = 'models.trax_bridge'
PRIVATE = 'models.jax_private'


def _modules(packages):
    """{dotted module name: path} of every .py file under `packages`."""
    found = {}
    for package in packages:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep,
                                                                      '.')
                    found[dotted.removesuffix('.__init__')] = path
    return found


def _imports(path, modules=()):
    """(line, dotted name) of every import in the file, nested ones too;
    `from a import b` gives a.b where that is one of `modules`, else a."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                name = f'{node.module}.{alias.name}'
                yield node.lineno, name if name in modules else node.module


PROJECT = _modules(RANKS)


def _project_imports(module):
    """The project modules `module` imports (names that are modules)."""
    return {(line, name) for line, name in _imports(PROJECT[module], PROJECT)
            if name in PROJECT and name != module}


def test_imports_run_from_scripts_to_experiments_to_models_and_tasks():
    wrong = []
    for module in PROJECT:
        package = module.split('.')[0]
        for line, name in _project_imports(module):
            target = name.split('.')[0]
            if target != package and RANKS[target] >= RANKS[package]:
                wrong.append(f'{PROJECT[module]}:{line} imports {name}')
    assert not wrong, '\n'.join(sorted(wrong))


def test_no_module_imports_itself_through_a_circle():
    graph = {m: {name for _, name in _project_imports(m)} for m in PROJECT}
    done, path = set(), []

    def visit(module):
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail('import circle: ' + ' -> '.join(cycle))
        if module in done:
            return
        path.append(module)
        for name in sorted(graph[module]):
            visit(name)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_checks_above_see_real_edges():
    # They would pass vacuously if the parsing found nothing.
    assert ('experiments.training' in
            {name for _, name in _project_imports('experiments.main')})
    assert any(name == BRIDGE for _, name in
               _project_imports('models.language_models'))


def _everything():
    return {**PROJECT, **_modules(['tests'])}


def test_only_the_bridge_imports_trax():
    direct = [f'{path}:{line} imports {name}'
              for module, path in _everything().items() if module != BRIDGE
              for line, name in _imports(path)
              if name == 'trax' or name.startswith('trax.')]
    assert not direct, ('import trax through models.trax_bridge:\n'
                        + '\n'.join(sorted(direct)))


def test_private_jax_apis_go_through_one_list():
    direct = [f'{path}:{line} imports {name}'
              for module, path in _everything().items() if module != PRIVATE
              for line, name in _imports(path)
              if name.startswith(('jax._src', 'jaxlib._'))]
    assert not direct, ('list private JAX APIs in models/jax_private.py:\n'
                        + '\n'.join(sorted(direct)))


@pytest.mark.parametrize('module, attribute', sorted(
    jax_private.APIS, key=str), ids=lambda x: str(x))
def test_each_listed_private_jax_api_exists(module, attribute):
    # Fails naming the entry, and who needs it, when a JAX upgrade drops it.
    assert jax_private.get(module, attribute) is not None


def test_an_unlisted_or_missing_private_api_is_named():
    with pytest.raises(KeyError, match='not listed'):
        jax_private.get('jax._src.core', 'Primitive')
    jax_private.APIS[('jax._src.xla_bridge', 'no_such_thing')] = 'a test'
    try:
        with pytest.raises(jax_private.MissingPrivateApi,
                           match='no jax._src.xla_bridge.no_such_thing '
                                 r'\(used by a test\)'):
            jax_private.get('jax._src.xla_bridge', 'no_such_thing')
    finally:
        del jax_private.APIS[('jax._src.xla_bridge', 'no_such_thing')]


def test_every_package_says_what_it_holds():
    for module, path in PROJECT.items():
        if path.endswith('__init__.py'):
            with open(path) as f:
                assert ast.get_docstring(ast.parse(f.read())), path


def test_a_moved_command_names_its_new_spelling(capsys):
    with pytest.raises(ImportError, match='scripts.bench_train is now '
                                          'scripts.benchmarks.train'):
        importlib.import_module('scripts.bench_train')
    spec = importlib.util.find_spec('scripts.table2')
    with pytest.raises(SystemExit) as exit_:
        exec(spec.loader.get_code('scripts.table2'), {})
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ('error: scripts.table2 is now '
                                       'scripts.paper.table2\n')
