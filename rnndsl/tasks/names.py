"""First names, one character at a time: takes a seed, gives splits of the `names` package's census lists.

The `names` package ships the 1990 US census lists of first names (`dist.male.first`,
`dist.female.first`; nothing is downloaded). The names of both lists are lowercased and deduplicated
(5,163 names of 2 to 11 letters a-z). Alphabet: 0 the boundary symbol `.` (start and end), 1..26 a..z.
A name `ann` is the input `. a n n` and the target `a n n .`: next-character prediction, many-to-many,
synced. The network needs an input `tokens(27)` (or a sequence input of size 27, fed one-hot) and
`output NAME` (every step) of size 27, read as logits. Batches are padded, with lengths; padded targets
are ignored.

Splits: a permutation of the sorted names fixed by `seed` gives test 10% (516), validation 10% (516)
and train the rest (4,131). Metric: `bits_per_char` on held-out names (primary), the mean cross-entropy
in bits over every predicted symbol, the end symbol included; a uniform guess scores log2(27), 4.75.

With `by_sex=1` the task also feeds each name's sex (`load_names_by_sex`), one-hot (male, female), to a
`static` input of size 2: one-to-many generation conditioned on a vector. A network whose token input is
self-fed (`= sample(softmax(y[t-1]))`, `init ... = 0`) then generates names (`Names.show`,
`rnndsl generate`).
"""

from __future__ import annotations

import dataclasses
import functools
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rnndsl.lang.errors import Diagnostic
from rnndsl.lang.ir import Network
from rnndsl.tasks.base import (
    IGNORE,
    Batch,
    Binding,
    Needs,
    Task,
    TaskMismatchError,
    check_split,
    epoch_batch,
    split_indices,
)
from rnndsl.tasks.metrics import bits_per_char, cross_entropy

__all__ = ["ALPHABET", "Names", "decode", "encode", "load_names", "load_names_by_sex"]

ALPHABET = "." + string.ascii_lowercase  # id 0 is the boundary: start of the input, end of the target


@functools.lru_cache(maxsize=1)
def load_names() -> tuple[str, ...]:
    """Every first name of the census lists the `names` package ships, lowercased, unique, sorted."""
    try:
        import names
    except ImportError as err:
        raise ImportError("the names task needs the `names` package: pip install 'rnndsl[tasks]'") from err
    found: set[str] = set()
    for key in ("first:male", "first:female"):
        lines = Path(names.FILES[key]).read_text(encoding="ascii").splitlines()
        found.update(line.split()[0].lower() for line in lines if line.strip())
    return tuple(sorted(found))


@functools.lru_cache(maxsize=1)
def load_names_by_sex() -> tuple[tuple[str, int], ...]:
    """Every name of `load_names` with its sex, 0 male or 1 female, sorted by name.

    Each line of a census list is: name, frequency (percent of the people of that sex), cumulative percent,
    rank. A name in both lists (331 of them: `jean`, `terry`...) takes the sex of the list where its frequency
    is higher; the 3 ties (`ariel`, `hong`, `kris`) go to female, as the 1990 census counted more women than
    men, so an equal share is more women. That gives 1,146 male names and 4,017 female ones.

    >>> sex = dict(load_names_by_sex())
    >>> sex["john"], sex["mary"], sex["terry"], sex["jean"]
    (0, 1, 0, 1)
    """
    try:
        import names
    except ImportError as err:
        raise ImportError("the names task needs the `names` package: pip install 'rnndsl[tasks]'") from err
    frequency: list[dict[str, float]] = []
    for key in ("first:male", "first:female"):
        lines = Path(names.FILES[key]).read_text(encoding="ascii").splitlines()
        frequency.append({fields[0].lower(): float(fields[1]) for fields in map(str.split, lines) if fields})
    male, female = frequency
    everyone = male.keys() | female.keys()
    return tuple(sorted((name, int(female.get(name, 0.0) >= male.get(name, 0.0))) for name in everyone))


def encode(word: str) -> list[int]:
    """Token ids of a name, without the boundary: `encode("ab") == [1, 2]`."""
    return [ALPHABET.index(c) for c in word]


def decode(ids: list[int]) -> str:
    """The text of token ids; the boundary shows as `.`."""
    return "".join(ALPHABET[i] for i in ids)


def pad(words: list[str], sexes: list[int] | None = None) -> Batch:
    """Inputs `. w` and targets `w .` of each word, padded to the longest (inputs with 0, targets IGNORE);
    with `sexes`, `more["static"]` holds each name's sex one-hot (male, female)."""
    lengths = [len(w) + 1 for w in words]
    x = np.zeros((len(words), max(lengths)), dtype=np.int64)
    y = np.full_like(x, IGNORE)
    for row, word in enumerate(words):
        ids = encode(word)
        x[row, 1 : len(ids) + 1] = ids
        y[row, : len(ids)] = ids
        y[row, len(ids)] = 0
    more = {} if sexes is None else {"static": torch.eye(2)[torch.tensor(sexes)]}
    return Batch(torch.from_numpy(x), torch.from_numpy(y), torch.tensor(lengths), more)


@dataclass(frozen=True)
class Names(Task):
    """Next-character prediction on first names.

    >>> batch = Names().train_batch(0, 8)
    >>> batch.x.shape[0], batch.x.shape[1] == int(batch.lengths.max()), batch.x[0, 0].item()
    (8, True, 0)
    """

    name: ClassVar[str] = "names"
    primary: ClassVar[str] = "bits_per_char"
    higher_is_better: ClassVar[bool] = False
    seed: int = 0
    by_sex: int = 0  # 1: also feed each name's sex, one-hot (male, female), to a `static` input of size 2

    @property
    def needs(self) -> Needs:
        return Needs(input_size=len(ALPHABET), output_size=len(ALPHABET), last=False, vocab=len(ALPHABET))

    @functools.cached_property
    def _splits(self) -> dict[str, list[str]]:
        words = load_names()
        return {k: [words[i] for i in v] for k, v in split_indices(len(words), self.seed, (0.1, 0.1)).items()}

    def _pad(self, words: list[str]) -> Batch:
        if not self.by_sex:
            return pad(words)
        sex = dict(load_names_by_sex())
        return pad(words, [sex[w] for w in words])

    def bind(self, network: Any) -> Binding:
        """As any task; with `by_sex`, the network also needs a `static` input of size 2 for the sex."""
        if not self.by_sex or not isinstance(network, Network):
            return super().bind(network)
        static = [n for n in network.inputs if n.input_kind == "static"]
        if len(static) != 1 or static[0].size != 2:
            span = static[0].span if static else network.nodes[0].span
            raise TaskMismatchError(
                f"network `{network.name}` does not fit task `names` with by_sex=1, which feeds each name's sex "
                "one-hot to a static input",
                [
                    Diagnostic(
                        f"needs one `static` input of size 2; it has {len(static)}",
                        span,
                        network.source,
                        hint="declare `input sex: 2 static`",
                    )
                ],
            )
        rest = dataclasses.replace(network, nodes=tuple(n for n in network.nodes if n is not static[0]))
        return dataclasses.replace(super().bind(rest), static=static[0].name)

    def show(self, net: Any, words: list[str], count: int, options: dict[str, Any]) -> list[str]:
        """`count` generated names (for each sex with `by_sex`), continuing each prompt in `words`."""
        for w in words:  # checked before encoding, which knows letters only
            if not w.isalpha() or not w.isascii():
                raise ValueError(f"prompt `{w}`: names are letters a-z")
        prompts = [encode(w.lower()) for w in words] or [[]]
        beam = options.get("beam", 1)
        if beam > 1 and words:
            raise ValueError(
                f"beam search starts each name from the start token, so it continues no prompt "
                f"({', '.join(words)}): leave the words out, or sample them without --beam"
            )
        lines = []
        for sex in [0, 1] if self.by_sex else [None]:
            if beam > 1:  # the likeliest name, found by beam search
                statics = {} if sex is None else {_static_name(net): torch.eye(2)[[sex]].to(net.like)}
                out = net.generate(MAX_NAME, beam=beam, stop=0, batch=None if statics else 1, **statics)
                label = "likeliest" if sex is None else ("male" if sex == 0 else "female") + ", likeliest"
                lines.append(f"{label} (beam {beam}): {decode(out.lists()[0])}")
                continue
            for prompt in prompts:
                statics = {} if sex is None else {_static_name(net): torch.eye(2)[[sex] * count].to(net.like)}
                out = net.generate(
                    MAX_NAME, prompt=[prompt] * count, stop=0, batch=None if statics else count, **options, **statics
                )
                names = [decode(ids) for ids in out.lists()]
                label = "" if sex is None else ("male: " if sex == 0 else "female: ")
                lines.append(label + ", ".join(names))
        return lines

    def words(self, split: str) -> list[str]:
        """The names of one split: "train", "validation" or "test"."""
        if split != "train":
            check_split(split)
        return list(self._splits[split])

    def train_batch(self, step: int, size: int) -> Batch:
        train = self._splits["train"]
        return self._pad([train[i] for i in epoch_batch(len(train), step, size, self.seed)])

    def split(self, name: str) -> Batch:
        check_split(name)
        return self._pad(self._splits[name])

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return cross_entropy(out, batch.y)

    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, float]:
        return {"bits_per_char": bits_per_char(out, batch.y)}


MAX_NAME = 16  # characters a generated name may have, its end included (the census names have at most 11)


def _static_name(net: Any) -> str:
    return next(n.name for n in net.network.inputs if n.input_kind == "static")
