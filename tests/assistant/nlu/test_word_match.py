"""Matching a word of a message to a word of a name: the quick refusal of far-apart words
gives exactly what difflib's similarity gives."""

from __future__ import annotations

import itertools
import random

from assistant.nlu.entities import WORD_MATCH, tokenize, word_match, word_similarity

NAMES = """
Sharma General Store; Shiv Shakti Medical Hall, Rohini; Gupta & Sons; New Order Mart;
Radhe Krishna Kirana & General, Old Town; Best Medicos, Unit 4; Tata Tea Gold 500g;
Parle-G Glucose Biscuits 4x100g; Fortune Sunflower Oil 5 L Jar; Balaji Provision Stores;
Suresh Verma; Farhan Shaikh; Anand Naidu; Ramesh Tiwari; Sai Baba Departmental Store;
Lakshmi Narayan Traders; Bikaneri Sweets & Namkeen; Maggi 2-Minute Noodles Masala 280g
"""


def _typos(word: str, rng: random.Random) -> list[str]:
    """The slips of the thumb people make: a letter dropped, doubled, swapped or replaced."""
    out = []
    for _ in range(4):
        i = rng.randrange(len(word))
        letter = rng.choice("aeioumnrstk")
        out += [
            word[:i] + word[i + 1 :],
            word[:i] + word[i] + word[i:],
            word[:i] + letter + word[i + 1 :],
            word[:i] + word[i + 1 : i + 2] + word[i : i + 1] + word[i + 2 :],
        ]
    return [w for w in out if w]


def test_word_match_is_the_similarity_of_words_that_match() -> None:
    rng = random.Random(5)
    words = sorted({w for name in NAMES.split(";") for w in tokenize(name)})
    words += [typo for word in words if len(word) >= 3 for typo in _typos(word, rng)]
    matched = 0
    for a, b in itertools.product(words, repeat=2):
        similarity = word_similarity(a, b)
        expected = similarity if similarity >= WORD_MATCH else 0.0
        assert word_match(a, b) == expected, (a, b)
        matched += expected > 0
    # Typos of a word match it; far-apart words do not.
    assert word_match("medicos", "medcos") >= WORD_MATCH
    assert word_match("krishna", "kirana") == 0.0
    assert matched > len(words)
