"""Test configuration: strict promotion so that silent broadcasting or dtype bugs fail loudly.

Also the fixtures and assertions that several test files share; a test file imports the plain
functions with ``from conftest import assert_bit_equal``.
"""

import contextlib

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


# Modules that run as a user would, with all of XLA's optimizations: the examples (whose short
# default-run tests opt out again, see test_examples.py) and the 1000-step trajectories compared
# with optax (a chaotic Rosenbrock run amplifies the rounding differences between optimized and
# unoptimized programs beyond their 1e-5 tolerance). The README's blocks are short programs whose
# time is compiling, like the other tests'.
OPTIMIZED_MODULES = ("test_examples", "test_against_optax")


# The files that take longest, longest first (seconds of one worker, default run, 2 cores).
# pytest-xdist hands out whole files (--dist loadfile) in collection order, each worker taking
# the next file as it nears the end of its last one; longest first, the two workers finish
# together instead of one running a long file alone at the end. Files not listed take under 3 s.
LONGEST_FIRST = (
    "layers/test_contract.py",  # 78
    "test_parallel.py",  # 37
    "layers/test_activations.py",  # 36
    "test_examples.py",  # 31
    "layers/test_recurrent.py",  # 30
    "test_readme.py",  # 28
    "optim/test_against_optax.py",  # 26
    "layers/test_normalization.py",  # 25
    "test_losses.py",  # 24
    "test_cli.py",  # 22
    "layers/test_pooling.py",  # 18
    "lab/test_lessons.py",  # 18
    "train/test_loop.py",  # 18
    "layers/test_conv.py",  # 17
    "layers/test_attention.py",  # 15
    "train/test_legacy_checkpoints.py",  # 13
    "optim/test_base.py",  # 11
    "train/test_step.py",  # 10
    "train/test_sweep.py",  # 9
    "test_models.py",  # 8
    "test_init.py",  # 8
    "test_properties.py",  # 7
    "layers/test_dense.py",  # 7
    "test_notebooks.py",  # 6
    "test_metrics.py",  # 4
    "layers/test_dropout.py",  # 4
    "train/test_entry_checks.py",  # 4
    "test_core.py",  # 4
    "optim/test_partition.py",  # 4
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith("tests/" + name)),
                    len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the order within a file and among the other files is kept


@contextlib.contextmanager
def most_optimizations_disabled():
    """XLA compiles without most optimizations inside: the same semantics, compiled faster."""
    saved = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", saved)


@pytest.fixture(scope="module", autouse=True)
def fast_compilation(request):
    """Compiling, not running, is what takes the time in the tests: their programs are small and
    run for milliseconds, so XLA skips most optimizations (the same semantics, compiled faster),
    except in :data:`OPTIMIZED_MODULES`."""
    if request.module.__name__.rpartition(".")[2] in OPTIMIZED_MODULES:
        yield
        return
    with most_optimizations_disabled():
        yield


def bits(leaf):
    """The raw bits of a leaf, so that equality is bit equality (typed keys by their key data)."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    array = np.asarray(leaf)
    return array.view(np.dtype(f"uint{8 * array.dtype.itemsize}"))


def assert_bit_equal(expected, got):
    """Same tree structure, and leaf by leaf the same type, dtype, shape and bits (NaN payloads
    and the sign of zero included)."""
    assert jax.tree_util.tree_structure(expected) == jax.tree_util.tree_structure(got)
    for want, have in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(got)):
        assert type(have) is type(want)
        assert have.dtype == want.dtype and have.shape == want.shape
        np.testing.assert_array_equal(bits(have), bits(want))


def assert_trees_equal(expected, got):
    """Same tree structure and equal values, whether the leaves are JAX or NumPy arrays."""
    assert jax.tree_util.tree_structure(expected) == jax.tree_util.tree_structure(got)
    for want, have in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(got)):
        np.testing.assert_array_equal(np.asarray(have), np.asarray(want))


def assert_trees_close(expected, got, atol=1e-6, rtol=1e-6):
    """Same tree structure, and every leaf of ``got`` within ``atol + rtol * |expected|``."""
    assert jax.tree_util.tree_structure(expected) == jax.tree_util.tree_structure(got)
    for want, have in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(got)):
        np.testing.assert_allclose(np.asarray(have), np.asarray(want), atol=atol, rtol=rtol)


def classification_data(n, features=4, classes=3, seed=0):
    """Labels from a random linear map of Gaussian inputs: learnable, and never degenerate."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = np.argmax(x @ rng.standard_normal((features, classes)), axis=1).astype(np.int32)
    return x, y


# Wall-clock measurements differ between runs; everything else in a history is reproducible.
TIMING = ("epoch_seconds", "samples_per_second")


def reproducible(history):
    """A history (or its JSON) without the wall-clock measurements."""
    return {name: values for name, values in history.items() if name not in TIMING}
