"""The offline planner: no LLM, answers from intent classification, entities and context.

For each message it

1. handles a pending confirmation ("yes"/"no" or a button) and answers to its own questions
   ("For which store?");
2. classifies the intent (`assistant.nlu.intents`); below `min_confidence` it asks which of the
   two likeliest things the person meant instead of guessing;
3. finds the store, product, order, period and quantity the message names, falling back to the
   conversation ("and their outstanding?" means the last store); a money question that names
   one store is about that store's dues, and the list of overdue stores answers only one that
   names none or asks which stores (`assistant.nlu.scope`);
4. asks for what is still missing, or calls the tools and composes the reply from their
   results only (`assistant.reply`).

Writes always take two turns: the first call returns a confirmation token that is kept in the
session and shown as Yes/No buttons; only a later "yes" (or the button) performs the write.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assistant import reply as compose
from assistant.memory import PendingAction, SessionState
from assistant.messages import Button, Reply
from assistant.nlu.entities import (
    Entities,
    extract,
    intent_words_in,
    mask,
    names_with_intent_words,
    quantity_for,
)
from assistant.nlu.intents import IntentClassifier, IntentGuess, get_classifier
from assistant.nlu.periods import parse_period, parse_quantity
from assistant.nlu.scope import about_several_stores, asks_for_store_list
from assistant.turn import PlannerOutcome, ToolRunner
from tools.context import ToolContext
from tools.registry import ToolResult

log = logging.getLogger(__name__)

YES = re.compile(
    r"^\s*(yes|y|yeah|yep|yup|haan|han|ha|haa|ji haan|ok|okay|confirm|confirmed|sure|done|"
    r"theek hai|thik hai|kar do|kardo|go ahead|place it|book it|haan ji|bilkul)\b",
    re.IGNORECASE,
)
NO = re.compile(
    r"^\s*(no|n|nope|nahi|nahin|na|cancel|mat karo|rehne do|rahne do|stop|don'?t|abort)\b",
    re.IGNORECASE,
)

STORE_INTENTS = {
    "store_profile": "store_profile",
    "recent_orders": "recent_orders",
    "outstanding": "outstanding",
    "next_order": "predict_next_order",
    "upsell": "upsell_suggestions",
}
PRODUCT_INTENTS = {"stock_level": "stock_level", "demand_forecast": "demand_forecast"}
WRITE_INTENTS = {"draft_order", "repeat_order", "cancel_order", "log_note"}
# Intents that look for a product only; entities found while looking for stores too would
# treat a product's words as a store's.
PRODUCT_ONLY_INTENTS = {"stock_level", "demand_forecast"}

# Words that point back at what the conversation was about.
PRONOUN = re.compile(
    r"\b(it|its|this|that|they|their|them|unhone|unka|unki|unke|wo|woh|iska|iski|iske|uska|"
    r"uski|uske|ispe|uspe|is par|us par)\b"
)
# "this month", "that week": a period, not a reference to what was talked about.
PERIOD_DEMONSTRATIVE = re.compile(
    r"\b(this|that)\s+(month|week|year|quarter|time|season|festival)\b"
)


def refers_back(text: str) -> bool:
    """Whether `text` points back at the store or product the conversation was about."""
    return PRONOUN.search(PERIOD_DEMONSTRATIVE.sub(" ", text.lower())) is not None


GROUP_WORDS = [
    (r"\b(region|regions|zone|zones|area|areas|regionwise|region wise)\b", "region"),
    (r"\b(city|cities|citywise|shehar)\b", "city"),
    (r"\b(rep|reps|salesman|salesmen|sales rep|executive|executives)\b", "rep"),
    (r"\b(brand|brands|brandwise)\b", "brand"),
    (r"\b(category|categories|categorywise)\b", "category"),
    (r"\b(product|products|sku|skus|item|items)\b", "product"),
    (r"\b(store|stores|shop|shops|outlet|outlets|customer|customers|dukan)\b", "store"),
]


@dataclass
class Turn:
    """Everything a handler needs for one message."""

    ctx: ToolContext
    text: str
    state: SessionState
    run: ToolRunner
    intent: str
    entities: Entities | None = None


class OfflinePlanner:
    """See the module docstring."""

    name = "offline"

    def __init__(
        self,
        classifier: IntentClassifier | None = None,
        *,
        min_confidence: float = 0.35,
        sure_confidence: float = 0.8,
    ) -> None:
        self._classifier = classifier
        self.min_confidence = min_confidence
        self.sure_confidence = sure_confidence

    @property
    def classifier(self) -> IntentClassifier:
        if self._classifier is None:
            self._classifier = get_classifier()
        return self._classifier

    # ------------------------------------------------------------------ entry point

    def respond(
        self,
        ctx: ToolContext,
        text: str,
        state: SessionState,
        run: ToolRunner,
        *,
        button: str | None = None,
        guess: IntentGuess | None = None,
    ) -> PlannerOutcome:
        """One turn (see the module docstring); `guess` is the classifier's reading of `text`
        when the caller has it already (the LLM planner asks it whether to answer offline)."""
        text = (button if button and not text.strip() else text).strip()
        if button:
            handled = self._button(ctx, button, state, run)
            if handled:
                return handled
        if state.pending is not None:
            if YES.match(text):
                return self._confirm(ctx, state, run)
            if NO.match(text):
                state.pending = None
                return PlannerOutcome(Reply(text="OK, cancelled. Nothing was changed."), "deny")
            # Anything else drops the pending write: it must not be confirmed by accident later.
            state.pending = None
        if not text:
            return PlannerOutcome(compose.help_reply(), "help")
        if state.clarify is not None:
            resumed = self._resume(ctx, text, state, run)
            if resumed is not None:
                return resumed
        if guess is None:
            guess = self.classifier.classify(text)
        entities: Entities | None = None
        if guess.intent not in ("confirm", "deny") and (
            guess.confidence < self.sure_confidence or names_with_intent_words(ctx, text)
        ):
            # Store and product names are noise to the classifier: classify the message
            # again without them ("medicos dilsukhnagar ke baare mein batao" -> "ke baare
            # mein batao") and keep the surer reading. A store named with intent words
            # ("C-Scheme ka udhaar", "New Order Mart ki details") misleads it however sure
            # it is, so then the reading without the name is kept.
            entities = extract(ctx, text, want_store=True, want_product=True)
            masked = mask(text, entities)
            if masked.strip() and masked != text:
                second = self.classifier.classify(masked)
                if second.confidence > guess.confidence or (
                    intent_words_in(entities.store) and second.confidence >= self.min_confidence
                ):
                    guess = second
        intent = guess.intent
        if (
            intent == "order_details"
            and entities is not None
            and entities.product is not None
            and entities.order_ref is None
        ):
            # "order 2 nestle munch single for S00290" books two of a product: details are of
            # an existing order, named by its number, and name no product.
            intent = "draft_order"
        if intent in ("confirm", "deny"):
            if not (YES.match(text) or NO.match(text)):
                # Short filler ("hmm blah") reads like a reply to a question; there is none.
                return self._which_intent(text, state, "out_of_scope", [])
            return PlannerOutcome(
                Reply(text="There is nothing waiting for confirmation."), intent, guess.confidence
            )
        if guess.confidence < self.min_confidence:
            return self._which_intent(text, state, guess.intent, guess.alternatives)
        turn = Turn(ctx, text, state, run, intent)
        if entities is not None and intent not in PRODUCT_ONLY_INTENTS:
            turn.entities = entities
        outcome = self.dispatch(turn)
        outcome.confidence = guess.confidence
        return outcome

    def dispatch(self, turn: Turn) -> PlannerOutcome:
        handler: Callable[[Turn], PlannerOutcome] = getattr(
            self, f"_intent_{turn.intent}", self._intent_out_of_scope
        )
        return handler(turn)

    # ------------------------------------------------------------------ conversation plumbing

    def _which_intent(
        self, text: str, state: SessionState, best: str, others: list[tuple[str, float]]
    ) -> PlannerOutcome:
        options = [best, *[name for name, _ in others[:1]]]
        options = [o for o in options if o not in ("out_of_scope", "greeting", "confirm", "deny")]
        if not options:
            return PlannerOutcome(compose.cannot_answer(), "out_of_scope")
        state.clarify = {"kind": "intent", "text": text, "options": options}
        return PlannerOutcome(
            Reply(
                intent="clarify",
                text="I'm not sure what you need. Did you mean "
                + " or ".join(compose.INTENT_LABELS.get(o, o) for o in options)
                + "?",
                buttons=[
                    Button(label=compose.INTENT_LABELS.get(o, o), payload=f"intent:{o}")
                    for o in options
                ],
            ),
            "clarify",
        )

    def _button(
        self, ctx: ToolContext, payload: str, state: SessionState, run: ToolRunner
    ) -> PlannerOutcome | None:
        kind, _, value = payload.partition(":")
        if kind == "confirm" and state.pending is not None:
            return self._confirm(ctx, state, run)
        if kind == "cancel":
            state.pending = None
            return PlannerOutcome(Reply(text="OK, cancelled. Nothing was changed."), "deny")
        if kind == "intent" and state.clarify and state.clarify.get("kind") == "intent":
            original = state.clarify.get("text", "")
            state.clarify = None
            return self.dispatch(Turn(ctx, original, state, run, value))
        if kind == "store" and state.clarify and state.clarify.get("kind") == "store":
            return self._resume(ctx, value, state, run, exact=True)
        if kind in ("confirm", "intent", "store"):
            return PlannerOutcome(Reply(text="That button has expired. Please ask again."), None)
        return None

    def _resume(
        self, ctx: ToolContext, text: str, state: SessionState, run: ToolRunner, exact: bool = False
    ) -> PlannerOutcome | None:
        clarify = state.clarify or {}
        kind = clarify.get("kind")
        if kind == "intent":
            # A free-text answer to "did you mean": classify it afresh.
            state.clarify = None
            return None
        intent = clarify.get("intent", "")
        original = clarify.get("text", "")
        # A new question rather than an answer: start over.
        if not exact and len(text.split()) > 4:
            guess = self.classifier.classify(text)
            if guess.intent != intent and guess.confidence >= 0.5:
                state.clarify = None
                return None
        state.clarify = None
        turn = Turn(ctx, original or text, state, run, intent)
        if kind == "store":
            found = self._store_from_answer(ctx, text, run, exact)
            if isinstance(found, PlannerOutcome):
                if found.intent == "clarify_store":
                    state.clarify = {"kind": "store", "intent": intent, "text": original}
                return found
            state.store = found
            turn.entities = Entities()
            return self.dispatch(turn)
        if kind == "product":
            turn.entities = extract(ctx, text, want_store=False, want_product=True)
            if turn.entities.product is None:
                turn.entities.products = []
                state.product = {"ref": text}
            else:
                state.product = turn.entities.product.best
            return self.dispatch(turn)
        return None

    def _store_from_answer(
        self, ctx: ToolContext, text: str, run: ToolRunner, exact: bool
    ) -> dict[str, Any] | PlannerOutcome:
        ref = text
        if not exact:
            entities = extract(ctx, text, want_store=True, want_product=False)
            if entities.store_code:
                ref = entities.store_code
            elif entities.store is not None:
                ref = entities.store.best.get("code") or entities.store.text
        result = run("find_store", {"query": ref, "limit": 5})
        if not result.ok:
            return PlannerOutcome(compose.tool_error(result), "clarify_store")
        matches = (result.result or {}).get("matches") or (result.result or {}).get("candidates")
        if not matches:
            return PlannerOutcome(
                Reply(text=f"I could not find a store called '{text}'. Try its code or name."),
                "clarify_store",
            )
        top = matches[0]
        if exact or len(matches) == 1 or top.get("score", 0) - matches[1].get("score", 0) >= 0.15:
            return {"id": top["id"], "code": top["code"], "name": top["name"]}
        return PlannerOutcome(compose.which_store(matches), "clarify_store")

    # ------------------------------------------------------------------ slots

    def _entities(self, turn: Turn, *, store: bool, product: bool) -> Entities:
        if turn.entities is None:
            turn.entities = extract(turn.ctx, turn.text, want_store=store, want_product=product)
        return turn.entities

    def _store_ref(self, turn: Turn) -> str | None:
        """The store the message names, else the one the conversation is about."""
        entities = self._entities(turn, store=True, product=False)
        if entities.store_code:
            turn.state.store = {"code": entities.store_code}
            return entities.store_code
        if entities.store is not None:
            if entities.store.ambiguous:
                # The resolver sees the same rivals and answers with candidates to pick from.
                return entities.store.text
            best = entities.store.best
            # Follow-ups ("and their outstanding?") are about this store from now on.
            turn.state.store = {k: best.get(k) for k in ("id", "code", "name")}
            return str(best.get("code") or entities.store.text)
        if turn.state.store:
            return str(turn.state.store.get("code") or turn.state.store.get("id"))
        return None

    def _which_store(self, turn: Turn) -> PlannerOutcome | None:
        """A question back when the message names several stores about equally well."""
        entities = self._entities(turn, store=True, product=False)
        mention = entities.store
        if entities.store_code or mention is None or not mention.ambiguous:
            return None
        turn.state.clarify = {"kind": "store", "intent": turn.intent, "text": turn.text}
        # The choices are shown from a tool result, so names holding numbers ("Unit 4") pass
        # the number check like any other figure.
        found = turn.run("find_store", {"query": mention.text, "limit": 10})
        listed = (found.result or {}).get("candidates") or [] if found.ok else []
        wanted = [c["code"] for c in mention.candidates]
        chosen = sorted(
            (c for c in listed if c["code"] in wanted), key=lambda c: wanted.index(c["code"])
        )
        if len(chosen) < 2:
            chosen = listed[:5]
        if len(chosen) < 2:
            return None
        candidates = [
            {**c, "detail": ", ".join(p for p in (c.get("owner_name"), c.get("city")) if p)}
            for c in chosen
        ]
        reply = compose.which_store(candidates)
        reply.intent = "clarify"
        return PlannerOutcome(reply, turn.intent)

    def _ask_store(self, turn: Turn) -> PlannerOutcome:
        turn.state.clarify = {"kind": "store", "intent": turn.intent, "text": turn.text}
        return PlannerOutcome(Reply(text="For which store?", intent="clarify"), turn.intent)

    def _ask_product(self, turn: Turn) -> PlannerOutcome:
        turn.state.clarify = {"kind": "product", "intent": turn.intent, "text": turn.text}
        return PlannerOutcome(Reply(text="For which product?", intent="clarify"), turn.intent)

    def _call(self, turn: Turn, tool: str, args: dict[str, Any]) -> ToolResult:
        return turn.run(tool, {k: v for k, v in args.items() if v is not None})

    def _remember(self, turn: Turn, result: ToolResult) -> None:
        """Keep the store/product/order a successful result was about, for follow-ups."""
        if not result.ok or not isinstance(result.result, dict):
            return
        data = result.result
        store = data.get("store")
        if isinstance(store, dict) and "code" in store:
            turn.state.store = {k: store.get(k) for k in ("id", "code", "name")}
        product = data.get("product")
        if isinstance(product, dict) and "sku" in product:
            turn.state.product = {k: product.get(k) for k in ("id", "sku", "name")}
        orders = data.get("orders")
        if isinstance(orders, list) and orders and isinstance(orders[0], dict):
            turn.state.order = {"id": orders[0].get("id")}

    def _failed(self, turn: Turn, result: ToolResult) -> PlannerOutcome:
        if result.error and result.error.get("error") == "ambiguous":
            candidates = result.error.get("candidates") or []
            if candidates and "store" in result.error.get("message", "").lower():
                turn.state.clarify = {"kind": "store", "intent": turn.intent, "text": turn.text}
                return PlannerOutcome(compose.which_store(candidates), turn.intent)
        return PlannerOutcome(compose.tool_error(result), turn.intent)

    def _store_tool(self, turn: Turn, tool: str, **extra: Any) -> PlannerOutcome:
        ask = self._which_store(turn)
        if ask is not None:
            return ask
        ref = self._store_ref(turn)
        if ref is None:
            return self._ask_store(turn)
        result = self._call(turn, tool, {"store": ref, **extra})
        if not result.ok:
            return self._failed(turn, result)
        self._remember(turn, result)
        return PlannerOutcome(compose.for_tool(tool, result.result), turn.intent)

    def _product_ref(self, turn: Turn) -> str | None:
        entities = self._entities(turn, store=False, product=True)
        if entities.product is not None:
            return str(entities.product.best.get("sku") or entities.product.text)
        if turn.state.product:
            return str(
                turn.state.product.get("sku")
                or turn.state.product.get("ref")
                or turn.state.product.get("id")
            )
        return None

    def _product_tool(self, turn: Turn, tool: str, **extra: Any) -> PlannerOutcome:
        ref = self._product_ref(turn)
        if ref is None:
            return self._ask_product(turn)
        result = self._call(turn, tool, {"product": ref, **extra})
        if not result.ok:
            return self._failed(turn, result)
        self._remember(turn, result)
        return PlannerOutcome(compose.for_tool(tool, result.result), turn.intent)

    def _simple(self, turn: Turn, tool: str, args: dict[str, Any]) -> PlannerOutcome:
        result = self._call(turn, tool, args)
        if not result.ok:
            return self._failed(turn, result)
        return PlannerOutcome(compose.for_tool(tool, result.result), turn.intent)

    def _period_args(self, turn: Turn, default: str) -> dict[str, Any]:
        period = parse_period(turn.text, turn.ctx.today)
        if period is None:
            return {"period": default}
        return period.as_args()

    def _number(self, text: str, after: str) -> int | None:
        match = re.search(rf"(\d+)\s*(?:{after})", text.lower())
        return int(match.group(1)) if match else None

    # ------------------------------------------------------------------ read intents

    def _intent_greeting(self, turn: Turn) -> PlannerOutcome:
        return PlannerOutcome(compose.greeting(turn.ctx.actor.name, turn.text), "greeting")

    def _intent_help(self, turn: Turn) -> PlannerOutcome:
        return PlannerOutcome(compose.help_reply(), "help")

    def _intent_out_of_scope(self, turn: Turn) -> PlannerOutcome:
        return PlannerOutcome(compose.cannot_answer(), "out_of_scope")

    def _intent_store_profile(self, turn: Turn) -> PlannerOutcome:
        return self._store_tool(turn, "store_profile")

    def _intent_recent_orders(self, turn: Turn) -> PlannerOutcome:
        limit = (
            1
            if re.search(
                r"\b(last time|last order|previous order|pichli baar|pichhli|pichla order|"
                r"pichla|last ordr)\b",
                turn.text.lower(),
            )
            and not re.search(r"\b(orders|history|recent)\b", turn.text.lower())
            else 5
        )
        return self._store_tool(turn, "recent_orders", limit=limit)

    def _intent_outstanding(self, turn: Turn) -> PlannerOutcome:
        if (
            not self._names_store(turn)
            and not refers_back(turn.text)
            and asks_for_store_list(turn.text)
        ):
            # "kaun kaun se store ka paisa baaki hai" names no store: the list of stores that owe.
            turn.intent = "overdue_stores"
            return self._overdue_list(turn)
        return self._store_tool(turn, "outstanding")

    def _intent_next_order(self, turn: Turn) -> PlannerOutcome:
        return self._store_tool(turn, "predict_next_order")

    def _intent_upsell(self, turn: Turn) -> PlannerOutcome:
        return self._store_tool(turn, "upsell_suggestions", limit=5)

    def _intent_find_store(self, turn: Turn) -> PlannerOutcome:
        entities = self._entities(turn, store=True, product=False)
        query = entities.store_code or (entities.store.text if entities.store else None)
        if query is None:
            words = [
                w
                for w in re.findall(r"[\w'-]+", turn.text)
                if w.lower()
                not in ("find", "search", "store", "shop", "dhundo", "khojo", "for", "the", "a")
            ]
            query = " ".join(words)
        if not query:
            return self._ask_store(turn)
        return self._simple(turn, "find_store", {"query": query, "limit": 5})

    def _intent_order_details(self, turn: Turn) -> PlannerOutcome:
        entities = self._entities(turn, store=False, product=False)
        ref = entities.order_ref
        if ref is None:
            match = re.search(r"\b(\d{1,10})\b", turn.text)
            ref = match.group(1) if match else None
        if ref is None and turn.state.order:
            ref = str(turn.state.order.get("id"))
        if ref is None:
            return PlannerOutcome(
                Reply(text="Which order? Give me its number.", intent="clarify"), turn.intent
            )
        result = self._call(turn, "order_details", {"order": ref})
        if not result.ok:
            return self._failed(turn, result)
        self._remember(turn, result)
        turn.state.order = {"id": result.result.get("id")}
        return PlannerOutcome(compose.for_tool("order_details", result.result), turn.intent)

    def _intent_sales_summary(self, turn: Turn) -> PlannerOutcome:
        lowered = turn.text.lower()
        # "vs last month" names what to compare with, not the period asked about.
        head = re.split(r"\b(?:vs\.?|versus|compared (?:to|with)|against|than)\b", lowered)[0]
        period = parse_period(head, turn.ctx.today) if head.strip() else None
        args: dict[str, Any] = period.as_args() if period else {"period": "this_month"}
        group_by = None
        for pattern, name in GROUP_WORDS:
            if re.search(pattern, lowered):
                group_by = name
                break
        compare = None
        if re.search(
            r"\b(last year|pichle saal|same period|yoy|year on year)\b", lowered
        ) and re.search(r"\b(vs|versus|compare|compared|comparison|than|against|se)\b", lowered):
            compare = "same_period_last_year"
        elif re.search(
            r"\b(vs|versus|compare|compared|comparison|growth|change|than|against|badha|ghata)\b",
            lowered,
        ):
            compare = "previous_period"
        args.update({"group_by": group_by or "region", "compare_to": compare, "limit": 10})
        result = self._call(turn, "sales_summary", args)
        if not result.ok:
            return self._failed(turn, result)
        return PlannerOutcome(compose.for_tool("sales_summary", result.result), turn.intent)

    def _intent_top_products(self, turn: Turn) -> PlannerOutcome:
        args = self._period_args(turn, "last_90_days")
        entities = self._entities(turn, store=True, product=False)
        if entities.store is not None or entities.store_code:
            args["store"] = entities.store_code or entities.store.best.get("code")  # type: ignore[union-attr]
        else:
            region = re.search(r"\b(north|south|east|west|central)\b", turn.text.lower())
            if region:
                args["region"] = region.group(1).title()
        args["limit"] = 10
        result = self._call(turn, "top_products", args)
        if not result.ok:
            return self._failed(turn, result)
        self._remember(turn, result)
        return PlannerOutcome(compose.for_tool("top_products", result.result), turn.intent)

    def _intent_not_ordered_since(self, turn: Turn) -> PlannerOutcome:
        days = self._number(turn.text, r"days?|din")
        if days is None:
            weeks = self._number(turn.text, r"weeks?|hafte")
            months = self._number(turn.text, r"months?|mahine")
            days = weeks * 7 if weeks else months * 30 if months else 30
        return self._simple(turn, "stores_not_ordered_since", {"days": days, "limit": 20})

    def _intent_overdue_stores(self, turn: Turn) -> PlannerOutcome:
        entities = self._entities(turn, store=True, product=False)
        one_store = self._names_store(turn) or bool(turn.state.store and refers_back(turn.text))
        if one_store and not about_several_stores(mask(turn.text, entities)):
            # "Sharma General Store paisa?": without the name it reads like "paisa?", but a
            # money question about one named store is that store's dues, never the list.
            turn.intent = "outstanding"
            return self._store_tool(turn, "outstanding")
        return self._overdue_list(turn)

    def _names_store(self, turn: Turn) -> bool:
        """Whether the message names a store, by name or by code. A phone-like number does
        not count here: "receivables ageing 0-30 31-60 61-90" reads like one."""
        entities = self._entities(turn, store=True, product=False)
        code = entities.store_code
        return entities.store is not None or bool(code and re.search(r"[A-Za-z]", code))

    def _overdue_list(self, turn: Turn) -> PlannerOutcome:
        args: dict[str, Any] = {"limit": 20}
        days = self._number(turn.text, r"days?|din")
        if days:
            args["min_days"] = days
        # "more than 45 days" is a number of days, not an amount.
        amount = re.search(
            r"(?:above|over|more than|>|se zyada)\s*(?:rs\.?\s*)?([\d,]*\d)(?![\d,])"
            r"(?!\s*(?:days?|din|weeks?|hafte|months?|mahine)\b)",
            turn.text.lower(),
        )
        if amount:
            args["min_amount"] = float(amount.group(1).replace(",", ""))
        return self._simple(turn, "overdue_stores", args)

    def _intent_stock_level(self, turn: Turn) -> PlannerOutcome:
        return self._product_tool(turn, "stock_level")

    def _intent_low_stock(self, turn: Turn) -> PlannerOutcome:
        return self._simple(turn, "low_stock", {"limit": 20})

    def _intent_promotions(self, turn: Turn) -> PlannerOutcome:
        entities = self._entities(turn, store=True, product=True)
        args: dict[str, Any] = {}
        if entities.store_code or entities.store is not None:
            ask = self._which_store(turn)
            if ask is not None:
                return ask
            args["store"] = self._store_ref(turn)
        if entities.product is not None:
            args["product"] = entities.product.best.get("sku")
        if not args and refers_back(turn.text):
            # "any scheme on it?" is about the product (or store) just talked about.
            if turn.state.product and turn.state.product.get("sku"):
                args["product"] = turn.state.product["sku"]
            elif turn.state.store:
                args["store"] = turn.state.store.get("code")
        result = self._call(turn, "active_promotions", args)
        if not result.ok:
            return self._failed(turn, result)
        self._remember(turn, result)
        return PlannerOutcome(compose.for_tool("active_promotions", result.result), turn.intent)

    def _intent_demand_forecast(self, turn: Turn) -> PlannerOutcome:
        weeks = self._number(turn.text, r"weeks?|hafte") or 8
        return self._product_tool(turn, "demand_forecast", weeks=max(1, min(weeks, 12)))

    def _intent_at_risk(self, turn: Turn) -> PlannerOutcome:
        return self._simple(turn, "at_risk_stores", {"limit": 20})

    def _intent_call_list(self, turn: Turn) -> PlannerOutcome:
        return self._simple(turn, "call_list", {"limit": 15})

    def _intent_search_history(self, turn: Turn) -> PlannerOutcome:
        entities = self._entities(turn, store=True, product=False)
        args: dict[str, Any] = {"query": turn.text, "limit": 5}
        if entities.store_code or entities.store is not None:
            ask = self._which_store(turn)
            if ask is not None:
                return ask
            args["store"] = self._store_ref(turn)
        elif turn.state.store and refers_back(turn.text):
            args["store"] = turn.state.store.get("code")
        if re.search(
            r"\b(complain|complaint|complained|shikayat|problem|issue)", turn.text.lower()
        ):
            args["kind"] = "complaint"
        period = parse_period(turn.text, turn.ctx.today)
        if period is not None:
            args["since"] = period.start.isoformat()
        result = self._call(turn, "search_communications", args)
        if not result.ok:
            return self._failed(turn, result)
        self._remember(turn, result)
        return PlannerOutcome(compose.for_tool("search_communications", result.result), turn.intent)

    # ------------------------------------------------------------------ writes

    def _pending(self, turn: Turn, tool: str, args: dict[str, Any], summary: str) -> None:
        turn.state.pending = PendingAction(
            tool=tool, args=args, summary=summary, expires_at=time.time() + 10 * 60
        )

    def _ask_confirmation(
        self, turn: Turn, result: ToolResult, confirm_tool: str
    ) -> PlannerOutcome:
        data = result.result or {}
        token = data.get("confirmation_token")
        args = dict(data.get("confirm_args") or {})
        if not args:
            if "draft_id" in data:
                args = {"draft_id": data["draft_id"], "confirmation_token": token}
            else:
                args = {**(result.args or {}), "confirmation_token": token}
        reply = compose.for_tool(result.name, data)
        self._pending(turn, confirm_tool, args, reply.text)
        reply.buttons = [
            Button(label="Yes", payload="confirm:yes"),
            Button(label="No", payload="cancel:no"),
        ]
        return PlannerOutcome(reply, turn.intent)

    def _confirm(self, ctx: ToolContext, state: SessionState, run: ToolRunner) -> PlannerOutcome:
        pending = state.pending
        state.pending = None
        if pending is None:
            return PlannerOutcome(
                Reply(text="There is nothing waiting for confirmation."), "confirm"
            )
        if pending.expires_at < time.time():
            return PlannerOutcome(
                Reply(text="That confirmation has expired; nothing was changed. Please ask again."),
                "confirm",
            )
        result = run(pending.tool, pending.args)
        if not result.ok:
            return PlannerOutcome(compose.tool_error(result), "confirm")
        return PlannerOutcome(compose.for_tool(pending.tool, result.result), "confirm")

    def _intent_draft_order(self, turn: Turn) -> PlannerOutcome:
        entities = self._entities(turn, store=True, product=True)
        ask = self._which_store(turn)
        if ask is not None:
            return ask
        store = self._store_ref(turn)
        if store is None:
            return self._ask_store(turn)
        if not entities.products:
            return PlannerOutcome(
                Reply(
                    text="Which products and how many? For example: 'ten cases Parle-G'.",
                    intent="clarify",
                ),
                turn.intent,
            )
        lines = []
        for mention in entities.products:
            quantity = quantity_for(entities.tokens, mention)
            if quantity is None and len(entities.products) == 1:
                quantity = parse_quantity(turn.text)
            if quantity is None:
                return PlannerOutcome(
                    Reply(
                        text=f"How many of {mention.best.get('name', mention.text)}?",
                        intent="clarify",
                    ),
                    turn.intent,
                )
            lines.append({"product": mention.best.get("sku") or mention.text, "quantity": quantity})
        result = self._call(turn, "draft_order", {"store": store, "lines": lines})
        if not result.ok:
            return self._failed(turn, result)
        self._remember(turn, result)
        return self._ask_confirmation(turn, result, "confirm_order")

    def _intent_repeat_order(self, turn: Turn) -> PlannerOutcome:
        ask = self._which_store(turn)
        if ask is not None:
            return ask
        store = self._store_ref(turn)
        if store is None:
            return self._ask_store(turn)
        last = self._call(turn, "recent_orders", {"store": store, "limit": 1})
        if not last.ok:
            return self._failed(turn, last)
        self._remember(turn, last)
        orders = (last.result or {}).get("orders") or []
        if not orders:
            return PlannerOutcome(
                Reply(text="This store has no earlier order to repeat."), turn.intent
            )
        lines = [
            {"product": line["product"]["sku"], "quantity": line["quantity"]}
            for line in orders[0].get("lines", [])
        ]
        result = self._call(turn, "draft_order", {"store": store, "lines": lines})
        if not result.ok:
            return self._failed(turn, result)
        return self._ask_confirmation(turn, result, "confirm_order")

    def _intent_cancel_order(self, turn: Turn) -> PlannerOutcome:
        entities = self._entities(turn, store=False, product=False)
        ref = entities.order_ref
        if ref is None:
            match = re.search(r"\b(\d{1,10})\b", turn.text)
            ref = match.group(1) if match else None
        if ref is None and turn.state.order:
            ref = str(turn.state.order.get("id"))
        if ref is None:
            return PlannerOutcome(
                Reply(text="Which order should I cancel? Give me its number.", intent="clarify"),
                turn.intent,
            )
        result = self._call(turn, "cancel_order", {"order": ref})
        if not result.ok:
            return self._failed(turn, result)
        return self._ask_confirmation(turn, result, "cancel_order")

    def _intent_log_note(self, turn: Turn) -> PlannerOutcome:
        head, colon, body = turn.text.partition(":")
        if colon and body.strip():
            note = body.strip()
            # The store is named before the colon; the note itself may name anything.
            turn.entities = extract(turn.ctx, head, want_store=True, want_product=False)
        else:
            match = re.search(
                r"\b(?:note|notes|likho|likh lo|remark)\b\s*(?:for|on|about)?\s*(.+)$",
                turn.text,
                re.IGNORECASE | re.DOTALL,
            )
            note = match.group(1).strip() if match else turn.text
        ask = self._which_store(turn)
        if ask is not None:
            return ask
        store = self._store_ref(turn)
        if store is None:
            return self._ask_store(turn)
        result = self._call(turn, "log_note", {"store": store, "text": note})
        if not result.ok:
            return self._failed(turn, result)
        self._remember(turn, result)
        return self._ask_confirmation(turn, result, "log_note")
