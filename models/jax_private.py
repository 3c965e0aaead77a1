"""Every private JAX API this project uses, listed in one place.

A JAX release may move or drop any of these without notice, so nothing
imports them directly: each use goes through `get`, and
tests/test_architecture.py checks every entry of `APIS` against the
installed JAX, failing with the entry's name when one has gone. (It sits in
models/, the lowest layer, because the trax bridge needs it too.)
"""
from __future__ import annotations

import importlib

# (module, attribute or None for the module itself) -> who uses it, and why.
APIS = {
    ('jax._src.xla_bridge', 'backends_are_initialized'):
        'experiments/xla_cpu.py: XLA:CPU settings apply only before the '
        'client starts',
    ('jax._src.random.threefry2x32', 'threefry2x32_p'):
        'experiments/xla_cpu.py: the random-bit primitive, lowered unrolled',
    ('jax._src.random.threefry2x32', '_threefry2x32_lowering_rule'):
        'experiments/xla_cpu.py: JAX\'s unrolled lowering of it',
    ('jax._src.lax.lax', 'dot_general_p'):
        'experiments/xla_cpu.py: the product primitive, lowered in standard '
        'form',
    ('jax._src.lax.lax', '_dot_general_lower'):
        'experiments/xla_cpu.py: JAX\'s own lowering of it, the fallback',
    ('jaxlib._jax', None):
        'models/trax_bridge.py: what trax imports as jax.lib.xla_extension',
}


class MissingPrivateApi(ImportError):
    """The installed JAX lacks an entry of APIS."""


def get(module: str, attribute: str | None = None):
    """`module.attribute` (or the module), which must be listed in APIS."""
    if (module, attribute) not in APIS:
        raise KeyError(f'{module}.{attribute} is not listed in '
                       'models/jax_private.py APIS')
    name = module if attribute is None else f'{module}.{attribute}'
    try:
        found = importlib.import_module(module)
        return found if attribute is None else getattr(found, attribute)
    except (ImportError, AttributeError) as e:
        raise MissingPrivateApi(
            f'this JAX has no {name} (used by {APIS[module, attribute]}): '
            f'{e}') from e
