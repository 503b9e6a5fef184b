"""``summary``: a table of a model's layers, their output shapes and parameter sizes."""

from __future__ import annotations

from jaxnn.core import Layer, as_shape, count_parameters, leaf_layers


def _format_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def summary(model: Layer, input_shape) -> str:
    """Returns a table of each leaf layer's path, kind, output shape, parameter count and bytes.

    Shapes are found with ``jax.eval_shape``, so no parameters are allocated and no data is
    needed. The rows are the children of combinators that are not combinators themselves (a
    model that is a single layer is one row). Totals are computed once from the whole model's
    params; parameters that no row accounts for (a custom combinator's own) get a row of their
    own, so the column always adds up to the total. Non-trainable ``state`` (BatchNorm's running
    statistics) is counted separately.

    Example::

        print(jaxnn.summary(Sequential([Dense(128), Relu(), Dense(10)]), (64,)))
    """
    if not isinstance(model, Layer):
        raise TypeError(f"summary: expected a Layer, got {type(model).__name__}")
    input_shape = as_shape(input_shape)
    rows, output_shape, params, state = leaf_layers(model, input_shape)
    total_count, total_size = count_parameters(params)
    table = [("path", "layer", "output shape", "params", "bytes")]
    row_count = row_size = 0
    for path, name, output_shape, layer_params, _ in rows:
        count, size = count_parameters(layer_params)
        row_count, row_size = row_count + count, row_size + size
        table.append(("/".join(path) or name, name, str(output_shape), f"{count:,}", _format_bytes(size)))
    if row_count != total_count:
        table.append(("(not in a leaf)", "", "", f"{total_count - row_count:,}",
                      _format_bytes(total_size - row_size)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]

    def line(row):
        return "  ".join(cell.ljust(width) if i < 3 else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(row, widths)))

    rule = "-" * len(line(table[0]))
    state_count, state_size = count_parameters(state)
    lines = [f"input shape: {input_shape}", rule, line(table[0]), rule]
    lines += [line(row) for row in table[1:]]
    lines += [
        rule,
        f"output shape: {output_shape}",
        f"total params: {total_count:,} ({_format_bytes(total_size)})",
        f"non-trainable state: {state_count:,} ({_format_bytes(state_size)})",
    ]
    return "\n".join(lines)
