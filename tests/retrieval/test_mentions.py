"""Finding the stores a search query names, before the resolver confirms them."""

from __future__ import annotations

from retrieval.mentions import StoreNames, resolve_mentions

NAMES = {
    1: "Sharma General Store",
    2: "Sharma Kirana",
    3: "Gayatri Medicals, Secunderabad",
    4: "Gayatri Kirana & General, Maninagar",
    5: "Best Fresh Mart",
    6: "Gupta Kirana",
    7: "Patel Provision Store",
    8: "Sharma Store 17",
    9: "Sharma Store 18",
}
CODES = {i: f"S{i:04d}" for i in NAMES}
INDEX = StoreNames(NAMES, CODES)


def _proposed(query: str) -> list[tuple[int, str, bool]]:
    return [(m.store_id, query[m.start : m.end], m.complete) for m in INDEX.propose(query)]


def test_a_full_name_in_a_sentence_is_proposed_with_its_span() -> None:
    query = "what did Gayatri Medicals, Secunderabad complain about: late delivery"
    assert _proposed(query) == [(3, "Gayatri Medicals, Secunderabad", True)]
    assert _proposed("Sharma Kirana ka order late kyun hai")[0] == (2, "Sharma Kirana", True)


def test_a_partial_or_misspelt_name_is_proposed_as_written() -> None:
    (store, span, complete), *_ = _proposed("did gayatri medicals ask for the Diwali scheme")
    assert (store, span, complete) == (3, "gayatri medicals", False)
    assert _proposed("what did Sharmaa Kirana say")[0][:2] == (2, "Sharmaa Kirana")


def test_codes_and_numbered_names() -> None:
    assert _proposed("any complaint from s0006?") == [(6, "s0006", True)]
    assert _proposed("what did Sharma Store 18 say")[0] == (9, "Sharma Store 18", True)


def test_queries_without_a_store_propose_nothing() -> None:
    for query in (
        "complaint about damaged torn cartons of Parle-G",
        "best selling fresh items",  # words that occur in names, but too little of one
        "general store complaints",
        "kirana",
        "Rs 18,750 by Friday",
        "",
    ):
        assert INDEX.propose(query) == [], query


def test_only_what_the_resolver_confirms_is_kept() -> None:
    # "Sharma" alone could be four stores: the resolver says it is ambiguous (None).
    calls: list[str] = []

    def resolve(reference: str) -> int | None:
        calls.append(reference)
        return {"Gupta Kirana": 6}.get(reference)

    found = resolve_mentions("did Gupta Kirana and Sharma Kirana both complain", INDEX, resolve)
    assert [store for store, _ in found] == [6]
    assert calls == ["Gupta Kirana", "Sharma Kirana"]


def test_of_two_names_held_whole_the_longer_is_meant() -> None:
    index = StoreNames({1: "Murali Kirana Bhandar", 2: "Murali Kirana Bhandar, Anna Nagar"})
    assert index.propose("what did Murali Kirana Bhandar, Anna Nagar say")[0].store_id == 2
    assert index.propose("what did Murali Kirana Bhandar say")[0].store_id == 1
    index = StoreNames({1: "Rajwada General Store", 2: "Rajwada General Store, Rajwada"})
    assert index.propose("did Rajwada General Store, Rajwada complain")[0].store_id == 2
    assert index.propose("did Rajwada General Store complain")[0].store_id == 1
