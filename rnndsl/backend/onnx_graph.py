"""ONNX graph building: takes values and operator names, gives an `onnx.GraphProto` under construction.

`Builder` is what the ONNX writer (`onnx_export`) and the op table's `onnx` entries (`lang.ops`) write
with: `g.op("Tanh", x)` adds a node and gives its output's name, `g.const(0.5)` a number in the network's
dtype, `g.ints([-1])` an int64 vector (axes, shapes). Numbers and weights become initializers of the main
graph, which a loop's body reads from the enclosing scope like any outer value. `body()` writes a loop body
into a graph of its own; `outside()` writes into the enclosing graph while a body is being written (what
a step reads of finished sequences is computed once, before the loop).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["Builder", "OPSET"]

# 18: Reduce* take their axes as an input, Softmax any axis, Shape start/end, Mod fmod; every runtime
# released since 2023 reads it.
OPSET = 18


class Builder:
    """Nodes, initializers and fresh names of one ONNX graph (and of the loop bodies inside it)."""

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.np_dtype = np.dtype(dtype)
        self.dtype = int(helper.np_dtype_to_tensor_dtype(self.np_dtype))  # what Cast(to=) takes
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._outer: list[list[onnx.NodeProto]] = []
        self._count = 0
        self._consts: dict[tuple[str, Any], str] = {}

    def fresh(self, hint: str) -> str:
        """A name no spec value has: spec names hold no `/`."""
        self._count += 1
        return f"{hint}/{self._count}"

    def op(self, op_type: str, *inputs: str, outputs: int = 1, hint: str = "", **attrs: Any) -> Any:
        """Add one node; its output's name (a list of them when `outputs` > 1)."""
        names = [self.fresh(hint or op_type) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def tensor(self, value: np.ndarray[Any, Any], hint: str) -> str:
        """An initializer: a weight or a constant array."""
        name = self.fresh(hint)
        self.initializers.append(
            numpy_helper.from_array(np.array(value, order="C"), name)
        )  # not ascontiguousarray: it makes 0-d 1-d
        return name

    def const(self, value: float) -> str:
        """A number (0-d) in the network's dtype."""
        key = ("f", float(value))
        if key not in self._consts:
            self._consts[key] = self.tensor(np.array(value, dtype=self.np_dtype), "const")
        return self._consts[key]

    def ints(self, values: Sequence[int], scalar: bool = False) -> str:
        """An int64 vector (or 0-d scalar)."""
        key = ("s" if scalar else "i", tuple(values))
        if key not in self._consts:
            array = np.array(values[0] if scalar else list(values), dtype=np.int64)
            self._consts[key] = self.tensor(array, "ints")
        return self._consts[key]

    def flag(self, value: bool) -> str:
        key = ("b", value)
        if key not in self._consts:
            self._consts[key] = self.tensor(np.array(value), "flag")
        return self._consts[key]

    @contextmanager
    def body(self) -> Iterator[list[onnx.NodeProto]]:
        """Write the nodes of a loop body into a list of their own (the list it yields)."""
        self._outer.append(self.nodes)
        self.nodes = []
        try:
            yield self.nodes
        finally:
            self.nodes = self._outer.pop()

    @contextmanager
    def outside(self) -> Iterator[None]:
        """Write into the graph that encloses the body being written (before its loop)."""
        if not self._outer:
            yield
            return
        inner = self.nodes
        self.nodes = self._outer[-1]
        try:
            yield
        finally:
            self.nodes = inner


def value_info(name: str, elem: int, shape: Sequence[int | str | None] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


FLOAT_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
