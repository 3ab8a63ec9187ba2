"""Split long communications into overlapping chunks that fit the embedding model.

all-MiniLM-L6-v2 reads at most 256 word pieces (and was trained on 128), so a long call
transcript is cut into chunks of about `MAX_WORDS` words along sentence boundaries, each
repeating the last `OVERLAP_WORDS` words of the one before, so that a sentence split across a
boundary is still whole in one chunk. Short texts (almost every note) are one chunk.
"""

from __future__ import annotations

import re

MAX_WORDS = 120
OVERLAP_WORDS = 30

_SENTENCE_END = re.compile(r"(?<=[.!?।])\s+|\n+")


def _sentences(text: str) -> list[list[str]]:
    out = []
    for part in _SENTENCE_END.split(text):
        words = part.split()
        if not words:
            continue
        # A run-on "sentence" longer than a chunk is cut into chunk-sized pieces.
        for start in range(0, len(words), MAX_WORDS):
            out.append(words[start : start + MAX_WORDS])
    return out


def chunk_text(
    text: str, *, max_words: int = MAX_WORDS, overlap_words: int = OVERLAP_WORDS
) -> list[str]:
    """The chunks of `text` in order; one chunk when it is short. Never empty for non-blank text."""
    words = text.split()
    if len(words) <= max_words:
        return [" ".join(words)] if words else []
    chunks: list[str] = []
    current: list[list[str]] = []
    size = 0
    for sentence in _sentences(text):
        if current and size + len(sentence) > max_words:
            chunks.append(" ".join(w for s in current for w in s))
            # Carry whole sentences from the end until the overlap is covered.
            carried: list[list[str]] = []
            carried_size = 0
            for previous in reversed(current):
                if carried_size >= overlap_words or carried_size + len(previous) > max_words // 2:
                    break
                carried.insert(0, previous)
                carried_size += len(previous)
            if not carried:
                # No short sentence to carry: repeat the last words instead.
                tail = current[-1][-overlap_words:]
                carried, carried_size = [tail], len(tail)
            current, size = carried, carried_size
        current.append(sentence)
        size += len(sentence)
    if current:
        last = " ".join(w for s in current for w in s)
        if not chunks or not chunks[-1].endswith(last):
            chunks.append(last)
    return chunks
