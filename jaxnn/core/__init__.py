"""The layer contract and what every layer is built from.

- :mod:`jaxnn.core.layer`: :class:`Layer`, :func:`make_layer`, options and their routing, errors
  that carry the layer path.
- :mod:`jaxnn.core.inputs`: checks of input shapes, arrays and params entries shared by layers.
- :mod:`jaxnn.core.combinators`: :func:`Sequential`, :func:`Residual`, :func:`Concat`.
"""

from jaxnn._dtypes import compute_dtype
from jaxnn.core.combinators import (
    Concat,
    Residual,
    Sequential,
    all_input_checks,
    check_children_present,
    named_children,
)
from jaxnn.core.inputs import (
    Static,
    as_shape,
    batch_shape,
    check_array,
    check_entries,
    check_entry,
    check_floating,
    check_initializer,
    check_integer,
    check_min_ndim,
    check_param_dtype,
    check_trailing_shape,
    count_parameters,
    expand_to,
    first_out_of_range,
    is_concrete,
    split_key,
)
from jaxnn.core.layer import (
    Layer,
    LayerTypeError,
    LayerValueError,
    PathError,
    PyTree,
    Shape,
    apply_child,
    child_scope,
    declared_options,
    init_child,
    make_layer,
    options_for,
    record_layers,
    record_outputs,
)

__all__ = [
    "Concat",
    "Layer",
    "LayerTypeError",
    "LayerValueError",
    "PathError",
    "PyTree",
    "Residual",
    "Sequential",
    "Shape",
    "Static",
    "all_input_checks",
    "apply_child",
    "as_shape",
    "batch_shape",
    "check_array",
    "check_children_present",
    "check_entries",
    "check_entry",
    "check_floating",
    "check_initializer",
    "check_integer",
    "check_min_ndim",
    "check_param_dtype",
    "check_trailing_shape",
    "child_scope",
    "compute_dtype",
    "count_parameters",
    "declared_options",
    "expand_to",
    "first_out_of_range",
    "init_child",
    "is_concrete",
    "make_layer",
    "named_children",
    "options_for",
    "record_layers",
    "record_outputs",
    "split_key",
]
