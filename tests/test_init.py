"""Tests for jaxnn.init: fans, closed-form moments, PyTorch's formulas, orthogonality, dtypes."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxnn import init

# A sample statistic may differ from its expectation by this many standard errors before a test
# fails; for a fixed key each check is deterministic, and a correct initializer fails one with
# probability below 1e-6.
STANDARD_ERRORS = 5.0
KS_MIN_P_VALUE = 1e-3

DENSE_SHAPE = (256, 512)  # fan_in 256, fan_out 512: unequal, so the modes differ
CONV_SHAPE = (3, 3, 64, 128)  # fan_in 3*3*64 = 576, fan_out 3*3*128 = 1152

# Fourth central moment over squared variance: 3 for a normal, 9/5 for a uniform on (-a, a)
# (E x^4 = a^4/5, var = a^2/3).
KURTOSIS = {"normal": 3.0, "uniform": 9.0 / 5.0}


def _float32(value):
    """``value`` rounded to float32, as the initializers receive their bounds."""
    return float(np.float32(value))


def _samples(initializer, shape, seed=0):
    return np.asarray(initializer(jax.random.key(seed), shape), dtype=np.float64)


def _assert_moments(values, mean, variance, distribution):
    """Sample mean and variance within STANDARD_ERRORS of the expected ones.

    The sample mean has standard error sqrt(var / n); the sample variance sqrt((mu4 - var^2) / n).
    """
    values = values.ravel()
    n = values.size
    mean_error = math.sqrt(variance / n)
    variance_error = variance * math.sqrt((KURTOSIS[distribution] - 1.0) / n)
    assert abs(values.mean() - mean) < STANDARD_ERRORS * mean_error, (values.mean(), mean)
    assert abs(values.var(ddof=1) - variance) < STANDARD_ERRORS * variance_error, (
        values.var(ddof=1),
        variance,
    )


def _assert_follows(values, distribution, mean, variance):
    """A Kolmogorov-Smirnov test does not reject the closed-form distribution."""
    if distribution == "normal":
        result = stats.kstest(values.ravel(), "norm", args=(mean, math.sqrt(variance)))
    else:
        half_width = math.sqrt(3.0 * variance)
        result = stats.kstest(values.ravel(), "uniform", args=(mean - half_width, 2 * half_width))
    assert result.pvalue > KS_MIN_P_VALUE, result


# ----------------------------------------------------------------------------------------------
# compute_fans


@pytest.mark.parametrize(
    "shape, fans",
    [
        ((7,), (7, 7)),
        ((3, 5), (3, 5)),
        ((5, 3), (5, 3)),
        ((3, 3, 16, 32), (144, 288)),  # 3*3*16, 3*3*32
        ((5, 2, 4, 6), (40, 60)),  # 5*2*4, 5*2*6
        ((7, 4, 10), (28, 70)),  # 7*4, 7*10
        ((2, 3, 4, 5, 6), (120, 144)),  # 2*3*4*5, 2*3*4*6
        ([4, 9], (4, 9)),
    ],
)
def test_compute_fans_matches_hand_worked_values(shape, fans):
    assert init.compute_fans(shape) == fans


# ----------------------------------------------------------------------------------------------
# Variance scaling: closed forms

NAMED = {
    # name: (factory, distribution, variance(fan_in, fan_out))
    "glorot_uniform": (init.glorot_uniform, "uniform", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
    "glorot_normal": (init.glorot_normal, "normal", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
    "he_uniform": (init.he_uniform, "uniform", lambda fan_in, fan_out: 2 / fan_in),
    "he_normal": (init.he_normal, "normal", lambda fan_in, fan_out: 2 / fan_in),
    "lecun_uniform": (init.lecun_uniform, "uniform", lambda fan_in, fan_out: 1 / fan_in),
    "lecun_normal": (init.lecun_normal, "normal", lambda fan_in, fan_out: 1 / fan_in),
    "xavier_uniform": (init.xavier_uniform, "uniform", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
    "xavier_normal": (init.xavier_normal, "normal", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
    "kaiming_uniform": (init.kaiming_uniform, "uniform", lambda fan_in, fan_out: 2 / fan_in),
    "kaiming_normal": (init.kaiming_normal, "normal", lambda fan_in, fan_out: 2 / fan_in),
    "variance_scaling_fan_out_normal": (
        lambda: init.variance_scaling(3.0, "fan_out", "normal"),
        "normal",
        lambda fan_in, fan_out: 3 / fan_out,
    ),
    "variance_scaling_fan_out_uniform": (
        lambda: init.variance_scaling(0.5, "fan_out", "uniform"),
        "uniform",
        lambda fan_in, fan_out: 0.5 / fan_out,
    ),
}
# Hand-worked fans of the two test shapes, independent of compute_fans.
FANS = {DENSE_SHAPE: (256, 512), CONV_SHAPE: (576, 1152)}
SHAPES = pytest.mark.parametrize("shape", [DENSE_SHAPE, CONV_SHAPE], ids=["dense", "conv"])
NAMED_PARAMS = pytest.mark.parametrize("name", list(NAMED))
UNIFORM_NAMES = [name for name in NAMED if NAMED[name][1] == "uniform"]
NORMAL_NAMES = [name for name in NAMED if NAMED[name][1] == "normal"]


@SHAPES
@NAMED_PARAMS
def test_variance_scaling_moments_match_closed_form(name, shape):
    factory, distribution, variance = NAMED[name]
    values = _samples(factory(), shape)
    assert values.shape == shape
    _assert_moments(values, 0.0, variance(*FANS[shape]), distribution)


@SHAPES
@NAMED_PARAMS
def test_variance_scaling_passes_ks_test(name, shape):
    factory, distribution, variance = NAMED[name]
    _assert_follows(_samples(factory(), shape, seed=1), distribution, 0.0, variance(*FANS[shape]))


@SHAPES
@pytest.mark.parametrize("name", UNIFORM_NAMES)
def test_uniform_schemes_stay_within_and_reach_their_limit(name, shape):
    factory, _, variance = NAMED[name]
    limit = math.sqrt(3 * variance(*FANS[shape]))
    magnitudes = np.abs(_samples(factory(), shape, seed=2))
    assert magnitudes.max() <= _float32(limit)
    # P(all n draws below (1 - 1e-3) * limit) = (1 - 1e-3)^n < 1e-8 for n >= 65536.
    assert magnitudes.max() > (1 - 1e-3) * limit


@pytest.mark.parametrize(
    "name, shape, limit",
    [
        ("glorot_uniform", DENSE_SHAPE, math.sqrt(6 / (256 + 512))),
        ("glorot_uniform", CONV_SHAPE, math.sqrt(6 / (576 + 1152))),
        ("he_uniform", DENSE_SHAPE, math.sqrt(6 / 256)),
        ("he_uniform", CONV_SHAPE, math.sqrt(6 / 576)),
        ("lecun_uniform", DENSE_SHAPE, math.sqrt(3 / 256)),
        ("lecun_uniform", CONV_SHAPE, math.sqrt(3 / 576)),
    ],
)
def test_uniform_limits_match_their_documented_formulas(name, shape, limit):
    magnitudes = np.abs(_samples(NAMED[name][0](), shape, seed=3))
    assert (1 - 1e-3) * limit < magnitudes.max() <= _float32(limit)


@pytest.mark.parametrize("name", NORMAL_NAMES)
def test_normal_schemes_are_not_truncated(name):
    # PyTorch's normals are plain: about 0.27% of draws lie beyond 3 standard deviations, which a
    # truncated normal (JAX's and Flax's default) would never produce.
    factory, _, variance = NAMED[name]
    values = _samples(factory(), DENSE_SHAPE, seed=4)
    beyond = np.mean(np.abs(values) > 3 * math.sqrt(variance(*FANS[DENSE_SHAPE])))
    expected = 2 * stats.norm.sf(3)
    assert abs(beyond - expected) < STANDARD_ERRORS * math.sqrt(expected / values.size)


# ----------------------------------------------------------------------------------------------
# PyTorch's torch.nn.init, worked out by hand (weights are (out, in, k..) there, (k.., in, out)
# here; the fans are the same).
#   kaiming_normal_(w, mode="fan_in", nonlinearity="relu"): std   = sqrt(2) / sqrt(fan_in)
#   kaiming_uniform_(w, mode="fan_in", nonlinearity="relu"): bound = sqrt(3) * sqrt(2) / sqrt(fan_in)
#   xavier_normal_(w):  std   = sqrt(2 / (fan_in + fan_out))
#   xavier_uniform_(w): bound = sqrt(3) * sqrt(2 / (fan_in + fan_out))
#   nn.Linear / nn.Conv default, kaiming_uniform_(w, a=sqrt(5)): gain = sqrt(2 / (1 + 5)),
#     bound = sqrt(3) * gain / sqrt(fan_in) = 1 / sqrt(fan_in)


@pytest.mark.parametrize(
    "factory, shape, distribution, torch_scale",
    [
        # nn.Linear(256, 512).weight: fan_in 256, fan_out 512.
        (init.kaiming_normal, DENSE_SHAPE, "normal", 0.08838834764831845),  # sqrt(2)/16
        (init.kaiming_uniform, DENSE_SHAPE, "uniform", 0.15309310892394862),  # sqrt(6)/16
        (init.xavier_normal, DENSE_SHAPE, "normal", 0.05103103630798288),  # sqrt(2/768)
        (init.xavier_uniform, DENSE_SHAPE, "uniform", 0.08838834764831845),  # sqrt(6/768)
        (lambda: init.variance_scaling(1 / 3, "fan_in", "uniform"), DENSE_SHAPE, "uniform", 0.0625),
        # nn.Conv2d(64, 128, 3).weight: fan_in 576, fan_out 1152.
        (init.kaiming_normal, CONV_SHAPE, "normal", 0.05892556509887896),  # sqrt(2)/24
        (init.kaiming_uniform, CONV_SHAPE, "uniform", 0.10206207261596575),  # sqrt(6)/24
        (init.xavier_normal, CONV_SHAPE, "normal", 0.034020690871988585),  # sqrt(2/1728)
        (init.xavier_uniform, CONV_SHAPE, "uniform", 0.05892556509887896),  # sqrt(6/1728)
        (lambda: init.variance_scaling(1 / 3, "fan_in", "uniform"), CONV_SHAPE, "uniform", 1 / 24),
    ],
)
def test_matches_pytorch_formulas(factory, shape, distribution, torch_scale):
    """``torch_scale`` is the normal's std or the uniform's bound, as PyTorch computes it."""
    values = _samples(factory(), shape, seed=5)
    if distribution == "normal":
        variance = torch_scale**2
    else:
        variance = torch_scale**2 / 3
        assert (1 - 1e-3) * torch_scale < np.abs(values).max() <= _float32(torch_scale)
    _assert_moments(values, 0.0, variance, distribution)
    _assert_follows(values, distribution, 0.0, variance)


# ----------------------------------------------------------------------------------------------
# constant, normal, uniform


@pytest.mark.parametrize(
    "factory, value",
    [(init.zeros, 0.0), (init.ones, 1.0), (lambda: init.constant(-2.5), -2.5)],
)
def test_constant_fills_with_its_value(factory, value):
    values = factory()(jax.random.key(0), (3, 4))
    assert values.shape == (3, 4)
    np.testing.assert_array_equal(np.asarray(values), np.full((3, 4), value, np.float32))


@pytest.mark.parametrize("stddev, mean", [(1.0, 0.0), (0.02, 0.0), (0.5, 3.0)])
def test_normal_moments_and_distribution(stddev, mean):
    values = _samples(init.normal(stddev, mean), DENSE_SHAPE, seed=6)
    _assert_moments(values, mean, stddev**2, "normal")
    _assert_follows(values, "normal", mean, stddev**2)


def test_normal_with_zero_stddev_is_its_mean():
    values = init.normal(0.0, 1.5)(jax.random.key(0), (4, 5))
    np.testing.assert_array_equal(np.asarray(values), np.full((4, 5), 1.5, np.float32))


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-0.1, 0.1), (2.0, 5.0)])
def test_uniform_moments_bounds_and_distribution(low, high):
    values = _samples(init.uniform(low, high), DENSE_SHAPE, seed=7)
    assert _float32(low) <= values.min() and values.max() <= _float32(high)
    width = high - low
    assert values.min() < low + 1e-3 * width and values.max() > high - 1e-3 * width
    _assert_moments(values, (low + high) / 2, width**2 / 12, "uniform")
    _assert_follows(values, "uniform", (low + high) / 2, width**2 / 12)


# ----------------------------------------------------------------------------------------------
# orthogonal


@pytest.mark.parametrize(
    "shape",
    [(64, 32), (32, 64), (48, 48), (3, 3, 16, 32), (3, 3, 4, 64), (2, 5, 7)],
    ids=["tall", "wide", "square", "conv_tall", "conv_wide", "rank3"],
)
@pytest.mark.parametrize("scale", [1.0, 2.0, 0.5])
def test_orthogonal_is_semi_orthogonal_times_scale(shape, scale):
    values = np.asarray(init.orthogonal(scale)(jax.random.key(0), shape), dtype=np.float64)
    assert values.shape == shape
    matrix = values.reshape(-1, shape[-1])  # (3, 3, 16, 32) is viewed as 144 x 32
    rows, columns = matrix.shape
    gram = matrix.T @ matrix if rows >= columns else matrix @ matrix.T
    np.testing.assert_allclose(gram, scale**2 * np.eye(min(rows, columns)), atol=1e-5 * max(1, scale**2))


def test_orthogonal_is_haar_distributed():
    # Each entry of a Haar-random 3 x 3 orthogonal matrix is a coordinate of a uniform point on the
    # sphere S^2, which by Archimedes' theorem is U(-1, 1). QR without the sign fix gives a
    # first entry of one sign only.
    keys = jax.random.split(jax.random.key(8), 4000)
    matrices = np.asarray(jax.vmap(lambda key: init.orthogonal()(key, (3, 3)))(keys), np.float64)
    for row, column in [(0, 0), (1, 2), (2, 1)]:
        entries = matrices[:, row, column]
        assert stats.kstest(entries, "uniform", args=(-1.0, 2.0)).pvalue > KS_MIN_P_VALUE


@pytest.mark.parametrize("shape", [(5,), ()])
def test_orthogonal_rejects_fewer_than_two_axes(shape):
    with pytest.raises(ValueError, match="2 axes"):
        init.orthogonal()(jax.random.key(0), shape)


# ----------------------------------------------------------------------------------------------
# Every initializer: dtypes, keys, jit

ALL = {
    "zeros": init.zeros(),
    "ones": init.ones(),
    "constant": init.constant(0.25),
    "normal": init.normal(0.1),
    "uniform": init.uniform(-1.0, 1.0),
    "variance_scaling": init.variance_scaling(2.0, "fan_avg", "normal"),
    "glorot_uniform": init.glorot_uniform(),
    "glorot_normal": init.glorot_normal(),
    "he_uniform": init.he_uniform(),
    "he_normal": init.he_normal(),
    "lecun_uniform": init.lecun_uniform(),
    "lecun_normal": init.lecun_normal(),
    "orthogonal": init.orthogonal(),
}
RANDOM = [name for name in ALL if name not in ("zeros", "ones", "constant")]
SHAPE = (16, 24)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("name", list(ALL))
def test_returns_the_requested_floating_dtype(name, dtype):
    values = ALL[name](jax.random.key(0), SHAPE, dtype)
    assert values.dtype == jnp.dtype(dtype)
    assert values.shape == SHAPE
    assert bool(jnp.all(jnp.isfinite(values)))


def test_default_dtype_is_float32():
    for initializer in ALL.values():
        assert initializer(jax.random.key(0), SHAPE).dtype == jnp.float32


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
@pytest.mark.parametrize("name", list(ALL))
def test_non_floating_dtype_raises_type_error(name, dtype):
    with pytest.raises(TypeError, match="dtype"):
        ALL[name](jax.random.key(0), SHAPE, dtype)


@pytest.mark.parametrize("name", RANDOM)
def test_same_key_same_values_different_key_different_values(name):
    initializer = ALL[name]
    first = np.asarray(initializer(jax.random.key(0), SHAPE))
    np.testing.assert_array_equal(first, np.asarray(initializer(jax.random.key(0), SHAPE)))
    other = np.asarray(initializer(jax.random.key(1), SHAPE))
    assert np.mean(first == other) < 0.01


def test_legacy_uint32_keys_are_accepted():
    values = init.he_normal()(jax.random.PRNGKey(0), SHAPE)
    assert values.shape == SHAPE


@pytest.mark.parametrize("name", list(ALL))
def test_works_under_jit_with_static_shape(name):
    initializer = ALL[name]
    jitted = jax.jit(functools.partial(initializer, shape=SHAPE, dtype=jnp.bfloat16))
    values = jitted(jax.random.key(3))
    assert values.shape == SHAPE and values.dtype == jnp.bfloat16
    eager = initializer(jax.random.key(3), SHAPE, jnp.bfloat16)
    np.testing.assert_allclose(
        np.asarray(values, np.float32), np.asarray(eager, np.float32), rtol=1e-2, atol=1e-3
    )


def test_orthogonal_under_jit_stays_orthogonal():
    values = jax.jit(functools.partial(init.orthogonal(), shape=(3, 3, 16, 32)))(jax.random.key(0))
    matrix = np.asarray(values, np.float64).reshape(144, 32)
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(32), atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Bad settings fail when the initializer is made, naming the argument


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: init.normal(stddev=-0.1), "stddev"),
        (lambda: init.uniform(low=1.0, high=0.0), "low"),
        (lambda: init.uniform(low=float("nan"), high=1.0), "low"),
        (lambda: init.variance_scaling(0.0, "fan_in", "normal"), "scale"),
        (lambda: init.variance_scaling(-1.0, "fan_in", "normal"), "scale"),
        (lambda: init.variance_scaling(1.0, "fan_sum", "normal"), "mode"),
        (lambda: init.variance_scaling(1.0, "fan_in", "truncated_normal"), "distribution"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_argument(make, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make()


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: init.constant("0.5"), TypeError, "constant: `value` must be a real number, got '0.5'"),
        (lambda: init.constant(True), TypeError, "constant: `value` must be a real number, got True"),
        (lambda: init.constant(float("nan")), ValueError, "constant: `value` (=nan) must be a finite number"),
        (lambda: init.constant(-float("inf")), ValueError,
         "constant: `value` (=-inf) must be a finite number"),
        (lambda: init.constant(10**400), ValueError,
         f"constant: `value` (={10**400}) must be a finite number"),
        (lambda: init.normal(None), TypeError, "normal: `stddev` must be a non-negative real number, got None"),
        (lambda: init.normal(float("nan")), ValueError, "normal: `stddev` (=nan) must be non-negative"),
        (lambda: init.normal(0.1, float("inf")), ValueError, "normal: `mean` (=inf) must be a finite number"),
        (lambda: init.normal(0.1, [0.0]), TypeError, "normal: `mean` must be a real number, got [0.0]"),
        (lambda: init.uniform(False, 1.0), TypeError, "uniform: `low` must be a real number, got False"),
        (lambda: init.uniform(0.0, "1"), TypeError, "uniform: `high` must be a real number, got '1'"),
        (lambda: init.uniform(0.0, float("inf")), ValueError,
         "uniform: `high` (=inf) must be a finite number"),
        (lambda: init.uniform(float("nan"), 1.0), ValueError,
         "uniform: `low` (=nan) must be a finite number"),
        (lambda: init.variance_scaling("2", "fan_in", "normal"), TypeError,
         "variance_scaling: `scale` must be a positive real number, got '2'"),
        (lambda: init.variance_scaling(float("nan"), "fan_in", "normal"), ValueError,
         "variance_scaling: `scale` (=nan) must be positive"),
        (lambda: init.variance_scaling(float("inf"), "fan_in", "uniform"), ValueError,
         "variance_scaling: `scale` (=inf) must be a finite number"),
        (lambda: init.orthogonal(None), TypeError, "orthogonal: `scale` must be a real number, got None"),
        (lambda: init.orthogonal(float("nan")), ValueError,
         "orthogonal: `scale` (=nan) must be a finite number"),
        (lambda: init.orthogonal(True), TypeError, "orthogonal: `scale` must be a real number, got True"),
    ],
)
def test_settings_that_are_not_finite_real_numbers_raise_at_construction(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message


def test_numpy_and_integer_settings_are_accepted():
    values = init.normal(np.float64(0.5), np.float32(2.0))(jax.random.key(0), DENSE_SHAPE)
    assert values.dtype == jnp.float32
    _assert_moments(np.asarray(values, np.float64), 2.0, 0.25, "normal")
    values = init.uniform(np.int64(-1), 1)(jax.random.key(1), DENSE_SHAPE)
    assert values.dtype == jnp.float32 and -1.0 <= float(values.min()) and float(values.max()) <= 1.0
    np.testing.assert_array_equal(init.constant(np.float64(0.25))(None, (2,)), [0.25, 0.25])


@pytest.mark.parametrize("name", RANDOM)
def test_float64_values_have_float64_resolution(name):
    with jax.enable_x64(True):
        values = ALL[name](jax.random.key(0), SHAPE, jnp.float64)
        assert values.dtype == jnp.float64
        values = np.asarray(values)
    # Draws made in float32 and cast up would all be float32 numbers; float64 draws almost never are.
    assert np.mean(values != values.astype(np.float32)) > 0.99
