"""Model specs, registered with gin under the `models` module, and the
project's way to trax.

Gin files select them as `models.TransformerLM` / `models.ReformerLM`; the full
selector keeps gin from matching trax's own `trax.models.*` of the same name.
favor is FAVOR attention with a decoding state; visible_self is trax's
shared-QK full attention without its mask on each query's own key (the
Table 2 ablations); trax_bridge is the one
module that imports trax (patched for current JAX); jax_private lists the
private JAX APIs the project uses.
"""
import gin

from models.language_models import (ATTENTION_TYPES, POS_TYPES,
                                    ModelConfigError, ReformerLM,
                                    TransformerLM)

for _spec in (TransformerLM, ReformerLM):
    gin.external_configurable(_spec, module='models')

__all__ = ['ATTENTION_TYPES', 'POS_TYPES', 'ModelConfigError', 'ReformerLM',
           'TransformerLM']
