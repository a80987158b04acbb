"""Random valid networks: the generated executor must equal the reference executor (forward and gradients).

A network has a forward part `f0..fn` and, in some cases, a backward part `b0..bm`:
- forward nodes read inputs, the static input, earlier forward nodes at the same step or 1..3 steps back,
  and any forward node (itself and later ones too) 1..3 steps back; so no algebraic loop;
- backward nodes read inputs and forward nodes at any offset in [t-3, t+3], earlier backward nodes at the
  same step or ahead, any backward node 1..3 steps ahead; forward nodes never read backward ones, so no
  loop mixes the past and the future.
Layers get random activations and 1..3 sources (references, token embeddings, small expressions, the clock
`every(k)` alone or gating a reference); `=` nodes are elementwise expressions over every op family
(layer_norm, the reductions to size 1 and clock-gated updates `every(k) * a + (1 - every(k)) * b`
included), or concatenations; a learned vector (`param p`) is read like the static input. Delayed nodes get a
random init (zeros, learned, a number, an expression of the static input). Calls get random lengths,
and networks without the future are also continued from their own state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from _differential import compare, random_inputs, randomize
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import rnndsl
from rnndsl.runtime.network import State

ACTIVATIONS = [
    "tanh",
    "identity",
    "sigmoid",
    "relu",
    "gelu",
    "silu",
    "elu",
    "softplus",
    "softsign",
    "hardtanh",
    "sin",
    "cos",
    "abs",
    "softmax",
    "log_softmax",
]
UNARY = ["tanh", "sigmoid", "sin", "cos", "softsign", "softplus", "gelu", "abs", "elu", "silu"]


@dataclass
class Ref:
    """A value a node may read: its text, size, and whether it changes from step to step."""

    text: str
    size: int
    varying: bool = True
    tokens: bool = False


@dataclass
class Spec:
    lines: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    static: set[str] = field(default_factory=set)
    delayed: set[str] = field(default_factory=set)  # nodes read at [t-k] or [t+k]
    future: bool = False

    def text(self) -> str:
        return "network R {\n  " + "\n  ".join(self.lines) + "\n}\n"


class Builder:
    """Draws one random network, statement by statement."""

    def __init__(self, draw: Any, max_nodes: int) -> None:
        self.draw, self.spec = draw, Spec()
        self.max_nodes = max_nodes
        self.read: set[str] = set()  # nodes some statement already reads: their size is fixed
        self.used: set[str] = set()  # nodes another node reads
        self.current = ""  # the node being written

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))  # type: ignore[no-any-return]

    def size(self, most: int = 4) -> int:
        """A vector size; hypothesis's simplest draw is 3, not a degenerate 1."""
        return self.pick([3, 2, 4, 1][:most])

    def pick(self, items: list[Any]) -> Any:
        return self.draw(st.sampled_from(items))

    def flag(self, p: float = 0.5) -> bool:
        """True with about probability p; hypothesis's simplest draw gives False."""
        return self.draw(st.integers(0, 99)) >= 100 - round(100 * p)  # type: ignore[no-any-return]

    def build(self) -> Spec:
        sp = self.spec
        seq = not self.flag(0.15)
        if seq:
            self._input("x", f"{self.size(3)}")
            if self.flag(0.3):
                self._input("w", f"tokens({self.int(2, 4)})", tokens=True)
        if not seq or self.flag(0.5):
            self._input("s", f"{self.size(3)} static", static=True)
            if self.flag(0.3):  # a node computed from the static input only: static too
                sp.sizes["sa"] = self.size(3)
                sp.static.add("sa")
                sp.lines.append(f"layer sa: {sp.sizes['sa']} {self.pick(ACTIVATIONS)} <- s")
        if self.flag(0.4):  # a learned vector: static, read like the static input (size 1 broadcasts)
            sp.sizes["p"] = self.size()
            sp.static.add("p")
            sp.lines.append(f"param p: {sp.sizes['p']} = {self.pick(['normal', 'ones', 'uniform', '0.5'])}")
        if self.flag(0.3):  # a memory to attend to (never read but by attend), and its keys, once per sequence
            sp.sizes["m"], sp.sizes["mk"] = self.size(3), self.size(3)
            sp.lines.append(f"input m: {sp.sizes['m']} memory")
            sp.lines.append(f"layer mk: {sp.sizes['mk']} {self.pick(ACTIVATIONS)} <- m")
        backward = self.flag(0.4)
        n_f = self.int(1, self.max_nodes)
        n_b = self.int(1, self.max_nodes) if backward else 0
        fwd = [f"f{i}" for i in range(n_f)]
        bwd = [f"b{i}" for i in range(n_b)]
        for name in fwd + bwd:  # sizes first, so later nodes can be read with a delay
            sp.sizes[name] = self.size()
        for i, name in enumerate(fwd):
            self._node(name, self._forward_refs(fwd, i, backward))
        for i, name in enumerate(bwd):
            self._node(name, self._backward_refs(fwd, bwd, i))
        self._inits()
        self._outputs(fwd + bwd)
        return sp

    # ---- what a node may read ----------------------------------------------------------------------

    def _input(self, name: str, decl: str, static: bool = False, tokens: bool = False) -> None:
        self.spec.lines.append(f"input {name}: {decl}")
        size = int(decl.split("(")[1].rstrip(")")) if tokens else int(decl.split()[0])
        self.spec.sizes[name] = size
        if static:
            self.spec.static.add(name)

    def _at(self, name: str, delay: int) -> Ref:
        """`name` read `delay` steps back (negative: ahead)."""
        if delay:
            self.spec.delayed.add(name)
            self.spec.future |= delay < 0
        self.read.add(name)
        if name != self.current:
            self.used.add(name)
        text = name if delay == 0 else f"{name}[t{'-' if delay > 0 else '+'}{abs(delay)}]"
        return Ref(text, self.spec.sizes[name], tokens=name == "w")

    def _input_refs(self, future: bool) -> list[tuple[str, int]]:
        out = [(n, 0) for n in self.spec.static]
        for n in ("x", "w"):
            if n in self.spec.sizes:
                out += [(n, d) for d in range(-3 if future else 0, 4)]
        return out

    def _forward_refs(self, fwd: list[str], i: int, future: bool) -> list[tuple[str, int]]:
        earlier = [(f, d) for f in fwd[:i] for d in range(0, 4)]
        delayed = [(f, d) for f in fwd[i:] for d in range(1, 4)]
        return self._input_refs(future) + earlier + delayed

    def _backward_refs(self, fwd: list[str], bwd: list[str], i: int) -> list[tuple[str, int]]:
        forward = [(f, d) for f in fwd for d in range(-3, 4)]
        earlier = [(b, d) for b in bwd[:i] for d in range(-3, 1)]
        ahead = [(b, d) for b in bwd[i:] for d in range(-3, 0)]
        return self._input_refs(True) + forward + earlier + ahead

    def _ref(
        self,
        options: list[tuple[str, int]],
        varying: bool | None = None,
        size: int | None = None,
        tokens: bool = False,
        draw: bool = True,
    ) -> Ref | None:
        """One of `options`, filtered (None when none is left; `draw=False` only asks)."""
        ok = [
            (n, d)
            for n, d in options
            if (tokens or n != "w")
            and (varying is None or (n not in self.spec.static) == varying)
            and (size is None or self.spec.sizes[n] == size)
        ]
        if not ok or not draw:
            return None if not ok else Ref("", 0)
        name, delay = self.pick(ok)
        ref = self._at(name, delay)
        ref.varying = name not in self.spec.static
        return ref

    # ---- nodes ---------------------------------------------------------------------------------------

    def _node(self, name: str, options: list[tuple[str, int]]) -> None:
        self.current = name
        size = self.spec.sizes[name]
        fixed = name in self.read  # read at a delay by an earlier node: keep the size drawn for it
        if "m" in self.spec.sizes and self.flag(0.35) and self._attention(name, options, fixed):
            return
        if self.flag(0.1):  # linear in its own past: one kernel call over time (backend.linear)
            self._linear(name, size, [o for o in options if o[0] != name])
            return
        if not self.flag(0.45) or (fixed and self._ref(options, varying=True, size=size, draw=False) is None):
            self._layer(name, size, options)
            return
        kind = self.pick(["elementwise"] if fixed else ["elementwise", "concat"])
        if kind == "concat":  # its size is the sum of its parts' sizes: it cannot read itself
            others = [o for o in options if o[0] != name]
            head = self._ref(others, varying=True)
            if head is None:
                self._layer(name, size, options)
                return
            refs = [head] + [r for r in (self._ref(others) for _ in range(self.int(1, 2))) if r is not None]
            self.spec.sizes[name] = sum(r.size for r in refs)
            self.spec.lines.append(f"{name} = concat({', '.join(r.text for r in refs)})")
            return
        first = self._ref(options, varying=True, size=size)
        if first is None:  # nothing of this size varies: take the size of what does
            first = self._ref(options, varying=True)
            assert first is not None
            self.spec.sizes[name] = size = first.size
        # sized: a node that reads only itself at a delay has no size the checker could infer
        self.spec.lines.append(f"{name}: {size} = {self._expr(first, options, size, depth=2)}")

    def _linear(self, name: str, size: int, others: list[tuple[str, int]]) -> None:
        """`name = a * name[t-1] + b` (`[t+1]` in a backward node), a and b read anything but `name`."""
        past = self._at(name, -1 if name.startswith("b") else 1).text
        r, q = self._leaf(others, size), self._leaf(others, size)
        a = self.pick(["0.5", "sigmoid({q})", "(1 - sigmoid({q}))", "{clock}", "tanh({q}) * 0.5"])
        b = self.pick(["{r}", "(1 - sigmoid({q})) * {r}", "{r} * {clock}", "{r} / 4 - {q}"])
        a, b = (x.format(q=q, r=r, clock=self._clock()) for x in (a, b))
        self.spec.lines.append(f"{name}: {size} = " + self.pick([f"{a} * {past} + {b}", f"{b} + {past} * {a}"]))

    def _attention(self, name: str, options: list[tuple[str, int]], fixed: bool) -> bool:
        """`name = attend(score, values)`: scores over the memory's positions from a value of this step (or a
        static one), values the memory, its keys, or an expression over its positions and this step."""
        sizes = self.spec.sizes
        values = [("m", sizes["m"]), ("mk", sizes["mk"]), ("tanh(m * 0.5 + mean({r}))", sizes["m"])]
        values = [(v, z) for v, z in values if not fixed or z == sizes[name]]
        if not values:
            return False
        r = self._ref(options, varying=True) or self._ref(options)
        assert r is not None
        text, sizes[name] = self.pick(values)
        score = self.pick(
            [
                "mean(tanh(mk) * sum({r}))",
                "dot(m, m) * 0.1 + mean({r})",
                "sum(layer_norm(mk) * mean({r}))",
                "dot(mk, tanh(mk + mean({r}) * 2))",
            ]
        )
        self.spec.lines.append(f"{name} = attend({score.format(r=r.text)}, {text.format(r=r.text)})")
        self.used |= {"m", "mk"}
        return True

    def _layer(self, name: str, size: int, options: list[tuple[str, int]]) -> None:
        sources = [self._source(options, varying=True)]
        sources += [self._source(options) for _ in range(self.int(0, 2))]
        texts = [t for t, _ in sources]
        act = self.pick(ACTIVATIONS)
        opts = " bias=false" if self.flag(0.15) else ""
        self.spec.lines.append(f"layer {name}: {size} {act}{opts} <- {', '.join(texts)}")

    def _source(self, options: list[tuple[str, int]], varying: bool | None = None) -> tuple[str, bool]:
        """A layer source: a reference, a token input (an embedding) or a small expression."""
        choice = self.pick(["ref", "ref", "tokens", "expr", "concat", "clock"])
        if choice == "tokens" and varying is not False:
            ref = self._ref([o for o in options if o[0] == "w"], tokens=True)
            if ref is not None:
                return ref.text, True
        ref = self._ref(options, varying=varying)
        if ref is None:
            ref = self._ref(options)
        assert ref is not None
        if choice == "expr":
            return self._expr(ref, options, ref.size, depth=1), ref.varying
        if choice == "concat":
            other = self._ref(options)
            assert other is not None
            return f"concat({ref.text}, {other.text})", ref.varying or other.varying
        if choice == "clock":  # the step's clock: size 1 alone, or masking a reference (static ones too)
            clock = self._clock()
            return (clock, True) if self.flag(0.3) else (f"{clock} * {ref.text}", True)
        return ref.text, ref.varying

    def _clock(self) -> str:
        return f"every({self.pick([2, 3, 1])})"

    def _expr(self, first: Ref, options: list[tuple[str, int]], size: int, depth: int) -> str:
        """An elementwise expression of size `size` that reads `first`."""
        leaf = first.text
        if depth == 0:
            return leaf
        other = self._leaf(options, size)
        form = self.pick(
            ["unary", "add", "sub", "mul", "div", "minmax", "neg", "scale", "leaf", "norm", "reduce", "clock"]
        )
        inner = self._expr(first, options, size, depth - 1)
        if form == "unary":
            return f"{self.pick(UNARY)}({inner})"
        if form in ("add", "sub", "mul"):
            return f"({inner} {dict(add='+', sub='-', mul='*')[form]} {other})"
        if form == "div":
            return f"{inner} / (1.5 + sin({other}))"
        if form == "minmax":
            return f"{self.pick(['min', 'max'])}({inner}, {other})"
        if form == "neg":
            return f"-{inner}"
        if form == "norm":  # over the vector: the one form that mixes a node's entries
            return f"layer_norm({inner}) * 0.5"
        if form == "reduce":  # size 1, broadcast back
            reduce = self.pick([f"mean({leaf})", f"sum({leaf}) * 0.25", f"dot({leaf}, {leaf}) * 0.25"])
            return f"({inner} - {reduce})" if self.flag(0.5) else f"{inner} / (1 + {reduce} * {reduce})"
        if form == "clock":  # a clock-gated update: the new value when it ticks, `other` in between
            clock = self._clock()
            return f"({clock} * {inner} + (1 - {clock}) * {other})"
        if form == "scale":
            return f"{self.pick(['0.5', '2', '1.25'])} * {inner} + {self.pick(['1', '0.25'])}"
        return inner

    def _leaf(self, options: list[tuple[str, int]], size: int) -> str:
        if "w" in self.spec.sizes and self.spec.sizes["w"] == size and self.flag(0.3):
            ref = self._ref([o for o in options if o[0] == "w"], tokens=True)
            if ref is not None:
                return f"one_hot({ref.text})"
        ref = self._ref(options, size=size)
        return ref.text if ref is not None and not self.flag(0.2) else self.pick(["0.5", "2", "1"])

    # ---- inits and outputs ---------------------------------------------------------------------------

    def _inits(self) -> None:
        for name in sorted(self.spec.delayed):
            if name == "w":
                continue  # token inputs start from "no token"
            policies = ["zeros", "default", "learned", "0.5"]
            if "s" in self.spec.sizes:
                policies += ["s", "tanh(s) * 2 - 1", "concat(s, s)"]
            policy = self.pick(policies)
            if policy != "default":
                self.spec.lines.append(f"init {name} = {policy}")

    def _outputs(self, nodes: list[str]) -> None:
        """Every node nobody reads (so that every node reaches an output), and a few more."""
        chosen = [n for n in nodes if n not in self.used] or nodes[-1:]
        chosen += [n for n in self.draw(st.lists(st.sampled_from(nodes), max_size=2, unique=True)) if n not in chosen]
        if "sa" in self.spec.sizes and self.flag(0.3):
            self.spec.lines.append(f"output sa{' last' if self.flag(0.5) else ''}")
        for name in chosen:
            self.spec.lines.append(f"output {name}{' last' if self.flag(0.3) else ''}")


@st.composite
def networks(draw: Any, max_nodes: int = 3) -> str:
    return Builder(draw, max_nodes).build().text()


@st.composite
def calls(draw: Any, max_nodes: int = 3) -> tuple[str, int, int, list[int] | None, int]:
    text = draw(networks(max_nodes))
    batch, steps = draw(st.sampled_from([2, 3, 1])), draw(st.sampled_from([4, 5, 2, 6, 3, 1]))
    padded = draw(st.integers(0, 2)) != 2  # two calls in three with lengths
    lengths = draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch)) if padded else None
    return text, batch, steps, lengths, draw(st.integers(0, 2**16))


def check(text: str, batch: int, steps: int, lengths: list[int] | None, seed: int) -> None:
    try:
        net = rnndsl.compile(text)
    except rnndsl.SpecError as err:  # the generator's fault, not the compiler's: say what it wrote
        raise AssertionError(f"generated an invalid spec:\n{text}\n{err}") from None
    randomize(net.double().eval(), seed)
    torch.manual_seed(seed)
    call = random_inputs(net, "cpu", batch, steps)
    if lengths is not None:
        call["lengths"] = torch.tensor(lengths)
    if "m" in call:  # a padded memory: its positions past each length get no weight
        call["memory_lengths"] = {"m": torch.randint(1, call["m"].shape[1] + 1, (batch,))}
    try:
        first = compare(net, atol=1e-9, rtol=1e-7, **call)
        if first.state is not None:  # continue from the state just produced, into a shorter chunk
            state = State(
                {k: v.detach().requires_grad_(v.dtype.is_floating_point) for k, v in first.state.items()},
                first.state.signature,
            )
            more = random_inputs(net, "cpu", batch, max(1, steps - 2))
            if "m" in more:
                more["memory_lengths"] = {"m": torch.randint(1, more["m"].shape[1] + 1, (batch,))}
            compare(net, atol=1e-9, rtol=1e-7, state=state, **more)
    except AssertionError as err:
        raise AssertionError(f"{err}\nspec:\n{text}\nbatch={batch} steps={steps} lengths={lengths}") from None


SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@settings(max_examples=30, **SETTINGS)  # type: ignore[arg-type]
@given(calls())
def test_random_network_fast_equals_reference(case: tuple[str, int, int, list[int] | None, int]) -> None:
    check(*case)


@pytest.mark.fuzz
@settings(max_examples=2000, **SETTINGS)  # type: ignore[arg-type]
@given(calls(max_nodes=5))
def test_random_network_fast_equals_reference_long(case: tuple[str, int, int, list[int] | None, int]) -> None:
    check(*case)


@settings(max_examples=60, **SETTINGS)  # type: ignore[arg-type]
@given(networks(max_nodes=5))
def test_generator_writes_valid_specs(text: str) -> None:
    """Every generated spec passes the checker (otherwise the differential test would test nothing)."""
    try:
        rnndsl.load(text)
    except rnndsl.SpecError as err:
        raise AssertionError(f"{text}\n{err}") from None


def feed_back(text: str, draw: Any) -> str:
    """The random network with its input `x` made self-fed: a new layer `fb` reads a forward node, and
    `x` is fed `tanh(fb[t-k])`, so running free closes new loops through the network."""
    lines = text.splitlines()
    decl = next(line for line in lines if line.strip().startswith("input x:"))
    size = int(decl.split(":")[1])
    forward = [m.group(1) for line in lines if (m := re.match(r"\s*(?:layer\s+)?(f\d+)\b", line))]
    source = draw(st.sampled_from(forward))
    k = draw(st.integers(1, 2))
    lines[lines.index(decl)] = f"{decl} = tanh(fb[t-{k}])"
    lines.insert(-1, f"layer fb: {size} <- {source}")
    return "\n".join(lines)


@st.composite
def fed_calls(draw: Any) -> tuple[str, int, int, list[int] | None, int]:
    text, batch, steps, lengths, seed = draw(calls())
    assume("input x:" in text and "x[t+" not in text)  # reading x ahead, its feed would close a mixed loop
    return feed_back(text, draw), batch, steps, lengths, seed


@settings(max_examples=20, **SETTINGS)  # type: ignore[arg-type]
@given(fed_calls())
def test_random_network_run_free_equals_feeding_back_what_it_fed(
    case: tuple[str, int, int, list[int] | None, int],
) -> None:
    text, batch, steps, lengths, seed = case
    net = randomize(rnndsl.compile(text).double().eval(), seed)
    torch.manual_seed(seed)
    call = random_inputs(net, "cpu", batch, steps)
    x = call.pop("x")
    if lengths is not None:
        call["lengths"] = torch.tensor(lengths)
    if "m" in call:
        call["memory_lengths"] = {"m": torch.randint(1, call["m"].shape[1] + 1, (batch,))}
    if not any(n.input_kind not in ("static", "memory") for n in net.network.inputs if n.name in call):
        call["steps"] = steps
    if not any(n.name in call for n in net.network.inputs):
        call["batch"] = batch
    free = net(**call)
    fed = free.fed["x"]
    assert fed.shape == x.shape
    forced = net(**call, x=fed)
    for name in free:
        torch.testing.assert_close(
            forced[name], free[name], atol=1e-10, rtol=1e-10, msg=lambda m, name=name: f"{name}: {m}\nspec:\n{text}"
        )
