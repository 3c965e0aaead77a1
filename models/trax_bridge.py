"""Bridge trax 1.4.1 to current JAX (0.10.x); the project's one way to trax.

    from models.trax_bridge import shapes, tl, trax

No other module imports trax (tests/test_architecture.py checks it), so none
can reach trax unpatched. Importing this imports jax, patches it, imports trax
(TensorFlow waits until something uses it) and patches trax; `apply()` runs
once at import and is idempotent. Each patch is one short function
below whose first comment names the symptom it fixes (docs/trax_bridge.md
lists them). Patches replace module attributes of jax/trax in memory, never
files on disk, and restore trax-era behaviour. trax's own tests run under
this bridge with `python -m experiments.trax_upstream_tests`.
"""
import collections.abc
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import types
from typing import Any, Callable, Sequence

# Must precede the first TF import (when something needs TF): hide TF's C++ INFO
# logs; warnings and errors still print. TF 2.21's load-time lines (oneDNN,
# "Could not find cuda drivers") bypass it and still appear.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from models import jax_private  # noqa: E402

_APPLIED = False


# ---------------------------------------------------------------- noise ----

def _quiet_gym_banner() -> None:
    # Symptom: every `import trax` prints gym's 4-line "unmaintained" banner
    # (gym is imported by trax.rl, which we do not use).
    try:
        import gym_notices.notices as notices
        notices.notices.pop(importlib.metadata.version('gym'), None)
    except Exception:  # gym/gym_notices absent or different: nothing to hide
        pass


def _quiet_jax_host_count() -> None:
    # Symptom: every training.Loop warns "jax.process_count has been renamed
    # to jax.process_count" (trax calls the deprecated alias jax.host_count).
    jax.host_count = jax.process_count


# ------------------------------------------------------------------ jax ----

def _jax_tree_aliases() -> None:
    # Symptom: AttributeError: module 'jax' has no attribute 'tree_map'
    # (also tree_structure/..., removed in JAX 0.6; trax tests use them).
    tu = jax.tree_util
    for name, fn in (('tree_map', tu.tree_map),
                     ('tree_structure', tu.tree_structure),
                     ('tree_flatten', tu.tree_flatten),
                     ('tree_unflatten', tu.tree_unflatten),
                     ('tree_leaves', tu.tree_leaves),
                     ('tree_multimap', tu.tree_map)):
        if not hasattr(jax, name):
            setattr(jax, name, fn)


def _jax_config_module() -> None:
    # Symptom: `from jax.config import config` -> ModuleNotFoundError
    # (jax.config is now an object, not a module; trax tests import it).
    if 'jax.config' not in sys.modules:
        mod = types.ModuleType('jax.config')
        mod.config = jax.config
        sys.modules['jax.config'] = mod


def _jax_lib_modules() -> None:
    # Symptom: `python -m trax.trainer` -> No module named
    # 'jax.lib.xla_extension'; trainer.py also reaches jax.lib.xla_bridge.
    import jax.extend.backend
    for name, mod in (('xla_extension', jax_private.get('jaxlib._jax')),
                      ('xla_bridge', jax.extend.backend)):
        sys.modules.setdefault('jax.lib.' + name, mod)
        if not hasattr(jax.lib, name):
            setattr(jax.lib, name, mod)


def _jax_xla_computation() -> None:
    # Symptom: AttributeError: jax.xla_computation (removed in JAX 0.4.30);
    # trax's Trainer.save_computation_graphs dumps HLO with it.
    if hasattr(jax, 'xla_computation'):
        return

    def xla_computation(fun: Callable, static_argnums=(), **unused):
        def lower(*args, **kwargs):
            lowered = jax.jit(fun, static_argnums=static_argnums).lower(
                *args, **kwargs)
            return lowered.compiler_ir('hlo')  # has as_hlo_text/_dot_graph
        return lower
    jax.xla_computation = xla_computation


def _jax_device_put_replicated() -> None:
    # Symptom: AttributeError: jax.device_put_replicated (removed in JAX
    # 0.10); trax replicates weights/slots with it when n_devices > 1.
    if 'device_put_replicated' in vars(jax):
        return

    def device_put_replicated(x: Any, devices: Sequence[Any]) -> Any:
        # Same result as the old API: a new leading axis, one slice per
        # device, sharded the way pmap expects its inputs.
        mesh = jax.sharding.Mesh(np.array(devices), ('replica',))
        sharding = jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec('replica'))

        def put(leaf):
            leaf = jnp.asarray(leaf)
            stacked = jnp.broadcast_to(leaf, (len(devices),) + leaf.shape)
            return jax.device_put(stacked, sharding)
        return jax.tree_util.tree_map(put, x)
    jax.device_put_replicated = device_put_replicated


def _jax_threefry_partitionable() -> None:
    # Symptom: a seed gives other random numbers than on the JAX trax 1.4.1
    # was built for: JAX flipped jax_threefry_partitionable to True (0.5).
    # trax and its tests were written for False, and trax never shards one
    # random draw across devices (it uses pmap), so False costs nothing.
    # Process-wide: our own jax.random calls follow it too.
    jax.config.update('jax_threefry_partitionable', False)


# ----------------------------------------------------------------- trax ----

def _trax_tree_unflatten() -> None:
    # Symptom: resuming training.Loop in an existing output_dir raises
    # TypeError: unsupported operand type(s) for ==: 'ArrayImpl' and 'tuple'
    # (trax issue 1770: `tree in copy_from_tree` compares arrays with ==).
    tnp = sys.modules['trax.fastmath.numpy']
    original = tnp.tree_unflatten
    if getattr(original, '_bridged', False):
        return

    def tree_unflatten(flat, tree, copy_from_tree=None):
        # Markers in copy_from_tree are containers/None; a leaf matches one
        # only by identity, so never call an array's ==.
        if (copy_from_tree is not None
                and not isinstance(tree, (list, tuple, dict, type(None)))):
            if any(tree is c for c in copy_from_tree):
                return tree, flat
            copy_from_tree = None
        return original(flat, tree, copy_from_tree=copy_from_tree)
    tree_unflatten._bridged = True
    tree_unflatten.__doc__ = original.__doc__
    tnp.tree_unflatten = tree_unflatten  # used by its own recursion
    import trax.fastmath
    trax.fastmath.tree_unflatten = tree_unflatten


def _trax_cond_keywords() -> None:
    # Symptom: ReformerLM predict mode: lax.cond() got an unexpected keyword
    # argument 'true_operand' (efficient_attention uses the pre-2020 form).
    from trax.fastmath.jax import JAX_BACKEND
    if getattr(JAX_BACKEND['cond'], '_bridged', False):
        return
    cond = JAX_BACKEND['cond']

    def cond_any_form(*args, **kwargs):
        if 'true_operand' in kwargs:
            k = kwargs
            return jax.lax.cond(
                k['pred'],
                lambda ops: k['true_fun'](ops[0]),
                lambda ops: k['false_fun'](ops[1]),
                (k['true_operand'], k['false_operand']))
        return cond(*args, **kwargs)
    cond_any_form._bridged = True
    JAX_BACKEND['cond'] = cond_any_form


def _trax_stop_gradient_scalars() -> None:
    # Symptom: ReformerLM predict mode: TracerBoolConversionError at
    # `if q_len > 1` — stop_gradient(python int) used to return the int, now
    # an array. A Python scalar has no gradient, so pass it through.
    from trax.fastmath.jax import JAX_BACKEND
    stop_gradient = JAX_BACKEND['stop_gradient']
    if getattr(stop_gradient, '_bridged', False):
        return

    def stop_gradient_keep_scalars(x):
        if isinstance(x, (bool, int, float)):
            return x
        return stop_gradient(x)
    stop_gradient_keep_scalars._bridged = True
    JAX_BACKEND['stop_gradient'] = stop_gradient_keep_scalars


def _host_uncommitted(x):
    """Concrete jax arrays in ``x`` -> numpy (host memory, no device pin)."""
    def to_host(y):
        if isinstance(y, jax.Array) and not isinstance(y, jax.core.Tracer):
            return np.asarray(y)
        return y
    return jax.tree_util.tree_map(to_host, x)


def _trax_on_cpu_uncommitted() -> None:
    # Symptom: n_devices > 1: pmap raises "Sharding passed to jit does not
    # match" for optimizer slots that tl.on_cpu committed to cpu:0 (pmap no
    # longer moves committed arrays); on one GPU, jit silently runs a step
    # whose args include a CPU-committed array on the CPU. Host numpy arrays
    # are still in CPU memory but uncommitted: jit/pmap place them.
    import trax.layers
    from trax import fastmath
    from trax.layers import acceleration
    if getattr(acceleration.on_cpu, '_bridged', False):
        return

    def on_cpu(x):
        """Puts ``x`` in CPU (host) memory, uncommitted to any device."""
        if not fastmath.is_backend(fastmath.Backend.JAX):
            return x
        return _host_uncommitted(x)
    on_cpu._bridged = True
    acceleration.on_cpu = on_cpu
    trax.layers.on_cpu = on_cpu


def _trax_cpu_jit_uncommitted() -> None:
    # Symptom: use_memory_efficient_trainer with n_devices > 1: "Sharding
    # passed to jit does not match" for the per-device rngs that
    # ReversibleSerialTrainer makes with jit(backend='cpu') (committed to
    # cpu:0). Return such results as uncommitted host arrays, like on_cpu.
    from trax.fastmath.jax import JAX_BACKEND
    jit = JAX_BACKEND['jit']
    if getattr(jit, '_bridged', False):
        return

    def jit_cpu_results_uncommitted(*args, **kwargs):
        jitted = jit(*args, **kwargs)
        if kwargs.get('backend') != 'cpu':
            return jitted
        return lambda *a, **kw: _host_uncommitted(jitted(*a, **kw))
    jit_cpu_results_uncommitted._bridged = True
    JAX_BACKEND['jit'] = jit_cpu_results_uncommitted


def _trax_reshape_by_device_uncommitted() -> None:
    # Symptom: n_devices > 1: autoregressive_sample fails at its 2nd token
    # with "Sharding passed to jit does not match": the fed-back sample is a
    # committed, replicated pmap result. Hand pmap an uncommitted copy.
    import trax.layers
    from trax.layers import acceleration
    original = acceleration.reshape_by_device
    if getattr(original, '_bridged', False):
        return

    def reshape_by_device(x, n_devices, pure_np=False):
        return _host_uncommitted(original(x, n_devices, pure_np=pure_np))
    reshape_by_device._bridged = True
    reshape_by_device.__doc__ = original.__doc__
    acceleration.reshape_by_device = reshape_by_device  # used by jit_forward
    trax.layers.reshape_by_device = reshape_by_device


# ----------------------------------------------------- TensorFlow, later ----

# trax imports TensorFlow (and tensorflow_datasets, tensorflow_text) at
# `import trax`, but training and decoding with JAX never call it: the
# import alone costs about 3.5 s and 0.55 GB of resident memory in every
# process. While trax imports, these names load as stand-ins; the first read
# of an attribute a stand-in lacks imports the real module (and from then on
# every stand-in forwards to its real module), so code that does use TF
# (weight files through tf.io.gfile, trax's own tests, trax.data) still
# works, only later.
_TF_ROOTS = ('tensorflow', 'tensorflow_datasets', 'tensorflow_text')
# trax modules that read TF attributes while they import: they wait too.
_TF_USING_TRAX_MODULES = ('trax.fastmath.tf', 'trax.jaxboard',
                          'trax.trax2keras')


def _deferred(name: str) -> bool:
    return name.partition('.')[0] in _TF_ROOTS or name in _TF_USING_TRAX_MODULES


class _Later(types.ModuleType):
    """Stands in for a module until an attribute it lacks is read."""

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith('__'):  # import machinery and introspection
            raise AttributeError(attribute)
        return getattr(_real_module(self.__name__), attribute)


class _LaterFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of the deferred names with stand-ins."""

    def find_spec(self, name, path=None, target=None):
        if _deferred(name):
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None

    def create_module(self, spec) -> types.ModuleType:
        return _Later(spec.name)

    def exec_module(self, module) -> None:
        pass


_LATER_FINDER = _LaterFinder()


def _real_module(name: str) -> types.ModuleType:
    """The real module `name`, importing it (and ending all stand-ins)."""
    if _LATER_FINDER in sys.meta_path:
        sys.meta_path.remove(_LATER_FINDER)
        # type(), not isinstance(): that would load the lazy modules.
        for key in [k for k, m in list(sys.modules.items())
                    if type(m) is _Later]:
            del sys.modules[key]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != 'tensorflow':
            raise
        # The main install leaves TensorFlow out (setup.py): say where it is.
        raise ModuleNotFoundError(
            f"{error}: this trax feature uses TensorFlow, which only the "
            "'upstream' extra installs: pip install -c constraints.txt -e "
            "'.[upstream]'", name=error.name) from error


def tensorflow_loaded() -> bool:
    """Whether the real TensorFlow has been imported in this process."""
    module = sys.modules.get('tensorflow')
    return module is not None and not isinstance(module, _Later)


class _LaterMapping(collections.abc.Mapping):
    """A module-level dict of a deferred module, read when first used."""

    def __init__(self, module: str, attribute: str):
        self._module, self._attribute = module, attribute

    def _target(self) -> collections.abc.Mapping:
        return getattr(_real_module(self._module), self._attribute)

    def __getitem__(self, key):
        return self._target()[key]

    def __iter__(self):
        return iter(self._target())

    def __len__(self) -> int:
        return len(self._target())


def _later_as_keras(*args, **kwargs):
    """trax.AsKeras: builds the real class (a Keras layer) when first used."""
    return _real_module('trax.trax2keras').AsKeras(*args, **kwargs)


def _defer_tensorflow() -> None:
    # Symptom: `import trax` takes 5 s (through this bridge) and leaves
    # 0.55 GB of TensorFlow resident in a process that never uses it.
    if any(root in sys.modules for root in _TF_ROOTS):
        return  # already imported for real: stand-ins would split it
    if _LATER_FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _LATER_FINDER)
    # The two names trax reads from deferred modules while it imports.
    for name, preset in (
            ('trax.fastmath.tf',
             {'TF_BACKEND': _LaterMapping('trax.fastmath.tf', 'TF_BACKEND')}),
            ('trax.trax2keras', {'AsKeras': _later_as_keras})):
        module = importlib.util.module_from_spec(
            _LATER_FINDER.find_spec(name))
        module.__dict__.update(preset)
        sys.modules[name] = module


def _unlist_tensorflow_stand_ins() -> None:
    # Symptom: a plot imports all of TensorFlow (4 s, 0.5 GB): matplotlib
    # takes `sys.modules.get('tensorflow')` to mean TF is loaded and reads
    # its is_tensor. After trax has imported, the stand-ins it holds (as its
    # modules' `tf`) leave sys.modules, so such checks see no TensorFlow;
    # an import of it afterwards gets a stand-in again.
    for name in [n for n, m in list(sys.modules.items())
                 if n.partition('.')[0] in _TF_ROOTS and type(m) is _Later]:
        del sys.modules[name]


class _TensorFlowType(type):
    """isinstance against a TF type, False while TF is not imported (no
    object can be a TensorShape before TensorFlow exists)."""

    def __instancecheck__(cls, obj) -> bool:
        return tensorflow_loaded() and isinstance(
            obj, getattr(sys.modules['tensorflow'], cls.__name__))


def _trax_shape_checks_without_tensorflow() -> None:
    # Symptom: every ShapeDtype (each model init and signature) would import
    # TensorFlow: trax.shapes and trax.layers.core check isinstance(x,
    # tf.TensorShape / tf.DType), their only run-time uses of TF.
    import trax.layers.core
    import trax.shapes
    checks = types.SimpleNamespace(
        TensorShape=_TensorFlowType('TensorShape', (), {}),
        DType=_TensorFlowType('DType', (), {}))
    trax.shapes.tf = checks
    trax.layers.core.tf = checks


# ------------------------------------------------- packages left out ----

class _NotInstalled(types.ModuleType):
    """Stands in for a package that is not installed: reading any name it
    lacks raises the error that importing the package would have."""

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith('__'):  # import machinery and introspection
            raise AttributeError(attribute)
        _raise_not_installed(self.__name__)


def _raise_not_installed(name: str):
    root = name.partition('.')[0]
    raise ModuleNotFoundError(f'No module named {root!r}', name=root)


@contextlib.contextmanager
def _gym_placeholder():
    # Symptom: `import trax` -> ModuleNotFoundError: No module named 'gym'
    # (the main install leaves gym out: we do not use RL). trax.supervised
    # imports trax.rl, whose serializer classes read gym.spaces.Box,
    # Discrete and MultiDiscrete at import. While trax imports, gym is a
    # stand-in whose three classes raise that error when built (no object is
    # an instance of them), as does any other name trax.rl reads later.
    if 'gym' in sys.modules or importlib.util.find_spec('gym') is not None:
        yield
        return
    spaces = _NotInstalled('gym.spaces')
    for name in ('Box', 'Discrete', 'MultiDiscrete'):
        setattr(spaces, name, type(name, (), {
            '__init__': lambda *a, **k: _raise_not_installed('gym')}))
    gym = _NotInstalled('gym')
    gym.spaces = spaces
    sys.modules.update({'gym': gym, 'gym.spaces': spaces})
    try:
        yield
    finally:  # `import gym` elsewhere still fails as it should
        del sys.modules['gym'], sys.modules['gym.spaces']


# ---------------------------------------------------------------- speed ----

def _shallow_stack(context: int = 1) -> list:
    # inspect.stack() without source lines: frames, files and line numbers.
    records, frame = [], sys._getframe(1)
    while frame is not None:
        records.append(inspect.FrameInfo(
            frame, frame.f_code.co_filename, frame.f_lineno,
            frame.f_code.co_name, None, None))
        frame = frame.f_back
    return records


def _shallow_frameinfo(frame, context: int = 1) -> inspect.Traceback:
    return inspect.Traceback(frame.f_code.co_filename, frame.f_lineno,
                             frame.f_code.co_name, None, None)


@contextlib.contextmanager
def _shallow_inspect():
    # Symptom: `import trax` takes 18-31 s, most of it in inspect.stack():
    # trax's @assert_shape (65 uses at import, and more each time a model is
    # built) records its caller's file and line through inspect.stack(),
    # which looks up the source of every frame on the stack, scanning all of
    # sys.modules (thousands, with TensorFlow) for each import-machinery
    # frame. Only the caller's file and line are used; these give them
    # without touching sources. Global only while trax imports, then for
    # trax's assert_shape module alone.
    saved = inspect.stack, inspect.getframeinfo
    inspect.stack, inspect.getframeinfo = _shallow_stack, _shallow_frameinfo
    try:
        yield
    finally:
        inspect.stack, inspect.getframeinfo = saved
    shallow = types.ModuleType('inspect')
    shallow.__dict__.update(vars(inspect), stack=_shallow_stack,
                            getframeinfo=_shallow_frameinfo)
    # (trax.layers.assert_shape is the decorator; its module is here.)
    sys.modules['trax.layers.assert_shape'].inspect = shallow


_LAZY_MODULES = ('trax.data.tokenizer',)


class _LazyFinder(importlib.abc.MetaPathFinder):
    """Imports the modules in _LAZY_MODULES with a LazyLoader: each runs its
    body when a name of it is first read."""

    def find_spec(self, name, path=None, target=None):
        if name not in _LAZY_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def _lazy_tokenizer() -> None:
    # Symptom: 0.6 s of every `import trax` (a third of it, in every
    # command) is trax.data.tokenizer building the set of all letters and
    # digits of Unicode at import, for a text tokenizer we never call.
    if not any(isinstance(f, _LazyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _LazyFinder())


# ---------------------------------------------------------------- apply ----

_JAX_PATCHES = (
    _jax_tree_aliases,
    _jax_config_module,
    _jax_lib_modules,
    _jax_xla_computation,
    _jax_device_put_replicated,
    _jax_threefry_partitionable,
)
_TRAX_PATCHES = (
    _trax_tree_unflatten,
    _trax_cond_keywords,
    _trax_stop_gradient_scalars,
    _trax_on_cpu_uncommitted,
    _trax_cpu_jit_uncommitted,
    _trax_reshape_by_device_uncommitted,
    _trax_shape_checks_without_tensorflow,
)


def _require_trax() -> None:
    # Symptom: ModuleNotFoundError: No module named 'trax' after a plain
    # `pip install -e .`: trax is installed on its own, without its declared
    # dependencies (setup.py says why), so say how.
    if importlib.util.find_spec('trax') is None:
        raise ModuleNotFoundError(
            "No module named 'trax': install it as the README's set-up "
            'command does: pip install -c constraints.txt --no-deps trax',
            name='trax')


def apply() -> None:
    """Patches jax, imports trax and patches it; safe to call repeatedly."""
    global _APPLIED
    if _APPLIED:
        return
    _require_trax()
    _quiet_gym_banner()
    _quiet_jax_host_count()
    for patch in _JAX_PATCHES:
        patch()
    _defer_tensorflow()
    _lazy_tokenizer()
    with _shallow_inspect(), _gym_placeholder():
        import trax  # noqa: F401  (only after jax is patched)
    for patch in _TRAX_PATCHES:
        patch()
    _unlist_tensorflow_stand_ins()
    _APPLIED = True


apply()

# What the rest of the project uses of trax, patched.
import trax  # noqa: E402
tl = trax.layers
shapes = trax.shapes
