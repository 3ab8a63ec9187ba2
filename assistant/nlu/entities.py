"""Find the store, product and order a message names, by asking the database.

People write "sharma ji ka baaki", "10 cases parle g for gupta kirana", "S0042 outstanding".
The message is split into phrases at words that cannot be part of a name (question words,
Hinglish particles, intent words, numbers, units, periods); each phrase is scored with pg_trgm
against the store names the user may see and against product names; the best-scoring phrase
of each kind is then resolved through the tools' own resolver (`tools.resolve`), so
ambiguity comes back as candidates, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Float, cast, func, literal, select

from tools.context import ToolContext
from tools.models import Product, Store

STOPWORDS = set(
    """
    a an the of for to from in on at by with and or but is are was were be been am do does did
    done has have had i me my we our you your he she they them their his her its it this that
    these those there here what whats wat which who whom whose when where why how much many
    any some all every each no not yes please pls plz kindly ok okay hi hello hey dear sir
    ji bhai bhaiya bhaiyya sahab saab madam ka ki ke ko se me mein main mai hai hain tha thi the
    ho hoga hogi kya kab kaun kitna kitne kitni kaise kahan kaha kyu kyun aur ya bhi to toh na
    nahi nahin mat hum humko mujhe mera meri mere apna apni apne unka unki unke inka inki inke
    uska uski uske iska iski iske wala wale wali do de dena dedo diya dijiye karo kar karna karo
    karu karun karein batao bata bataiye dikhao dikha dekho chahiye lagao bhejo bhej bhejna
    show tell give get find search list check see let know need want send put make add log note
    notes book order orders ordered ordering place placed repeat same cancel confirm last time
    next previous recent recently latest usually today yesterday tomorrow tmrw kal aaj week
    weeks month months year years day days quarter since till until ago this that
    store stores shop shops dukan dukaan outlet outlets customer customers party client
    sale sales sold revenue business total value amount rs inr rupees lakh lakhs crore
    outstanding oustanding outstandin due dues baaki baki udhaar udhar payment payments pending
    owe owes owed credit overdue balance stock stk inventory available qty quantity units unit
    case cases ctn carton cartons box boxes dabbe dabba peti packet packets pcs piece pieces
    scheme schemes offer offers promotion promotions promo discount deal deals
    pitch suggest suggestion suggestions upsell cross sell recommend recommendation
    call visit calls visits forecast demand predict prediction expected expect will would
    should could can may might shall going
    complain complained complaint complaints said say says told asked ask feedback message
    messages history
    profile details detail info information about summary report compare comparison vs versus
    top best selling sellers seller low out risk churn dropped stopped
    region city rep area zone
    """.split()
)

_TOKEN = re.compile(r"[a-z0-9][a-z0-9'&.\-]*", re.IGNORECASE)
_STORE_CODE = re.compile(r"\b[A-Z]{1,4}-?\d{3,6}\b")
_ORDER_REF = re.compile(
    r"(?:order|ordr|bill|invoice|#)\s*(?:no\.?|number|num|id)?\s*#?\s*([A-Z]{0,4}-?\d{2,10})",
    re.IGNORECASE,
)
_PHONE = re.compile(r"\+?\d[\d\s-]{8,}\d")

STORE_THRESHOLD = 0.45
PRODUCT_THRESHOLD = 0.45


@dataclass
class Mention:
    """A phrase of the message and how well it matches a store or a product name."""

    text: str
    kind: str
    score: float
    best: dict[str, Any] = field(default_factory=dict)


@dataclass
class Entities:
    """The references found in one message."""

    store: Mention | None = None
    product: Mention | None = None
    products: list[Mention] = field(default_factory=list)
    order_ref: str | None = None
    store_code: str | None = None


def phrases(text: str) -> list[str]:
    """Runs of words that could be part of a name."""
    runs: list[list[str]] = [[]]
    for token in _TOKEN.findall(text.lower()):
        word = token.strip(".'-")
        if not word or word in STOPWORDS or word.isdigit() or re.fullmatch(r"\d+\w{0,3}", word):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(word)
    return [" ".join(run) for run in runs if run]


def _score_stores(ctx: ToolContext, phrase: str) -> tuple[float, dict[str, Any]]:
    q = literal(phrase)
    score = cast(
        func.greatest(
            func.word_similarity(q, Store.name),
            func.similarity(Store.name, q),
            func.word_similarity(q, func.coalesce(Store.owner_name, "")) * 0.9,
        ),
        Float,
    ).label("score")
    row = ctx.session.execute(
        select(Store.id, Store.code, Store.name, score)
        .where(ctx.store_scope(), q.op("<%")(Store.name) | Store.name.op("%")(q))
        .order_by(score.desc())
        .limit(1)
    ).first()
    if row is None:
        owner = ctx.session.execute(
            select(Store.id, Store.code, Store.name, score)
            .where(ctx.store_scope(), q.op("<%")(Store.owner_name))
            .order_by(score.desc())
            .limit(1)
        ).first()
        row = owner
    if row is None:
        return 0.0, {}
    return float(row.score), {"id": row.id, "code": row.code, "name": row.name}


def _score_products(ctx: ToolContext, phrase: str) -> tuple[float, dict[str, Any]]:
    q = literal(phrase)
    score = cast(
        func.greatest(func.word_similarity(q, Product.name), func.similarity(Product.name, q)),
        Float,
    ).label("score")
    row = ctx.session.execute(
        select(Product.id, Product.sku, Product.name, score)
        .where(
            Product.is_active.is_(True),
            q.op("<%")(Product.name) | Product.name.op("%")(q),
        )
        .order_by(score.desc())
        .limit(1)
    ).first()
    if row is None:
        return 0.0, {}
    return float(row.score), {"id": row.id, "sku": row.sku, "name": row.name}


def _splits(phrase: str) -> list[tuple[str, str]]:
    words = phrase.split()
    return [(" ".join(words[:i]), " ".join(words[i:])) for i in range(1, len(words))]


def extract(ctx: ToolContext, text: str, *, want_store: bool, want_product: bool) -> Entities:
    """The store, product(s) and order reference `text` mentions (see the module docstring)."""
    found = Entities()
    order = _ORDER_REF.search(text)
    if order:
        found.order_ref = order.group(1)
    code = _STORE_CODE.search(text)
    if code and not (order and code.group(0) in order.group(0)):
        found.store_code = code.group(0)
    phone = _PHONE.search(text)
    if phone and want_store:
        found.store_code = found.store_code or re.sub(r"[\s-]", "", phone.group(0))
    if not (want_store or want_product):
        return found
    mentions: list[Mention] = []
    for phrase in phrases(text):
        options: list[tuple[str, str | None]] = [(phrase, None)]
        if want_store and want_product and len(phrase.split()) > 1:
            options += [(a, b) for a, b in _splits(phrase)] + [(b, a) for a, b in _splits(phrase)]
        best: list[Mention] = []
        best_total = 0.0
        for first, second in options:
            parts = [p for p in (first, second) if p]
            chosen: list[Mention] = []
            for part in parts:
                store_score, store = _score_stores(ctx, part) if want_store else (0.0, {})
                product_score, product = _score_products(ctx, part) if want_product else (0.0, {})
                if store_score >= product_score and store_score >= STORE_THRESHOLD:
                    chosen.append(Mention(part, "store", store_score, store))
                elif product_score >= PRODUCT_THRESHOLD:
                    chosen.append(Mention(part, "product", product_score, product))
            kinds = [m.kind for m in chosen]
            if len(kinds) != len(set(kinds)):
                continue
            total = sum(m.score * len(m.text) for m in chosen)
            if total > best_total:
                best, best_total = chosen, total
        mentions.extend(best)
    stores = sorted((m for m in mentions if m.kind == "store"), key=lambda m: -m.score)
    products = [m for m in mentions if m.kind == "product"]
    if stores:
        found.store = stores[0]
    if products:
        found.products = products
        found.product = max(products, key=lambda m: m.score)
    return found
