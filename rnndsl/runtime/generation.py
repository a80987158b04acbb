"""Generation: takes a compiled network with a self-fed token input, gives the sequences it generates.

`generate` samples (or picks greedily) in one call of the network's free-running code: the self-fed
input starts from its init, takes the prompt's tokens, then the network's own draws. `beam_search`
runs one step at a time from the network's state, keeping the `beam` most likely continuations of each
sequence and ranking finished ones by log-probability divided by length ** `length_penalty`.
Both take the network's static inputs by name (`sex=...`, an encoder's summary) and return a `Generation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from rnndsl.backend.evaluate import evaluate
from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Node
from rnndsl.runtime.feed import Feed, Sampler, refuse_undrawable
from rnndsl.runtime.validate import validate
from rnndsl.runtime.values import State, token_start

if TYPE_CHECKING:
    from rnndsl.runtime.network import CompiledNetwork

__all__ = ["Generation", "beam_search", "check_token", "generate"]

MAX_STEPS = 100_000


@dataclass(frozen=True)
class Generation:
    """Generated sequences. `tokens` (B, L) int64: each row's prompt, then what was generated, then
    `pad` (the stop token, or -1 without one) past its length; `lengths` (B,) counts each row's tokens,
    its stop token included; `log_probs` (B, L) the network's log-probability of each generated token
    (NaN for prompt tokens and padding; None when the input is fed by `argmax`); `scores` (B,) for beam
    search: the log-probability of each chosen sequence divided by its length ** length_penalty."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    log_probs: torch.Tensor | None
    scores: torch.Tensor | None = None
    stop: int | None = None
    # `c = attend(...)`: what it weighed for each token, (B, L, memory positions), the row of token j being the
    # weights of the step that chose it (zero past the row's length)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)

    def lists(self, keep_stop: bool = False) -> list[list[int]]:
        """Each row's tokens as a list, cut at its length (and its stop token dropped unless `keep_stop`)."""
        out = []
        for row, n in zip(self.tokens.tolist(), self.lengths.tolist(), strict=True):
            ids = row[:n]
            if not keep_stop and self.stop is not None and ids and ids[-1] == self.stop:
                ids = ids[:-1]
            out.append(ids)
        return out


def generate(
    net: CompiledNetwork,
    steps: int,
    *,
    input: str | None = None,
    prompt: Any = None,
    temperature: float = 1.0,
    top_k: int = 0,
    greedy: bool = False,
    stop: int | None = None,
    batch: int | None = None,
    generator: torch.Generator | None = None,
    memory_lengths: dict[str, torch.Tensor] | None = None,
    **inputs: torch.Tensor,
) -> Generation:
    """Let the network feed itself for `steps` tokens after an optional prompt.

    `prompt`: (B, P) token ids, or a list of B lists of ids (of any lengths); each row's generation starts
    after its own prompt. `stop`: a token that ends a row (generation still runs `steps` steps; what follows
    a row's stop is padding). The batch size comes from the static inputs, the prompt, or `batch`.
    """
    node = _fed_input(net, input)
    _check_steps(steps)
    check_token(net, node, stop, "stop")
    sampler = Sampler(temperature, top_k, greedy, generator)
    ids, given_lengths = _prompt(net, node, prompt)
    if ids is not None:
        if batch is not None and batch != ids.shape[0]:
            raise ValueError(f"batch={batch} but the prompt has {ids.shape[0]} rows; leave batch out")
        batch = ids.shape[0] if not inputs else batch
    _only_static(net, node, inputs)
    longest = 0 if ids is None else ids.shape[1]
    T = longest + steps + 1  # noqa: N806  (step T-1 draws the last token; its own output is not needed)
    call = validate(net, (), inputs, None, None, T, batch, memory_lengths)
    B, device = call.batch, net.like.device  # noqa: N806
    plen = torch.zeros(B, dtype=torch.long) if given_lengths is None else given_lengths
    if ids is not None and ids.shape[0] != B:
        raise ValueError(f"prompt: expected {B} rows (the batch size of the inputs), got {ids.shape[0]}")
    given = torch.full((B, T), token_start(node), dtype=torch.long)
    if ids is not None:
        given[:, 1 : longest + 1] = ids
    keep = torch.arange(T).unsqueeze(0) <= plen.unsqueeze(1)  # the start, then each row's prompt
    scores: list[torch.Tensor] | None = [] if _picks(node) == "sample" else None
    feed = Feed({node.name: given.to(device)}, {node.name: keep.to(device)}, sampler, scores=scores)
    with torch.no_grad():
        out = net.execute(call, net.boundary_values(call.inputs, B), feed)
    tokens = out.fed[node.name][:, 1:].cpu()
    log_probs = None if scores is None else _chosen(scores, keep, out.fed[node.name].cpu())
    lengths = plen + steps
    if stop is not None:
        lengths = _cut_at_stop(tokens, plen, lengths, stop)
    pad = -1 if stop is None else stop
    inside = torch.arange(tokens.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    tokens = tokens.masked_fill(~inside, pad)
    if log_probs is not None:
        log_probs = log_probs.masked_fill(~inside, math.nan)
    attention = {k: w[:, : T - 1].cpu() * inside.unsqueeze(2) for k, w in out.attention.items()}
    return Generation(tokens, lengths, log_probs, None, stop, attention)


def beam_search(
    net: CompiledNetwork,
    steps: int,
    beam: int,
    *,
    input: str | None = None,
    stop: int | None = None,
    length_penalty: float = 1.0,
    batch: int | None = None,
    memory_lengths: dict[str, torch.Tensor] | None = None,
    **inputs: torch.Tensor,
) -> Generation:
    """The `beam` most likely continuations of each sequence, kept step by step; returns the best of each
    row by log-probability / length ** `length_penalty` (0: raw log-probability; 1: per token).

    With beam 1 it keeps the likeliest token at each step, as greedy decoding does (on an exact tie the two may
    take different tokens). Runs at most `steps` steps, fewer once every beam has emitted `stop`.
    """
    node = _fed_input(net, input)
    _check_steps(steps)
    check_token(net, node, stop, "stop")
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam: expected a whole number >= 1, got {beam!r}")
    if (
        isinstance(length_penalty, bool)
        or not isinstance(length_penalty, (int, float))
        or not (math.isfinite(length_penalty))
    ):
        raise ValueError(f"length_penalty: expected a finite number, got {length_penalty!r}")
    sampling = [k for k in ("prompt", "temperature", "top_k", "greedy", "generator") if k in inputs]
    if sampling:  # not network inputs: say so, not "unknown input"
        raise ValueError(
            f"{', '.join(sampling)}: options of sampling, which beam search does not take (it starts each row "
            "from the start token and keeps the likeliest continuations): leave them out, or sample without beam="
        )
    if net.network.reads_future:
        raise ValueError(f"network `{net.network.name}` reads the future ([t+k]); beam search runs step by step")
    if net.network.reads_step:
        raise ValueError(
            f"network `{net.network.name}` reads the step (every(k)), which each call counts from 0; beam search "
            f"runs one step per call: sample instead (one call), with `greedy=True` for the most likely tokens"
        )
    _only_static(net, node, inputs)
    call = validate(net, (), inputs, None, None, 1, batch, memory_lengths)
    B, K, device = call.batch, beam, net.like.device  # noqa: N806
    wide: dict[str, Any] = {k: v.repeat_interleave(K, 0) for k, v in call.inputs.items()}
    if call.memory_lengths:
        wide["memory_lengths"] = {k: v.repeat_interleave(K, 0) for k, v in call.memory_lengths.items()}
    with torch.no_grad():
        out = net(steps=1, batch=B * K, **wide) if not wide else net(steps=1, **wide)
        assert out.state is not None
        state: State = out.state
        scores = torch.full((B, K), -math.inf, device=device)
        scores[:, 0] = 0.0  # the beams start as copies of one: expand only the first
        seqs = torch.zeros(B, K, 0, dtype=torch.long, device=device)
        chosen = torch.zeros(B, K, 0, device=device)
        lengths = torch.zeros(B, K, dtype=torch.long, device=device)
        done = torch.zeros(B, K, dtype=torch.bool, device=device)
        attention = {k: w.new_zeros(B, K, 0, w.shape[-1]) for k, w in out.attention.items()}
        for step in range(1, steps + 1):  # step 0 was the call above
            logp = next_log_probs(net, node, state, wide, step).view(B, K, node.size)  # -1 is ambiguous at B = 0
            N = logp.shape[-1]  # noqa: N806
            cand = scores.unsqueeze(2) + logp
            if stop is not None:  # a finished beam only carries on, with its score, as padding
                cand = torch.where(done.unsqueeze(2), torch.full_like(cand, -math.inf), cand)
                cand[..., stop] = torch.where(done, scores, cand[..., stop])
            scores, index = cand.view(B, K * N).topk(K, 1)
            origin, token = index // N, index % N
            was_done = done.gather(1, origin)
            step_logp = logp.gather(1, origin.unsqueeze(2).expand(-1, -1, N)).gather(2, token.unsqueeze(2))
            seqs = torch.cat([seqs.gather(1, origin.unsqueeze(2).expand_as(seqs)), token.unsqueeze(2)], 2)
            chosen = torch.cat(
                [
                    chosen.gather(1, origin.unsqueeze(2).expand_as(chosen)),
                    step_logp.masked_fill(was_done.unsqueeze(2), math.nan),
                ],
                2,
            )
            for k, w in attention.items():  # the weights of the step whose output chose the token
                positions = w.shape[3]  # not -1 in the view: ambiguous at B = 0
                last = out.attention[k][:, -1].view(B, K, positions)
                weighed = last.gather(1, origin.unsqueeze(2).expand(-1, -1, positions))
                kept = w.gather(1, origin.view(B, K, 1, 1).expand(-1, -1, *w.shape[2:]))
                attention[k] = torch.cat([kept, weighed.masked_fill(was_done.unsqueeze(2), 0).unsqueeze(2)], 2)
            lengths = lengths.gather(1, origin) + (~was_done).long()
            done = was_done | (token == stop) if stop is not None else was_done
            if bool(done.all()):
                break
            rows = (torch.arange(B, device=device).unsqueeze(1) * K + origin).view(-1)
            state = State({k: v.index_select(0, rows) for k, v in state.items()}, state.signature)
            out = net(**{node.name: token.view(-1, 1)}, state=state, **wide)
            assert out.state is not None
            state = out.state
    if seqs.shape[2] < steps:  # every beam stopped early: pad to `steps` columns, as sampling gives
        seqs = torch.cat([seqs, seqs.new_zeros(B, K, steps - seqs.shape[2])], 2)
        chosen = torch.cat([chosen, chosen.new_zeros(B, K, steps - chosen.shape[2])], 2)
        attention = {
            k: torch.cat([w, w.new_zeros(B, K, steps - w.shape[2], w.shape[3])], 2) for k, w in attention.items()
        }
    norm = scores / lengths.clamp(min=1).to(scores.dtype).pow(length_penalty)
    best = norm.argmax(1)
    pick = best.view(B, 1, 1).expand(-1, 1, seqs.shape[2])
    tokens, log_probs = seqs.gather(1, pick).squeeze(1), chosen.gather(1, pick).squeeze(1)
    length = lengths.gather(1, best.unsqueeze(1)).squeeze(1)
    pad = -1 if stop is None else stop
    inside = torch.arange(tokens.shape[1], device=device).unsqueeze(0) < length.unsqueeze(1)
    score = norm.gather(1, best.unsqueeze(1)).squeeze(1)
    weights = {
        k: w.gather(1, best.view(B, 1, 1, 1).expand(-1, 1, *w.shape[2:])).squeeze(1) * inside.unsqueeze(2)
        for k, w in attention.items()
    }
    return Generation(
        tokens.masked_fill(~inside, pad).cpu(),
        length.cpu(),
        log_probs.masked_fill(~inside, math.nan).cpu(),
        score.cpu(),
        stop,
        {k: w.cpu() for k, w in weights.items()},
    )


def next_log_probs(
    net: CompiledNetwork,
    node: Node,
    state: dict[str, torch.Tensor],
    inputs: dict[str, torch.Tensor],
    step: int | None = None,
) -> torch.Tensor:
    """The log-probabilities (B, N) of the token a self-fed input would take at the step after `state`:
    its feed evaluated on the state's last values (`y[t-k]` is the state's k-th value from the end).
    A distribution no token can be drawn from (NaN, inf) is a ValueError naming the input and `step`."""
    feed = node.feed
    assert isinstance(feed, s.Call)
    arg = feed.args[0]

    def lookup(ref: s.Ref) -> torch.Tensor:
        if ref.name in inputs:
            return inputs[ref.name]
        if ref.delay < 1:
            raise ValueError(
                f"the feed of `{node.name}` reads `{ref.name}`, which only a full run computes; "
                "beam search needs a feed of past values and static inputs"
            )
        return state[ref.name][:, -ref.delay]

    token_sizes = {n.name: n.size for n in net.network.nodes if n.is_tokens}
    if isinstance(arg, s.Call) and arg.fn == "softmax":
        scores = evaluate(arg.args[0], lookup, net.like, token_sizes)
        refuse_undrawable(scores, node.name, step, logits=True)
        return torch.log_softmax(scores, -1)
    value = evaluate(arg, lookup, net.like, token_sizes)
    refuse_undrawable(value, node.name, step, logits=feed.fn != "sample")
    return torch.log(value.clamp(min=0)) if feed.fn == "sample" else torch.log_softmax(value, -1)


def _fed_input(net: CompiledNetwork, name: str | None) -> Node:
    tokens = [n for n in net.network.self_fed if n.is_tokens]
    if name is not None:
        found = next((n for n in tokens if n.name == name), None)
        if found is None:
            raise ValueError(
                f"network `{net.network.name}` has no self-fed token input `{name}`; it has: "
                f"{', '.join(n.name for n in tokens) or 'none'}"
            )
        return found
    if len(tokens) != 1:
        what = "none" if not tokens else ", ".join(n.name for n in tokens)
        raise ValueError(
            f"network `{net.network.name}` needs one self-fed token input to generate "
            f"(`input w: tokens(N) = sample(softmax(y[t-1]))`); it has {what}"
            + ("; pick one with input=NAME" if tokens else "")
        )
    return tokens[0]


def _picks(node: Node) -> str:
    assert isinstance(node.feed, s.Call)
    return node.feed.fn


def _only_static(net: CompiledNetwork, node: Node, inputs: dict[str, Any]) -> None:
    others = [n.name for n in net.network.inputs if n.input_kind not in ("static", "memory") and n.name != node.name]
    if others:
        raise ValueError(
            f"network `{net.network.name}` reads sequence input(s) {', '.join(others)}: generation "
            f"runs it on its own outputs; call net({others[0]}=...) and read `out.fed` instead"
        )
    if node.name in inputs:
        raise ValueError(f"`{node.name}` is what generation feeds; give its first tokens as prompt=...")


def _check_steps(steps: Any) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps: expected a whole number in [1, {MAX_STEPS}], got {steps!r}")


def check_token(net: CompiledNetwork, node: Node, token: Any, what: str) -> None:
    """A token given by name (`stop`, a prompt's) must be an id of the self-fed input `node`: else a ValueError."""
    if token is None:
        return
    if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < node.size:
        raise ValueError(f"{what}: expected a token id in [0, {node.size}) of input `{node.name}`, got {token!r}")


def _prompt(net: CompiledNetwork, node: Node, prompt: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(B, P) ids padded with 0 and each row's length, from a tensor or lists of ids."""
    if prompt is None:
        return None, None
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() != 2 or prompt.dtype.is_floating_point or prompt.dtype == torch.bool:
            raise ValueError(
                f"prompt: expected (batch, steps) integer token ids, got {prompt.dtype} of shape {tuple(prompt.shape)}"
            )
        rows = prompt.long().cpu().tolist()
    elif isinstance(prompt, (list, tuple)) and all(isinstance(r, (list, tuple)) for r in prompt):
        rows = [list(r) for r in prompt]
    else:
        raise ValueError(
            f"prompt: expected a (batch, steps) tensor or a list of lists of token ids, got {type(prompt).__name__}"
        )
    if not rows:
        raise ValueError("prompt: expected at least one row")
    for row in rows:
        for token in row:
            check_token(net, node, token, "prompt")
    longest = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, torch.tensor([len(r) for r in rows], dtype=torch.long)


def _chosen(scores: list[torch.Tensor], keep: torch.Tensor, fed: torch.Tensor) -> torch.Tensor:
    """(B, T-1): the log-probability of each token fed after the start, NaN where it was given."""
    B, T = keep.shape  # noqa: N806
    out = torch.full((B, T), math.nan, dtype=scores[0].dtype if scores else torch.float32)
    drawn = [t for t in range(T) if not bool(keep[:, t].all())]  # the steps that drew (see Feed.plan)
    if len(scores) == 1 and scores[0].dim() == 3:  # a feed outside any loop drew every step at once: (B, T, N)
        scores = [scores[0][:, t] for t in drawn]
    assert len(drawn) == len(scores), (len(drawn), len(scores))
    for t, logp in zip(drawn, scores, strict=True):
        out[:, t] = logp.cpu().gather(1, fed[:, t : t + 1].clamp(min=0)).squeeze(1)
    out = out.masked_fill(keep, math.nan)
    return out[:, 1:]


def _cut_at_stop(tokens: torch.Tensor, start: torch.Tensor, lengths: torch.Tensor, stop: int) -> torch.Tensor:
    """Each row's length up to and including its first `stop` at or after its prompt."""
    positions = torch.arange(tokens.shape[1]).unsqueeze(0)
    hit = (tokens == stop) & (positions >= start.unsqueeze(1)) & (positions < lengths.unsqueeze(1))
    first = torch.where(hit, positions, tokens.shape[1]).min(1).values
    return torch.minimum(lengths, first + 1)
