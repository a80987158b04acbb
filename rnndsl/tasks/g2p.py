"""Spelling to pronunciation: takes a seed, gives the CMU dictionary's words as an encoder-decoder task.

Letters in (`tokens(27)`, `.` then a..z), phonemes out (`tokens(40)`, the boundary `.` then the 39 ARPAbet
phonemes without stress): data and splits from `rnndsl.tasks.cmudict` (117,465 words; validation and
test 1,000 words each by default, train the rest). The spec is a `model` with an encoder reading a token
input of 27 and a decoder with a self-fed token input of 40 (`= sample(softmax(y[t-1]))` with
`init ... = 0`, the boundary as its start) and an every-step output of 40 logits. Training is teacher-
forced; the metrics decode each held-out word greedily (or with `beam` > 1) until the boundary and
report the phoneme error rate (`per`: edit distance over reference length, primary), the word error rate
(`wer`), both also against the closest of the word's pronunciations in the dictionary (`per_any`,
`wer_any`: how the published CMUdict results count a word such as `read`), and the teacher-forced
cross-entropy. `G2P.pronounce` gives each word's `Pronunciation`: the phonemes
said and, for a decoder with attention (`c = attend(score, values)`), what each phoneme's step weighed of
each letter (`rnndsl generate` draws it as a heatmap).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from rnndsl.lang.errors import Diagnostic
from rnndsl.tasks.base import Batch, Binding, Task, TaskMismatchError, check_split, epoch_batch
from rnndsl.tasks.cmudict import (
    LETTERS,
    PHONEMES,
    Pair,
    decode_phonemes,
    encode_letters,
    encode_phonemes,
    load_variants,
    pad_pairs,
    split_pairs,
)
from rnndsl.tasks.metrics import closest, cross_entropy, phoneme_error_rate, word_error_rate

if TYPE_CHECKING:
    from rnndsl.runtime.generation import Generation

__all__ = ["EncoderDecoderBinding", "G2P", "Pronunciation"]


@dataclass(frozen=True)
class EncoderDecoderBinding(Binding):
    """A model's source input (of instance `encoder`), its self-fed target input (of instance `decoder`)
    and the decoder's output; `input`/`output` as in Binding."""

    target: str = ""
    encoder: str = ""
    decoder: str = ""

    def run(self, net: Any, batch: Batch) -> torch.Tensor:
        device = net.like.device
        lengths = {
            self.encoder: batch.lengths.to(device) if batch.lengths is not None else None,
            self.decoder: batch.more["decoder_lengths"].to(device),
        }
        inputs = {self.input: batch.x.to(device), self.target: batch.more["decoder_in"].to(device)}
        return net(**inputs, lengths=lengths)[self.output]

    def decode(self, net: Any, batch: Batch, steps: int, beam: int) -> list[list[int]]:
        """Each word's phoneme ids as the model generates them, until the boundary."""
        return self.generate(net, batch, steps, beam).lists()

    def generate(self, net: Any, batch: Batch, steps: int, beam: int) -> Generation:
        """The model's decoding of the batch's words, greedy (`beam` 1) or beam search, stopping at the
        boundary 0: its tokens and, for a decoder with attention, its weights over the letters."""
        device = net.like.device
        lengths = {self.encoder: batch.lengths.to(device)} if batch.lengths is not None else None
        how: dict[str, Any] = {"greedy": True} if beam == 1 else {"beam": beam}
        out: Generation = net.generate(steps, lengths=lengths, stop=0, **how, **{self.input: batch.x.to(device)})
        return out


@dataclass(frozen=True)
class Pronunciation:
    """A word as a g2p model says it. `said`: the phonemes, the boundary `.` last when the decoding stopped;
    `truth`: the dictionary's phonemes (held-out words; empty for words given); `attention`: for each attention
    node of the decoder, (len(said), len(word)) weights, row j what the step that chose `said[j]` weighed of each
    letter (each row sums to 1).

    >>> Pronunciation("cat", ("K", "AE", "T", "."), ("K", "AE", "T")).line()
    'cat                  K AE T    (dictionary: K AE T)'
    """

    word: str
    said: tuple[str, ...]
    truth: tuple[str, ...] = ()
    attention: dict[str, torch.Tensor] = field(default_factory=dict)

    def line(self) -> str:
        """The word and its phonemes (without the boundary), and the dictionary's when known."""
        phonemes = self.said[:-1] if self.said[-1:] == (PHONEMES[0],) else self.said
        line = f"{self.word:<20} {' '.join(phonemes)}"
        if self.truth:
            line += f"    (dictionary: {' '.join(self.truth)})"
        return line


@dataclass(frozen=True)
class G2P(Task):
    """Grapheme to phoneme conversion on the CMU Pronouncing Dictionary.

    >>> batch = G2P().train_batch(0, 4)
    >>> batch.x.shape[0], batch.more["decoder_in"][:, 0].tolist()
    (4, [0, 0, 0, 0])
    """

    name: ClassVar[str] = "g2p"
    primary: ClassVar[str] = "per"
    higher_is_better: ClassVar[bool] = False
    evaluation_options: ClassVar[tuple[str, ...]] = ("beam",)
    seed: int = 0
    validation_size: int = 1000
    test_size: int = 1000
    beam: int = 1  # decoding for the metrics: 1 greedy, K > 1 beam search

    @functools.cached_property
    def _splits(self) -> dict[str, list[Pair]]:
        return split_pairs(self.seed, self.validation_size, self.test_size)

    def words(self, split: str) -> list[Pair]:
        if split != "train":
            check_split(split)
        return list(self._splits[split])

    def train_batch(self, step: int, size: int) -> Batch:
        train = self._splits["train"]
        return _batch([train[i] for i in epoch_batch(len(train), step, size, self.seed)])

    def split(self, name: str) -> Batch:
        check_split(name)
        return _batch(self._splits[name])

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return cross_entropy(out, batch.y)

    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, float]:
        return {"cross_entropy": float(cross_entropy(out, batch.y))}

    def evaluate(self, net: Any, binding: Binding, batch: Batch, chunk: int) -> dict[str, float]:
        assert isinstance(binding, EncoderDecoderBinding)
        found = super().evaluate(net, binding, batch, chunk)
        steps = int(batch.more["decoder_lengths"].max()) + 5
        hypotheses: list[list[int]] = []
        for i in range(0, len(batch), chunk):
            hypotheses += binding.decode(net, batch.slice(i, i + chunk), steps, self.beam)
        references = [[int(p) for p in row if p > 0] for row in batch.y.tolist()]  # no end symbol, no padding
        variants = load_variants()
        assert batch.lengths is not None  # words of several lengths: `_batch` pads them
        spelt = zip(batch.x.tolist(), batch.lengths.tolist(), strict=True)
        words = ["".join(LETTERS[i] for i in row[:n]) for row, n in spelt]
        nearest = closest(hypotheses, [[encode_phonemes(v) for v in variants[w]] for w in words])
        return {
            "per": phoneme_error_rate(hypotheses, references),
            "wer": word_error_rate(hypotheses, references),
            "per_any": phoneme_error_rate(hypotheses, nearest),  # the closest of the word's pronunciations
            "wer_any": word_error_rate(hypotheses, nearest),
            **found,
        }

    def bind(self, network: Any) -> Binding:
        from rnndsl.frontend.compose import Model

        header = (
            f"`{network.name}` does not fit task `g2p`, which feeds letters (`tokens({len(LETTERS)})`) to an "
            f"encoder and phonemes (`tokens({len(PHONEMES)})`, self-fed) to a decoder, and reads the decoder's "
            f"{len(PHONEMES)} logits at every step"
        )
        if not isinstance(network, Model):
            raise TaskMismatchError(
                header,
                [
                    Diagnostic(
                        f"`{network.name}` is one network; an encoder-decoder is a `model`",
                        network.nodes[0].span,
                        network.source,
                        hint="write `model NAME { enc = ENCODER  dec = DECODER(context = enc.h) }`",
                    )
                ],
            )
        source = [(i, n) for i, n in network.inputs if n.is_tokens and n.feed is None and n.size == len(LETTERS)]
        target = [(i, n) for i, n in network.inputs if n.is_tokens and n.feed is not None and n.size == len(PHONEMES)]
        outputs = [(i, o) for i, o in network.outputs if not o.last and i.network[o.name].size == len(PHONEMES)]
        problems = []
        if len(source) != 1:
            problems.append(f"needs one input `tokens({len(LETTERS)})` (the letters); it has {len(source)}")
        if len(target) != 1:
            problems.append(
                f"needs one self-fed input `tokens({len(PHONEMES)}) = sample(softmax(...))` (the "
                f"phonemes); it has {len(target)}"
            )
        if len(outputs) != 1:
            problems.append(f"needs one every-step output of size {len(PHONEMES)} (logits); it has {len(outputs)}")
        if len(network.inputs) != 2:
            problems.append(f"the task feeds two inputs; the model takes {len(network.inputs)}")
        if problems:
            raise TaskMismatchError(header, [Diagnostic(p, network.span, network.source) for p in problems])
        (enc, src), (dec, tgt), (_, out) = source[0], target[0], outputs[0]
        return EncoderDecoderBinding(src.name, out.name, target=tgt.name, encoder=enc.name, decoder=dec.name)

    def show(self, net: Any, words: list[str], count: int, options: dict[str, Any]) -> list[str]:
        """Each word's pronunciation as the model says it (held-out test words when none are given)."""
        return [p.line() for p in self.pronounce(net, words, count, options)]

    def pronounce(self, net: Any, words: list[str], count: int, options: dict[str, Any]) -> list[Pronunciation]:
        """Each word's `Pronunciation` (the first `count` held-out test words when none are given), decoded
        greedily or with `options["beam"]` beams; its attention cut to the phonemes said and the word's letters."""
        pairs = [(w.lower(), ()) for w in words] if words else self._splits["test"][:count]
        for word, _ in pairs:
            if not word.isalpha() or not word.isascii():
                raise ValueError(f"`{word}`: the model reads words of letters a-z")
        binding = self.bind(net.model)
        assert isinstance(binding, EncoderDecoderBinding)
        letters = [encode_letters(w) for w, _ in pairs]
        batch = Batch(_padded(letters), torch.zeros(len(pairs), 1), torch.tensor([len(x) for x in letters]))
        beam = int(options.get("beam") or 1)
        out = binding.generate(net, batch, max(len(x) for x in letters) + 10, beam)
        return [
            Pronunciation(
                word,
                tuple(decode_phonemes(ids)),
                tuple(truth),
                {k: w[i, : len(ids), : len(word)] for k, w in out.attention.items()},
            )
            for i, ((word, truth), ids) in enumerate(zip(pairs, out.lists(keep_stop=True), strict=True))
        ]

    def attends(self, net: Any) -> list[str]:
        """The attention nodes (`c = attend(score, values)`) of the model's decoder, whose weights
        `pronounce` gives: none for a decoder that reads only the encoder's summary."""
        decoder = self.bind(net.model)
        assert isinstance(decoder, EncoderDecoderBinding)
        network = next(i.network for i in net.model.instances if i.name == decoder.decoder)
        return [n.name for n in network.nodes if n.attention]


def _padded(rows: list[list[int]]) -> torch.Tensor:
    out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def _batch(pairs: list[Pair]) -> Batch:
    padded = pad_pairs(pairs)
    return Batch(
        padded.letters,
        padded.phones_out,
        padded.letter_lengths,
        {"decoder_in": padded.phones_in, "decoder_lengths": padded.phone_lengths},
    )
