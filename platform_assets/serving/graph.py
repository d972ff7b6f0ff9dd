"""An exported graph: the Keras model's inference forward pass as a few precomputed numpy operations.

Calling a Keras model through TensorFlow costs hundreds of microseconds of dispatch per request, far
more than the arithmetic of this small CNN. ``export_numpy_graph`` walks a Keras 3 functional model's
graph (its nodes in topological order, not a fixed layer list), copies the weights into contiguous
float32 arrays and turns every supported layer into a closure; ``verify`` compares the result with
``model(x, training=False)`` on probe inputs before it may serve.

Every tensor is carried as a C-contiguous ``(n, prod(shape))`` float32 array; the logical Keras shape is
only known at export. Reshape, Flatten (channels_last) and Dropout are then free (row-major order is
the Keras order), Conv2D is one index gather of its windows plus one matmul, Dense one matmul.

Supported: InputLayer, Reshape, Flatten (channels_last), Concatenate (last axis), Dense, Conv2D
(channels_last, padding 'valid', strides 1, dilation 1, groups 1), Dropout (identity at inference) and
Activation; activations linear, relu, sigmoid and tanh. Anything else raises ``UnsupportedModel``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The model inputs, in the order ``NumpyGraph.__call__`` takes them.
INPUT_NAMES = ("history", "static")

Env = list[Any]
Step = Callable[[Env], None]


class UnsupportedModel(Exception):
    """The model cannot be exported to a numpy graph (the message names the layer and the reason)."""


class GraphMismatch(UnsupportedModel):
    """The exported graph's outputs differ from the Keras model's on the probe inputs."""


@dataclass(eq=False)
class NumpyGraph:
    """``graph(history, static)`` -> float32 ``(n, *output_shape)``, the same values as the Keras model."""

    #: Logical per-row shapes of the inputs, in ``INPUT_NAMES`` order.
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    #: The arrays the closures compute with (``"<layer>/kernel"``, ``"<layer>/bias"``): not copies.
    weights: dict[str, np.ndarray] = field(repr=False)
    #: One line per exported node, e.g. ``conv2d: Conv2D 2x8 -> (5, 1, 48) relu``.
    ops: tuple[str, ...] = ()
    _steps: tuple[Step, ...] = field(default=(), repr=False)
    _n_slots: int = field(default=0, repr=False)
    _input_slots: tuple[int, ...] = field(default=(), repr=False)
    _input_sizes: tuple[int, ...] = field(default=(), repr=False)
    _output_slot: int = field(default=0, repr=False)

    def __call__(self, history: np.ndarray, static: np.ndarray) -> np.ndarray:
        n = len(history)
        env: Env = [None] * self._n_slots
        slots, sizes = self._input_slots, self._input_sizes
        env[slots[0]] = np.ascontiguousarray(history, dtype=np.float32).reshape(n, sizes[0])
        env[slots[1]] = np.ascontiguousarray(static, dtype=np.float32).reshape(n, sizes[1])
        for step in self._steps:
            step(env)
        return env[self._output_slot].reshape(n, *self.output_shape)  # type: ignore[no-any-return]

    def describe(self) -> str:
        return "; ".join(self.ops)


# -- activations (in place, float32 constants: a Python float costs a conversion per call) -------------------
_ZERO, _HALF, _ONE = np.float32(0.0), np.float32(0.5), np.float32(1.0)


def _relu(y: np.ndarray) -> None:
    np.maximum(y, _ZERO, out=y)


def _sigmoid(y: np.ndarray) -> None:
    # 0.5 * (1 + tanh(x / 2)): the logistic function without exp's overflow for large negative logits.
    y *= _HALF
    np.tanh(y, out=y)
    y += _ONE
    y *= _HALF


def _tanh(y: np.ndarray) -> None:
    np.tanh(y, out=y)


#: In-place activations by Keras name; ``None`` is the identity.
_ACTIVATIONS: dict[str, Callable[[np.ndarray], None] | None] = {
    "linear": None,
    "relu": _relu,
    "sigmoid": _sigmoid,
    "tanh": _tanh,
}


def _activation(layer: Any) -> tuple[str, Callable[[np.ndarray], None] | None]:
    """The in-place numpy version of ``layer.activation``; UnsupportedModel for anything but the plain built-ins."""
    import keras

    fn = getattr(layer, "activation", None)
    try:
        name = keras.activations.serialize(fn) if fn is not None else "linear"
    except Exception as exc:  # custom objects may not serialize at all
        raise UnsupportedModel(f"{_where(layer)}: activation {fn!r} cannot be identified ({exc})") from None
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        raise UnsupportedModel(f"{_where(layer)}: activation {name!r} is not one of {sorted(_ACTIVATIONS)}")
    if fn is not None and fn is not keras.activations.get(name):  # e.g. a wrapped or parameterised relu
        raise UnsupportedModel(f"{_where(layer)}: activation {fn!r} is not keras.activations.{name}")
    return name, _ACTIVATIONS[name]


# -- helpers ----------------------------------------------------------------------------------------------
def _where(layer: Any) -> str:
    return f"layer {getattr(layer, 'name', '?')!r} ({type(layer).__name__})"


def _shape(tensor: Any, layer: Any) -> tuple[int, ...]:
    """The per-row shape of a KerasTensor; every dimension but the batch must be known."""
    shape = tuple(tensor.shape)
    if not shape or any(d is None for d in shape[1:]):
        raise UnsupportedModel(f"{_where(layer)}: tensor shape {shape} has unknown dimensions")
    return tuple(int(d) for d in shape[1:])


def _array(variable: Any) -> np.ndarray:
    """A private contiguous float32 copy of a Keras variable (later changes to the model do not leak in)."""
    import keras

    return np.array(keras.ops.convert_to_numpy(variable), dtype=np.float32, order="C", copy=True)


def _check_plain_float32(layer: Any) -> None:
    policy = getattr(layer, "dtype_policy", None)
    if getattr(policy, "quantization_mode", None) or getattr(layer, "quantization_mode", None):
        raise UnsupportedModel(f"{_where(layer)}: quantized layers are not supported")
    compute = getattr(layer, "compute_dtype", "float32")
    if compute != "float32":
        raise UnsupportedModel(f"{_where(layer)}: compute dtype {compute} (only float32 is supported)")
    if getattr(layer, "lora_enabled", False):
        raise UnsupportedModel(f"{_where(layer)}: LoRA layers are not supported")


def _pair(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value, value)


def _dense_weights(layer: Any, weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    kernel = _array(layer.kernel)
    weights[f"{layer.name}/kernel"] = kernel
    bias = None
    if getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
        bias = _array(layer.bias)
        weights[f"{layer.name}/bias"] = bias
    return kernel, bias


# -- layer exporters: each returns (step or None for an alias, output logical shape, description) --------
def _matmul_step(
    src: int,
    dst: int,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    act: Callable[[np.ndarray], None] | None,
    rows_per_sample: int,
    gather: np.ndarray | None = None,
    window_step: int = 0,
) -> Step:
    """``env[dst] = act(x' @ kernel + bias)`` stored as ``(n, rows_per_sample * units)``, where ``x'`` is
    ``env[src]`` as ``(n * rows_per_sample, kernel.shape[0])`` rows: a reshape (``gather`` None and no
    ``window_step``), the contiguous windows starting every ``window_step`` values, or ``x[:, gather]``."""
    k_in = kernel.shape[0]
    if gather is None and not window_step and rows_per_sample == 1:

        def step(env: Env) -> None:
            y = env[src] @ kernel
            if bias is not None:
                y += bias
            if act is not None:
                act(y)
            env[dst] = y

        return step

    out_width = rows_per_sample * kernel.shape[1]
    itemsize = np.dtype(np.float32).itemsize
    window_strides = (window_step * itemsize, itemsize)

    def step_rows(env: Env) -> None:
        x = env[src]
        n = x.shape[0]
        if window_step and x.flags.c_contiguous:
            # Overlapping windows as a strided view of the row-major input, then one copy for the matmul.
            view = np.ndarray((n, rows_per_sample, k_in), np.float32, x, 0, (x.strides[0], *window_strides))
            x = np.ascontiguousarray(view)
        elif gather is not None:
            x = x[:, gather]  # (n, rows_per_sample, k_in), windows in the kernel's (kh, kw, in_c) order
        y = x.reshape(n * rows_per_sample, k_in) @ kernel
        if bias is not None:
            y += bias
        if act is not None:
            act(y)
        env[dst] = y.reshape(n, out_width)

    return step_rows


def _export_dense(layer: Any, src: int, dst: int, shape: tuple[int, ...], weights: dict[str, np.ndarray]) -> Any:
    _check_plain_float32(layer)
    name, act = _activation(layer)
    kernel, bias = _dense_weights(layer, weights)
    if kernel.ndim != 2 or kernel.shape[0] != shape[-1]:
        raise UnsupportedModel(f"{_where(layer)}: kernel {kernel.shape} does not match input {shape}")
    rows = math.prod(shape[:-1])  # Dense applies to the last axis of every leading position
    out_shape = (*shape[:-1], kernel.shape[1])
    return _matmul_step(src, dst, kernel, bias, act, rows), out_shape, f"Dense {kernel.shape[1]} {name}"


def _export_conv2d(layer: Any, src: int, dst: int, shape: tuple[int, ...], weights: dict[str, np.ndarray]) -> Any:
    _check_plain_float32(layer)
    config = layer.get_config()
    problems = []
    if config.get("data_format", "channels_last") != "channels_last":
        problems.append(f"data_format {config.get('data_format')!r}")
    if str(config.get("padding", "valid")).lower() != "valid":
        problems.append(f"padding {config.get('padding')!r}")
    if _pair(config.get("strides", 1)) != (1, 1):
        problems.append(f"strides {config.get('strides')!r}")
    if _pair(config.get("dilation_rate", 1)) != (1, 1):
        problems.append(f"dilation_rate {config.get('dilation_rate')!r}")
    if int(config.get("groups", 1)) != 1:
        problems.append(f"groups {config.get('groups')!r}")
    if problems:
        raise UnsupportedModel(
            f"{_where(layer)}: {', '.join(problems)} (only channels_last, padding 'valid', strides 1, dilation 1, "
            "groups 1 are supported)"
        )
    if len(shape) != 3:
        raise UnsupportedModel(f"{_where(layer)}: input shape {shape} is not (height, width, channels)")
    name, act = _activation(layer)
    kernel, bias = _dense_weights(layer, weights)
    h, w, c = shape
    if kernel.ndim != 4 or kernel.shape[2] != c:
        raise UnsupportedModel(f"{_where(layer)}: kernel {kernel.shape} does not match input {shape}")
    kh, kw, _, filters = kernel.shape
    oh, ow = h - kh + 1, w - kw + 1
    if oh < 1 or ow < 1:
        raise UnsupportedModel(f"{_where(layer)}: kernel {kh}x{kw} is larger than the input {h}x{w}")
    # Flat input index of window element (a, b, ch) of output position (i, j): row-major over (h, w, c),
    # window elements in the kernel's (kh, kw, in_c) order, so the kernel reshapes to (kh*kw*c, filters).
    i, j = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
    a, b, ch = np.meshgrid(np.arange(kh), np.arange(kw), np.arange(c), indexing="ij")
    pixel = (i.reshape(-1, 1) + a.reshape(1, -1)) * w + (j.reshape(-1, 1) + b.reshape(1, -1))  # (oh*ow, kh*kw*c)
    gather = np.ascontiguousarray(pixel * c + ch.reshape(1, -1), dtype=np.intp)
    flat_kernel = kernel.reshape(kh * kw * c, filters)  # a view: ``weights`` keeps the 4-d array it shares
    if oh * ow == 1:  # the one window is the whole input: a plain matmul
        step = _matmul_step(src, dst, flat_kernel, bias, act, 1)
    elif ow == 1:  # full-width kernel: window i is the contiguous run of kh rows from row i (of w*c values)
        step = _matmul_step(src, dst, flat_kernel, bias, act, oh, gather, window_step=w * c)
    else:
        step = _matmul_step(src, dst, flat_kernel, bias, act, oh * ow, gather)
    return step, (oh, ow, filters), f"Conv2D {kh}x{kw}x{c}->{filters} valid -> ({oh}, {ow}, {filters}) {name}"


def _export_activation(layer: Any, src: int, dst: int, shape: tuple[int, ...], weights: dict[str, np.ndarray]) -> Any:
    _check_plain_float32(layer)
    name, act = _activation(layer)
    if act is None:
        return None, shape, "Activation linear (alias)"

    def step(env: Env) -> None:
        y = env[src].copy()  # the input may be read by another node
        act(y)
        env[dst] = y

    return step, shape, f"Activation {name}"


def _export_concatenate(layer: Any, srcs: Sequence[int], dst: int, shapes: Sequence[tuple[int, ...]]) -> Any:
    rank = len(shapes[0])
    axis = int(layer.get_config().get("axis", -1))
    if any(len(s) != rank for s in shapes) or axis not in (-1, rank):
        raise UnsupportedModel(f"{_where(layer)}: only concatenation along the last axis is supported (axis {axis})")
    lead = shapes[0][:-1]
    if any(s[:-1] != lead for s in shapes):
        raise UnsupportedModel(f"{_where(layer)}: input shapes {list(shapes)} differ before the last axis")
    out_shape = (*lead, sum(s[-1] for s in shapes))
    srcs = tuple(srcs)
    if rank == 1:

        def step(env: Env) -> None:
            env[dst] = np.concatenate([env[s] for s in srcs], axis=1)

    else:
        rows, dims, width = math.prod(lead), [s[-1] for s in shapes], math.prod(out_shape)

        def step(env: Env) -> None:
            n = env[srcs[0]].shape[0]
            parts = [env[s].reshape(n, rows, d) for s, d in zip(srcs, dims, strict=True)]
            env[dst] = np.concatenate(parts, axis=2).reshape(n, width)

    return step, out_shape, f"Concatenate {len(srcs)} -> {out_shape}"


# -- the graph walk -----------------------------------------------------------------------------------------
def _nodes_in_order(model: Any) -> list[Any]:
    """The model's call nodes from the inputs to the outputs (what ``Functional`` itself executes)."""
    by_depth = getattr(model, "_nodes_by_depth", None)
    if not isinstance(by_depth, dict) or not hasattr(model, "inputs") or not hasattr(model, "outputs"):
        raise UnsupportedModel(f"{type(model).__name__} is not a Keras 3 functional model")
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def export_numpy_graph(keras_model: Any) -> NumpyGraph:
    """The numpy forward pass of ``keras_model`` (inputs ``history`` and ``static``, one output)."""
    from keras import layers

    supported = (
        layers.Reshape,
        layers.Flatten,
        layers.Concatenate,
        layers.Dense,
        layers.Conv2D,
        layers.Dropout,
        layers.Activation,
    )

    inputs = list(keras_model.inputs or [])
    names = [t.name.split(":")[0] for t in inputs]
    if sorted(names) != sorted(INPUT_NAMES) or len(names) != len(INPUT_NAMES):
        raise UnsupportedModel(f"model inputs are {names}; expected exactly {list(INPUT_NAMES)}")
    outputs = list(keras_model.outputs or [])
    if len(outputs) != 1:
        raise UnsupportedModel(f"model has {len(outputs)} outputs; expected exactly one")
    nodes = _nodes_in_order(keras_model)

    slot_of: dict[int, int] = {}  # id(KerasTensor) -> env slot
    shape_of: dict[int, tuple[int, ...]] = {}
    n_slots = 0
    by_name = dict(zip(names, inputs, strict=True))
    input_slots, input_shapes = [], []
    for name in INPUT_NAMES:
        tensor = by_name[name]
        slot_of[id(tensor)], shape_of[id(tensor)] = n_slots, _shape(tensor, keras_model)
        input_slots.append(n_slots)
        input_shapes.append(shape_of[id(tensor)])
        n_slots += 1

    weights: dict[str, np.ndarray] = {}
    steps: list[Step] = []
    ops: list[str] = []
    for node in nodes:
        layer = node.operation
        if layer is None or node.is_input:
            if not isinstance(layer, layers.InputLayer | type(None)):
                raise UnsupportedModel(f"{_where(layer)}: unexpected input node")
            continue
        kind = type(layer)
        if kind not in supported:  # exact types: a subclass may compute something else
            raise UnsupportedModel(f"{_where(layer)}: layer type {kind.__name__} is not supported")
        ins = list(node.input_tensors)
        if any(id(t) not in slot_of for t in ins):
            raise UnsupportedModel(f"{_where(layer)}: reads a tensor that is not computed from the model inputs")
        kwargs = dict(node.arguments.kwargs)
        training, mask = kwargs.pop("training", None), kwargs.pop("mask", None)
        if kwargs or training not in (None, False) or mask is not None:
            raise UnsupportedModel(f"{_where(layer)}: called with arguments {node.arguments.kwargs!r}")
        outs = list(node.outputs)
        if len(outs) != 1:
            raise UnsupportedModel(f"{_where(layer)}: has {len(outs)} outputs")
        srcs = [slot_of[id(t)] for t in ins]
        shapes = [shape_of[id(t)] for t in ins]
        out_shape = _shape(outs[0], layer)
        if kind is layers.Concatenate:
            result = _export_concatenate(layer, srcs, n_slots, shapes)
        elif len(ins) != 1:
            raise UnsupportedModel(f"{_where(layer)}: {len(ins)} inputs")
        elif kind is layers.Reshape:
            result = None, out_shape, f"Reshape -> {out_shape} (alias)"
        elif kind is layers.Flatten:
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                raise UnsupportedModel(f"{_where(layer)}: data_format {layer.data_format!r} (needs channels_last)")
            result = None, out_shape, f"Flatten -> {out_shape} (alias)"
        elif kind is layers.Dropout:
            result = None, shapes[0], "Dropout (identity at inference)"
        elif kind is layers.Dense:
            result = _export_dense(layer, srcs[0], n_slots, shapes[0], weights)
        elif kind is layers.Conv2D:
            result = _export_conv2d(layer, srcs[0], n_slots, shapes[0], weights)
        else:
            result = _export_activation(layer, srcs[0], n_slots, shapes[0], weights)
        step, computed_shape, text = result
        if math.prod(computed_shape) != math.prod(out_shape) or (step is not None and computed_shape != out_shape):
            raise UnsupportedModel(f"{_where(layer)}: computed shape {computed_shape}, Keras says {out_shape}")
        if step is None:  # a view of the same row-major data: share the slot
            if len(srcs) != 1:
                raise UnsupportedModel(f"{_where(layer)}: cannot alias {len(srcs)} inputs")
            slot_of[id(outs[0])] = srcs[0]
        else:
            steps.append(step)
            slot_of[id(outs[0])] = n_slots
            n_slots += 1
        shape_of[id(outs[0])] = out_shape
        ops.append(f"{layer.name}: {text}")

    output = outputs[0]
    if id(output) not in slot_of:
        raise UnsupportedModel("the model output is not computed from its inputs")
    return NumpyGraph(
        input_shapes=tuple(input_shapes),
        output_shape=shape_of[id(output)],
        weights=weights,
        ops=tuple(ops),
        _steps=tuple(steps),
        _n_slots=n_slots,
        _input_slots=tuple(input_slots),
        _input_sizes=tuple(math.prod(s) for s in input_shapes),
        _output_slot=slot_of[id(output)],
    )


def probe_inputs(history_shape: Sequence[int], n_static: int, rng_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """257 random rows in the features' ranges, an all-zeros row and a row of large values."""
    rng = np.random.default_rng(rng_seed)
    n = 257
    history = rng.uniform(-1.0, 2.0, size=(n, *history_shape))
    static = rng.uniform(0.0, 1.0, size=(n, n_static))
    history = np.concatenate([history, np.zeros((1, *history_shape)), np.full((1, *history_shape), 4.0)])
    static = np.concatenate([static, np.zeros((1, n_static)), np.full((1, n_static), 4.0)])
    return history.astype(np.float32), static.astype(np.float32)


def verify(graph: NumpyGraph, keras_model: Any, n_static: int, rng_seed: int = 0, atol: float = 1e-5) -> float:
    """The max abs difference between ``graph`` and ``keras_model(x, training=False)`` on probe inputs;
    ``GraphMismatch`` when it exceeds ``atol`` (or the shapes differ, or either side is not finite)."""
    import keras

    history, static = probe_inputs(graph.input_shapes[0], n_static, rng_seed)
    expected = np.asarray(
        keras.ops.convert_to_numpy(keras_model({"history": history, "static": static}, training=False))
    )
    actual = graph(history, static)
    if actual.shape != expected.shape or actual.dtype != np.float32:
        raise GraphMismatch(f"graph output {actual.dtype}{actual.shape}, the Keras model's {expected.shape}")
    if not (np.isfinite(expected).all() and np.isfinite(actual).all()):
        raise GraphMismatch("non-finite outputs on the probe inputs")
    diff = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
    if not diff <= atol:
        raise GraphMismatch(f"graph differs from the Keras model by up to {diff:.3g} (tolerance {atol:g})")
    # Batch size must not change a row's result (the serving path scores 1 to max_batch rows).
    single = graph(history[:1], static[:1])
    if not float(np.max(np.abs(single - actual[:1]))) <= atol:
        raise GraphMismatch("graph gives a different result for a row scored alone")
    return diff
