"""Stores a search query names: "what did Sharma Kirana complain about", "S0042 ka order".

A query that names a store is about that store's history, so the search ranks the named
store's passages first (see `retrieval.search`). Finding the name works in two steps:

1. Proposal, in process: the words of every indexed store's name and code are kept in a small
   word index. The query is cut into runs of consecutive words that occur in some store name
   (a word one edit away counts, for typos: "Sharmaa"); within a run, the store whose name is
   best covered is proposed, name words weighted by how rare they are among store names, so
   "Sharma" outweighs "Kirana" and "Store". Coverage below `MIN_COVERAGE` proposes nothing,
   so common words that also occur in some name ("best", "new", "delivery") do not count, and
   words that only say what kind of shop it is ("general store") never name one alone.
2. Confirmation, through the shared resolver (`tools.resolve.resolve_store`), which only ever
   finds stores the acting user may see and refuses to guess between look-alikes: a proposal
   it does not resolve to exactly one store is dropped. A complete name is passed as the
   store's own name (an exact lookup); a partial one as the words the person wrote.

Queries that name no store find nothing here and are searched exactly as before.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_WORD = re.compile(r"\w+", re.UNICODE)

# Share of a store's name (by rarity-weighted words) a query must contain to propose it.
MIN_COVERAGE = 0.6
# Words shorter than this must match exactly; longer ones may be one edit away.
TYPO_MIN_LENGTH = 5
# At most this many stores are taken from one query.
MAX_NAMED = 3
# Words that say what kind of shop it is, not which one: "general store" names no store.
SHOP_WORDS = frozenset(
    """store stores shop shops dukan dukaan outlet general kirana mart supermart provision
    provisions bhandar traders trading medical medicals medicos chemist chemists pharmacy hall
    corner house bakers bakery sweets mishthan paan super supermarket market bazaar
    departmental agency agencies enterprises centre center brothers sons co ltd pvt""".split()
)


@dataclass(frozen=True)
class StoreMention:
    """A store name (or code) found in a query: which store, and where in the query."""

    store_id: int
    name: str
    start: int
    end: int
    complete: bool
    coverage: float


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


class StoreNames:
    """The words of store names and codes, to propose which stores a query names."""

    def __init__(self, names: Mapping[int, str], codes: Mapping[int, str] | None = None) -> None:
        self.names = dict(names)
        self.codes = {sid: code.lower() for sid, code in (codes or {}).items() if code}
        self._words: dict[int, tuple[str, ...]] = {}
        self._sequence = {store_id: tuple(words(name)) for store_id, name in self.names.items()}
        stores_of: dict[str, set[int]] = defaultdict(set)
        for store_id, name in self.names.items():
            name_words = tuple(dict.fromkeys(words(name)))
            self._words[store_id] = name_words
            for word in name_words:
                stores_of[word].add(store_id)
        self._stores_of = dict(stores_of)
        total = max(len(self.names), 1)
        # Rare words identify a store; words in many names ("store", "kirana") barely do.
        self._idf = {w: math.log(1 + total / len(ids)) for w, ids in self._stores_of.items()}
        self._near: dict[str, set[str]] = defaultdict(set)
        for word in self._stores_of:
            if len(word) >= TYPO_MIN_LENGTH and not word.isdigit():
                for deleted in _deletes(word):
                    self._near[deleted].add(word)
        self._plain = {
            store_id
            for store_id, name_words in self._words.items()
            if all(w in SHOP_WORDS or w.isdigit() for w in name_words)
        }
        self._by_code: dict[str, set[int]] = defaultdict(set)
        for store_id, code in self.codes.items():
            self._by_code[code].add(store_id)

    def __len__(self) -> int:
        return len(self.names)

    def _name_words_like(self, word: str) -> set[str]:
        if word in self._stores_of:
            return {word}
        if len(word) < TYPO_MIN_LENGTH or word.isdigit():
            return set()
        near = set(self._near.get(word, ()))
        for deleted in _deletes(word):
            if deleted in self._stores_of:
                near.add(deleted)
            near |= self._near.get(deleted, set())
        return near

    def propose(self, query: str) -> list[StoreMention]:
        """Stores whose name (or code) the query contains, best covered first."""
        tokens = [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(query)]
        found: dict[int, StoreMention] = {}
        for word, start, end in tokens:
            for store_id in self._by_code.get(word, ()):
                found[store_id] = StoreMention(
                    store_id, self.codes[store_id], start, end, complete=True, coverage=1.0
                )
        like = [self._name_words_like(word) for word, _, _ in tokens]
        for first, last in _runs(like, tokens):
            mention = self._best_in_run(tokens, like, first, last)
            if mention is not None and mention.store_id not in found:
                found[mention.store_id] = mention
        ranked = sorted(found.values(), key=lambda m: (-m.coverage, m.start))
        return ranked[:MAX_NAMED]

    def _best_in_run(
        self,
        tokens: list[tuple[str, int, int]],
        like: list[set[str]],
        first: int,
        last: int,
    ) -> StoreMention | None:
        # Only a telling word makes a store a candidate (or, for a name made of shop-kind words
        # alone, any of them): "store" alone would make thousands of candidates.
        candidates: set[int] = set()
        for i in range(first, last):
            for word in like[i]:
                if word in SHOP_WORDS or word.isdigit():
                    candidates |= self._stores_of[word] & self._plain
                else:
                    candidates |= self._stores_of[word]
        # coverage, matched weight, -store id, first and last word: of two names the query
        # holds whole ("Murali Kirana Bhandar" and "Murali Kirana Bhandar, Anna Nagar"), the
        # longer one it holds is the one meant.
        best: tuple[float, float, int, int, int, int] | None = None
        written = " " + " ".join(t[0] for t in tokens[first:last]) + " "
        for store_id in candidates:
            name_words = self._words[store_id]
            name_set = set(name_words)
            weight = sum(self._idf[w] for w in name_words)
            matched: set[str] = set()
            positions: list[int] = []
            for i in range(first, last):
                hit = like[i] & name_set
                if hit - matched:
                    matched |= hit
                    positions.append(i)
            if not positions or all(tokens[i][0].isdigit() for i in positions):
                continue
            # Shop-kind words alone ("general store") name a store only when its whole name is
            # made of them ("Best Fresh Mart") and all of it was written.
            telling = [w for w in name_words if w not in SHOP_WORDS and not w.isdigit()]
            if telling and not matched & set(telling):
                continue
            if not telling and matched != name_set:
                continue
            found = sum(self._idf[w] for w in matched)
            coverage = found / weight if weight else 0.0
            # Then a name written out word for word ("Rajwada General Store, Rajwada").
            literal = len(self._sequence[store_id])
            literal *= f" {' '.join(self._sequence[store_id])} " in written
            key = (round(coverage, 9), found, literal, -store_id, positions[0], positions[-1])
            if best is None or key > best:
                best = key
        if best is None or best[0] < MIN_COVERAGE:
            return None
        coverage, _, _, neg_id, lo, hi = best
        return StoreMention(
            store_id=-neg_id,
            name=self.names[-neg_id],
            start=tokens[lo][1],
            end=tokens[hi][2],
            complete=coverage >= 1.0 - 1e-9,
            coverage=round(coverage, 4),
        )


def _runs(like: list[set[str]], tokens: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """(first, end) of runs of consecutive query words that occur in some store name."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    for i, matches in enumerate([*like, set()]):
        if matches:
            if start is None:
                start = i
            continue
        if start is not None:
            if not all(tokens[j][0].isdigit() for j in range(start, i)):
                out.append((start, i))
            start = None
    return out


def resolve_mentions(
    query: str,
    names: StoreNames,
    resolve: Callable[[str], int | None],
) -> list[tuple[int, StoreMention]]:
    """The proposals that `resolve` (a reference -> the one store id, or None) confirms.

    The store `resolve` returns is the one kept: it may differ from the proposal when the
    person's words fit another store they may see better.
    """
    out: list[tuple[int, StoreMention]] = []
    for mention in names.propose(query):
        reference = mention.name if mention.complete else query[mention.start : mention.end]
        if reference.strip().isdigit():  # a bare number is an id to the resolver, never here
            continue
        store_id = resolve(reference)
        if store_id is not None and all(store_id != kept for kept, _ in out):
            out.append((store_id, mention))
    return out
