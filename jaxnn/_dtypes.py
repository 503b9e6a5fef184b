"""Dtype promotion written out, shared by the layers and the optimizers.

Layers and optimizers cast their operands to the dtype computed here themselves, so they behave the
same whether or not the user runs JAX with ``jax_numpy_dtype_promotion="strict"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_dtype(*dtypes) -> jnp.dtype:
    """The dtype that operands of ``dtypes`` are computed in: JAX's standard promotion of them."""
    # Canonicalizing first maps NumPy's float64 to float32 when x64 is off, silently, as JAX
    # does for the arrays themselves; without it jnp warns that float64 is unavailable.
    with jax.numpy_dtype_promotion("standard"):
        return jnp.result_type(*[jax.dtypes.canonicalize_dtype(dtype) for dtype in dtypes])


def at_least_float32(x: jax.Array) -> jax.Array:
    """``x`` in float32, or in its own dtype when that is wider (float64)."""
    return x.astype(compute_dtype(x.dtype, jnp.float32))
