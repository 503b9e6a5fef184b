"""How many arguments a layer constructor takes positionally, and what a call with more meant.

PyTorch's constructors take most of their arguments positionally, and most of them take the input
size first, which jaxnn infers. Read with jaxnn's arguments, such a call would mean something
else: ``Conv2d(1, 32, 3)`` (1 input channel, 32 output channels, a 3x3 kernel) would be 1 output
channel, a 32x32 kernel and stride 3. So every constructor takes only its leading, unambiguous
arguments positionally (``Conv2D(features, kernel_size, *, stride, ...)``), and a call with more
raises a ``TypeError`` that says what the call is here, translated from PyTorch's order when the
arguments fit it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

from jaxnn._checks import is_int, is_real
from jaxnn.core import Layer, LayerTypeError

# (positional arguments, keyword arguments) -> a sentence saying what the call is here, or None.
Hint = Callable[[tuple, dict], "str | None"]

_SHOWN_KEYWORDS = 4


def positional_limit(hint: Hint | None = None) -> Callable:
    """Decorates a layer constructor so that too many positional arguments name the right call.

    The constructor's signature says which arguments are positional (those before its ``*``);
    Python would reject more with "takes 2 positional arguments but 3 were given", which does not
    say what to write instead. This raises a ``TypeError`` that does::

        Conv2D takes (features, kernel_size) positionally and stride, padding, dilation, groups, ...
        by keyword, got 3 positional arguments (1, 32, 3); PyTorch's Conv2d(1, 32, 3) is
        Conv2D(32, 3) here (input channels are inferred)

    ``hint(args, kwargs)`` writes the last part, from the arguments given. The decorated function
    keeps the constructor's name, docstring and signature.
    """

    def decorate(constructor: Callable) -> Callable:
        parameters = inspect.signature(constructor).parameters.values()
        positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        keywords = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
        name = constructor.__name__

        @functools.wraps(constructor)
        def checked(*args, **kwargs):
            if len(args) > len(positional):
                message = f"{_takes(name, positional, keywords)}, got {_count(args)} {_arguments(args)}"
                extra = hint(args, kwargs) if hint is not None else None
                raise LayerTypeError(message + (f"; {extra}" if extra else ""))
            return constructor(*args, **kwargs)

        return checked

    return decorate


def _takes(name: str, positional: list, keywords: list) -> str:
    shown = ", ".join(keywords[:_SHOWN_KEYWORDS]) + (", ..." if len(keywords) > _SHOWN_KEYWORDS else "")
    if not positional and not keywords:
        return f"{name} takes no arguments"
    if not positional:
        return f"{name} takes its arguments by keyword only ({shown})"
    names = positional[0] if len(positional) == 1 else f"({', '.join(positional)})"
    if not keywords:
        return f"{name} takes only {names}"
    return f"{name} takes {names} positionally and {shown} by keyword"


def _count(args: tuple) -> str:
    return f"{len(args)} positional argument{'' if len(args) == 1 else 's'}"


def _arguments(args: tuple) -> str:
    return "(" + ", ".join(map(_short, args)) + ")"


def _short(value) -> str:
    """``repr(value)``, but a layer by its kind and anything long cut short, to keep messages readable."""
    if isinstance(value, Layer):
        return f"<{value.name} layer>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def call(name: str, args: tuple = (), kwargs: dict | None = None) -> str:
    """The source of a call: ``call("Conv2D", (32, 3), {"stride": 2})`` is ``Conv2D(32, 3, stride=2)``."""
    parts = [_short(a) for a in args] + [f"{key}={_short(value)}" for key, value in (kwargs or {}).items()]
    return f"{name}({', '.join(parts)})"


def _named(names: tuple, values: tuple, renamed: dict | None = None) -> dict:
    """``values`` under ``names``, in order, mapped through ``renamed``; values named None are dropped."""
    renamed = renamed or {}
    return {renamed.get(name, name): value for name, value in zip(names, values) if name is not None}


def _kwargs(kwargs: dict, renamed: dict | None = None) -> dict:
    renamed = renamed or {}
    return {renamed.get(key, key): value for key, value in kwargs.items()}


# --------------------------------------------------------------------------------------------
# What the PyTorch call is here, per constructor.


def dense_hint(args: tuple, kwargs: dict) -> str | None:
    # nn.Linear(in_features, out_features, bias=True)
    if len(args) < 2 or not (is_int(args[0]) and is_int(args[1])):
        return None
    options = {**_named((None, None, "use_bias"), args), **_kwargs(kwargs, {"bias": "use_bias"})}
    translated = call("Dense", args[1:2], options)
    return f"PyTorch's {call('Linear', args, kwargs)} is {translated} here (input features are inferred)"


def embedding_hint(args: tuple, kwargs: dict) -> str:
    # nn.Embedding(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type, ...)
    return (f"PyTorch's {call('Embedding', args, kwargs)} is {call('Embedding', args[:2])} here; its "
            "padding_idx, max_norm and later arguments have no counterpart")


def conv_hint(ndim: int) -> Hint:
    label = f"Conv{ndim}D"
    torch_label = f"Conv{ndim}d"
    jaxnn_names = ("stride", "padding", "dilation", "groups")

    def hint(args: tuple, kwargs: dict) -> str:
        # nn.ConvNd(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        # padding_mode). An int third argument after two ints is PyTorch's kernel size.
        kernel_like = len(args) >= 3 and (is_int(args[2]) or isinstance(args[2], (tuple, list)))
        stride_like = len(args) < 4 or is_int(args[3]) or isinstance(args[3], (tuple, list))
        in_order = call(label, args[:2], {**_named((None, None) + jaxnn_names, args), **kwargs})
        if is_int(args[0]) and is_int(args[1]) and kernel_like and stride_like:
            names = (None, None, None, "stride", "padding", "dilation", "groups", "use_bias", "padding_mode")
            options = {**_named(names, args), **_kwargs(kwargs, {"bias": "use_bias"})}
            unsupported = options.pop("padding_mode", "zeros")
            note = ("" if unsupported == "zeros"
                    else f"; padding_mode={unsupported!r} has no counterpart (padding is zeros)")
            # The same numbers read in jaxnn's own order (features, kernel_size, stride, ...) are the
            # other call they may have meant.
            return (f"PyTorch's {call(torch_label, args, kwargs)} is {call(label, args[1:3], options)} here "
                    f"(input channels are inferred){note}; or, if {_arguments(args[:2 + len(jaxnn_names)])} "
                    f"meant (features, kernel_size, {', '.join(jaxnn_names[:len(args) - 2])}), {in_order}")
        return f"write {in_order}"

    return hint


def pool_hint(kind: str, ndim: int) -> Hint:
    label = f"{kind}Pool{ndim}D"
    torch_label = f"{kind}Pool{ndim}d"

    def hint(args: tuple, kwargs: dict) -> str:
        # nn.MaxPoolNd(kernel_size, stride, padding, ...), nn.AvgPoolNd(kernel_size, stride, padding, ...):
        # the same order as window, stride, padding here.
        options = {**_named((None, "stride", "padding"), args), **kwargs}
        rest = ("; PyTorch's later arguments (dilation, ceil_mode, ...) have no counterpart"
                if len(args) > 3 else "")
        return f"PyTorch's {call(torch_label, args, kwargs)} is {call(label, args[:1], options)} here{rest}"

    return hint


def dropout_hint(args: tuple, kwargs: dict) -> str:
    # nn.Dropout(p=0.5, inplace=False)
    return (f"PyTorch's {call('Dropout', args, kwargs)} is {call('Dropout', args[:1])} here "
            "(there is no in-place variant)")


def activation_hint(label: str, torch_label: str, kept: int) -> Hint:
    """For activations whose PyTorch module takes ``kept`` arguments of the same meaning, then ``inplace``."""

    def hint(args: tuple, kwargs: dict) -> str:
        return (f"PyTorch's {call(torch_label, args, kwargs)} is {call(label, args[:kept])} here "
                "(there is no in-place variant)")

    return hint


def batch_norm_hint(args: tuple, kwargs: dict) -> str:
    # nn.BatchNormNd(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)
    options = {}
    if len(args) > 1:
        options["eps"] = args[1]
    if len(args) > 2 and is_real(args[2]):
        options["momentum"] = round(1 - float(args[2]), 12)
    return (f"PyTorch's {call('BatchNorm2d', args)} is {call('BatchNorm', (), options)} here (features are "
            "inferred; PyTorch's momentum weighs the new batch, jaxnn's the running value, so PyTorch's "
            "momentum=0.1 is momentum=0.9)")


def layer_norm_hint(args: tuple, kwargs: dict) -> str:
    # nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True)
    options = {"eps": args[1]} if len(args) > 1 else {}
    return (f"PyTorch's {call('LayerNorm', args)} is {call('LayerNorm', (), options)} here (it normalizes "
            "the last axis, whose size is inferred)")


def group_norm_hint(args: tuple, kwargs: dict) -> str:
    # nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True)
    options = {"eps": args[2]} if len(args) > 2 else {}
    return (f"PyTorch's {call('GroupNorm', args)} is {call('GroupNorm', args[:1], options)} here (the "
            "channels, last axis, are inferred)")


def rms_norm_hint(args: tuple, kwargs: dict) -> str:
    # nn.RMSNorm(normalized_shape, eps=None, elementwise_affine=True)
    options = {"eps": args[1]} if len(args) > 1 else {}
    return (f"PyTorch's {call('RMSNorm', args)} is {call('RMSNorm', (), options)} here (it normalizes "
            "the last axis, whose size is inferred)")


def conv_transpose_hint(ndim: int) -> Hint:
    label = f"ConvTranspose{ndim}D"
    torch_label = f"ConvTranspose{ndim}d"

    def hint(args: tuple, kwargs: dict) -> str | None:
        # nn.ConvTransposeNd(in_channels, out_channels, kernel_size, stride, padding, output_padding,
        # groups, bias, dilation, padding_mode): note groups before dilation, unlike ConvNd.
        if not (len(args) >= 3 and is_int(args[0]) and is_int(args[1])):
            return None
        names = (None, None, None, "stride", "padding", "output_padding", "groups", "use_bias", "dilation")
        options = {**_named(names, args), **_kwargs(kwargs, {"bias": "use_bias"})}
        options.pop("padding_mode", None)
        return (f"PyTorch's {call(torch_label, args, kwargs)} is {call(label, args[1:3], options)} here "
                "(input channels are inferred)")

    return hint


def upsample_hint(args: tuple, kwargs: dict) -> str:
    # nn.Upsample(size=None, scale_factor=None, mode='nearest', align_corners=None): size comes first.
    options = _named(("size", "scale_factor", "mode"), args)
    options = {key: value for key, value in options.items() if value is not None}
    scale = options.pop("scale_factor", None)
    translated = call("Upsample", () if scale is None else (scale,), options)
    return (f"PyTorch's {call('Upsample', args)} is {translated} "
            "here (PyTorch's first positional argument is the size, jaxnn's the scale factor)")


def recurrent_hint(label: str, torch_label: str) -> Hint:
    def hint(args: tuple, kwargs: dict) -> str | None:
        # nn.RNN/LSTM/GRU(input_size, hidden_size, num_layers=1, ...)
        if not (is_int(args[0]) and is_int(args[1])):
            return None
        options = {"num_layers": args[2]} if len(args) > 2 and is_int(args[2]) and args[2] > 1 else {}
        translated = call(label, args[1:2], options)
        return f"PyTorch's {call(torch_label, args)} is {translated} here (input features are inferred)"

    return hint


def attention_hint(args: tuple, kwargs: dict) -> str | None:
    # nn.MultiheadAttention(embed_dim, num_heads, dropout=0.0, ...)
    if not (is_int(args[0]) and is_int(args[1])):
        return None
    options = {"dropout": args[2]} if len(args) > 2 else {}
    translated = call("MultiHeadAttention", args[1:2], options)
    return (f"PyTorch's {call('MultiheadAttention', args)} is {translated} here "
            "(the embedding size is inferred)")


def transformer_hint(args: tuple, kwargs: dict) -> str | None:
    # nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1, ...)
    if not (is_int(args[0]) and is_int(args[1])):
        return None
    options = {}
    if len(args) > 2 and is_int(args[2]) and args[0] and args[2] % args[0] == 0:
        options["mlp_ratio"] = args[2] // args[0]
    if len(args) > 3:
        options["dropout"] = args[3]
    return (f"PyTorch's {call('TransformerEncoderLayer', args)} is "
            f"{call('TransformerEncoderBlock', args[1:2], options)} here (d_model is inferred)")


def reshape_hint(args: tuple, kwargs: dict) -> str:
    return f"pass the shape as one tuple: {call('Reshape', (tuple(args),))}"


def flatten_hint(args: tuple, kwargs: dict) -> str:
    return ("Flatten() flattens every per-example axis, as PyTorch's Flatten() with its default "
            "start_dim=1 does to a batch; use Reshape for other shapes")
