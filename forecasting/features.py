"""Order history as data frames, and the features every model is built from.

Everything here takes the cut-off as an explicit argument: a feature computed "as of" a day
uses only orders placed on or before that day, whatever rows the caller passed in. Days are
whole numbers (days since 1970-01-01) so the arithmetic stays vectorised.

`History.lines` has one row per order line: order_id, store_id, product_id, day, quantity,
amount. Only placed and delivered orders count as demand (drafts, cancellations and returns
do not).
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, text

EPOCH = dt.date(1970, 1, 1)
DEMAND_STATUSES = ("placed", "delivered")


def to_day(value: dt.date | str) -> int:
    """A date as days since 1970-01-01."""
    if isinstance(value, str):
        value = dt.date.fromisoformat(value)
    return (value - EPOCH).days


def from_day(day: int | np.integer) -> dt.date:
    """Days since 1970-01-01 as a date."""
    return EPOCH + dt.timedelta(days=int(day))


# Settings shared by every gradient-boosting model: small trees and early stopping on a held-out
# slice of the training examples (never the evaluation window), so training stays fast.
BOOSTING: dict[str, Any] = {
    "early_stopping": True,
    "n_iter_no_change": 15,
    "validation_fraction": 0.15,
    "max_leaf_nodes": 15,
}

LINE_COLUMNS = ["order_id", "store_id", "product_id", "day", "quantity", "amount"]


@dataclass
class History:
    """Order lines plus the store and product attributes the models use."""

    lines: pd.DataFrame
    stores: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["store_id"]))
    products: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["product_id"]))

    def __post_init__(self) -> None:
        missing = set(LINE_COLUMNS) - set(self.lines.columns)
        if missing:
            raise ValueError(f"order lines lack columns: {sorted(missing)}")
        self.lines = self.lines[LINE_COLUMNS].astype(
            {
                "order_id": "int64",
                "store_id": "int64",
                "product_id": "int64",
                "day": "int64",
                "quantity": "float64",
                "amount": "float64",
            }
        )

    def until(self, cutoff: int) -> History:
        """The history known at the end of day `cutoff`."""
        return History(self.lines[self.lines["day"] <= cutoff], self.stores, self.products)

    def between(self, start: int, end: int) -> pd.DataFrame:
        """Lines with start < day <= end (an evaluation or label window)."""
        day = self.lines["day"]
        return self.lines[(day > start) & (day <= end)]

    @cached_property
    def orders(self) -> pd.DataFrame:
        """One row per order: order_id, store_id, day, amount, n_lines, quantity."""
        grouped = self.lines.groupby("order_id", sort=False)
        frame = grouped.agg(
            store_id=("store_id", "first"),
            day=("day", "first"),
            amount=("amount", "sum"),
            n_lines=("product_id", "nunique"),
            quantity=("quantity", "sum"),
        ).reset_index()
        return frame.sort_values(["store_id", "day", "order_id"], kind="stable").reset_index(
            drop=True
        )

    @property
    def first_day(self) -> int:
        return int(self.lines["day"].min())

    @property
    def last_day(self) -> int:
        return int(self.lines["day"].max())

    def is_empty(self) -> bool:
        return self.lines.empty


def visits(history: History, cutoff: int) -> pd.DataFrame:
    """Orders up to the cut-off merged per store and day (two orders on one day are one visit)."""
    orders = history.orders
    orders = orders[orders["day"] <= cutoff]
    merged = (
        orders.groupby(["store_id", "day"], sort=True)
        .agg(amount=("amount", "sum"), n_lines=("n_lines", "sum"), quantity=("quantity", "sum"))
        .reset_index()
    )
    return merged


STORE_FEATURES = [
    "n_orders",
    "days_since_last",
    "tenure",
    "mean_interval",
    "median_interval",
    "std_interval",
    "last_interval",
    "recent_interval",
    "overdue_ratio",
    "mean_value",
    "recent_value",
    "value_ratio",
    "mean_lines",
    "recent_lines",
    "lines_ratio",
    "orders_28",
    "orders_91",
    "expected_orders_91",
    "amount_91",
    "amount_prev_91",
    "last_dow",
    "cutoff_dow",
    "due_in_mean",
    "due_in_median",
]


def store_features(history: History, cutoff: int) -> pd.DataFrame:
    """One row per store that ordered on or before `cutoff`, indexed by store_id.

    Intervals are between consecutive order days; "recent" means the last three orders.
    A store with one order has no interval (NaN), which the tree models handle as missing.
    """
    v = visits(history, cutoff)
    if v.empty:
        return pd.DataFrame(columns=STORE_FEATURES, index=pd.Index([], name="store_id"))
    v["interval"] = v.groupby("store_id")["day"].diff()
    v["rank_from_end"] = v.groupby("store_id").cumcount(ascending=False)
    g = v.groupby("store_id")
    f = pd.DataFrame(
        {
            "n_orders": g.size(),
            "first_day": g["day"].min(),
            "last_day": g["day"].max(),
            "mean_interval": g["interval"].mean(),
            "median_interval": g["interval"].median(),
            "std_interval": g["interval"].std(),
            "mean_value": g["amount"].mean(),
            "mean_lines": g["n_lines"].mean(),
        }
    )
    recent = v[v["rank_from_end"] < 3].groupby("store_id")
    f["recent_interval"] = recent["interval"].mean()
    f["recent_value"] = recent["amount"].mean()
    f["recent_lines"] = recent["n_lines"].mean()
    last = v[v["rank_from_end"] == 0].set_index("store_id")
    f["last_interval"] = last["interval"]
    f["days_since_last"] = cutoff - f["last_day"]
    f["tenure"] = cutoff - f["first_day"]
    f["overdue_ratio"] = f["days_since_last"] / f["median_interval"].clip(lower=1)
    # Ratios of the recent orders to the store's older ones: below 1 means smaller / fewer lines.
    older = v[v["rank_from_end"] >= 3].groupby("store_id")
    f["value_ratio"] = f["recent_value"] / older["amount"].mean().reindex(f.index)
    f["lines_ratio"] = f["recent_lines"] / older["n_lines"].mean().reindex(f.index)
    days = v["day"]
    f["orders_28"] = v[days > cutoff - 28].groupby("store_id").size().reindex(f.index).fillna(0)
    f["orders_91"] = v[days > cutoff - 91].groupby("store_id").size().reindex(f.index).fillna(0)
    f["expected_orders_91"] = np.minimum(f["tenure"], 91) / f["mean_interval"].clip(lower=1)
    f["amount_91"] = (
        v[days > cutoff - 91].groupby("store_id")["amount"].sum().reindex(f.index).fillna(0)
    )
    prev = v[(days > cutoff - 182) & (days <= cutoff - 91)]
    f["amount_prev_91"] = prev.groupby("store_id")["amount"].sum().reindex(f.index).fillna(0)
    # 1970-01-01 was a Thursday: (day + 3) % 7 is 0 for Monday.
    f["last_dow"] = (f["last_day"] + 3) % 7
    f["cutoff_dow"] = (cutoff + 3) % 7
    # Days until the store's usual rhythm says it is due (negative: overdue).
    f["due_in_mean"] = f["last_day"] + f["mean_interval"] - cutoff
    f["due_in_median"] = f["last_day"] + f["median_interval"] - cutoff
    f.index.name = "store_id"
    return f[[*STORE_FEATURES, "last_day", "first_day"]]


def store_product_stats(history: History, cutoff: int) -> pd.DataFrame:
    """Per (store, product) purchase statistics up to the cut-off.

    Columns: n_bought (orders containing it), share (of the store's orders), last_day,
    days_since, mean_qty, recent_qty (mean of the last three purchases), decayed (a recency
    weighted share: the k-th most recent order weighs 0.8**k, as in time-decayed baskets),
    in_last (bought in the store's last order), mean_gap (days between its purchases),
    gap_ratio (days since bought / mean_gap).
    """
    lines = history.lines
    lines = lines[lines["day"] <= cutoff]
    if lines.empty:
        return pd.DataFrame(
            columns=[
                "store_id",
                "product_id",
                "n_bought",
                "share",
                "last_day",
                "days_since",
                "mean_qty",
                "recent_qty",
                "decayed",
                "in_last",
                "mean_gap",
                "gap_ratio",
                "amount",
            ]
        )
    v = visits(history, cutoff)
    v["rank_from_end"] = v.groupby("store_id").cumcount(ascending=False)
    n_orders = v.groupby("store_id").size()
    sp_day = (
        lines.groupby(["store_id", "product_id", "day"], sort=False)
        .agg(quantity=("quantity", "sum"), amount=("amount", "sum"))
        .reset_index()
    )
    sp_day = sp_day.merge(v[["store_id", "day", "rank_from_end"]], on=["store_id", "day"])
    sp_day = sp_day.sort_values(["store_id", "product_id", "day"], kind="stable")
    sp_day["weight"] = 0.8 ** sp_day["rank_from_end"].to_numpy()
    sp_day["gap"] = sp_day.groupby(["store_id", "product_id"])["day"].diff()
    sp_day["purchase_rank"] = sp_day.groupby(["store_id", "product_id"]).cumcount(ascending=False)
    g = sp_day.groupby(["store_id", "product_id"])
    stats = g.agg(
        n_bought=("day", "size"),
        last_day=("day", "max"),
        mean_qty=("quantity", "mean"),
        decayed_sum=("weight", "sum"),
        mean_gap=("gap", "mean"),
        amount=("amount", "sum"),
        min_rank=("rank_from_end", "min"),
    )
    stats["recent_qty"] = (
        sp_day[sp_day["purchase_rank"] < 3].groupby(["store_id", "product_id"])["quantity"].mean()
    )
    stats = stats.reset_index()
    orders_of_store = stats["store_id"].map(n_orders).to_numpy(dtype=float)
    stats["share"] = stats["n_bought"] / orders_of_store
    # Normalise the decayed weights by the most a store could have (all its orders).
    max_weight = (1 - 0.8**orders_of_store) / (1 - 0.8)
    stats["decayed"] = stats["decayed_sum"] / max_weight
    stats["in_last"] = (stats["min_rank"] == 0).astype(float)
    stats["days_since"] = cutoff - stats["last_day"]
    stats["gap_ratio"] = stats["days_since"] / stats["mean_gap"].clip(lower=1)
    return stats.drop(columns=["decayed_sum", "min_rank"])


def product_popularity(history: History, cutoff: int, window: int = 91) -> pd.DataFrame:
    """Per product: share of active stores that bought it in the window, and the trend."""
    lines = history.lines
    recent = lines[(lines["day"] <= cutoff) & (lines["day"] > cutoff - window)]
    before = lines[(lines["day"] <= cutoff - window) & (lines["day"] > cutoff - 2 * window)]
    active = max(recent["store_id"].nunique(), 1)
    pop = recent.groupby("product_id")["store_id"].nunique() / active
    prev = before.groupby("product_id")["store_id"].nunique() / max(before["store_id"].nunique(), 1)
    frame = pd.DataFrame({"popularity": pop})
    frame["popularity_prev"] = prev.reindex(frame.index).fillna(0)
    frame["trend"] = frame["popularity"] - frame["popularity_prev"]
    frame.index.name = "product_id"
    return frame


def weekly_series(
    history: History, cutoff: int, *, by_region: bool = False, weeks: int | None = None
) -> pd.DataFrame:
    """Weekly quantity per product (or product x region) up to the cut-off, zeros filled.

    Weeks end on the cut-off day: week 0 is (cutoff-6 .. cutoff], week -1 the one before, so
    the last week is always complete. Returns a wide frame: one row per series (index:
    product_id or (product_id, region)), one column per week offset (oldest first).
    """
    lines = history.lines
    lines = lines[lines["day"] <= cutoff]
    if weeks is not None:
        lines = lines[lines["day"] > cutoff - 7 * weeks]
    frame = lines[["product_id", "store_id", "day", "quantity"]].copy()
    frame["week"] = -((cutoff - frame["day"]) // 7)
    keys = ["product_id"]
    if by_region:
        region = (
            history.stores.set_index("store_id")["region"] if "region" in history.stores else None
        )
        frame["region"] = frame["store_id"].map(region) if region is not None else None
        frame = frame.dropna(subset=["region"])
        keys.append("region")
    wide = frame.groupby([*keys, "week"])["quantity"].sum().unstack("week", fill_value=0.0)
    if wide.empty:
        return wide
    first = int(wide.columns.min()) if weeks is None else -(weeks - 1)
    wide = wide.reindex(columns=range(first, 1), fill_value=0.0)
    return wide.astype(float)


def load_history(conn: Connection, *, cutoff: dt.date | None = None) -> History:
    """Read placed and delivered order lines (up to `cutoff`) plus store and product attributes.

    Uses COPY, which reads ten million lines in well under a minute.
    """
    where = "o.status IN ('placed', 'delivered')"
    params: dict[str, object] = {}
    if cutoff is not None:
        where += " AND o.order_date <= :cutoff"
        params["cutoff"] = cutoff
    query = (
        "SELECT o.id, o.store_id, l.product_id, (o.order_date - DATE '1970-01-01') AS day, "
        "l.quantity, l.amount FROM orders o JOIN order_lines l ON l.order_id = o.id "
        f"WHERE {where}"
    )
    lines = _copy_frame(conn, query, params, LINE_COLUMNS)
    stores = pd.DataFrame(
        conn.execute(text("SELECT id AS store_id, region, segment, rep_id FROM stores"))
        .mappings()
        .all(),
        columns=["store_id", "region", "segment", "rep_id"],
    )
    products = pd.DataFrame(
        conn.execute(
            text(
                "SELECT id AS product_id, price::float AS price, brand, category, sku, name "
                "FROM products"
            )
        )
        .mappings()
        .all(),
        columns=["product_id", "price", "brand", "category", "sku", "name"],
    )
    return History(lines, stores, products)


def _copy_frame(
    conn: Connection, query: str, params: dict[str, object], columns: list[str]
) -> pd.DataFrame:
    """Run a SELECT through COPY ... TO STDOUT and parse it with pandas."""
    compiled = (
        text(query)
        .bindparams(**params)
        .compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    buffer = io.BytesIO()
    with raw.cursor() as cursor, cursor.copy(f"COPY ({compiled}) TO STDOUT WITH CSV") as copy:
        for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    return pd.read_csv(buffer, header=None, names=columns)
