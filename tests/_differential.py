"""Helpers shared by the differential tests: random inputs for any network, fast vs reference comparison."""

from __future__ import annotations

from typing import Any

import torch

from rnndsl.runtime.network import CompiledNetwork, Outputs
from rnndsl.runtime.reference import reference

__all__ = ["compare", "gradients_of_a_loss", "randomize", "random_inputs"]


def randomize(net: CompiledNetwork, seed: int = 0, scale: float = 0.5) -> CompiledNetwork:
    """Draw every parameter from N(0, scale²): learned inits start at zero, and zeros hide mistakes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return net


def random_inputs(
    net: CompiledNetwork,
    device: torch.device | str,
    batch: int,
    steps: int,
    dtype: torch.dtype = torch.float64,
    grad: bool = True,
) -> dict[str, Any]:
    """Random tensors for every input of a network, shaped by its kind and size; `steps=` when it needs one."""
    inputs: dict[str, Any] = {}
    for node in net.network.inputs:
        if node.input_kind == "tokens":
            inputs[node.name] = torch.randint(0, node.size, (batch, steps), device=device)
        elif node.input_kind == "static":
            inputs[node.name] = torch.randn(batch, node.size, dtype=dtype, device=device, requires_grad=grad)
        elif node.input_kind == "memory":  # a whole other sequence: positions of their own
            positions = int(torch.randint(1, 5, ()))
            inputs[node.name] = torch.randn(batch, positions, node.size, dtype=dtype, device=device, requires_grad=grad)
        else:
            inputs[node.name] = torch.randn(batch, steps, node.size, dtype=dtype, device=device, requires_grad=grad)
    if all(n.input_kind in ("static", "memory") for n in net.network.inputs):
        inputs["steps"] = steps
    return inputs


def _scalar(out: Outputs, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """One number that reads every output and every state value, with fixed random weights."""
    total: Any = sum((out[k] * weights[k]).sum() for k in out)
    if out.state is not None:
        total = total + sum(
            (v * weights["state:" + k]).sum() for k, v in out.state.items() if v.dtype.is_floating_point
        )
    return total  # type: ignore[no-any-return]


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float, what: str) -> None:
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


def compare(net: CompiledNetwork, atol: float = 1e-10, rtol: float = 1e-10, **call: Any) -> Outputs:
    """Run `net(**call)` and the reference; outputs, state and every gradient must agree. Gives the fast result."""
    fast, slow = net(**call), reference(net, **call)
    assert list(fast) == list(slow)
    for k in fast:
        _close(fast[k], slow[k], atol, rtol, f"output {k}")
    assert set(fast.attention) == set(slow.attention)
    for k in fast.attention:
        _close(fast.attention[k], slow.attention[k], atol, rtol, f"attention {k}")
    assert (fast.state is None) == (slow.state is None) == net.network.reads_future
    if fast.state is not None:
        assert slow.state is not None and set(fast.state) == set(slow.state)
        for k in fast.state:
            _close(fast.state[k], slow.state[k], atol, rtol, f"state {k}")
    gen = torch.Generator().manual_seed(1)
    values = dict(fast) | ({"state:" + k: v for k, v in fast.state.items()} if fast.state is not None else {})
    weights = {
        k: torch.randn(v.shape, generator=gen, dtype=torch.float64).to(v.device, v.dtype)
        for k, v in values.items()
        if v.dtype.is_floating_point
    }
    wrt = [v for v in call.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    wrt += [v for v in (call.get("state") or {}).values() if v.requires_grad]
    params = list(net.named_parameters())
    names = [f"input {i}" for i in range(len(wrt))] + [n for n, _ in params]
    wrt += [p for _, p in params]
    g_fast, g_slow = _grads(_scalar(fast, weights), wrt), _grads(_scalar(slow, weights), wrt)
    for a, b, what in zip(g_fast, g_slow, names, strict=True):
        if a is None or b is None:  # unused on one side: the other's gradient must be zero
            other = a if a is not None else b
            assert other is None or float(other.abs().max()) == 0, f"grad {what}: only one side uses it"
            continue
        _close(a, b, atol, rtol, f"grad {what}")
    return fast


def _grads(y: torch.Tensor, wrt: list[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    """d y / d wrt, None where y does not depend on it (also when y depends on nothing at all)."""
    if not y.requires_grad:
        return (None,) * len(wrt)
    return torch.autograd.grad(y, wrt, allow_unused=True)


def gradients_of_a_loss(net: CompiledNetwork, call: dict[str, Any]) -> tuple[Outputs, list[torch.Tensor | None]]:
    """`net(**call)`, and its outputs (detached) then the gradients of a fixed loss of its outputs and state in
    every input, state value and parameter that requires one (None where the loss does not read it)."""
    out = net(**call)
    loss: Any = sum((v * torch.linspace(-1, 1, v.numel(), dtype=v.dtype).view_as(v)).sum() for v in out.values())
    if out.state is not None:
        loss = loss + sum(v.sin().sum() for v in out.state.values())
    wrt = [v for v in call.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    wrt += list(call.get("state", {}).values()) + list(net.parameters())
    return out, [*(v.detach() for v in out.values()), *torch.autograd.grad(loss, wrt, allow_unused=True)]
