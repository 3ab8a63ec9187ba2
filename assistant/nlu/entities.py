"""Find the store, products and order a message names, by asking the database.

People write "sharma ji ka baaki", "10 cases parle g for gupta kirana", "S00042 outstanding",
"tiwari brothers general store, karol bagh ka last order", with typos. The approach:

1. The message is cut into runs of words at words that cannot be part of a name (question
   words, Hinglish particles, intent words, periods). Words that describe a kind of shop
   ("general store", "kirana", "medical") stay inside runs, since they are part of names, but
   carry little weight.
2. For each run, pg_trgm (served by the trigram indexes) fetches the stores the user may see,
   and the active products, that share a distinctive word with it.
3. Every span of the run is scored against those candidates word by word in Python: each word
   of the span is matched to the closest word of the name (edit-similarity, so typos match
   and "rahi" does not match "rahul"), distinctive words weigh more than generic ones, and a
   name whose distinctive words are left unmatched scores lower.
4. The best span wins. When another store scores about as well, the mention is ambiguous and
   carries the candidates, so the planner asks "Which store do you mean?" instead of guessing.
5. Names made of words that usually end one ("C-Scheme", "New Order Mart", "The General
   Store", "Gupta & Sons") are found by their exact writing instead: every span of the whole
   message, stop-words included, is looked up among the names written out in full, and the
   longest one that names a visible store is taken unless step 4 explained more of the
   message. Such words alone never name a store by fuzzy match ("new orders today").

Only stores the user may see are ever candidates: a store of another rep is never matched.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    URL,
    ColumnElement,
    Integer,
    Select,
    any_,
    bindparam,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from tools.context import Actor, ToolContext, store_scope
from tools.db import DirectStatement
from tools.models import Product, Store

# Words that end a name: question words, Hinglish particles, intent and period words.
STOPWORDS = set(
    """
    a an the of for to from in on at by with and or but is are was were be been am do does did
    done has have had i me my we our you your he she they them their his her its it this that
    these those there here what whats wat which who whom whose when where why how much many
    any some all every each no not yes please pls plz kindly ok okay hi hello hey dear sir
    ji bhai bhaiya bhaiyya sahab saab madam ka ki ke ko se me mein main mai hai hain tha thi the
    ho hoga hogi kya kab kaun kitna kitne kitni kaise kahan kaha kyu kyun aur ya bhi to toh na
    nahi nahin mat hum humko mujhe mera meri mere apna apni apne unka unki unke inka inki inke
    uska uski uske iska iski iske wala wale wali do de dena dedo diya dijiye karo kar karna
    karu karun karein batao bata bataiye dikhao dikha dekho chahiye lagao bhejo bhej bhejna
    liye liya lena le rahi raha rahe chal chalu koi kuch sab sabse zyada jyada kam abhi baad
    pehle pichla pichli pichle pichhle agla agli agle wapas phir fir baare bare tak par pe
    show tell give get find search list check see let know need want send put make add log note
    notes book order orders ordered ordering place placed repeat same cancel confirm last time
    next previous recent recently latest usually today yesterday tomorrow tmrw kal aaj week
    weeks month months year years day days quarter since till until ago
    sale sales sold sell selling revenue business total value amount rs inr rupees lakh lakhs
    outstanding oustanding outstandin outstnding due dues baaki baki bakaya udhaar udhar payment
    payments pending owe owes owed credit overdue balance stock stk inventory available qty
    quantity units unit case cases ctn carton cartons box boxes dabbe dabba peti packet packets
    pcs piece pieces scheme schemes offer offers promotion promotions promo discount deal deals
    pitch suggest suggestion suggestions upsell cross recommend recommendation
    call visit calls visits forecast demand predict prediction expected expect will would
    should could can may might shall going
    complain complained complaint complaints shikayat said say says told asked ask feedback
    message messages history bola boli
    profile details detail info information about summary report compare comparison vs versus
    top best selling sellers seller low out risk churn dropped stopped active running current
    region city rep area zone code phone number no
    """.split()
)

# Words that describe a kind of shop or pack: part of names, but they identify little.
GENERIC = set(
    """
    store stores shop shops dukan dukaan outlet general kirana mart provision provisions bhandar
    traders trading medical medicals medicos chemist chemists pharmacy hall corner house bakers
    bakery bake sweets paan cold drinks super supermarket market bazaar new fresh departmental
    agency agencies enterprises centre center brothers sons and co ltd pvt
    g gm gms kg ml l ltr pack pouch single small medium large x jar bottle tin can sachet
    refill box
    """.split()
)

_TOKEN = re.compile(r"[a-z0-9][a-z0-9']*")
_STORE_CODE = re.compile(r"\b[A-Za-z]{1,4}-?\d{3,6}\b")
_ORDER_REF = re.compile(
    r"(?:order|ordr|bill|invoice)\s*(?:no\.?|number|num|id)?\s*#?\s*((?:[A-Z]{1,4}-)?\d{2,10})\b"
    r"|#\s*((?:[A-Z]{1,4}-)?\d{2,10})\b",
    re.IGNORECASE,
)
_PHONE = re.compile(r"\+?\d[\d\s-]{8,}\d")
_CODE_WORD = re.compile(r"\b[A-Z][A-Z0-9-]{2,15}\b")

# A span is taken as a name at this score (0-1); a rival this close makes it ambiguous.
STORE_THRESHOLD = 0.72
PRODUCT_THRESHOLD = 0.72
AMBIGUITY_MARGIN = 0.06
WORD_MATCH = 0.78
MAX_CANDIDATES = 25
FINGERPRINT_SECONDS = 5.0


@dataclass
class Mention:
    """A span of the message and the store or product it names."""

    text: str
    kind: str
    score: float
    best: dict[str, Any] = field(default_factory=dict)
    start: int = 0
    end: int = 0
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1


@dataclass
class Entities:
    """The references found in one message."""

    store: Mention | None = None
    product: Mention | None = None
    products: list[Mention] = field(default_factory=list)
    order_ref: str | None = None
    store_code: str | None = None
    tokens: list[str] = field(default_factory=list)


def tokenize(text: str) -> list[str]:
    """Lower-case words; a size written together ("250g", "4x100g") is split into its parts."""
    lowered = text.lower().replace("’", "'")
    lowered = re.sub(r"(\d)([a-z])", r"\1 \2", lowered)
    lowered = re.sub(r"([a-z])(\d)", r"\1 \2", lowered)
    return _TOKEN.findall(lowered)


def _weight(word: str) -> float:
    if word in GENERIC or word.isdigit() or len(word) <= 1:
        return 0.25
    return 1.0


@lru_cache(maxsize=65536)
def word_similarity(a: str, b: str) -> float:
    """How alike two words are (0-1), forgiving one slip of the thumb."""
    if a == b:
        return 1.0
    if len(a) < 3 or len(b) < 3 or a.isdigit() or b.isdigit():
        return 0.0
    if abs(len(a) - len(b)) > 3:
        return 0.0
    ratio = SequenceMatcher(None, a, b, autojunk=False).ratio()
    # A common prefix of four letters or more ("medico"/"medicos") counts as a match too.
    if len(a) >= 4 and len(b) >= 4 and (a.startswith(b) or b.startswith(a)):
        ratio = max(ratio, 0.85)
    return ratio


@lru_cache(maxsize=65536)
def word_match(a: str, b: str) -> float:
    """`word_similarity(a, b)` when the words match (at least `WORD_MATCH`), else 0.0.

    Most pairs of words are far apart, and telling so costs a count of letters instead of
    difflib's matching: the similarity is 2 * (letters matched) / (letters in both words), and
    no more letters can be matched than the two words have in common."""
    if a == b:
        return 1.0
    if len(a) < 3 or len(b) < 3 or abs(len(a) - len(b)) > 3:
        return 0.0
    prefix = len(a) >= 4 and len(b) >= 4 and (a.startswith(b) or b.startswith(a))
    if not prefix:
        common = sum(min(a.count(letter), b.count(letter)) for letter in set(a))
        # (Computed as difflib computes the similarity, so the bound rounds as it does.)
        if 2.0 * common / (len(a) + len(b)) < WORD_MATCH:
            return 0.0
    similarity = word_similarity(a, b)
    return similarity if similarity >= WORD_MATCH else 0.0


@lru_cache(maxsize=16384)
def name_words(name: str) -> tuple[str, ...]:
    return tuple(tokenize(name))


@lru_cache(maxsize=16384)
def _branch_start(name: str) -> int:
    """Where the locality after a comma starts among `name_words(name)` ("Best Medicos,
    Unit 4" -> 2); the number of words when there is none."""
    return len(tokenize(name.split(",")[0]))


def name_score(span: list[str], name: str, extra: str | None = None) -> tuple[float, float]:
    """(score, recall): how well the words of `span` name `name` (or `extra`, e.g. the
    owner, at 90%). Recall is the weighted share of the span's words that match."""
    return _form_score(tuple(span), _name_form(name, extra))


NameForm = tuple[tuple[str, ...], int, tuple[str, ...] | None]


def _name_form(name: str, extra: str | None) -> NameForm:
    """What `name_score` compares a span with: the name's words and where its locality
    starts, and the words of `extra` (or None)."""
    return name_words(name), _branch_start(name), name_words(extra) if extra else None


def _form_score(span: tuple[str, ...], form: NameForm) -> tuple[float, float]:
    words, branch, extra = form
    best = _name_score(span, words, branch)
    if extra:
        owner = _name_score(span, extra, len(extra))
        if owner[0] * 0.9 > best[0]:
            best = (owner[0] * 0.9, owner[1] * 0.9)
    return best


@lru_cache(maxsize=65536)
def _name_score(span: tuple[str, ...], words: tuple[str, ...], branch: int) -> tuple[float, float]:
    if not span or not words:
        return 0.0, 0.0
    # A name made only of generic words ("Best Fresh Mart") is named by those words.
    uniform = not any(_weight(w) == 1.0 for w in words)
    total = matched = 0.0
    used: set[int] = set()
    content = everyday = 0
    for word in span:
        weight = 1.0 if uniform else _weight(word)
        total += weight
        scored = [(word_match(word, w), i) for i, w in enumerate(words) if i not in used]
        if not scored:
            continue
        similarity, index = max(scored)
        if similarity >= WORD_MATCH:
            matched += weight * similarity
            used.add(index)
            if weight == 1.0:
                if word in STOPWORDS:
                    everyday += 1
                else:
                    content += 1
    # Words that usually say what is asked ("new orders", "the scheme") name a store only
    # when they write out all of its name ("New Order Mart", "The General Store"), or all
    # of the locality that tells its branches apart and a word of the rest ("medicos unit
    # 4" for "Best Medicos, Unit 4").
    if content == 0 and not (
        everyday
        and (
            len(used) == len(words)
            or (
                branch < len(words)
                and all(i in used for i in range(branch, len(words)))
                and any(i in used for i in range(branch))
            )
        )
    ):
        return 0.0, 0.0
    recall = matched / total
    # How much of the name the span accounts for, generic words included at their weight:
    # "santoor sandal turmeric 100 g" names "... 100 g" fully and "... 4 x 100 g" not quite.
    weights = [1.0 if uniform else _weight(w) for w in words]
    covered = sum(w for i, w in enumerate(weights) if i in used) / sum(weights)
    return round(0.75 * recall + 0.25 * covered, 4), round(recall, 4)


def runs(tokens: list[str]) -> list[tuple[int, int]]:
    """(start, end) of runs of words that could be part of a name."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    for i, word in enumerate(tokens + [""]):
        breaks = not word or word in STOPWORDS or (word.isdigit() and len(word) > 3)
        if breaks:
            if start is not None:
                out.append((start, i))
            start = None
        elif start is None:
            start = i
    return out


def _content(words: list[str]) -> list[str]:
    return [w for w in words if _weight(w) == 1.0 and len(w) >= 3]


# How a name is written out: whole, the part before a comma (the locality that tells
# same-named stores apart is often left out), and that part without the words for the kind of
# shop at its end ("C-Scheme" for "C-Scheme Stores"), if what is left is not everyday words.
WHOLE, BASE, CORE = 0, 1, 2


def phrase_key(words: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A name's words as a key: "and" is left out, as "&" is ("Gupta and Sons")."""
    return tuple(w for w in words if w != "and")


def name_phrases(name: str) -> list[tuple[tuple[str, ...], int]]:
    """The keys of the ways `name` is written out in full, with their form (WHOLE, BASE,
    CORE); only names of two words or more, since one word is matched word by word."""
    whole = phrase_key(tokenize(name))
    base = phrase_key(tokenize(name.split(",")[0]))
    core = list(base)
    while core and core[-1] in GENERIC:
        core.pop()
    out: list[tuple[tuple[str, ...], int]] = []
    for key, form in ((whole, WHOLE), (base, BASE), (tuple(core), CORE)):
        if len(key) < 2 or any(key == seen for seen, _ in out):
            continue
        if form == CORE and all(w in STOPWORDS or w in GENERIC for w in key):
            continue
        out.append((key, form))
    return out


class NameIndex:
    """The words of every store or product name, in process, to find candidates without a
    sequential scan computing trigram similarity for thousands of names on every message.

    It only proposes ids: the rows are then read with SQL under the user's data scope, so a
    stale index can miss a brand-new store for a moment but can never show a hidden one. It
    is rebuilt when the table's fingerprint (row count, highest id, a hash of the names)
    changes.
    """

    def __init__(self, table: str, columns: tuple[str, ...], where: str = "TRUE") -> None:
        self.table, self.columns, self.where = table, columns, where
        self.fingerprint: tuple[Any, ...] | None = None
        self.checked_at = 0.0
        self.words: dict[str, set[int]] = {}
        self.grams: dict[str, set[str]] = {}
        # Names written out in full (`name_phrases` of the first column): key -> form -> ids.
        self.phrases: dict[tuple[str, ...], dict[int, set[int]]] = {}
        self.longest = 0
        self.lock = threading.Lock()

    def _fingerprint(self, session: Session) -> tuple[Any, ...]:
        names = " || ' ' || ".join(f"coalesce({c}, '')" for c in self.columns)
        row = session.execute(
            text(
                f"SELECT count(*), max(id), sum(hashtext({names})::bigint) "
                f"FROM {self.table} WHERE {self.where}"
            )
        ).one()
        return tuple(row)

    def refresh(self, session: Session) -> None:
        # The fingerprint reads the whole table; a few seconds of staleness only delays a new
        # name, it never widens what a user may see.
        now = time.monotonic()
        if self.fingerprint is not None and now - self.checked_at < FINGERPRINT_SECONDS:
            return
        fingerprint = self._fingerprint(session)
        self.checked_at = now
        with self.lock:
            if fingerprint == self.fingerprint:
                return
            words: dict[str, set[int]] = defaultdict(set)
            phrases: dict[tuple[str, ...], dict[int, set[int]]] = defaultdict(dict)
            cols = ", ".join(self.columns)
            for row in session.execute(
                text(f"SELECT id, {cols} FROM {self.table} WHERE {self.where}")
            ):
                ident = int(row[0])
                for value in row[1:]:
                    for word in tokenize(value or ""):
                        if len(word) >= 3 and not word.isdigit():
                            words[word].add(ident)
                for key, form in name_phrases(row[1] or ""):
                    phrases[key].setdefault(form, set()).add(ident)
            grams: dict[str, set[str]] = defaultdict(set)
            for word in words:
                for gram in _trigrams(word):
                    grams[gram].add(word)
            self.words, self.grams = dict(words), dict(grams)
            self.phrases = dict(phrases)
            self.longest = max((len(key) for key in phrases), default=0)
            self.fingerprint = fingerprint

    def phrases_in(self, tokens: list[str]) -> list[tuple[int, int, int, set[int]]]:
        """(start, end, form, ids) of every span of `tokens` that writes out a name in full
        (see `name_phrases`), with the closest form the span is of."""
        hits: list[tuple[int, int, int, set[int]]] = []
        phrases = self.phrases
        if not phrases:
            return hits
        for i, first in enumerate(tokens):
            if first == "and":
                continue
            # A span may also hold the "and"s its key leaves out.
            for j in range(i + 2, min(len(tokens), i + self.longest + 2) + 1):
                if tokens[j - 1] == "and":
                    continue
                forms = phrases.get(phrase_key(tokens[i:j]))
                if forms:
                    form = min(forms)
                    hits.append((i, j, form, forms[form]))
        return hits

    def lookup(self, keys: list[str], limit: int) -> list[int]:
        """Ids whose names hold words like `keys`, the most (and closest) matches first."""
        scores: dict[int, float] = defaultdict(float)
        for key in keys:
            best: dict[int, float] = {}
            shared: dict[str, int] = defaultdict(int)
            for gram in _trigrams(key):
                for word in self.grams.get(gram, ()):
                    shared[word] += 1
            for word, count in shared.items():
                if count < 2 and word != key:
                    continue
                similarity = word_match(key, word)
                if not similarity:
                    continue
                for ident in self.words[word]:
                    best[ident] = max(best.get(ident, 0.0), similarity)
            for ident, similarity in best.items():
                scores[ident] += similarity
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return [ident for ident, _ in ranked[:limit]]


def _trigrams(word: str) -> set[str]:
    padded = f"  {word} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


_INDEXES: dict[tuple[URL, str], NameIndex] = {}
_INDEXES_LOCK = threading.Lock()


def _index(ctx: ToolContext, kind: str) -> NameIndex:
    return _index_on(ctx.session, kind)


def _index_on(session: Session, kind: str) -> NameIndex:
    # The database's URL (its password included: a URL object compares whole) names the index.
    key = (session.get_bind().engine.url, kind)
    with _INDEXES_LOCK:
        index = _INDEXES.get(key)
        if index is None:
            index = (
                NameIndex("stores", ("name", "owner_name"))
                if kind == "store"
                else NameIndex("products", ("name",), "is_active")
            )
            _INDEXES[key] = index
    index.refresh(session)
    return index


def warm_name_indexes(session: Session) -> None:
    """Build the store and product name indexes now (at app start), so the first question
    that names a store does not wait for them (half a second at 10,000 stores)."""
    for kind in ("store", "product"):
        _index_on(session, kind)


def forget_name_indexes() -> None:
    """Drop the in-process name indexes, so the next message reads the names afresh instead
    of within `FINGERPRINT_SECONDS` (after a bulk change of names, and in tests)."""
    with _INDEXES_LOCK:
        _INDEXES.clear()


def _written_store(ctx: ToolContext, tokens: list[str], fuzzy: Mention | None) -> Mention | None:
    """The store whose name the message writes out in full, when that beats `fuzzy` (the
    word-by-word match).

    Word-by-word matching cannot see names made of everyday or intent words ("C-Scheme",
    "New Order Mart", "The General Store"): those words end a run before a name is looked
    for. An exact name is strong evidence whatever its words, so the longest span that is a
    visible store's whole name (or the part before its comma) is taken, unless the word
    match explains a longer span. The name without its shop-kind words ("C-Scheme" for
    "C-Scheme Stores") is taken only when nothing else names a store.
    """
    hits = _index(ctx, "store").phrases_in(tokens)
    if not hits:
        return None
    hits.sort(key=lambda hit: (hit[0] - hit[1], hit[2], hit[0]))
    for start, end, form, ids in hits:
        if fuzzy is not None and (form == CORE or fuzzy.end - fuzzy.start > end - start):
            continue
        if (
            fuzzy is not None
            and (fuzzy.start, fuzzy.end) == (start, end)
            and not fuzzy.ambiguous
            and fuzzy.best.get("id") in ids
        ):
            return None  # the word match found this very name already
        rows = ctx.session.execute(
            select(Store.id, Store.code, Store.name, Store.owner_name, Store.city)
            .where(ctx.store_scope(), _one_of(Store.id, sorted(ids)))
            .order_by(Store.name, Store.id)
            .limit(MAX_CANDIDATES)
        ).all()
        if not rows:
            continue  # names only stores this user may not see
        found = [
            {"id": r.id, "code": r.code, "name": r.name, "owner_name": r.owner_name, "city": r.city}
            for r in rows
        ]
        return Mention(
            text=" ".join(tokens[start:end]),
            kind="store",
            score=1.0 if form != CORE else 0.9,
            best=found[0],
            start=start,
            end=end,
            candidates=found[:5] if len(found) > 1 else [],
        )
    return None


def names_with_intent_words(ctx: ToolContext, text: str) -> bool:
    """Whether `text` writes out a store name that holds words which usually say what is
    asked ("C-Scheme", "New Order Mart", "Best Medicos"), so those words are not the intent."""
    tokens = tokenize(text)
    return any(
        any(w in STOPWORDS for w in tokens[start:end])
        for start, end, _, _ in _index(ctx, "store").phrases_in(tokens)
    )


def intent_words_in(mention: Mention | None) -> bool:
    """Whether the store `mention` names was written with words of its name that usually say
    what is asked ("C-Scheme ka udhaar"; not "from" in "previous order from super fresh
    mart")."""
    if mention is None:
        return False
    name = set(tokenize(str(mention.best.get("name") or "")))
    return any(w in STOPWORDS and w in name for w in mention.text.split())


_CANDIDATE_COLUMNS = (Store.id, Store.code, Store.name, Store.owner_name, Store.city)
_IDS = bindparam("ids", type_=ARRAY(Integer()))


@lru_cache(maxsize=4096)
def _visible_stores_among(actor: Actor) -> Select[int, str, str, str | None, str | None]:
    """The candidate columns of the stores among `:ids` that `actor` may see, built once per
    actor whose scope is theirs alone (`tools.context.store_scope(actor)`: a rep, an admin);
    a manager's scope names their team as it is now, so it is built for each turn."""
    return select(*_CANDIDATE_COLUMNS).where(store_scope(actor), Store.id == any_(_IDS))


@lru_cache(maxsize=4096)
def _visible_stores_among_direct(actor: Actor) -> DirectStatement:
    return DirectStatement(_visible_stores_among(actor))


def _stores_among(ctx: ToolContext, ids: list[int]) -> list[Any]:
    """The candidate columns of the visible stores among `ids` (rows with those names)."""
    connection = ctx.session.connection()
    if ctx.actor.role in ("rep", "admin"):
        # Every message that names a store runs it: on the driver's cursor (see DirectStatement).
        return _visible_stores_among_direct(ctx.actor).run(connection, {"ids": ids})[0]
    statement = select(*_CANDIDATE_COLUMNS).where(ctx.store_scope(), Store.id == any_(_IDS))
    return list(connection.execute(statement, {"ids": ids}))


def _one_of(column: Any, ids: list[int]) -> ColumnElement[bool]:
    """`column = ANY(ids)`, the ids one array parameter: the statement is the same whatever
    their number, so it is compiled once (an `IN` list is a new statement for each length,
    expanded into one parameter per id on every execution)."""
    return column == any_(literal(ids, ARRAY(Integer)))


def _store_candidates(ctx: ToolContext, words: list[str]) -> list[dict[str, Any]]:
    """Stores the user may see that share a distinctive word with `words` (typos allowed); the
    whole phrase's trigram similarity only when no word finds anything (a typo in the only
    distinctive word, "bnasal kirana store")."""
    keys = _content(words) or [w for w in words if len(w) >= 3]
    if not keys:
        return []
    ids = _index(ctx, "store").lookup(keys[:6], MAX_CANDIDATES * 4)
    columns = _CANDIDATE_COLUMNS
    if ids:
        order = {ident: i for i, ident in enumerate(ids)}
        rows = sorted(_stores_among(ctx, ids), key=lambda r: order[r.id])[:MAX_CANDIDATES]
    elif len(words) > 1:
        whole = literal(" ".join(words))
        rows = list(
            ctx.session.execute(
                select(*columns)
                .where(ctx.store_scope(), Store.name.op("%")(whole))
                .order_by(func.similarity(Store.name, whole).desc(), Store.id)
                .limit(MAX_CANDIDATES)
            )
        )
    else:
        rows = []
    return [
        {"id": r.id, "code": r.code, "name": r.name, "owner_name": r.owner_name, "city": r.city}
        for r in rows
    ]


def _product_candidates(ctx: ToolContext, words: list[str]) -> list[dict[str, Any]]:
    """Active products sharing a distinctive word with `words` (as for stores)."""
    keys = _content(words) or [w for w in words if len(w) >= 3]
    if not keys:
        return []
    ids = _index(ctx, "product").lookup(keys[:6], MAX_CANDIDATES)
    columns = (Product.id, Product.sku, Product.name)
    if ids:
        order = {ident: i for i, ident in enumerate(ids)}
        rows = sorted(
            ctx.session.execute(
                select(*columns).where(Product.is_active.is_(True), _one_of(Product.id, ids))
            ),
            key=lambda r: order[r.id],
        )
    elif len(words) > 1:
        whole = literal(" ".join(words))
        rows = list(
            ctx.session.execute(
                select(*columns)
                .where(Product.is_active.is_(True), Product.name.op("%")(whole))
                .order_by(func.similarity(Product.name, whole).desc(), Product.id)
                .limit(MAX_CANDIDATES)
            )
        )
    else:
        rows = []
    return [{"id": r.id, "sku": r.sku, "name": r.name} for r in rows]


def _holds_words(span: list[str], name: str) -> bool:
    """Whether every word of `span` is (one slip away from) a word of `name`."""
    words = name_words(name)
    return all(any(word_match(w, n) for n in words) for w in span)


def _reach(
    tokens: list[str], first: int, last: int, candidates: list[dict[str, Any]], kind: str
) -> list[float]:
    """Per token of tokens[first:last], its best similarity (counted only from `WORD_MATCH`)
    with a word of any candidate's name, or owner's name for stores."""
    words: set[str] = set()
    for c in candidates:
        words.update(name_words(c["name"]))
        if kind == "store" and c.get("owner_name"):
            words.update(name_words(c["owner_name"]))
    reach = []
    for token in tokens[first:last]:
        reach.append(max((word_match(token, w) for w in words), default=0.0))
    return reach


def _bounded_out(span: list[str], reach: list[float], threshold: float, best: float) -> bool:
    """Whether no candidate can name `span` at `threshold` with a key above `best` (see
    `_best_span`): an upper bound on `_name_score`'s recall from each word's `reach`."""
    weights = [_weight(w) for w in span]
    total = sum(weights)
    recall = max(
        sum(reach) / len(span), sum(w * r for w, r in zip(weights, reach, strict=True)) / total
    )
    if 0.75 * recall + 0.25 < threshold - 1e-9:
        return True
    return round(1.5 * recall * total - 0.5 * total + 1e-9, 2) < best


def _best_span(
    tokens: list[str],
    start: int,
    end: int,
    candidates: list[dict[str, Any]],
    kind: str,
    threshold: float,
    exclude: set[int] | None = None,
) -> Mention | None:
    """The span of tokens[start:end] that best names one of `candidates`."""
    best: Mention | None = None
    best_key: tuple[float, float] = (0.0, 0.0)
    # A name may hold words that usually end one ("Prasad Medical Hall, Unit 4", "C-Scheme
    # Stores"): spans reach a little past the run, and words that match no name lower the
    # score, so only a real part of the name is taken in.
    first, last = max(0, start - 2), min(len(tokens), end + 3)
    # The most each word can contribute: its closest word in any candidate's name (or owner).
    # A span's recall, score and key cannot exceed what these allow, so spans that cannot
    # beat the best one so far, or reach the threshold, are skipped unscored (same result).
    reach = _reach(tokens, first, last, candidates, kind)
    # Each candidate's words, worked out once for all the spans (see `name_score`).
    forms = [
        (c, _name_form(c["name"], c.get("owner_name") if kind == "store" else None))
        for c in candidates
    ]

    def weak(word: str) -> bool:
        # A span starts or ends on a word that tells names apart; in a store's name a number
        # does ("medicos unit 4"), in a product's it is a pack size people leave out.
        return _weight(word) < 1.0 and not (kind == "store" and word.isdigit())

    for i in range(first, end):
        for j in range(max(i + 1, start + 1), min(last, i + 10) + 1):
            span = tokens[i:j]
            if weak(span[0]) and weak(span[-1]) and j - i > 1:
                continue
            if exclude and any(k in exclude for k in range(i, j)):
                continue
            if _bounded_out(span, reach[i - first : j - first], threshold, best_key[0]):
                continue
            key_span = tuple(span)
            scored = sorted(
                ((_form_score(key_span, form), c) for c, form in forms),
                key=lambda item: -item[0][0],
            )
            if not scored or scored[0][0][0] < threshold:
                continue
            (top, top_recall) = scored[0][0]
            # The span explaining most of the message wins: "shiv shakti medial general
            # rohini" (a typo, 0.98) over "general rohini" (exact, but two words of five);
            # a word that matches nothing costs more than a pack-size digit gains.
            total = sum(_weight(w) for w in span)
            explained = top_recall * total
            key = (round(1.5 * explained - 0.5 * total, 2), round(top, 3))
            if key <= best_key:
                continue
            # A rival explains the words about as well; an exact full name has none.
            full = top >= 0.999
            rivals = [
                c
                for (score, recall), c in scored
                if recall >= top_recall - AMBIGUITY_MARGIN and (not full or score >= 0.999)
            ]
            if kind == "store" and not full and all(_weight(w) < 1.0 for w in span):
                # Words that only describe a kind of shop ("medicos") name a store made of
                # such words alone ("Super Medicos"), but every other store holding them
                # ("New Medicos, Bandra") is as likely to be meant.
                rivals += [
                    c for _, c in scored if c not in rivals and _holds_words(span, c["name"])
                ]
            best_key = key
            best = Mention(
                text=" ".join(span),
                kind=kind,
                score=top,
                best=scored[0][1],
                start=i,
                end=j,
                candidates=rivals[:5] if len(rivals) > 1 else [],
            )
    return best


def extract(ctx: ToolContext, text: str, *, want_store: bool, want_product: bool) -> Entities:
    """The store, product(s) and order reference `text` mentions (see the module docstring)."""
    found = Entities()
    order = _ORDER_REF.search(text)
    if order:
        ref = order.group(1) or order.group(2)
        # "order S00042" names a store by its code, not an order.
        if not re.fullmatch(r"[A-Za-z]{1,4}\d{3,6}", ref):
            found.order_ref = ref
    for code in _STORE_CODE.finditer(text):
        if found.order_ref and code.group(0) in (found.order_ref,):
            continue
        if re.fullmatch(r"[A-Za-z]{1,4}-?\d{3,6}", code.group(0)) and not code.group(0).isdigit():
            found.store_code = code.group(0).upper()
            break
    if want_store and not found.store_code:
        # Codes without digits ("AROUT", "ALFKI") are only codes if a visible store has one.
        shouted = {w for w in _CODE_WORD.findall(text) if w != found.order_ref}
        if shouted:
            known = ctx.session.scalars(
                select(Store.code).where(ctx.store_scope(), Store.code.in_(sorted(shouted)))
            ).first()
            if known:
                found.store_code = known
    phone = _PHONE.search(text)
    if phone and want_store and not found.store_code:
        found.store_code = re.sub(r"[\s-]", "", phone.group(0))
    tokens = tokenize(text)
    found.tokens = tokens
    if not (want_store or want_product):
        return found
    taken: set[int] = set()
    if want_store and not found.store_code:
        best: Mention | None = None
        for start, end in runs(tokens):
            candidates = _store_candidates(ctx, tokens[start:end])
            mention = _best_span(tokens, start, end, candidates, "store", STORE_THRESHOLD)
            if mention and (best is None or mention.score > best.score):
                best = mention
        best = _written_store(ctx, tokens, best) or best
        if best is not None:
            found.store = best
            taken.update(range(best.start, best.end))
    if want_product:
        for start, end in runs(tokens):
            i = start
            while i < end:
                if i in taken:
                    i += 1
                    continue
                stop = i
                while stop < end and stop not in taken:
                    stop += 1
                candidates = _product_candidates(ctx, tokens[i:stop])
                mention = _best_span(
                    tokens, i, stop, candidates, "product", PRODUCT_THRESHOLD, exclude=taken
                )
                if mention is None:
                    i = stop
                    continue
                found.products.append(mention)
                taken.update(range(mention.start, mention.end))
                i = start
        found.products.sort(key=lambda m: m.start)
        if found.products:
            found.product = max(found.products, key=lambda m: m.score)
    return found


def mask(text: str, entities: Entities) -> str:
    """`text` without the words of the store and products it names."""
    spans = [m for m in [entities.store, *entities.products] if m is not None]
    if not spans and not entities.store_code:
        return text
    drop = {i for m in spans for i in range(m.start, m.end)}
    words = [w for i, w in enumerate(entities.tokens) if i not in drop]
    if entities.store_code:
        words = [w for w in words if w != entities.store_code.lower()]
    return " ".join(words)


_UNITS = {
    "case", "cases", "ctn", "carton", "cartons", "box", "boxes", "pcs", "piece", "pieces",
    "unit", "units", "dabbe", "dabba", "peti", "packet", "packets", "pkt", "pkts",
}  # fmt: skip
_PACK = {"g", "gm", "gms", "gram", "grams", "kg", "ml", "l", "ltr", "litre", "liter"}


def quantity_for(tokens: list[str], mention: Mention) -> int | None:
    """The quantity written next to a product ("10 cases parle g", "parle g x 10", "parle g 10
    cases"); pack sizes ("500 g") are not quantities."""
    from assistant.nlu.periods import NUMBER_WORDS

    def number(i: int) -> int | None:
        if i < 0 or i >= len(tokens):
            return None
        word = tokens[i]
        if word.isdigit() and len(word) <= 5:
            if i + 1 < len(tokens) and tokens[i + 1] in _PACK:
                return None
            return int(word)
        if (
            word in NUMBER_WORDS
            and word not in ("a", "an", "do")
            and (i + 1 < len(tokens) and tokens[i + 1] in _UNITS)
        ):
            return NUMBER_WORDS[word]
        return None

    before = mention.start - 1
    while before >= 0 and tokens[before] in (_UNITS | {"of", "x", "qty"}):
        before -= 1
    value = number(before)
    if value is not None and before >= mention.start - 4:
        return value
    after = mention.end
    while after < len(tokens) and tokens[after] in {"x", "qty", "-", "quantity"}:
        after += 1
    value = number(after)
    if value is not None:
        return value
    return None
