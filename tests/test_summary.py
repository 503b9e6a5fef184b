"""Tests for ``jaxnn.summary``: shapes, counts worked out by hand, no double counting."""

import re

import jax.numpy as jnp
import pytest

from jaxnn.core import Concat, Residual, Sequential
from jaxnn.layers.dense import Dense, Flatten
from jaxnn.summary import summary


def rows(table):
    return [line.split() for line in table.splitlines()]


def test_mlp_counts_by_hand():
    model = Sequential([Flatten(), Dense(128), Dense(10)])
    table = summary(model, (28, 28))
    lines = rows(table)
    by_path = {line[0]: line for line in lines if line and line[0] in {"flatten_0", "dense_1", "dense_2"}}
    assert by_path["flatten_0"][2:4] == ["(784,)", "0"]
    # 784*128 + 128 = 100,480 params of 4 bytes; 128*10 + 10 = 1,290.
    assert by_path["dense_1"][2:4] == ["(128,)", "100,480"]
    assert by_path["dense_2"][2:4] == ["(10,)", "1,290"]
    assert "total params: 101,770 (397.5 KiB)" in table
    assert "output shape: (10,)" in table


def test_nested_models_are_not_double_counted():
    block = Sequential({"inner": Dense(4), "outer": Residual(Dense(4))})
    model = Sequential({"block": block, "heads": Concat([Dense(2), Dense(3)])})
    table = summary(model, (4,))
    counts = [int(match.replace(",", "")) for match in
              re.findall(r"^\S+\s+(?:dense|residual)\s+\(\d+,\)\s+([\d,]+)", table, flags=re.MULTILINE)]
    # Four dense layers of 4 inputs: 20 + 20 + 10 + 15 = 65, each counted exactly once.
    assert sorted(counts) == [10, 15, 20, 20]
    assert "total params: 65 (260 B)" in table
    assert "block/inner" in table and "block/outer" in table and "heads/dense_1" in table


def test_low_precision_bytes():
    table = summary(Dense(4, param_dtype=jnp.bfloat16), (4,))
    assert "total params: 20 (40 B)" in table


def test_summary_rejects_non_layers():
    with pytest.raises(TypeError, match="summary: expected a Layer"):
        summary(lambda x: x, (3,))
    with pytest.raises(ValueError, match="input_shape"):
        summary(Dense(3), (-1,))


def test_batchnorm_state_is_counted_apart_from_params():
    from jaxnn.layers.normalization import BatchNorm

    table = summary(Sequential([Dense(8), BatchNorm()]), (4,))
    # Dense: 4*8 + 8 = 40 params; BatchNorm: scale and bias 16 params, mean and var 16 state values.
    assert "total params: 56 (224 B)" in table
    assert "non-trainable state: 16 (64 B)" in table


def test_layers_not_built_with_make_layer_and_combinator_params_are_counted():
    import jax.numpy as jnp

    from jaxnn.core import Layer, init_child, make_layer

    def identity_apply(params, state, x, *, key=None, train=False):
        return x, state

    def raw_init(key, input_shape):
        return input_shape, {"scale": jnp.ones(input_shape)}, {}

    table = summary(Sequential([Layer("raw", raw_init, identity_apply), Dense(2)]), (3,))
    assert re.search(r"^raw_0\s+raw\s+\(3,\)\s+3\s", table, flags=re.MULTILINE)
    assert "total params: 11 (44 B)" in table

    def gained_init(key, input_shape):
        # A custom combinator: one child through init_child, plus a parameter of its own.
        output_shape, params, state = init_child("inner", Dense(2), key, input_shape)
        return output_shape, {"inner": params, "gain": jnp.ones(())}, {"inner": state}

    table = summary(Sequential([make_layer("gained", gained_init, identity_apply)]), (3,))
    assert re.search(r"^gained_0/inner\s+dense\s+\(2,\)\s+8\s", table, flags=re.MULTILINE)
    assert re.search(r"^\(not in a leaf\)\s+1\s+4 B$", table, flags=re.MULTILINE)
    assert "total params: 9 (36 B)" in table
