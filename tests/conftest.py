"""Test configuration: strict promotion so that silent broadcasting or dtype bugs fail loudly."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
