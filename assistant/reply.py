"""Compose channel-neutral replies from tool results.

Every figure in a reply is copied from a tool result (formatted, never computed), so the number
check in the turn loop can verify it. Per-tool composers give the short answer a person wants
first, then a table with the detail; tools without a composer get a generic rendering.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from assistant.messages import Button, ChartSpec, Citation, Reply, Table
from tools.registry import ToolResult

INTENT_LABELS = {
    "store_profile": "a store's profile",
    "recent_orders": "a store's recent orders",
    "order_details": "an order's details",
    "sales_summary": "a sales summary",
    "top_products": "top products",
    "not_ordered_since": "stores that stopped ordering",
    "outstanding": "a store's outstanding",
    "overdue_stores": "overdue stores",
    "stock_level": "stock of a product",
    "low_stock": "low stock",
    "promotions": "active schemes",
    "next_order": "a store's next order",
    "demand_forecast": "a demand forecast",
    "at_risk": "stores at risk",
    "call_list": "today's call list",
    "upsell": "what to pitch",
    "search_history": "what a store said",
    "find_store": "finding a store",
    "draft_order": "booking an order",
    "repeat_order": "repeating the last order",
    "cancel_order": "cancelling an order",
    "log_note": "logging a note",
    "help": "help",
}

HELP = (
    "I can answer questions about your stores, for example:\n"
    "- which stores should I call today?\n"
    "- what did Sharma General order last time?\n"
    "- how much does Gupta Kirana owe?\n"
    "- sales by region this month vs last month\n"
    "- which stores have not ordered for 30 days?\n"
    "- stock of Parle-G / what is low on stock?\n"
    "- what should I pitch to Sai Medicals?\n"
    "- when will Gupta Stores order next?\n"
    "- what did Sharma complain about?\n"
    "- book 10 cases of Maggi for Sharma General (I ask before placing it)"
)


def money(value: Any) -> str:
    """Rs with Indian digit grouping (12,34,567.50); whole rupees without decimals."""
    if value is None:
        return "-"
    amount = float(value)
    negative = amount < 0
    amount = abs(amount)
    whole = int(amount)
    paise = round((amount - whole) * 100)
    if paise == 100:
        whole, paise = whole + 1, 0
    digits = str(whole)
    if len(digits) > 3:
        head, tail = digits[:-3], digits[-3:]
        groups: list[str] = []
        while len(head) > 2:
            groups.insert(0, head[-2:])
            head = head[:-2]
        if head:
            groups.insert(0, head)
        digits = ",".join(groups) + "," + tail
    text = f"Rs {digits}" + (f".{paise:02d}" if paise else "")
    return "-" + text if negative else text


def day(value: Any) -> str:
    """'14 Nov 2026' from an ISO date."""
    if not value:
        return "-"
    try:
        return dt.date.fromisoformat(str(value)[:10]).strftime("%d %b %Y").lstrip("0")
    except ValueError:
        return str(value)


def num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def greeting(name: str, text: str) -> Reply:
    lowered = text.lower()
    if any(word in lowered for word in ("thank", "thanks", "dhanyavad", "shukriya", "thx")):
        return Reply(text="You're welcome!", intent="greeting")
    if any(word in lowered for word in ("bye", "good night", "see you", "chalta")):
        return Reply(text="Bye! Message me any time.", intent="greeting")
    first = name.split()[0] if name else ""
    return Reply(
        text=f"Namaste {first}! Ask me about your stores, orders, dues, stock or schemes. "
        "Type 'help' for examples.",
        intent="greeting",
    )


def help_reply() -> Reply:
    return Reply(text=HELP, intent="help")


def cannot_answer() -> Reply:
    return Reply(
        text="Sorry, I can't answer that. I know about your stores, orders, sales, dues, stock, "
        "schemes and what stores said. Type 'help' for examples.",
        intent="out_of_scope",
    )


def which_store(candidates: list[dict[str, Any]]) -> Reply:
    shown = candidates[:5]
    return Reply(
        text="Which store do you mean? "
        + "; ".join(
            f"{c.get('name')} ({c.get('code')}{', ' + c['detail'] if c.get('detail') else ''})"
            for c in shown
        ),
        buttons=[Button(label=str(c.get("name")), payload=f"store:{c.get('code')}") for c in shown],
    )


def tool_error(result: ToolResult) -> Reply:
    error = result.error or {}
    message = str(error.get("message") or "Something went wrong.")
    if error.get("error") == "ambiguous" and error.get("candidates"):
        return (
            which_store(error["candidates"])
            if "store" in message.lower()
            else Reply(
                text=message
                + " "
                + "; ".join(f"{c.get('name')} ({c.get('code')})" for c in error["candidates"][:5])
            )
        )
    if error.get("error") == "invalid_arguments":
        return Reply(text="I could not understand all the details of that request. " + message)
    return Reply(text=message)


# --------------------------------------------------------------------------- generic


def _scalar_items(data: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (key, value)
        for key, value in data.items()
        if isinstance(value, str | int | float) and not isinstance(value, bool) and key != "id"
    ]


def generic(tool: str, data: Any) -> Reply:
    """A readable rendering of any result: its fields, and its first list as a table."""
    if not isinstance(data, dict):
        return Reply(text=str(data))
    lines = [f"{key.replace('_', ' ')}: {value}" for key, value in _scalar_items(data)[:8]]
    table = None
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            columns = [k for k, v in value[0].items() if not isinstance(v, dict | list)][:6]
            table = Table(
                title=key.replace("_", " "),
                columns=[c.replace("_", " ") for c in columns],
                rows=[[row.get(c) for c in columns] for row in value[:20]],
            )
            break
    return Reply(text="\n".join(lines) or tool.replace("_", " "), table=table)


COMPOSERS: dict[str, Callable[[dict[str, Any]], Reply]] = {}


def composer(*tools: str) -> Callable[[Callable[[dict[str, Any]], Reply]], Any]:
    def register(func: Callable[[dict[str, Any]], Reply]) -> Callable[[dict[str, Any]], Reply]:
        for name in tools:
            COMPOSERS[name] = func
        return func

    return register


def for_tool(tool: str, data: Any) -> Reply:
    """The reply for a successful result of `tool`."""
    func = COMPOSERS.get(tool)
    if func is None or not isinstance(data, dict):
        return generic(tool, data)
    try:
        return func(data)
    except (KeyError, TypeError, ValueError, IndexError):
        return generic(tool, data)


def citations(items: list[dict[str, Any]]) -> list[Citation]:
    out = []
    for item in items:
        cid = item.get("communication_id") or item.get("id")
        if cid is None:
            continue
        store = item.get("store")
        out.append(
            Citation(
                communication_id=int(cid),
                store=(store.get("name") if isinstance(store, dict) else item.get("store_name")),
                date=day(item.get("date") or item.get("occurred_at")),
                author=item.get("author"),
                channel=item.get("channel"),
                snippet=(item.get("snippet") or item.get("text") or "")[:300],
            )
        )
    return out


def bar_chart(title: str, labels: list[str], series: dict[str, list[float]]) -> ChartSpec:
    return ChartSpec(kind="bar", title=title, labels=labels, series=series, unit="Rs")
