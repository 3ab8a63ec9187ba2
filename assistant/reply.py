"""Compose channel-neutral replies from tool results.

Every figure in a reply is copied from a tool result (formatted, never computed), so the number
check in the turn loop can verify it. Per-tool composers give the short answer a person wants
first, then a table with the detail; tools without a composer get a generic rendering.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
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
    "- which stores have not ordered for a month?\n"
    "- stock of Parle-G / what is low on stock?\n"
    "- what should I pitch to Sai Medicals?\n"
    "- when will Gupta Stores order next?\n"
    "- what did Sharma complain about?\n"
    "- book ten cases of Maggi for Sharma General (I ask before placing it)"
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
    """A count or quantity; fractions to one decimal, rounded the way the number check
    rounds (decimal half-even), so a shown 7.3 is always recognised as the result's 7.25."""
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{Decimal(str(value)).quantize(Decimal('0.1')):,}"
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
    if error.get("error") == "unavailable":
        # A dependency of this one tool is down (e.g. the history search); the rest works.
        return Reply(
            text=f"Sorry, the {message.rstrip('.')}, so I cannot answer that right now. "
            "Questions about orders, dues, stock and forecasts still work.",
        )
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
    if isinstance(data, list):
        # List-valued tools (at_risk_stores) are composed like a result with one list.
        data = {"items": data}
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


# --------------------------------------------------------------------------- per tool


def _store_name(data: dict[str, Any]) -> str:
    store = data.get("store")
    return str(store.get("name")) if isinstance(store, dict) else "the store"


def _period_label(period: dict[str, Any] | None) -> str:
    if not period:
        return ""
    return f"{day(period.get('start'))} to {day(period.get('end'))}"


@composer("find_store")
def _find_store(data: dict[str, Any]) -> Reply:
    candidates = data.get("candidates") or []
    if not candidates:
        return Reply(text=f"No store matches '{data.get('query')}'.")
    rows = [
        [c.get("code"), c.get("name"), c.get("owner_name"), c.get("city"), c.get("rep_name")]
        for c in candidates
    ]
    head = (
        f"Found {candidates[0]['name']} ({candidates[0]['code']})."
        if data.get("confident") or len(candidates) == 1
        else "These stores match:"
    )
    return Reply(
        text=head,
        table=Table(columns=["code", "store", "owner", "city", "rep"], rows=rows),
        buttons=[Button(label=str(c["name"]), payload=f"store:{c['code']}") for c in candidates]
        if len(candidates) > 1
        else [],
    )


@composer("store_profile")
def _store_profile(data: dict[str, Any]) -> Reply:
    store = data["store"]
    last = data.get("last_order") or {}
    parts = [
        f"{store['name']} ({store['code']}), {data.get('segment') or 'store'} in "
        f"{store.get('city') or '-'}; owner {data.get('owner_name') or '-'}, "
        f"phone {data.get('phone') or '-'}; rep {data.get('rep_name') or '-'}."
    ]
    if last:
        parts.append(
            f"Last order {day(last.get('order_date'))}: {money(last.get('amount'))} "
            f"({last.get('status')})."
        )
    else:
        parts.append("No orders yet.")
    if data.get("average_days_between_orders") is not None:
        parts.append(
            f"Usually orders every {num(data['average_days_between_orders'])} days, "
            f"average order {money(data.get('average_order_value'))}."
        )
    parts.append(
        f"Outstanding {money(data.get('outstanding'))} (overdue {money(data.get('overdue'))}); "
        f"credit limit {money(data.get('credit_limit'))}, {data.get('payment_terms_days')} days."
    )
    top = data.get("top_products") or []
    table = None
    if top:
        table = Table(
            title="Top products",
            columns=["product", "quantity", "amount", "share %"],
            rows=[
                [
                    t["product"]["name"],
                    t.get("quantity"),
                    money(t.get("amount")),
                    t.get("share_pct"),
                ]
                for t in top[:5]
            ],
        )
    return Reply(text=" ".join(parts), table=table)


@composer("recent_orders")
def _recent_orders(data: dict[str, Any]) -> Reply:
    orders = data.get("orders") or []
    name = _store_name(data)
    if not orders:
        return Reply(text=f"{name} has no orders yet.")
    if len(orders) == 1:
        order = orders[0]
        lines = order.get("lines") or []
        return Reply(
            text=f"{name}'s last order was on {day(order['order_date'])} "
            f"(order {order['id']}, {order['status']}): {money(order['total'])} for "
            f"{order['units']} units.",
            table=Table(
                columns=["product", "quantity", "amount"],
                rows=[[ln["product"]["name"], ln["quantity"], money(ln["amount"])] for ln in lines],
            ),
        )
    return Reply(
        text=f"{name}'s latest orders, newest first:",
        table=Table(
            columns=["order", "date", "status", "lines", "amount"],
            rows=[
                [o["id"], day(o["order_date"]), o["status"], o["line_count"], money(o["total"])]
                for o in orders
            ],
        ),
    )


@composer("order_details")
def _order_details(data: dict[str, Any]) -> Reply:
    text = (
        f"Order {data['id']} of {_store_name(data)}, {day(data['order_date'])}, {data['status']}: "
        f"{money(data['total'])}, {data['line_count']} lines."
    )
    if data.get("delivered_date"):
        text += f" Delivered {day(data['delivered_date'])}."
    invoice = data.get("invoice")
    if invoice:
        text += f" Invoice {invoice['number']}: {money(invoice['due'])} due."
    return Reply(
        text=text,
        table=Table(
            columns=["product", "quantity", "unit price", "amount"],
            rows=[
                [
                    ln["product"]["name"],
                    ln["quantity"],
                    money(ln["unit_price"]),
                    money(ln["amount"]),
                ]
                for ln in data.get("lines") or []
            ],
        ),
    )


@composer("sales_summary")
def _sales_summary(data: dict[str, Any]) -> Reply:
    totals = data["totals"]
    period = data["period"]
    text = (
        f"Sales {period['name'].replace('_', ' ')} ({_period_label(period)}): "
        f"{money(totals['amount'])} from {num(totals['orders'])} orders of "
        f"{num(totals['stores'])} stores."
    )
    previous = data.get("previous_totals")
    if previous is not None:
        change = data.get("change_pct")
        trend = (
            "" if change is None else (f", up {change}%" if change >= 0 else f", down {-change}%")
        )
        text += (
            f" {data.get('compare_period', {}).get('name', 'Before')}: "
            f"{money(previous['amount'])}{trend}."
        )
    rows = data.get("rows") or []
    columns = [data["group_by"], "amount", "share %"]
    if previous is not None:
        columns += ["before", "change %"]
    table_rows = []
    for row in rows:
        cells = [row["label"], money(row["amount"]), row.get("share_pct")]
        if previous is not None:
            cells += [money(row.get("previous_amount")), row.get("change_pct")]
        table_rows.append(cells)
    series = {"this period": [float(r["amount"]) for r in rows]}
    if previous is not None:
        series["before"] = [float(r.get("previous_amount") or 0) for r in rows]
    chart = bar_chart(f"Sales by {data['group_by']}", [r["label"] for r in rows], series)
    return Reply(
        text=text,
        table=Table(title=f"By {data['group_by']}", columns=columns, rows=table_rows),
        chart=chart if rows else None,
    )


@composer("top_products")
def _top_products(data: dict[str, Any]) -> Reply:
    products = data.get("products") or []
    where = _store_name(data) if data.get("store") else (data.get("region") or "all your stores")
    if not products:
        return Reply(text=f"No sales for {where} in {_period_label(data.get('period'))}.")
    return Reply(
        text=f"Top products for {where}, {_period_label(data.get('period'))}: "
        f"{products[0]['product']['name']} leads with {money(products[0]['amount'])}.",
        table=Table(
            columns=["product", "quantity", "amount", "share %"],
            rows=[
                [p["product"]["name"], p["quantity"], money(p["amount"]), p.get("share_pct")]
                for p in products
            ],
        ),
        chart=bar_chart(
            "Top products",
            [p["product"]["name"] for p in products],
            {"amount": [float(p["amount"]) for p in products]},
        ),
    )


@composer("stores_not_ordered_since")
def _lapsed(data: dict[str, Any]) -> Reply:
    stores = data.get("stores") or []
    if not stores:
        return Reply(text=f"Every one of your stores has ordered in the last {data['days']} days.")
    return Reply(
        text=f"{num(data['total'])} stores have not ordered for {data['days']} days or more.",
        table=Table(
            columns=["store", "last order", "days since", "phone"],
            rows=[
                [
                    s["store"]["name"],
                    day(s.get("last_order_date")) if s.get("last_order_date") else "never",
                    s.get("days_since_last_order"),
                    s.get("phone"),
                ]
                for s in stores
            ],
        ),
    )


@composer("outstanding")
def _outstanding(data: dict[str, Any]) -> Reply:
    name = _store_name(data)
    if not data.get("outstanding"):
        return Reply(text=f"{name} owes nothing at the moment.")
    text = f"{name} owes {money(data['outstanding'])}"
    if data.get("overdue"):
        text += (
            f", of which {money(data['overdue'])} is overdue (oldest "
            f"{data.get('oldest_days_overdue')} days)"
        )
    text += f". Credit limit {money(data.get('credit_limit'))}."
    ageing = data.get("ageing") or {}
    labels = {
        "not_due": "not yet due",
        "days_0_30": "0-30 days",
        "days_31_60": "31-60 days",
        "days_61_90": "61-90 days",
        "days_90_plus": "over ninety days",
    }
    return Reply(
        text=text,
        table=Table(
            title="Ageing",
            columns=["bucket", "amount"],
            rows=[[labels.get(k, k), money(v)] for k, v in ageing.items() if v],
        ),
    )


@composer("overdue_stores")
def _overdue(data: dict[str, Any]) -> Reply:
    stores = data.get("stores") or []
    if not stores:
        # The tool looks only at the stores this user may see, and only as far as its filters:
        # say exactly that, never that no store at all owes money.
        days = int(data.get("min_days") or 1)
        late = f"invoices {num(days)} days or more overdue" if days > 1 else "overdue invoices"
        if data.get("min_amount"):
            late = f"{money(data['min_amount'])} or more " + (
                f"in {late}" if days > 1 else "overdue"
            )
        return Reply(text=f"None of your stores has {late}.")
    count = int(data.get("total_stores") or len(stores))
    return Reply(
        text=f"{num(count)} {'store is' if count == 1 else 'stores are'} overdue, "
        f"{money(data['total_overdue'])} in all.",
        table=Table(
            columns=["store", "overdue", "oldest (days)", "phone"],
            rows=[
                [
                    s["store"]["name"],
                    money(s["overdue"]),
                    s.get("oldest_days_overdue"),
                    s.get("phone"),
                ]
                for s in stores
            ],
        ),
    )


@composer("stock_level")
def _stock(data: dict[str, Any]) -> Reply:
    product = data["product"]["name"]
    status = {"ok": "in stock", "low": "running low", "out": "out of stock"}.get(
        data.get("status", ""), data.get("status", "")
    )
    return Reply(
        text=f"{product}: {num(data['available'])} {data.get('unit', 'case')}s available "
        f"({num(data['on_hand'])} on hand, {num(data['reserved'])} reserved); {status}.",
    )


@composer("low_stock")
def _low_stock(data: dict[str, Any]) -> Reply:
    items = data.get("items") or []
    if not items:
        return Reply(text="Nothing is low on stock.")
    return Reply(
        text=f"{num(data['total'])} products are low or out of stock.",
        table=Table(
            columns=["product", "available", "reorder point", "status"],
            rows=[
                [i["product"]["name"], i["available"], i["reorder_point"], i["status"]]
                for i in items
            ],
        ),
    )


@composer("active_promotions")
def _promotions(data: dict[str, Any]) -> Reply:
    promos = data.get("promotions") or []
    target = (
        _store_name(data)
        if data.get("store")
        else (data["product"]["name"] if data.get("product") else "you")
    )
    if not promos:
        return Reply(text=f"No schemes are running for {target} today.")
    # Counts are not stated: every figure in a reply must be one a tool returned.
    return Reply(
        text=f"Schemes running for {target} today: {promos[0]['name']}"
        + (" and more below." if len(promos) > 1 else "."),
        table=Table(
            columns=["scheme", "offer", "ends", "days left"],
            rows=[
                [p["name"], p.get("description"), day(p["ends_on"]), p.get("days_left")]
                for p in promos
            ],
        ),
    )


@composer("draft_order")
def _draft(data: dict[str, Any]) -> Reply:
    return Reply(
        text=f"Order for {_store_name(data)}: {money(data['total'])} for {num(data['units'])} "
        "units. Shall I place it?",
        table=Table(
            columns=["product", "quantity", "unit price", "amount"],
            rows=[
                [
                    ln["product"]["name"],
                    ln["quantity"],
                    money(ln.get("unit_price")),
                    money(ln.get("amount")),
                ]
                for ln in data.get("lines") or []
            ],
        ),
    )


@composer("confirm_order")
def _confirmed(data: dict[str, Any]) -> Reply:
    order = data.get("order") or {}
    again = " (it was already placed)" if data.get("already_confirmed") else ""
    return Reply(
        text=f"Order {order.get('id')} placed for {_store_name(order)}: "
        f"{money(order.get('total'))}{again}.",
    )


@composer("cancel_order", "log_note")
def _two_step(data: dict[str, Any]) -> Reply:
    if data.get("status") == "confirmation_required":
        return Reply(text=str(data.get("summary") or "Shall I go ahead?"))
    if "order" in data:
        order = data["order"] or {}
        return Reply(text=f"Order {order.get('id')} is cancelled.")
    return Reply(text=f"Note saved for {_store_name(data)}.")


# --------------------------------------------------------------------------- forecasts, history


def _pct(value: Any) -> str:
    """A 0-1 probability as a whole percentage, rounded as the number check rounds."""
    return f"{(Decimal(str(value)) * 100).quantize(Decimal(1))}%"


@composer("predict_next_order")
def _next_order(data: dict[str, Any]) -> Reply:
    name = _store_name(data)
    days = int(data.get("days_from_today") or 0)
    when = "today" if days == 0 else (f"in {days} days" if days > 0 else f"{-days} days ago")
    text = f"{name} should order next around {day(data['predicted_date'])} ({when})"
    if data.get("usual_interval_days") is not None:
        text += f"; it usually orders every {num(data['usual_interval_days'])} days"
    if data.get("last_order_date"):
        text += f", last on {day(data['last_order_date'])}"
    text += "."
    if data.get("expected_value") is not None:
        text += f" Expected value about {money(data['expected_value'])}."
    basket = data.get("basket") or []
    return Reply(
        text=text,
        table=Table(
            title="Likely basket",
            columns=["product", "quantity", "chance"],
            rows=[[b["product"]["name"], b["quantity"], _pct(b["probability"])] for b in basket],
        )
        if basket
        else None,
    )


@composer("demand_forecast")
def _demand(data: dict[str, Any]) -> Reply:
    weeks = data.get("weeks") or []
    unit = data.get("unit") or "case"
    where = f" in {data['region']}" if data.get("region") else ""
    text = f"{data['product']['name']}{where}: about {num(data['total'])} {unit}s expected"
    if weeks:
        text += f" from {day(weeks[0]['week_start'])} to {day(weeks[-1]['week_end'])}"
    return Reply(
        text=text + ".",
        table=Table(
            columns=["week from", "quantity", "low", "high"],
            rows=[
                [day(w["week_start"]), num(w["quantity"]), num(w.get("lower")), num(w.get("upper"))]
                for w in weeks
            ],
        ),
        chart=ChartSpec(
            kind="line",
            title=f"Weekly demand, {data['product']['name']}",
            labels=[day(w["week_start"]) for w in weeks],
            series={"forecast": [float(w["quantity"]) for w in weeks]},
            unit=unit,
        )
        if weeks
        else None,
    )


@composer("at_risk_stores")
def _at_risk(data: dict[str, Any]) -> Reply:
    stores = data.get("items") or []
    if not stores:
        return Reply(text="No store of yours looks at risk right now.")
    first = stores[0]
    reasons = "; ".join(r["text"] for r in first.get("reasons") or [])
    return Reply(
        text=f"Stores at risk, most worrying first: {first['store']['name']}"
        + (f" ({reasons})" if reasons else "")
        + ".",
        table=Table(
            columns=["store", "risk", "last order", "why"],
            rows=[
                [
                    s["store"]["name"],
                    _pct(s["risk"]),
                    day(s.get("last_order_date")) if s.get("last_order_date") else "never",
                    "; ".join(r["text"] for r in s.get("reasons") or []),
                ]
                for s in stores
            ],
        ),
    )


@composer("call_list")
def _call_list(data: dict[str, Any]) -> Reply:
    entries = data.get("entries") or []
    who = f" for {data['rep']}" if data.get("rep") else ""
    if not entries:
        return Reply(text=f"No stores to call{who} on {day(data.get('date'))}.")
    first = entries[0]
    reasons = "; ".join(r["text"] for r in first.get("reasons") or [])
    return Reply(
        text=f"Call list{who} for {day(data.get('date'))}: start with {first['store']['name']}"
        + (f" ({reasons})" if reasons else "")
        + ". The full list, best first:",
        table=Table(
            columns=["#", "store", "phone", "why"],
            rows=[
                [
                    e["rank"],
                    e["store"]["name"],
                    e.get("phone"),
                    "; ".join(r["text"] for r in e.get("reasons") or []),
                ]
                for e in entries
            ],
        ),
    )


@composer("upsell_suggestions")
def _upsell(data: dict[str, Any]) -> Reply:
    items = data.get("suggestions") or []
    name = _store_name(data)
    if not items:
        return Reply(text=f"Nothing new to pitch to {name} right now.")
    return Reply(
        text=f"Pitch to {name}: {items[0]['product']['name']} first ({items[0]['reason']}).",
        table=Table(
            columns=["product", "why", "in stock", "scheme"],
            rows=[
                [i["product"]["name"], i["reason"], i.get("available"), i.get("promotion") or ""]
                for i in items
            ],
        ),
    )


@composer("search_communications")
def _history(data: dict[str, Any]) -> Reply:
    hits = data.get("results") or []
    where = f" from {data['store_name']}" if data.get("store_name") else ""
    if not hits:
        return Reply(text=f"I found nothing{where} about that in the notes and messages.")
    first = hits[0]
    text = (
        f"From the notes and messages{where}, most relevant first. "
        f"{day(first.get('date'))} ({first.get('kind')}, {first.get('store_name')}): "
        f"\u201c{first.get('snippet')}\u201d"
    )
    return Reply(
        text=text,
        citations=[
            Citation(
                communication_id=int(h["communication_id"]),
                store=h.get("store_name"),
                date=day(h.get("date")),
                author=h.get("author"),
                channel=h.get("channel"),
                snippet=h.get("snippet"),
            )
            for h in hits
        ],
    )
