"""The assistant's evaluation: questions with answers computed by SQL, asked through the turn loop.

A question set (`tests/assistant/eval/<dataset>.yaml`) holds templates written the way reps and
managers type ("{store_typo} ka kitna baaki hai", "book {qty} cases {product_short} for
{store_nick}"), each with the intent it should be classified as and a *check*: the name of an
oracle below that computes the expected answer with its own SQL over the database being
evaluated (the store's outstanding from invoices and payments, a period's sales from order
lines, the stock from the inventory, ...). At evaluation time each template is instantiated
with entities drawn from the database with a seed, so the same set works on any generated or
imported data and is never answered from memory.

Every question goes through `Assistant.handle` with an `InboundMessage` from the CLI channel,
exactly the path of `mangalm ask --json`; single questions start a fresh session, dialogues keep
one session over their turns. Everything runs inside one transaction that is rolled back at the
end, so orders placed and notes logged by the evaluation leave no trace.

Each turn gets one verdict:

- correct: the reply is of the expected kind (answer, confirmation request, question back,
  refusal) and every expected figure, date, name and citation appears in it (figures are
  compared as values: "Rs 12,34,567.50" matches 1234567.50);
- clarified: the assistant asked a question back although the question was clear;
- wrong: a confident answer (or confirmation request) with a wrong or missing figure, or any
  reply that shows data of a store the user may not see;
- failed: anything else (an error, "I can't answer that" to a fair question, a missing name).

Reported: intent accuracy, answer accuracy (share correct), clarification rate, wrong-answer
rate, the same per intent, latency, and every turn that was not correct.

Seeds: the planner is developed against instances drawn with `DEV_SEED` (and other seeds of
one's own); the figures in BENCHMARKS.md and the default run use `EVAL_SEED`, so tuning never
sees the exact questions it is scored on.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, cast

import yaml
from dateutil.relativedelta import relativedelta
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from assistant.memory import MemorySessionStore
from assistant.messages import InboundMessage, Reply
from assistant.turn import Assistant, Planner, TurnResult
from tools.bench import machine
from tools.context import Actor, ToolContext
from tools.models import User
from tools.registry import run_tool

EVAL_DIR = Path(__file__).resolve().parents[1] / "tests" / "assistant" / "eval"
DATASETS = ("demo", "superstore", "northwind")
DEV_SEED = 7
EVAL_SEED = 20261125
TARGET_ANSWER_ACCURACY = 0.95
TARGET_WRONG_RATE = 0.01

NUMBER = re.compile(r"(?<![\w.\-/#])-?\d[\d,]*(?:\.\d+)?(?![\w\-/])")
DAY_TEXT = re.compile(r"\b(\d{1,2}) ([A-Z][a-z]{2}) (\d{4})\b")
ISO_DAY = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
CENT = Decimal("0.01")
ZERO_WORDS = re.compile(r"\b(no|none|nothing|every|all)\b")

# Words that describe a kind of shop rather than name one; a nickname drops them.
GENERIC_WORDS = {
    "store", "stores", "general", "kirana", "mart", "provision", "provisions", "bhandar",
    "traders", "trading", "shop", "corner", "medical", "medicals", "hall", "bakers", "bakery",
    "bake", "house", "paan", "cold", "drinks", "&", "and", "supermarket", "super", "fresh",
    "new", "best", "the", "departmental", "chemist", "chemists", "pharmacy", "sweets", "agency",
    "agencies", "enterprises", "mini", "daily", "needs", "market", "bazaar", "centre", "center",
    "co", "co.", "ltd", "pvt", "inc", "llc", "company", "gmbh", "s.a.", "sa",
}  # fmt: skip
PACK_SIZE = re.compile(
    r"\s+(\(?\d+\s*-?\s*pack\)?|\d+\s*x\s*\d+.*|\d+(\.\d+)?\s*(g|kg|ml|l|L)\b.*|single|small.*"
    r"|medium.*|large.*)$"
)


class EvaluationError(RuntimeError):
    """The question set or the database cannot be evaluated (missing file, no users, ...)."""


# --------------------------------------------------------------------------- expectations


@dataclass
class Expectation:
    """What a correct reply to one turn contains."""

    kind: str = "answer"  # answer | confirm | clarify | cannot | help | greeting | not_found
    figures: list[Decimal] = field(default_factory=list)
    dates: list[dt.date] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    citations_any: set[int] | None = None
    citations_within: set[int] | None = None
    allow_clarify: bool = False
    forbidden: list[str] = field(default_factory=list)
    forbidden_figures: list[Decimal] = field(default_factory=list)
    post: Callable[[TurnResult], list[str]] | None = None

    def describe(self) -> str:
        parts = [self.kind]
        parts += [_fmt(f) for f in self.figures]
        parts += [d.isoformat() for d in self.dates]
        parts += [repr(t) for t in self.texts]
        return " ".join(parts)


def _fmt(value: Decimal) -> str:
    return f"{value:,}"


@dataclass
class TurnOutcome:
    """One evaluated turn."""

    id: str
    text: str
    user: str
    expected_intent: str
    intent: str | None
    reply_kind: str
    verdict: str  # correct | clarified | wrong | failed
    problems: list[str]
    expected: str
    answer: str
    latency_ms: float
    dialogue: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dialogue": self.dialogue,
            "text": self.text,
            "user": self.user,
            "expected_intent": self.expected_intent,
            "intent": self.intent,
            "reply_kind": self.reply_kind,
            "verdict": self.verdict,
            "problems": self.problems,
            "expected": self.expected,
            "answer": self.answer,
            "latency_ms": round(self.latency_ms, 1),
        }


@dataclass
class EvaluationReport:
    """The figures `mangalm eval assistant` prints."""

    dataset: str
    seed: int
    today: dt.date
    planner: str
    outcomes: list[TurnOutcome]
    seconds: float

    @property
    def single(self) -> list[TurnOutcome]:
        return [o for o in self.outcomes if o.dialogue is None]

    @property
    def dialogue_turns(self) -> list[TurnOutcome]:
        return [o for o in self.outcomes if o.dialogue is not None]

    @staticmethod
    def rates(outcomes: list[TurnOutcome]) -> dict[str, Any]:
        n = len(outcomes)
        if not n:
            return {"n": 0}
        verdicts = Counter(o.verdict for o in outcomes)
        return {
            "n": n,
            "intent_accuracy": round(sum(o.intent == o.expected_intent for o in outcomes) / n, 4),
            "answer_accuracy": round(verdicts["correct"] / n, 4),
            "clarification_rate": round(verdicts["clarified"] / n, 4),
            "wrong_answer_rate": round(verdicts["wrong"] / n, 4),
            "failed_rate": round(verdicts["failed"] / n, 4),
        }

    def per_intent(self) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[TurnOutcome]] = defaultdict(list)
        for outcome in self.outcomes:
            groups[outcome.expected_intent].append(outcome)
        return {name: self.rates(items) for name, items in sorted(groups.items())}

    def to_json(self) -> dict[str, Any]:
        latencies = sorted(o.latency_ms for o in self.outcomes)
        dialogues = {o.dialogue for o in self.outcomes if o.dialogue is not None}
        overall = self.rates(self.outcomes)
        return {
            "dataset": self.dataset,
            "seed": self.seed,
            "today": self.today.isoformat(),
            "planner": self.planner,
            "questions": len(self.single),
            "dialogues": len(dialogues),
            "dialogue_turns": len(self.dialogue_turns),
            **{k: v for k, v in overall.items() if k != "n"},
            "turns": overall.get("n", 0),
            "targets": {
                "answer_accuracy": TARGET_ANSWER_ACCURACY,
                "wrong_answer_rate": TARGET_WRONG_RATE,
                "met": bool(
                    overall.get("n")
                    and overall["answer_accuracy"] >= TARGET_ANSWER_ACCURACY
                    and overall["wrong_answer_rate"] <= TARGET_WRONG_RATE
                ),
            },
            "single_turn": self.rates(self.single),
            "multi_turn": self.rates(self.dialogue_turns),
            "per_intent": self.per_intent(),
            "latency_ms": {
                "p50": round(statistics.median(latencies), 1) if latencies else None,
                "p95": round(_percentile(latencies, 0.95), 1) if latencies else None,
            },
            "seconds": round(self.seconds, 1),
            "failures": [o.to_json() for o in self.outcomes if o.verdict != "correct"],
        }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# --------------------------------------------------------------------------- reading replies


def reply_text(reply: Reply) -> str:
    """The reply as the person sees it, with every table row (not just the first ten)."""
    parts = [reply.text]
    if reply.table:
        parts.extend(" | ".join(str(cell) for cell in row) for row in reply.table.rows)
    return "\n".join(parts)


def figures_in(text_: str) -> set[Decimal]:
    """Every number in a text, as a value ("Rs 1,23,456.50" -> 123456.50)."""
    out: set[Decimal] = set()
    for raw in NUMBER.findall(text_):
        try:
            out.add(Decimal(raw.replace(",", "")))
        except InvalidOperation:
            continue
    return out


def dates_in(text_: str) -> set[dt.date]:
    """Dates written as '14 Nov 2026' or '2026-11-14'."""
    out: set[dt.date] = set()
    for d, mon, y in DAY_TEXT.findall(text_):
        try:
            out.add(dt.datetime.strptime(f"{d} {mon} {y}", "%d %b %Y").date())
        except ValueError:
            continue
    for y, m, d in ISO_DAY.findall(text_):
        try:
            out.add(dt.date(int(y), int(m), int(d)))
        except ValueError:
            continue
    return out


def reply_kind(result: TurnResult) -> str:
    """What kind of reply this is: answer, confirm, clarify, cannot or error."""
    reply = result.reply
    payloads = [b.payload for b in reply.buttons]
    if any(p.startswith("confirm:") for p in payloads):
        return "confirm"
    if reply.intent == "clarify" or any(p.startswith(("store:", "intent:")) for p in payloads):
        return "clarify"
    if result.intent == "out_of_scope" or reply.intent == "out_of_scope":
        return "cannot"
    if reply.intent == "error":
        return "error"
    return "answer"


def judge(expect: Expectation, result: TurnResult) -> tuple[str, list[str]]:
    """The verdict on one reply (see the module docstring) and what was wrong with it."""
    kind = reply_kind(result)
    body = reply_text(result.reply)
    lowered = body.lower()
    numbers = figures_in(body)
    problems: list[str] = []
    leaked = [t for t in expect.forbidden if t.lower() in lowered]
    leaked += [_fmt(f) for f in expect.forbidden_figures if f in numbers]
    if leaked:
        return "wrong", [f"shows data it must not: {', '.join(leaked)}"]
    if expect.kind in ("help", "greeting"):
        ok = result.intent == expect.kind
        return ("correct", []) if ok else ("failed", [f"expected a {expect.kind} reply"])
    if expect.kind == "cannot":
        if kind == "cannot":
            return "correct", []
        if kind == "clarify" and expect.allow_clarify:
            return "correct", []
        return ("wrong" if numbers else "failed"), ["expected an honest 'I can't answer that'"]
    if expect.kind == "not_found":
        if kind in ("answer", "clarify", "error") and not any(
            t.lower() in lowered for t in expect.texts
        ):
            return "correct", []
        return "failed", ["expected the same answer as for a store that does not exist"]
    if expect.kind == "clarify":
        if kind == "clarify":
            return "correct", []
        return ("wrong" if kind in ("answer", "confirm") and numbers else "failed"), [
            "expected a question back"
        ]
    if kind == "clarify" and expect.kind != "clarify":
        if expect.allow_clarify:
            return "correct", []
        return "clarified", ["asked a question back"]
    if kind != expect.kind:
        problems.append(f"expected a {expect.kind} reply, got {kind}")
    for value in expect.figures:
        if value == 0 and ZERO_WORDS.search(lowered):
            continue  # "no store has ...", "every store ordered ..." state a count of zero
        if value not in numbers:
            problems.append(f"missing figure {_fmt(value)}")
    found_dates = dates_in(body)
    for day in expect.dates:
        if day not in found_dates:
            problems.append(f"missing date {day.isoformat()}")
    for snippet in expect.texts:
        if snippet.lower() not in lowered:
            problems.append(f"missing {snippet!r}")
    cited = {c.communication_id for c in result.reply.citations}
    if expect.citations_any is not None and not (cited & expect.citations_any):
        problems.append("no citation of the expected communications")
    if expect.citations_within is not None and cited - expect.citations_within:
        problems.append("cites communications of another store")
    if expect.post is not None:
        problems += expect.post(result)
    if not problems:
        return "correct", []
    confident = kind in ("answer", "confirm") and bool(numbers)
    wrong_figure = any(p.startswith(("missing figure", "missing date")) for p in problems)
    if confident and (wrong_figure or any("citation" in p for p in problems)):
        return "wrong", problems
    if expect.post is not None and any(p.startswith("database:") for p in problems):
        return "wrong", problems
    return "failed", problems


# --------------------------------------------------------------------------- the environment


@dataclass
class Env:
    """What instantiating and checking questions needs: one connection, today, the seed."""

    conn: Connection
    today: dt.date
    seed: int
    users: dict[str, list[Actor]]
    forced_user: Actor | None = None

    def q(self, sql: str, **params: Any) -> list[Any]:
        return list(self.conn.execute(text(sql), params).all())

    def one(self, sql: str, **params: Any) -> Any:
        return self.conn.execute(text(sql), params).scalar()


def scope_sql(actor: Actor, alias: str = "s") -> str:
    """The stores `actor` may see, as SQL over the stores table aliased `alias`."""
    if actor.role == "admin":
        return "TRUE"
    if actor.role == "rep":
        return f"{alias}.rep_id = {int(actor.id)}"
    lead = actor.id if actor.role == "manager" else actor.manager_id
    if lead is None:
        return "FALSE"
    return (
        f"({alias}.rep_id = {int(lead)} OR {alias}.rep_id IN "
        f"(SELECT id FROM users WHERE manager_id = {int(lead)} AND role = 'rep'))"
    )


EVALUATION_ADMIN = "evaluation@mangalm.invalid"


def _load_users(conn: Connection, *, temporary_admin: bool = False) -> dict[str, list[Actor]]:
    """Active users by role. With `temporary_admin`, data imported without any account (a
    fresh Superstore or Northwind import) gets an administrator for the evaluation; the caller
    rolls it back with everything else."""
    with Session(conn) as session:
        if temporary_admin and not session.query(User).filter(User.role == "admin").count():
            session.add(User(email=EVALUATION_ADMIN, name="Evaluation", role="admin"))
            session.flush()
        rows = session.query(User).filter(User.is_active.is_(True)).order_by(User.id).all()
        users: dict[str, list[Actor]] = defaultdict(list)
        for user in rows:
            users[user.role].append(Actor.from_user(user))
        session.expunge_all()
    return users


def default_today(conn: Connection) -> dt.date:
    """The day the data ends: the newest placed or delivered order (else the calendar day)."""
    day = conn.execute(
        text("SELECT max(order_date) FROM orders WHERE status IN ('placed', 'delivered')")
    ).scalar()
    return day or dt.date.today()


# --------------------------------------------------------------------------- oracles (SQL)


def outstanding_of(env: Env, store_id: int) -> tuple[Decimal, Decimal]:
    """(outstanding, overdue) of a store: open invoice amounts less payments, as of today."""
    row = env.q(
        """
        SELECT coalesce(sum(i.amount - coalesce(p.paid, 0)), 0),
               coalesce(sum(i.amount - coalesce(p.paid, 0))
                        FILTER (WHERE i.due_date < :today), 0)
        FROM invoices i
        LEFT JOIN (SELECT invoice_id, sum(amount) AS paid FROM payments GROUP BY invoice_id) p
               ON p.invoice_id = i.id
        WHERE i.store_id = :store AND i.amount - coalesce(p.paid, 0) > 0
        """,
        store=store_id,
        today=env.today,
    )[0]
    return Decimal(row[0]).quantize(CENT), Decimal(row[1]).quantize(CENT)


def period_dates(
    env: Env, period: str, start: str | None = None, end: str | None = None
) -> tuple[dt.date, dt.date, str]:
    """The dates a template's period means (its own arithmetic, not the planner's)."""
    today = env.today
    if start:
        first = _relative_day(env, start)
        return first, _relative_day(env, end) if end else today, "days"
    if period == "today":
        return today, today, "day"
    if period == "yesterday":
        day = today - dt.timedelta(days=1)
        return day, day, "day"
    week = today - dt.timedelta(days=today.weekday())
    month = today.replace(day=1)
    quarter = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    year = dt.date(today.year, 1, 1)
    named = {
        "this_week": (week, today, "week"),
        "last_week": (week - dt.timedelta(days=7), week - dt.timedelta(days=1), "week"),
        "this_month": (month, today, "month"),
        "last_month": (month - relativedelta(months=1), month - dt.timedelta(days=1), "month"),
        "this_quarter": (quarter, today, "quarter"),
        "last_quarter": (
            quarter - relativedelta(months=3),
            quarter - dt.timedelta(days=1),
            "quarter",
        ),
        "this_year": (year, today, "year"),
        "last_year": (dt.date(today.year - 1, 1, 1), dt.date(today.year - 1, 12, 31), "year"),
    }
    if period in named:
        return named[period]
    match = re.fullmatch(r"last_(\d+)_days", period)
    if match:
        return today - dt.timedelta(days=int(match.group(1)) - 1), today, "days"
    match = re.fullmatch(r"month_(\d+)_ago", period)
    if match:
        first = month - relativedelta(months=int(match.group(1)))
        return first, first + relativedelta(months=1) - dt.timedelta(days=1), "days"
    raise EvaluationError(f"unknown period {period!r} in the question set")


def _relative_day(env: Env, value: str) -> dt.date:
    """'festival:diwali' (the latest on or before today), 'days_ago:20' or an ISO date."""
    kind, _, arg = value.partition(":")
    if kind == "festival":
        from assistant.nlu.periods import FESTIVALS

        days = [d for d in FESTIVALS[arg] if d <= env.today]
        if not days:
            raise EvaluationError(f"no {arg} on or before {env.today}")
        return max(days)
    if kind == "days_ago":
        return env.today - dt.timedelta(days=int(arg))
    return dt.date.fromisoformat(value)


def compare_dates(
    first: dt.date, last: dt.date, unit: str, compare: str
) -> tuple[dt.date, dt.date]:
    """The period a comparison is made with: like-for-like days before, or a year earlier."""
    if compare == "last_year":
        return first - relativedelta(years=1), last - relativedelta(years=1)
    if unit in ("days", "day"):
        length = (last - first).days + 1
        return first - dt.timedelta(days=length), last - dt.timedelta(days=length)
    step = {"week": relativedelta(weeks=1), "month": relativedelta(months=1)}.get(
        unit, relativedelta(months=3) if unit == "quarter" else relativedelta(years=1)
    )
    start = first - step
    return start, min(start + (last - first), first - dt.timedelta(days=1))


def sales_of(env: Env, actor: Actor, first: dt.date, last: dt.date) -> Decimal:
    value = env.one(
        f"""
        SELECT coalesce(sum(l.amount), 0) FROM orders o
        JOIN order_lines l ON l.order_id = o.id JOIN stores s ON s.id = o.store_id
        WHERE o.status IN ('placed', 'delivered') AND o.order_date BETWEEN :a AND :b
          AND {scope_sql(actor)}
        """,
        a=first,
        b=last,
    )
    return Decimal(value).quantize(CENT)


def _money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class Bound:
    """A template instantiated: its text and the entities behind it."""

    text: str
    store: dict[str, Any] | None = None
    product: dict[str, Any] | None = None
    order: dict[str, Any] | None = None
    values: dict[str, Any] = field(default_factory=dict)


Oracle = Callable[[Env, Actor, Bound, dict[str, Any]], Expectation]
ORACLES: dict[str, Oracle] = {}
# What a check needs of the store it is asked about (SQL over stores aliased s).
STORE_NEEDS: dict[str, str] = {}


def oracle(name: str, needs: str | None = None) -> Callable[[Oracle], Oracle]:
    def register(func: Oracle) -> Oracle:
        ORACLES[name] = func
        if needs:
            STORE_NEEDS[name] = needs
        return func

    return register


HAS_ORDERS = "EXISTS (SELECT 1 FROM orders o WHERE o.store_id = s.id)"
HAS_SALES = (
    "EXISTS (SELECT 1 FROM orders o WHERE o.store_id = s.id AND o.status IN "
    "('placed', 'delivered'))"
)


def _store(bound: Bound) -> dict[str, Any]:
    if bound.store is None:
        raise EvaluationError("this check needs a store in the question")
    return bound.store


def _product(bound: Bound) -> dict[str, Any]:
    if bound.product is None:
        raise EvaluationError("this check needs a product in the question")
    return bound.product


@oracle("store_profile", HAS_SALES)
def _o_profile(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    owed, _ = outstanding_of(env, store["id"])
    last = env.one(
        "SELECT total_amount FROM orders WHERE store_id = :s AND status IN "
        "('placed', 'delivered') ORDER BY order_date DESC, id DESC LIMIT 1",
        s=store["id"],
    )
    figures = [owed] + ([_money(last)] if last is not None else [])
    return Expectation(figures=figures, texts=[store["name"]])


@oracle("last_order", HAS_ORDERS)
def _o_last_order(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    total, day = env.q(
        "SELECT total_amount, order_date FROM orders WHERE store_id = :s "
        "ORDER BY order_date DESC, id DESC LIMIT 1",
        s=store["id"],
    )[0]
    return Expectation(figures=[_money(total)], dates=[day], texts=[store["name"]])


@oracle("recent_orders", HAS_ORDERS)
def _o_recent(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    rows = env.q(
        "SELECT total_amount FROM orders WHERE store_id = :s "
        "ORDER BY order_date DESC, id DESC LIMIT :n",
        s=store["id"],
        n=int(params.get("limit", 5)),
    )
    return Expectation(figures=[_money(r[0]) for r in rows], texts=[store["name"]])


@oracle("order_details")
def _o_order(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    order = bound.order
    if order is None:
        raise EvaluationError("order_details needs {order}")
    total, count = env.q(
        "SELECT o.total_amount, count(l.*) FROM orders o LEFT JOIN order_lines l "
        "ON l.order_id = o.id WHERE o.id = :o GROUP BY o.id",
        o=order["id"],
    )[0]
    return Expectation(figures=[_money(total), Decimal(count)], texts=[order["store_name"]])


@oracle("sales")
def _o_sales(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    first, last, unit = period_dates(
        env, params.get("period", "this_month"), params.get("start"), params.get("end")
    )
    figures = [sales_of(env, actor, first, last)]
    compare = params.get("compare")
    if compare:
        a, b = compare_dates(first, last, unit, compare)
        figures.append(sales_of(env, actor, a, b))
    group = params.get("group_by")
    texts: list[str] = []
    if group in ("region", "city", "category", "brand"):
        table, column = {
            "region": ("s", "region"),
            "city": ("s", "city"),
            "category": ("p", "category"),
            "brand": ("p", "brand"),
        }[group]
        row = env.q(
            f"""
            SELECT {table}.{column}, sum(l.amount) AS amount FROM orders o
            JOIN order_lines l ON l.order_id = o.id JOIN stores s ON s.id = o.store_id
            JOIN products p ON p.id = l.product_id
            WHERE o.status IN ('placed', 'delivered') AND o.order_date BETWEEN :a AND :b
              AND {scope_sql(actor)}
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1
            """,
            a=first,
            b=last,
        )
        if row and row[0][0]:
            texts.append(str(row[0][0]))
            figures.append(_money(row[0][1]))
    return Expectation(figures=figures, texts=texts)


@oracle("top_products")
def _o_top(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    first, last, _ = period_dates(env, params.get("period", "last_90_days"))
    where = scope_sql(actor)
    args: dict[str, Any] = {"a": first, "b": last}
    if bound.store is not None:
        where += " AND s.id = :store"
        args["store"] = bound.store["id"]
    if params.get("region") or bound.values.get("region"):
        where += " AND lower(s.region) = lower(:region)"
        args["region"] = params.get("region") or bound.values["region"]
    rows = env.q(
        f"""
        SELECT p.name, sum(l.amount) FROM orders o
        JOIN order_lines l ON l.order_id = o.id JOIN stores s ON s.id = o.store_id
        JOIN products p ON p.id = l.product_id
        WHERE o.status IN ('placed', 'delivered') AND o.order_date BETWEEN :a AND :b AND {where}
        GROUP BY p.id, p.name ORDER BY 2 DESC, p.id LIMIT 1
        """,
        **args,
    )
    if not rows:
        return Expectation(texts=["No sales"])
    return Expectation(figures=[_money(rows[0][1])], texts=[rows[0][0]])


@oracle("lapsed")
def _o_lapsed(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    days = int(params.get("days", 30))
    count = env.one(
        f"""
        SELECT count(*) FROM stores s
        WHERE s.is_active AND {scope_sql(actor)} AND NOT EXISTS (
            SELECT 1 FROM orders o WHERE o.store_id = s.id
              AND o.status IN ('placed', 'delivered') AND o.order_date > :cutoff)
        """,
        cutoff=env.today - dt.timedelta(days=days),
    )
    return Expectation(figures=[Decimal(count)], texts=[str(days)])


@oracle(
    "outstanding",
    "EXISTS (SELECT 1 FROM invoices i WHERE i.store_id = s.id AND i.amount > "
    "coalesce((SELECT sum(amount) FROM payments p WHERE p.invoice_id = i.id), 0))",
)
def _o_outstanding(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    owed, overdue = outstanding_of(env, store["id"])
    return Expectation(
        figures=[owed] + ([overdue] if overdue else []),
        texts=[store["name"]],
    )


@oracle("overdue")
def _o_overdue(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    min_days = int(params.get("min_days", 1))
    min_amount = Decimal(str(params.get("min_amount", 0)))
    rows = env.q(
        f"""
        SELECT i.store_id, sum(i.amount - coalesce(p.paid, 0)) AS late FROM invoices i
        JOIN stores s ON s.id = i.store_id
        LEFT JOIN (SELECT invoice_id, sum(amount) AS paid FROM payments GROUP BY invoice_id) p
               ON p.invoice_id = i.id
        WHERE {scope_sql(actor)} AND i.amount - coalesce(p.paid, 0) > 0
          AND :today - i.due_date >= :min_days
        GROUP BY i.store_id HAVING sum(i.amount - coalesce(p.paid, 0)) >= :min_amount
        """,
        today=env.today,
        min_days=min_days,
        min_amount=min_amount,
    )
    total = sum((Decimal(r[1]) for r in rows), Decimal(0)).quantize(CENT)
    return Expectation(figures=[Decimal(len(rows)), total])


@oracle("stock")
def _o_stock(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    product = _product(bound)
    available = env.one(
        "SELECT coalesce(sum(on_hand - reserved), 0) FROM inventory WHERE product_id = :p",
        p=product["id"],
    )
    return Expectation(figures=[Decimal(available)], texts=[product["name"]])


@oracle("low_stock")
def _o_low_stock(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    count = env.one(
        """
        SELECT count(*) FROM (
            SELECT p.id, coalesce(sum(i.on_hand - i.reserved), 0) AS available,
                   coalesce(sum(i.reorder_point), 0) AS reorder
            FROM products p LEFT JOIN inventory i ON i.product_id = p.id
            WHERE p.is_active GROUP BY p.id) x
        WHERE available <= 0 OR (reorder > 0 AND available <= reorder)
        """
    )
    return Expectation(figures=[Decimal(count)])


@oracle("promotions")
def _o_promotions(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    where = ["pr.starts_on <= :today", "pr.ends_on >= :today"]
    args: dict[str, Any] = {"today": env.today}
    if bound.store is not None:
        where.append(
            "(pr.segment IS NULL OR pr.segment = (SELECT segment FROM stores WHERE id = :s))"
            " AND (pr.region IS NULL OR pr.region = (SELECT region FROM stores WHERE id = :s))"
        )
        args["s"] = bound.store["id"]
    if bound.product is not None:
        where.append(
            "(pr.product_id IS NULL OR pr.product_id = :p)"
            " AND (pr.brand IS NULL OR pr.brand = (SELECT brand FROM products WHERE id = :p))"
            " AND (pr.category IS NULL OR pr.category = "
            "(SELECT category FROM products WHERE id = :p))"
        )
        args["p"] = bound.product["id"]
    names = [
        r[0] for r in env.q(f"SELECT name FROM promotions pr WHERE {' AND '.join(where)}", **args)
    ]
    if not names:
        return Expectation(texts=["No schemes"])
    return Expectation(texts=names[:10])


@oracle(
    "next_order",
    "EXISTS (SELECT 1 FROM predictions pr WHERE pr.store_id = s.id AND pr.kind = 'next_order' "
    "AND pr.predicted_date IS NOT NULL)",
)
def _o_next(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    day = env.one(
        "SELECT predicted_date FROM predictions WHERE store_id = :s AND kind = 'next_order' "
        "ORDER BY id LIMIT 1",
        s=store["id"],
    )
    return Expectation(dates=[day], texts=[store["name"]])


@oracle("demand")
def _o_demand(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    product = _product(bound)
    weeks = int(params.get("weeks", 8))
    rows = env.q(
        "SELECT coalesce(CAST(details->>'mean' AS numeric), quantity) FROM predictions "
        "WHERE product_id = :p AND kind = 'demand' "
        "AND details->>'region' IS NULL ORDER BY predicted_date LIMIT :n",
        p=product["id"],
        n=weeks,
    )
    total = sum((Decimal(str(r[0] or 0)) for r in rows), Decimal(0)).quantize(
        Decimal("0.1"), ROUND_HALF_UP
    )
    return Expectation(figures=[total], texts=[product["name"]])


@oracle("at_risk")
def _o_at_risk(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    rows = env.q(
        f"""
        SELECT s.name FROM predictions pr JOIN stores s ON s.id = pr.store_id
        WHERE pr.kind = 'at_risk' AND {scope_sql(actor)}
        ORDER BY pr.probability DESC, s.id LIMIT 1
        """
    )
    return Expectation(texts=[rows[0][0]] if rows else ["No store"])


def _tool_reference(env: Env, actor: Actor, tool: str, args: dict[str, Any]) -> Any:
    """A model's own output (call list, upsell), read straight from its tool as the reference."""
    with Session(env.conn) as session:
        ctx = ToolContext(session=session, actor=actor, today=env.today)
        result = run_tool(ctx, tool, args)
    if not result.ok:
        raise EvaluationError(f"{tool} failed while computing the reference: {result.error}")
    return result.result


@oracle("call_list")
def _o_call_list(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    data = _tool_reference(env, actor, "call_list", {"limit": 15})
    entries = data.get("entries") or []
    return Expectation(texts=[entries[0]["store"]["name"]] if entries else ["No stores"])


@oracle("upsell", HAS_SALES)
def _o_upsell(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    data = _tool_reference(env, actor, "upsell_suggestions", {"store": store["code"]})
    items = data.get("suggestions") or []
    return Expectation(texts=[store["name"]] + ([items[0]["product"]["name"]] if items else []))


def _communications(env: Env, store_id: int, kind: str | None = None) -> set[int]:
    sql = "SELECT id FROM communications WHERE store_id = :s"
    if kind:
        sql += " AND kind = :k"
    return {int(r[0]) for r in env.q(sql, s=store_id, k=kind)}


@oracle(
    "complaints",
    "EXISTS (SELECT 1 FROM communications c WHERE c.store_id = s.id AND c.kind = 'complaint')",
)
def _o_complaints(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    return Expectation(
        citations_any=_communications(env, store["id"], "complaint"),
        citations_within=_communications(env, store["id"]),
    )


@oracle("history", "EXISTS (SELECT 1 FROM communications c WHERE c.store_id = s.id)")
def _o_history(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    own = _communications(env, store["id"])
    return Expectation(citations_any=own, citations_within=own)


@oracle("find_store")
def _o_find(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    return Expectation(texts=[store["code"]], allow_clarify=True)


def _orders_of(env: Env, store_id: int) -> int:
    return int(env.one("SELECT count(*) FROM orders WHERE store_id = :s", s=store_id))


def _notes_of(env: Env, store_id: int) -> int:
    return int(
        env.one(
            "SELECT count(*) FROM communications WHERE store_id = :s AND kind = 'note'", s=store_id
        )
    )


def line_amount(env: Env, store_id: int, product_id: int, quantity: int) -> Decimal:
    """Price x quantity less the best percentage scheme the line qualifies for today."""
    price, pct = env.q(
        """
        SELECT p.price, coalesce((
            SELECT max(pr.discount_pct) FROM promotions pr, stores s
            WHERE s.id = :s AND pr.starts_on <= :today AND pr.ends_on >= :today
              AND pr.discount_pct IS NOT NULL
              AND (pr.min_quantity IS NULL OR pr.min_quantity <= :q)
              AND (pr.segment IS NULL OR pr.segment = s.segment)
              AND (pr.region IS NULL OR pr.region = s.region)
              AND (pr.product_id IS NULL OR pr.product_id = p.id)
              AND (pr.brand IS NULL OR pr.brand = p.brand)
              AND (pr.category IS NULL OR pr.category = p.category)), 0)
        FROM products p WHERE p.id = :p
        """,
        s=store_id,
        p=product_id,
        q=quantity,
        today=env.today,
    )[0]
    gross = _money(price) * quantity
    return _money(gross * (1 - Decimal(str(pct)) / 100))


def available_credit(env: Env, store_id: int) -> Decimal:
    owed, _ = outstanding_of(env, store_id)
    limit, open_orders = env.q(
        """
        SELECT s.credit_limit, coalesce((SELECT sum(o.total_amount) FROM orders o
            WHERE o.store_id = s.id AND o.status = 'placed'
              AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.order_id = o.id)), 0)
        FROM stores s WHERE s.id = :s
        """,
        s=store_id,
    )[0]
    return _money(limit) - owed - _money(open_orders)


def stock_of(env: Env, product_id: int) -> int:
    return int(
        env.one(
            "SELECT coalesce(sum(on_hand - reserved), 0) FROM inventory WHERE product_id = :p",
            p=product_id,
        )
    )


@oracle("draft")
def _o_draft(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store, product = _store(bound), _product(bound)
    qty = int(bound.values["qty"])
    amount = line_amount(env, store["id"], product["id"], qty)
    before = _orders_of(env, store["id"])

    def nothing_placed(result: TurnResult) -> list[str]:
        after = _orders_of(env, store["id"])
        return [] if after == before else [f"database: {after - before} order(s) placed early"]

    return Expectation(
        kind="confirm",
        figures=[Decimal(qty), amount],
        texts=[product["name"], store["name"]],
        post=nothing_placed,
    )


@oracle("repeat", HAS_ORDERS)
def _o_repeat(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    lines = env.q(
        """
        SELECT l.product_id, l.quantity FROM order_lines l WHERE l.order_id = (
            SELECT id FROM orders WHERE store_id = :s ORDER BY order_date DESC, id DESC LIMIT 1)
        """,
        s=store["id"],
    )
    merged: dict[int, int] = defaultdict(int)
    for product_id, quantity in lines:
        merged[int(product_id)] += int(quantity)
    total = sum(
        (line_amount(env, store["id"], pid, qty) for pid, qty in merged.items()), Decimal(0)
    )
    return Expectation(
        kind="confirm", figures=[Decimal(sum(merged.values())), total], texts=[store["name"]]
    )


@oracle("cancel")
def _o_cancel(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    order = bound.order
    if order is None:
        raise EvaluationError("cancel needs {open_order}")
    return Expectation(kind="confirm", texts=[str(order["id"]), order["store_name"]])


@oracle("note")
def _o_note(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    return Expectation(kind="confirm", texts=[store["name"]])


@oracle("help")
def _o_help(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    return Expectation(kind="help")


@oracle("greeting")
def _o_greeting(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    return Expectation(kind="greeting")


@oracle("cannot")
def _o_cannot(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    return Expectation(kind="cannot", allow_clarify=bool(params.get("allow_clarify")))


@oracle("clarify")
def _o_clarify(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    return Expectation(kind="clarify")


@oracle("not_found")
def _o_not_found(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    store = _store(bound)
    owed, _ = outstanding_of(env, store["id"])
    return Expectation(
        kind="not_found",
        texts=[store["code"]],
        forbidden=[store["code"]],
        forbidden_figures=[owed] if owed else [],
    )


@oracle("unknown_store")
def _o_unknown(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    return Expectation(kind="not_found", allow_clarify=True)


@oracle("nothing_pending")
def _o_nothing(env: Env, actor: Actor, bound: Bound, params: dict[str, Any]) -> Expectation:
    return Expectation(texts=["nothing"])


# --------------------------------------------------------------------------- instantiation

PLACEHOLDER = re.compile(r"\{(\w+)\}")
STORE_FORMS = {
    "store",
    "store_lower",
    "store_typo",
    "store_nick",
    "store_code",
    "owner",
    "other_store",
}
PRODUCT_FORMS = {"product", "product_lower", "product_short", "product_typo"}
# Names no generated or imported store is likely to resemble.
MADE_UP_STORES = ("Xylophone Zest Emporium", "Quokka Yak Boutique", "Zzyzx Oxbow Depot")


def typo(word: str, rng: random.Random) -> str:
    """One slip of the thumb in a word of five letters or more: a letter dropped, doubled or
    swapped with its neighbour (never the first letter)."""
    if len(word) < 5 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 2)
    how = rng.choice(("drop", "double", "swap"))
    if how == "drop":
        return word[:i] + word[i + 1 :]
    if how == "double":
        return word[: i + 1] + word[i] + word[i + 1 :]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def misspell(name: str, rng: random.Random) -> str:
    words = name.lower().split()
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if candidates:
        i = rng.choice(candidates)
        words[i] = typo(words[i], rng)
    return " ".join(words)


def _tokens(name: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", name.lower())}


def nickname(name: str) -> str | None:
    """What people call a store: the distinctive words of its name, plus the locality of a
    branch ("Sharma Provision Stores" -> "sharma", "Super Medicos, Dilsukhnagar" -> "medicos
    dilsukhnagar")."""
    main, _, locality = name.lower().partition(",")
    words = [w for w in main.split() if w]
    kept = [w for w in words if w.strip(".") not in GENERIC_WORDS][:2]
    if not kept:
        return None
    nick = " ".join(kept + locality.split())
    return nick if nick != name.lower() else None


def short_product(name: str) -> str:
    """A product as people say it, without the pack size ("Tata Tea Gold 250 g" -> "Tata Tea
    Gold")."""
    short = name
    for _ in range(2):
        short = PACK_SIZE.sub("", short).strip()
    return short


class Binder:
    """Draws the entities a template names from the database, for one user, with one seed."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self._stores: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self._products: list[dict[str, Any]] | None = None

    def visible_stores(self, actor: Actor, needs: str = "TRUE") -> list[dict[str, Any]]:
        key = (actor.id, needs)
        if key not in self._stores:
            rows = self.env.conn.execute(
                text(
                    f"SELECT s.id, s.code, s.name, s.owner_name, s.region, s.city FROM stores s "
                    f"WHERE s.is_active AND {scope_sql(actor)} AND {needs} ORDER BY s.id"
                )
            ).mappings()
            self._stores[key] = [dict(r) for r in rows]
        return self._stores[key]

    def hidden_stores(self, actor: Actor, unlike_visible: bool = False) -> list[dict[str, Any]]:
        """Stores `actor` may not see; with `unlike_visible`, only those whose name resembles
        none of the actor's own stores (so "not found" is the only right answer)."""
        unlike = (
            f"""AND NOT EXISTS (SELECT 1 FROM stores v WHERE {scope_sql(actor, "v")}
                AND (similarity(v.name, s.name) >= 0.25 OR word_similarity(s.name, v.name) >= 0.4
                     OR similarity(coalesce(v.owner_name, ''), s.name) >= 0.25
                     OR word_similarity(s.name, coalesce(v.owner_name, '')) >= 0.4))"""
            if unlike_visible
            else ""
        )
        rows = self.env.conn.execute(
            text(
                "SELECT s.id, s.code, s.name, s.owner_name, s.region, s.city FROM stores s "
                f"WHERE s.is_active AND NOT ({scope_sql(actor)}) {unlike} ORDER BY s.id"
            )
        ).mappings()
        return [dict(r) for r in rows]

    def products(self) -> list[dict[str, Any]]:
        if self._products is None:
            rows = self.env.conn.execute(
                text(
                    "SELECT p.id, p.sku, p.name, p.brand, p.price, "
                    "coalesce((SELECT sum(on_hand - reserved) FROM inventory i "
                    "WHERE i.product_id = p.id), 0) AS available, "
                    "EXISTS (SELECT 1 FROM predictions pr WHERE pr.product_id = p.id "
                    "AND pr.kind = 'demand' AND pr.details->>'region' IS NULL) AS forecast "
                    "FROM products p WHERE p.is_active ORDER BY p.id"
                )
            ).mappings()
            self._products = [dict(r) for r in rows]
        return self._products

    # ---- uniqueness: a reference that fits several visible stores is genuinely ambiguous

    @staticmethod
    def _unique_name(store: dict[str, Any], stores: list[dict[str, Any]]) -> bool:
        mine = _tokens(store["name"])
        return not any(
            other["id"] != store["id"] and mine <= _tokens(other["name"]) for other in stores
        )

    @staticmethod
    def _unique_nick(nick: str, store: dict[str, Any], stores: list[dict[str, Any]]) -> bool:
        words = _tokens(nick)
        return not any(
            other["id"] != store["id"]
            and (words <= _tokens(other["name"]) or words <= _tokens(other["owner_name"] or ""))
            for other in stores
        )

    def store_forms(
        self, store: dict[str, Any], stores: list[dict[str, Any]], rng: random.Random
    ) -> dict[str, str] | None:
        if not self._unique_name(store, stores):
            return None
        nick = nickname(store["name"])
        forms = {
            "store": store["name"] if rng.random() < 0.5 else store["name"].lower(),
            "store_lower": store["name"].lower(),
            "store_typo": misspell(store["name"], rng),
            "store_code": store["code"],
            "owner": (store["owner_name"] or store["name"]).lower(),
        }
        if nick and self._unique_nick(nick, store, stores):
            forms["store_nick"] = nick
        return forms

    def bind(
        self,
        template: str,
        actor: Actor,
        check: str,
        params: dict[str, Any],
        rng: random.Random,
        fixed: Bound | None = None,
    ) -> Bound:
        names = set(PLACEHOLDER.findall(template))
        bound = Bound(text=template)
        if fixed is not None:
            bound.store, bound.product, bound.order = fixed.store, fixed.product, fixed.order
            bound.values = dict(fixed.values)
        values: dict[str, Any] = dict(bound.values)
        for key, value in params.items():
            values.setdefault(key, value)
        # The product first: whether a store can take an order depends on its price.
        if names & PRODUCT_FORMS and bound.product is None:
            self._bind_product(bound, names, check, params, rng, values)
        elif bound.product is not None:
            values.update(self._product_forms(bound.product, rng) or {})
        if names & STORE_FORMS and bound.store is None:
            self._bind_store(bound, names, actor, check, params, rng, values)
        elif bound.store is not None and names & STORE_FORMS:
            stores = self.visible_stores(actor)
            forms = self.store_forms(bound.store, stores, rng) or {}
            forms.setdefault("store_nick", bound.store["name"].lower())
            values.update(forms)
        if "order" in names and bound.order is None:
            bound.order = self._pick_order(actor, rng, status=None)
            values["order"] = bound.order["id"]
        if "open_order" in names and bound.order is None:
            bound.order = self._pick_order(actor, rng, status="placed")
            values["open_order"] = bound.order["id"]
        if "region" in names and "region" not in values:
            regions = sorted({s["region"] for s in self.visible_stores(actor) if s["region"]})
            values["region"] = rng.choice(regions) if regions else "North"
        if "ambiguous" in names:
            values["ambiguous"] = self._ambiguous_word(actor, rng)
        if "missing_store" in names:
            values["missing_store"] = rng.choice(MADE_UP_STORES)
        if "qty" in names and "qty" not in values:
            values["qty"] = rng.choice((2, 3, 4, 5, 6, 8, 10, 12))
        bound.values = values
        try:
            bound.text = PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
        except KeyError as missing:
            raise EvaluationError(f"no value for {missing} in {template!r}") from None
        return bound

    def _bind_store(
        self,
        bound: Bound,
        names: set[str],
        actor: Actor,
        check: str,
        params: dict[str, Any],
        rng: random.Random,
        values: dict[str, Any],
    ) -> None:
        if "other_store" in names:
            hidden = self.hidden_stores(actor, unlike_visible=True)
            if not hidden:
                raise EvaluationError("every store is visible to this user")
            store = rng.choice(hidden)
            bound.store = store
            values["other_store"] = store["name"]
            return
        needs = STORE_NEEDS.get(check, "TRUE")
        pool = self.visible_stores(actor, needs)
        everyone = self.visible_stores(actor)
        if not pool:
            raise EvaluationError(f"no store of {actor.email} fits the check {check}")
        wanted = names & STORE_FORMS
        for store in rng.sample(pool, len(pool)):
            forms = self.store_forms(store, everyone, rng)
            if forms is None or not wanted <= forms.keys():
                continue
            if check in ("draft", "repeat") and not self._can_order(store, bound, values):
                continue
            bound.store = store
            values.update(forms)
            return
        raise EvaluationError(f"no store of {actor.email} can be named as {sorted(wanted)}")

    def _can_order(self, store: dict[str, Any], bound: Bound, values: dict[str, Any]) -> bool:
        """The draft would pass the stock and credit checks (a refusal is another test)."""
        credit = available_credit(self.env, store["id"])
        if bound.product is not None:
            price = _money(bound.product["price"]) * int(values.get("qty", 12))
            return credit > price * 2
        last = self.env.q(
            """
            SELECT l.product_id, l.quantity, p.price, p.is_active FROM order_lines l
            JOIN products p ON p.id = l.product_id WHERE l.order_id = (
              SELECT id FROM orders WHERE store_id = :s ORDER BY order_date DESC, id DESC LIMIT 1)
            """,
            s=store["id"],
        )
        if not last or not all(row[3] for row in last):
            return False
        value = sum((_money(row[2]) * int(row[1]) for row in last), Decimal(0))
        return credit > value * 2 and all(
            stock_of(self.env, int(row[0])) >= int(row[1]) * 2 for row in last
        )

    def _product_forms(self, product: dict[str, Any], rng: random.Random) -> dict[str, str] | None:
        products = self.products()
        short = short_product(product["name"])
        forms = {
            "product": product["name"] if rng.random() < 0.5 else product["name"].lower(),
            "product_lower": product["name"].lower(),
        }
        if short == product["name"]:
            return forms
        words = _tokens(short)
        if any(
            other["id"] != product["id"] and words <= _tokens(other["name"]) for other in products
        ):
            # Sold in several sizes: people add the size, written together ("tata tea 250g").
            size = product["name"][len(short) :].strip().lower()
            joined = re.sub(r"(?<=\d) (?=[a-z])", "", size)
            short = f"{short} {joined}"
        forms["product_short"] = short.lower()
        forms["product_typo"] = misspell(short, rng)
        return forms

    def _bind_product(
        self,
        bound: Bound,
        names: set[str],
        check: str,
        params: dict[str, Any],
        rng: random.Random,
        values: dict[str, Any],
    ) -> None:
        pool = self.products()
        if check == "demand":
            pool = [p for p in pool if p["forecast"]]
        if check == "draft":
            qty = int(values.get("qty") or rng.choice((2, 3, 4, 5, 6, 8, 10, 12)))
            values["qty"] = qty
            pool = [p for p in pool if int(p["available"]) >= qty * 3]
        if not pool:
            raise EvaluationError(f"no product fits the check {check} (no forecasts yet?)")
        wanted = names & PRODUCT_FORMS
        for product in rng.sample(pool, len(pool)):
            forms = self._product_forms(product, rng)
            if forms is None or not wanted <= forms.keys():
                continue
            bound.product = product
            values.update(forms)
            return
        raise EvaluationError(f"no product can be named as {sorted(wanted)}")

    def _pick_order(self, actor: Actor, rng: random.Random, status: str | None) -> dict[str, Any]:
        condition = "o.status = :status" if status else "o.status IN ('placed', 'delivered')"
        rows = self.env.conn.execute(
            text(
                f"SELECT o.id, o.external_id, s.name AS store_name, s.id AS store_id "
                f"FROM orders o JOIN stores s ON s.id = o.store_id "
                f"WHERE {condition} AND {scope_sql(actor)} ORDER BY o.id DESC LIMIT 300"
            ),
            {"status": status},
        ).mappings()
        orders = [dict(r) for r in rows]
        if not orders:
            raise EvaluationError(f"no {status or ''} order of {actor.email} to ask about")
        return rng.choice(orders)

    def _ambiguous_word(self, actor: Actor, rng: random.Random) -> str:
        """A name word several of the user's stores share ("durga" for Durga Kirana and
        Durga Paan Shop): asking by it alone is genuinely ambiguous."""
        counts: Counter[str] = Counter()
        for store in self.visible_stores(actor):
            for word in _tokens(store["name"]):
                if word not in GENERIC_WORDS and len(word) >= 4:
                    counts[word] += 1
        shared = sorted(word for word, n in counts.items() if n >= 2)
        if not shared:
            raise EvaluationError(f"no name word is shared by two stores of {actor.email}")
        return rng.choice(shared)


# --------------------------------------------------------------------------- the question set


@dataclass
class Question:
    id: str
    intent: str
    check: str
    text: str
    role: str = "rep"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class DialogueTurn:
    say: str | None
    button: str | None
    intent: str
    check: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dialogue:
    id: str
    role: str
    turns: list[DialogueTurn]
    bind_as: str | None = None


@dataclass
class QuestionSet:
    dataset: str
    questions: list[Question]
    dialogues: list[Dialogue]


def question_set_path(dataset: str) -> Path:
    return EVAL_DIR / f"{dataset}.yaml"


def load_question_set(dataset: str, path: Path | None = None) -> QuestionSet:
    """Read and validate a question set (every check must exist)."""
    source = path or question_set_path(dataset)
    if not source.exists():
        raise EvaluationError(f"no question set for {dataset!r} at {source}")
    data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    questions: list[Question] = []
    for group in data.get("questions") or []:
        intent, check = group["intent"], group.get("check", group["intent"])
        if check not in ORACLES:
            raise EvaluationError(f"{source.name}: unknown check {check!r}")
        for i, item in enumerate(group.get("texts") or [], start=1):
            entry = item if isinstance(item, dict) else {"text": item}
            questions.append(
                Question(
                    id=f"{group.get('id', intent)}-{i}",
                    intent=entry.get("intent", intent),
                    check=entry.get("check", check),
                    text=str(entry["text"]),
                    role=entry.get("role", group.get("role", "rep")),
                    params={**(group.get("params") or {}), **(entry.get("params") or {})},
                )
            )
    dialogues: list[Dialogue] = []
    for number, item in enumerate(data.get("dialogues") or [], start=1):
        turns = []
        for turn in item["turns"]:
            check = turn.get("check", turn["intent"])
            if check not in ORACLES and check not in POST_CHECKS:
                raise EvaluationError(f"{source.name}: unknown check {check!r}")
            turns.append(
                DialogueTurn(
                    say=turn.get("say"),
                    button=turn.get("button"),
                    intent=turn["intent"],
                    check=check,
                    params=turn.get("params") or {},
                )
            )
        dialogues.append(
            Dialogue(
                id=item.get("id", f"dialogue-{number}"),
                role=item.get("role", "rep"),
                turns=turns,
                bind_as=item.get("bind_as"),
            )
        )
    return QuestionSet(
        dataset=data.get("dataset", dataset), questions=questions, dialogues=dialogues
    )


# --------------------------------------------------------------------------- dialogue effects


@dataclass
class DialogueState:
    """What a dialogue has done so far, for the checks of its later turns."""

    bound: Bound
    orders_before: int = 0
    notes_before: int = 0
    last: TurnResult | None = None
    pressed_store: dict[str, Any] | None = None


PostCheck = Callable[[Env, Actor, DialogueState, dict[str, Any]], Expectation]
POST_CHECKS: dict[str, PostCheck] = {}


def post_check(name: str) -> Callable[[PostCheck], PostCheck]:
    def register(func: PostCheck) -> PostCheck:
        POST_CHECKS[name] = func
        return func

    return register


@post_check("placed")
def _p_placed(env: Env, actor: Actor, state: DialogueState, params: dict[str, Any]) -> Expectation:
    store = _store(state.bound)
    rows = env.q(
        "SELECT id, total_amount FROM orders WHERE store_id = :s ORDER BY id DESC LIMIT 1",
        s=store["id"],
    )

    def one_new_order(result: TurnResult) -> list[str]:
        placed = _orders_of(env, store["id"]) - state.orders_before
        return [] if placed == 1 else [f"database: {placed} orders placed instead of 1"]

    # The expected total is the one the draft showed (scheme prices included).
    expect = Expectation(texts=[store["name"]], post=one_new_order)
    if rows:
        expect.figures = [_money(rows[0][1])]
    return expect


@post_check("placed_once")
def _p_placed_once(
    env: Env, actor: Actor, state: DialogueState, params: dict[str, Any]
) -> Expectation:
    store = _store(state.bound)

    def still_one(result: TurnResult) -> list[str]:
        placed = _orders_of(env, store["id"]) - state.orders_before
        return [] if placed == 1 else [f"database: {placed} orders after a repeated yes"]

    return Expectation(kind="answer", post=still_one)


@post_check("not_placed")
def _p_not_placed(
    env: Env, actor: Actor, state: DialogueState, params: dict[str, Any]
) -> Expectation:
    store = _store(state.bound)

    def none(result: TurnResult) -> list[str]:
        placed = _orders_of(env, store["id"]) - state.orders_before
        return [] if placed == 0 else [f"database: {placed} orders placed without a yes"]

    return Expectation(kind=params.get("kind", "answer"), post=none, allow_clarify=True)


@post_check("note_saved")
def _p_note_saved(
    env: Env, actor: Actor, state: DialogueState, params: dict[str, Any]
) -> Expectation:
    store = _store(state.bound)

    def one_note(result: TurnResult) -> list[str]:
        saved = _notes_of(env, store["id"]) - state.notes_before
        return [] if saved == 1 else [f"database: {saved} notes saved instead of 1"]

    return Expectation(texts=[store["name"]], post=one_note)


@post_check("cancelled")
def _p_cancelled(
    env: Env, actor: Actor, state: DialogueState, params: dict[str, Any]
) -> Expectation:
    order = state.bound.order
    if order is None:
        raise EvaluationError("cancelled needs {open_order}")

    def is_cancelled(result: TurnResult) -> list[str]:
        status = env.one("SELECT status FROM orders WHERE id = :o", o=order["id"])
        return [] if status == "cancelled" else [f"database: order is {status}"]

    return Expectation(texts=[str(order["id"])], post=is_cancelled)


@post_check("same_as_unknown")
def _p_same_as_unknown(
    env: Env, actor: Actor, state: DialogueState, params: dict[str, Any]
) -> Expectation:
    """The reply to another rep's store must read exactly like the reply to a made-up one."""
    before = state.last.reply.text if state.last else ""
    store = _store(state.bound)

    def same(result: TurnResult) -> list[str]:
        now = result.reply.text.replace(store["name"], "<store>")
        earlier = before.replace(str(state.bound.values.get("missing_store", "")), "<store>")
        return [] if now == earlier else ["database: the reply differs from an unknown store's"]

    return Expectation(
        kind="not_found", forbidden=[store["code"]], texts=[store["code"]], post=same
    )


# --------------------------------------------------------------------------- running


def _actor_for(env: Env, role: str, rng: random.Random) -> Actor:
    if env.forced_user is not None:
        return env.forced_user
    for wanted in (role, "manager", "admin"):
        people = env.users.get(wanted) or []
        if people:
            return rng.choice(people) if wanted == "rep" else people[0]
    raise EvaluationError("no active users: load data and create a user first")


def _bind_for_someone(
    env: Env, binder: Binder, question: Question, actor: Actor, rng: random.Random
) -> tuple[Actor, Bound]:
    """Instantiate a question for `actor`, or for another person of the same role when the
    first one's stores cannot be named the way the template asks."""
    people = [actor] + [
        a for a in env.users.get(question.role, []) if a.id != actor.id and not env.forced_user
    ]
    error: EvaluationError | None = None
    for person in people[:4]:
        try:
            return person, binder.bind(question.text, person, question.check, question.params, rng)
        except EvaluationError as failure:
            error = failure
    assert error is not None
    raise error


def _ask(assistant: Assistant, actor: Actor, text_: str, button: str | None = None) -> TurnResult:
    return assistant.handle(
        InboundMessage(channel="cli", sender=actor.email, text=text_, button_payload=button)
    )


def _press(state: DialogueState, which: str) -> tuple[str, str]:
    """(text, payload) for pressing a button of the previous reply: yes, no or first store."""
    buttons = state.last.reply.buttons if state.last else []
    for button in buttons:
        if which == "yes" and button.payload.startswith("confirm:"):
            return button.label, button.payload
        if which == "no" and button.payload.startswith("cancel:"):
            return button.label, button.payload
        if which == "store" and button.payload.startswith("store:"):
            return button.label, button.payload
    return "", f"{'confirm' if which == 'yes' else which}:missing"


def evaluate(
    bind: Engine | Connection,
    planner: Planner,
    *,
    dataset: str = "demo",
    seed: int = EVAL_SEED,
    user: str | None = None,
    today: dt.date | None = None,
    question_set: QuestionSet | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationReport:
    """Run a question set through `Assistant.handle` and judge every reply.

    Everything happens in one transaction that is rolled back, so writes leave no trace.
    """
    qs = question_set or load_question_set(dataset)
    started = time.perf_counter()
    connection = bind.connect() if isinstance(bind, Engine) else bind
    transaction = connection.begin_nested() if connection.in_transaction() else connection.begin()
    try:
        users = _load_users(connection, temporary_admin=True)
        env = Env(
            conn=connection,
            today=today or default_today(connection),
            seed=seed,
            users=users,
        )
        if user is not None:
            forced = [a for people in users.values() for a in people if a.email == user.lower()]
            if not forced:
                raise EvaluationError(f"no active user {user}")
            env.forced_user = forced[0]
        binder = Binder(env)
        questions = qs.questions[:limit] if limit else qs.questions
        dialogues = [] if limit and limit <= len(qs.questions) else qs.dialogues
        total = len(questions) + sum(len(d.turns) for d in dialogues)
        outcomes: list[TurnOutcome] = []

        def guard() -> None:
            # A database error inside a turn rolls back the enclosing transaction; carrying on
            # would then commit the evaluation's writes for real.
            if not transaction.is_active:
                raise EvaluationError("a database error ended the evaluation's transaction")

        def make_assistant() -> Assistant:
            # `Assistant` opens its sessions on this connection, inside the outer transaction.
            return Assistant(
                engine=cast(Engine, connection),
                planner=planner,
                sessions=MemorySessionStore(),
                today=env.today,
            )

        for question in questions:
            rng = random.Random(f"{seed}:{question.id}")
            actor = _actor_for(env, question.role, rng)
            try:
                actor, bound = _bind_for_someone(env, binder, question, actor, rng)
                params = {**bound.values, **question.params}
                expect = ORACLES[question.check](env, actor, bound, params)
            except EvaluationError as error:
                outcomes.append(
                    _unanswerable(question.id, None, question.text, actor, question.intent, error)
                )
                continue
            # Each question sees the database as it was: what an earlier one wrote is undone.
            savepoint = connection.begin_nested()
            try:
                result = _ask(make_assistant(), actor, bound.text)
                guard()
                outcomes.append(
                    _outcome(question.id, None, bound.text, actor, question.intent, expect, result)
                )
            finally:
                if savepoint.is_active:
                    savepoint.rollback()
            if progress:
                progress(len(outcomes), total)
        for dialogue in dialogues:
            savepoint = connection.begin_nested()
            try:
                outcomes += _run_dialogue(env, binder, make_assistant(), dialogue, seed)
                guard()
            except EvaluationError as error:
                actor = _actor_for(env, dialogue.role, random.Random(f"{seed}:{dialogue.id}"))
                outcomes += [
                    _unanswerable(
                        f"{dialogue.id}/{n}", dialogue.id, t.say or "", actor, t.intent, error
                    )
                    for n, t in enumerate(dialogue.turns, start=1)
                ]
            finally:
                if savepoint.is_active:
                    savepoint.rollback()
            if progress:
                progress(len(outcomes), total)
        return EvaluationReport(
            dataset=qs.dataset,
            seed=seed,
            today=env.today,
            planner=getattr(planner, "name", type(planner).__name__),
            outcomes=outcomes,
            seconds=time.perf_counter() - started,
        )
    finally:
        if transaction.is_active:
            transaction.rollback()
        if isinstance(bind, Engine):
            connection.close()


def _run_dialogue(
    env: Env, binder: Binder, assistant: Assistant, dialogue: Dialogue, seed: int
) -> list[TurnOutcome]:
    rng = random.Random(f"{seed}:{dialogue.id}")
    actor = _actor_for(env, dialogue.role, rng)
    first_check = dialogue.bind_as or dialogue.turns[0].check
    all_text = " ".join(t.say or "" for t in dialogue.turns)
    # Bind every placeholder of the dialogue once, so all turns talk about the same things;
    # another person of the role is asked when this one's stores cannot be named that way.
    people = [actor] + [
        a for a in env.users.get(dialogue.role, []) if a.id != actor.id and not env.forced_user
    ]
    for number, person in enumerate(people[:4]):
        try:
            bound = binder.bind(all_text, person, first_check, dialogue.turns[0].params, rng)
            actor = person
            break
        except EvaluationError:
            if number == min(len(people), 4) - 1:
                raise
    state = DialogueState(bound=bound)
    if bound.store is not None:
        state.orders_before = _orders_of(env, bound.store["id"])
        state.notes_before = _notes_of(env, bound.store["id"])
    outcomes: list[TurnOutcome] = []
    for number, turn in enumerate(dialogue.turns, start=1):
        button = None
        if turn.button:
            said, button = _press(state, turn.button)
            if turn.button == "store" and button.startswith("store:"):
                code = button.split(":", 1)[1]
                found = [s for s in binder.visible_stores(actor) if s["code"] == code]
                state.pressed_store = found[0] if found else None
                if found:
                    state.bound.store = found[0]
        else:
            said = binder.bind(
                turn.say or "", actor, turn.check, turn.params, rng, fixed=bound
            ).text
        params = {**state.bound.values, **turn.params}
        if turn.check in POST_CHECKS:
            expect = POST_CHECKS[turn.check](env, actor, state, params)
            result = _ask(assistant, actor, said, button)
            # Post checks name the figures after the turn (the order exists only then).
            refreshed = POST_CHECKS[turn.check](env, actor, state, params)
            expect.figures = refreshed.figures
        else:
            expect = ORACLES[turn.check](env, actor, state.bound, params)
            result = _ask(assistant, actor, said, button)
        outcomes.append(
            _outcome(
                f"{dialogue.id}/{number}",
                dialogue.id,
                said or f"[{button}]",
                actor,
                turn.intent,
                expect,
                result,
            )
        )
        state.last = result
    return outcomes


def _unanswerable(
    id_: str, dialogue: str | None, said: str, actor: Actor, intent: str, error: Exception
) -> TurnOutcome:
    """A question the data cannot pose (no such store, no forecasts yet): counted as failed,
    never silently dropped."""
    return TurnOutcome(
        id=id_,
        text=said,
        user=actor.email,
        expected_intent=intent,
        intent=None,
        reply_kind="none",
        verdict="failed",
        problems=[f"could not compute the expected answer: {error}"],
        expected="",
        answer="",
        latency_ms=0.0,
        dialogue=dialogue,
    )


def _outcome(
    id_: str,
    dialogue: str | None,
    said: str,
    actor: Actor,
    intent: str,
    expect: Expectation,
    result: TurnResult,
) -> TurnOutcome:
    verdict, problems = judge(expect, result)
    return TurnOutcome(
        id=id_,
        text=said,
        user=actor.email,
        expected_intent=intent,
        intent=result.intent,
        reply_kind=reply_kind(result),
        verdict=verdict,
        problems=problems,
        expected=expect.describe(),
        answer=result.reply.as_text(max_rows=5)[:600],
        latency_ms=result.latency_ms,
        dialogue=dialogue,
    )


# --------------------------------------------------------------------------- speed

BENCH_TEMPLATES: list[tuple[str, str, dict[str, Any]]] = [
    ("{store_typo} ka kitna baaki hai", "outstanding", {}),
    ("what did {store} order last time", "last_order", {}),
    ("tell me about {store_code}", "store_profile", {}),
    ("{store_nick} ka last order", "last_order", {}),
    ("stock of {product_short}", "stock", {}),
    ("sales this month vs last month", "sales", {}),
    ("which stores have not ordered in 30 days", "lapsed", {}),
    ("kis kis ka payment overdue hai", "overdue", {}),
    ("what is low on stock", "low_stock", {}),
    ("koi scheme chal rahi hai kya", "promotions", {}),
    ("top selling products", "top_products", {}),
    ("and their outstanding?", "outstanding", {}),
]


class TimedPlanner:
    """Wraps a planner and adds up the time its tool calls take (for the benchmark)."""

    def __init__(self, inner: Planner) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "planner")
        self.tool_ms = 0.0

    def respond(
        self,
        ctx: ToolContext,
        text: str,
        state: Any,
        run: Callable[[str, dict[str, Any]], Any],
        *,
        button: str | None = None,
    ) -> Any:
        def timed(name: str, args: dict[str, Any]) -> Any:
            started = time.perf_counter()
            try:
                return run(name, args)
            finally:
                self.tool_ms += (time.perf_counter() - started) * 1000

        return self.inner.respond(ctx, text, state, timed, button=button)


def benchmark(
    engine: Engine,
    *,
    turns: int = 200,
    user: str | None = None,
    seed: int = DEV_SEED,
    today: dt.date | None = None,
    llm_turns: int = 50,
) -> dict[str, Any]:
    """Turn latency of the offline planner in process (p50/p95 over `turns` questions drawn
    from the database), and the time the agent adds around an LLM call: turns through the LLM
    planner with a scripted chat model that answers at once, minus the model's own time."""
    from langchain_core.messages import AIMessage

    from assistant.planners.llm import LLMPlanner
    from assistant.planners.offline import OfflinePlanner

    offline = OfflinePlanner()
    offline.classifier  # noqa: B018 - fit or load the classifier before timing
    with engine.connect() as conn:
        users = _load_users(conn)
        env = Env(conn=conn, today=today or default_today(conn), seed=seed, users=users)
        if user:
            actor = next(
                (a for people in users.values() for a in people if a.email == user.lower()), None
            )
            if actor is None:
                raise EvaluationError(f"no active user {user}")
        else:
            actor = _actor_for(env, "rep", random.Random(seed))
        binder = Binder(env)
        rng = random.Random(seed)
        questions: list[str] = []
        while len(questions) < turns:
            template, check, params = BENCH_TEMPLATES[len(questions) % len(BENCH_TEMPLATES)]
            try:
                questions.append(binder.bind(template, actor, check, params, rng).text)
            except EvaluationError:
                questions.append("what is low on stock")
        stores = conn.execute(
            text(f"SELECT count(*) FROM stores s WHERE {scope_sql(actor)}")
        ).scalar()
        size = {
            name: conn.execute(text(f"SELECT count(*) FROM {name}")).scalar()
            for name in ("stores", "products", "orders", "order_lines")
        }
        probe = binder.visible_stores(actor)
    sessions = MemorySessionStore()
    timed = TimedPlanner(offline)
    assistant = Assistant(engine=engine, planner=timed, sessions=sessions, today=env.today)
    for text_ in questions[:5]:  # warm-up: connections, caches
        _ask(assistant, actor, text_)
    latencies: dict[str, list[float]] = defaultdict(list)
    tool_times: dict[str, list[float]] = defaultdict(list)
    without_tools: list[float] = []
    for text_ in questions:
        timed.tool_ms = 0.0
        result = _ask(assistant, actor, text_)
        latencies[result.intent or "none"].append(result.latency_ms)
        tool_times[result.intent or "none"].append(timed.tool_ms)
        without_tools.append(result.latency_ms - timed.tool_ms)
    every = sorted(v for values in latencies.values() for v in values)
    without_tools.sort()

    class InstantChat:
        """A chat model that answers at once: one tool call, then a short answer."""

        model_seconds = 0.0

        def __init__(self, store: str) -> None:
            self.store = store

        def bind_tools(self, tools: Any, **kwargs: Any) -> InstantChat:
            return self

        def invoke(self, messages: list[Any], *args: Any, **kwargs: Any) -> AIMessage:
            started = time.perf_counter()
            if messages and type(messages[-1]).__name__ == "ToolMessage":
                reply = AIMessage(content="Here is what the books say.")
            else:
                reply = AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "outstanding", "args": {"store": self.store}, "id": "call_1"}
                    ],
                )
            InstantChat.model_seconds += time.perf_counter() - started
            return reply

    code = probe[0]["code"] if probe else "S00001"
    chat = InstantChat(code)
    llm = TimedPlanner(LLMPlanner(cast(Any, chat), offline=offline, always_llm=True))
    llm_assistant = Assistant(
        engine=engine, planner=llm, sessions=MemorySessionStore(), today=env.today
    )
    overheads: list[float] = []
    agent_only: list[float] = []
    for i in range(llm_turns + 3):
        before = InstantChat.model_seconds
        llm.tool_ms = 0.0
        result = _ask(llm_assistant, actor, f"how much does store {code} owe? ({i})")
        model_ms = (InstantChat.model_seconds - before) * 1000
        if i >= 3:
            overheads.append(result.latency_ms - model_ms)
            agent_only.append(result.latency_ms - model_ms - llm.tool_ms)
    overheads.sort()
    agent_only.sort()
    return {
        "machine": machine(),
        "user": actor.email,
        "role": actor.role,
        "stores_visible": stores,
        "data": size,
        "today": env.today.isoformat(),
        "offline_turns": len(every),
        "offline_p50_ms": round(statistics.median(every), 1),
        "offline_p95_ms": round(_percentile(every, 0.95), 1),
        "offline_max_ms": round(every[-1], 1),
        "offline_without_tools_p50_ms": round(statistics.median(without_tools), 1),
        "offline_without_tools_p95_ms": round(_percentile(without_tools, 0.95), 1),
        "per_intent_p50_ms": {
            name: round(statistics.median(values), 1) for name, values in sorted(latencies.items())
        },
        "per_intent_tool_p50_ms": {
            name: round(statistics.median(values), 1) for name, values in sorted(tool_times.items())
        },
        "llm_turns": len(overheads),
        "llm_overhead_p50_ms": round(statistics.median(overheads), 1),
        "llm_overhead_p95_ms": round(_percentile(overheads, 0.95), 1),
        "llm_overhead_without_tools_p50_ms": round(statistics.median(agent_only), 1),
        "llm_overhead_without_tools_p95_ms": round(_percentile(agent_only, 0.95), 1),
        "targets": {"offline_p95_ms": 100, "llm_overhead_ms": 50},
    }
