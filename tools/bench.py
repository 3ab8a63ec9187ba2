"""`mangalm bench tools`: latency of every read tool, through the Python API and through REST.

For each chosen user (by default a rep, a manager and an admin of the configured database) every
read tool is called `calls` times with arguments drawn from what that user may see: stores named
by id, code or name, products by SKU or name, periods, groupings and thresholds that people ask
for. Each call runs in its own session, as the assistant and the REST route run them.

The REST path runs the real app (`mangalm serve`) in a child process on a free loopback port and
calls `POST /api/tools/{name}` with a bearer token minted for the user, so the figures include
HTTP, authentication, validation and JSON encoding.

While the Python path runs, every SQL statement is timed; for each tool the slowest statement of
its slowest call is kept, and with `explain` it is run again under `EXPLAIN (ANALYZE, BUFFERS)`
so the plan (index use, rows read) goes next to the figure.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session

from tools.context import Actor, ToolContext, store_scope
from tools.models import Order, Product, Store, User
from tools.registry import available_tools, run_tool

TARGET_P95_MS = 20.0
PERIODS = ("this_month", "last_month", "last_30_days", "this_quarter", "last_90_days", "this_year")
GROUPS = ("region", "city", "rep", "store", "product", "category", "brand")
SEARCHES = (
    "damaged packets complaint",
    "late delivery",
    "asked about the Diwali scheme",
    "payment will be made next week",
    "wants more credit",
    "price too high",
)


class BenchError(Exception):
    """The benchmark cannot run on this database (no users, no stores, ...)."""


def percentile(values: list[float], pct: float) -> float:
    """The `pct` percentile of `values` (nearest rank on the sorted list)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Sample:
    """What the arguments are drawn from: the user's visible stores, products, orders."""

    stores: list[tuple[int, str, str]]  # id, code, name
    products: list[tuple[str, str]]  # sku, name
    orders: list[int]
    regions: list[str]
    reps: list[str]  # e-mails of reps the user may ask about


def _sample(session: Session, actor: Actor, rng: random.Random, size: int = 200) -> Sample:
    scope = store_scope(actor)
    stores = [
        (row.id, row.code, row.name)
        for row in session.execute(
            select(Store.id, Store.code, Store.name)
            .where(scope, Store.is_active.is_(True))
            .order_by(text("random()"))
            .limit(size)
        )
    ]
    if not stores:
        raise BenchError(f"{actor.email} sees no active stores")
    products = [
        (row.sku, row.name)
        for row in session.execute(
            select(Product.sku, Product.name)
            .where(Product.is_active.is_(True))
            .order_by(text("random()"))
            .limit(size)
        )
    ]
    store_ids = [s[0] for s in stores[:50]]
    orders = list(
        session.scalars(
            select(Order.id)
            .where(Order.store_id.in_(store_ids))
            .order_by(Order.id.desc())
            .limit(size)
        )
    )
    regions = sorted(
        {r for r in session.scalars(select(Store.region).where(scope).distinct()) if r}
    )
    reps = [
        email
        for email in session.scalars(
            select(User.email)
            .where(User.role == "rep", User.is_active.is_(True))
            .where(
                User.id == actor.id
                if actor.role == "rep"
                else User.manager_id == (actor.manager_id if actor.role == "viewer" else actor.id)
                if actor.role in ("manager", "viewer")
                else text("true")
            )
            .limit(50)
        )
    ]
    rng.shuffle(regions)
    return Sample(stores, products, orders, regions, reps)


def _store_ref(sample: Sample, rng: random.Random) -> str:
    store_id, code, name = rng.choice(sample.stores)
    return rng.choice((str(store_id), code, name))


def _product_ref(sample: Sample, rng: random.Random) -> str:
    sku, name = rng.choice(sample.products)
    return rng.choice((sku, name))


def _find_query(sample: Sample, rng: random.Random) -> str:
    _, code, name = rng.choice(sample.stores)
    words = name.split()
    choice = rng.random()
    if choice < 0.25:
        return code
    if choice < 0.5 or len(words) < 2:
        return words[0]
    if choice < 0.75:
        return " ".join(words[:2]).lower()
    word = words[0]
    # A typo: two letters swapped.
    if len(word) > 3:
        i = rng.randrange(1, len(word) - 2)
        word = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word


ArgMaker = Callable[[Sample, random.Random], dict[str, Any]]

ARGUMENTS: dict[str, ArgMaker] = {
    "find_store": lambda s, r: {"query": _find_query(s, r)},
    "store_profile": lambda s, r: {"store": _store_ref(s, r)},
    "recent_orders": lambda s, r: {"store": _store_ref(s, r), "limit": r.choice((1, 3, 5))},
    "order_details": lambda s, r: {"order": str(r.choice(s.orders))},
    "sales_summary": lambda s, r: {
        "period": r.choice(PERIODS),
        "group_by": r.choice(GROUPS),
        **(
            {"compare_to": r.choice(("previous_period", "same_period_last_year"))}
            if r.random() < 0.5
            else {}
        ),
    },
    "top_products": lambda s, r: (
        r.choice(
            (
                {"store": _store_ref(s, r)},
                {"region": r.choice(s.regions)} if s.regions else {},
                {},
            )
        )
        | {"period": r.choice(PERIODS)}
    ),
    "stores_not_ordered_since": lambda s, r: {"days": r.choice((14, 30, 45, 60, 90))},
    "outstanding": lambda s, r: {"store": _store_ref(s, r)},
    "overdue_stores": lambda s, r: {
        "min_days": r.choice((1, 30, 60, 90)),
        "min_amount": r.choice((0, 5000, 20000)),
    },
    "stock_level": lambda s, r: {"product": _product_ref(s, r)},
    "low_stock": lambda s, r: {} if r.random() < 0.5 else {"threshold": r.choice((0, 10, 50))},
    "active_promotions": lambda s, r: r.choice(
        ({"store": _store_ref(s, r)}, {"product": _product_ref(s, r)}, {})
    ),
    "predict_next_order": lambda s, r: {"store": _store_ref(s, r)},
    "demand_forecast": lambda s, r: {"product": _product_ref(s, r), "weeks": r.choice((4, 8, 12))},
    "at_risk_stores": lambda s, r: {"limit": r.choice((5, 10, 20))},
    "call_list": lambda s, r: {"rep": r.choice(s.reps)} if s.reps and r.random() < 0.5 else {},
    "upsell_suggestions": lambda s, r: {"store": _store_ref(s, r)},
    "search_communications": lambda s, r: (
        {"query": r.choice(SEARCHES)} | ({"store": _store_ref(s, r)} if r.random() < 0.5 else {})
    ),
}


@dataclass
class Statement:
    sql: str
    parameters: Any
    ms: float


@dataclass
class ToolFigures:
    """One tool's timings for one user over one path."""

    python_ms: list[float] = field(default_factory=list)
    rest_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    statements: int = 0
    slowest: Statement | None = None
    explain: str | None = None


@contextmanager
def _statement_timer(engine: Engine) -> Iterator[list[Statement]]:
    """Record every statement run on `engine` (text, parameters, milliseconds)."""
    recorded: list[Statement] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        started = conn.info["bench_started"].pop()
        recorded.append(Statement(statement, parameters, (time.perf_counter() - started) * 1000))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield recorded
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def _explain(engine: Engine, statement: Statement) -> str:
    """The plan of `statement` as it ran, with actual rows and buffers (read-only, rolled back)."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        rows = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement.sql, statement.parameters
        ).all()
        conn.rollback()
    return "\n".join(row[0] for row in rows)


def pick_users(engine: Engine, roles: list[str]) -> list[Actor]:
    """One active user per role: the rep with the median number of stores, that rep's manager,
    the first admin and the first viewer."""
    actors: list[Actor] = []
    with Session(engine) as session:
        rep_row = session.execute(
            text(
                "SELECT u.id FROM users u JOIN stores s ON s.rep_id = u.id "
                "WHERE u.role = 'rep' AND u.is_active GROUP BY u.id ORDER BY count(*), u.id"
            )
        ).all()
        rep = session.get(User, rep_row[len(rep_row) // 2][0]) if rep_row else None
        for role in roles:
            user: User | None
            if role == "rep":
                user = rep
            elif role == "manager" and rep is not None and rep.manager_id is not None:
                user = session.get(User, rep.manager_id)
            else:
                user = session.scalars(
                    select(User)
                    .where(User.role == role, User.is_active.is_(True))
                    .order_by(User.id)
                    .limit(1)
                ).first()
            if user is None:
                raise BenchError(f"no active {role} user in this database")
            actors.append(Actor.from_user(user))
    return actors


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def rest_server(timeout: float = 120.0) -> Iterator[str]:
    """`mangalm serve` in a child process on a free loopback port; yields its base URL."""
    import httpx

    port = free_port()
    env = dict(os.environ, RATE_LIMIT_PER_USER="1000000/minute")
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise BenchError(f"the API server exited: {(process.stderr.read() or '')[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"the API server did not get ready within {timeout:.0f} s")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def machine() -> str:
    """ "N cores, CPU model": the machine line every benchmark reports with its figures."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}"


def _data_size(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
            for name in ("stores", "products", "orders", "order_lines", "invoices", "payments")
        }


def run_benchmark(
    engine: Engine,
    *,
    calls: int = 40,
    roles: list[str] | None = None,
    tools: list[str] | None = None,
    rest: bool = True,
    explain: bool = True,
    explain_over_ms: float = TARGET_P95_MS,
    today: dt.date | None = None,
    seed: int = 7,
    note: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Time every read tool for each role; returns the figures (see the module docstring)."""
    roles = roles or ["rep", "manager", "admin"]
    actors = pick_users(engine, roles)
    read_tools = [t.name for t in available_tools() if not t.writes]
    unknown = sorted(set(tools or []) - set(read_tools))
    if unknown:
        raise BenchError(
            f"not read tools: {', '.join(unknown)} (read tools: {', '.join(read_tools)})"
        )
    chosen = [n for n in read_tools if not tools or n in tools]
    # A tool registered without a way to draw its arguments (e.g. a plug-in) is reported, not
    # timed with made-up arguments.
    skipped = [n for n in chosen if n not in ARGUMENTS]
    names = [n for n in chosen if n in ARGUMENTS]
    if not names:
        raise BenchError(f"no argument maker for {', '.join(skipped)}")
    if today is None:
        with engine.connect() as conn:
            newest = conn.execute(text("SELECT max(order_date) FROM orders")).scalar()
        today = newest or dt.date.today()
    figures: dict[str, dict[str, ToolFigures]] = {}
    plans: dict[str, list[dict[str, Any]]] = {}
    for actor in actors:
        rng = random.Random(f"{seed}:{actor.role}")
        with Session(engine) as session:
            sample = _sample(session, actor, rng)
        per_tool: dict[str, ToolFigures] = {}
        figures[actor.role] = per_tool
        arguments = {name: [ARGUMENTS[name](sample, rng) for _ in range(calls)] for name in names}
        for name in names:
            note(f"{actor.role} ({actor.email}): {name}")
            result = per_tool[name] = ToolFigures()
            # Warm-up: one untimed call (plans, caches, lazy imports).
            with Session(engine) as session:
                ctx = ToolContext(session, actor, today, channel="api")
                run_tool(ctx, name, arguments[name][0])
            slowest_call = -1.0
            for args in arguments[name]:
                with _statement_timer(engine) as statements, Session(engine) as session:
                    started = time.perf_counter()
                    ctx = ToolContext(session, actor, today, channel="api")
                    outcome = run_tool(ctx, name, args)
                    elapsed = (time.perf_counter() - started) * 1000
                result.python_ms.append(elapsed)
                result.statements = max(result.statements, len(statements))
                if not outcome.ok and outcome.error:
                    code = str(outcome.error.get("error"))
                    result.errors[code] = result.errors.get(code, 0) + 1
                # Queries only: a savepoint or SET can be the slowest of a fast call, and has
                # no plan to show.
                queries = [
                    s for s in statements if s.sql.split(None, 1)[0].upper() in ("SELECT", "WITH")
                ]
                if elapsed > slowest_call and queries:
                    slowest_call = elapsed
                    result.slowest = max(queries, key=lambda s: s.ms)
    if rest:
        import httpx

        from api.auth import create_access_token
        from tools.settings import get_settings

        settings = get_settings()
        note("starting the API server")
        with rest_server() as base, httpx.Client(base_url=base, timeout=60) as client:
            for actor in actors:
                rng = random.Random(f"{seed}:{actor.role}")
                with Session(engine) as session:
                    user = session.get(User, actor.id)
                    assert user is not None
                    token = create_access_token(user, settings).token
                    sample = _sample(session, actor, rng)
                headers = {"Authorization": f"Bearer {token}"}
                for name in names:
                    note(f"REST {actor.role}: {name}")
                    result = figures[actor.role][name]
                    argument_list = [ARGUMENTS[name](sample, rng) for _ in range(calls)]
                    client.post(f"/api/tools/{name}", json=argument_list[0], headers=headers)
                    for args in argument_list:
                        started = time.perf_counter()
                        response = client.post(f"/api/tools/{name}", json=args, headers=headers)
                        result.rest_ms.append((time.perf_counter() - started) * 1000)
                        if response.status_code >= 500:
                            result.errors["http_5xx"] = result.errors.get("http_5xx", 0) + 1
    report: dict[str, Any] = {
        "machine": machine(),
        "data": _data_size(engine),
        "today": today.isoformat(),
        "calls_per_tool": calls,
        "target_p95_ms": TARGET_P95_MS,
        "users": {a.role: a.email for a in actors},
        "skipped": skipped,
        "tools": {},
    }
    for actor in actors:
        rows = {}
        for name, result in figures[actor.role].items():
            row: dict[str, Any] = {
                "python_p50_ms": round(statistics.median(result.python_ms), 1),
                "python_p95_ms": round(percentile(result.python_ms, 95), 1),
                "statements": result.statements,
                "errors": result.errors,
            }
            if result.rest_ms:
                row["rest_p50_ms"] = round(statistics.median(result.rest_ms), 1)
                row["rest_p95_ms"] = round(percentile(result.rest_ms, 95), 1)
            if result.slowest is not None:
                row["slowest_statement_ms"] = round(result.slowest.ms, 1)
                if explain and row["python_p95_ms"] > explain_over_ms:
                    try:
                        plan = _explain(engine, result.slowest)
                    except Exception as error:  # noqa: BLE001 - a plan is a nice-to-have
                        plan = f"(EXPLAIN failed: {error})"
                    plans.setdefault(name, []).append(
                        {"role": actor.role, "sql": result.slowest.sql, "plan": plan}
                    )
            rows[name] = row
        report["tools"][actor.role] = rows
    report["plans"] = plans
    return report
