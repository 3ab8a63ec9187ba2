"""Datasets for `mangalm backtest`: the database (demo), Superstore, Northwind and CDNOW files.

File datasets are read straight into a `History` (customers become stores), so a backtest
needs neither an import nor a database. Named datasets are looked up under the folder in
`MANGALM_DATASETS` (default: `../shared/datasets`, beside the checkout); any other value is a
path to the dataset's file or folder.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import text

from forecasting.backtest import run_backtest
from forecasting.features import History, to_day


class DatasetError(RuntimeError):
    """A dataset cannot be found or read; the message says which file and why."""


def datasets_root() -> Path:
    return Path(os.environ.get("MANGALM_DATASETS", "../shared/datasets")).expanduser()


def _days(dates: pd.Series) -> pd.Series:
    return (pd.to_datetime(dates) - pd.Timestamp("1970-01-01")).dt.days.astype("int64")


def load_superstore(path: Path) -> History:
    """Superstore order lines (the comma-separated, ISO-dated file)."""
    if path.is_dir():
        path = path / "superstore.csv"
    try:
        raw = pd.read_csv(path, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError) as error:
        raise DatasetError(f"{path}: {error}") from None
    need = {"Order ID", "Order Date", "Customer ID", "Product ID", "Quantity", "Sales"}
    if not need <= set(raw.columns):
        raise DatasetError(f"{path}: expected columns {sorted(need)}")
    stores, store_keys = pd.factorize(raw["Customer ID"])
    products, product_keys = pd.factorize(raw["Product ID"])
    orders, _ = pd.factorize(raw["Order ID"])
    lines = pd.DataFrame(
        {
            "order_id": orders + 1,
            "store_id": stores + 1,
            "product_id": products + 1,
            "day": _days(raw["Order Date"]),
            "quantity": raw["Quantity"].astype(float),
            "amount": raw["Sales"].astype(float),
        }
    )
    store_frame = (
        pd.DataFrame({"store_id": stores + 1, "region": raw["Region"], "segment": raw["Segment"]})
        .drop_duplicates("store_id")
        .reset_index(drop=True)
    )
    product_frame = (
        pd.DataFrame({"product_id": products + 1, "category": raw["Sub-Category"]})
        .drop_duplicates("product_id")
        .reset_index(drop=True)
    )
    return History(lines, store_frame, product_frame)


def load_northwind(path: Path) -> History:
    """Northwind orders, order details, customers and products (the CSV files)."""
    try:
        orders = pd.read_csv(path / "orders.csv")
        details = pd.read_csv(path / "order_details.csv")
        customers = pd.read_csv(path / "customers.csv")
        products = pd.read_csv(path / "products.csv")
    except (OSError, pd.errors.ParserError) as error:
        raise DatasetError(f"{path}: {error}") from None
    merged = details.merge(orders[["order_id", "customer_id", "order_date"]], on="order_id")
    merged = merged.dropna(subset=["customer_id"])
    codes, keys = pd.factorize(merged["customer_id"])
    amount = merged["unit_price"] * merged["quantity"] * (1 - merged["discount"])
    lines = pd.DataFrame(
        {
            "order_id": merged["order_id"],
            "store_id": codes + 1,
            "product_id": merged["product_id"],
            "day": _days(merged["order_date"]),
            "quantity": merged["quantity"].astype(float),
            "amount": amount.astype(float),
        }
    )
    country = customers.set_index("customer_id")["country"]
    store_frame = pd.DataFrame(
        {"store_id": range(1, len(keys) + 1), "region": country.reindex(keys).to_numpy()}
    )
    store_frame["segment"] = "customer"
    product_frame = pd.DataFrame(
        {"product_id": products["product_id"], "category": products["category_id"].astype(str)}
    )
    return History(lines, store_frame, product_frame)


def load_database_history() -> tuple[History, Callable[[int], set[int]]]:
    """The database's order history, and the injected drops per cut-off (demo ground truth)."""
    from forecasting.features import load_history
    from tools.db import get_engine

    engine = get_engine()
    with engine.connect() as conn:
        history = load_history(conn)
        events = conn.execute(
            text(
                "SELECT store_id, (event_date - DATE '1970-01-01') AS day FROM ground_truth "
                "WHERE kind IN ('store_slowdown', 'store_stopped') AND event_date IS NOT NULL"
            )
        ).all()

    def injected(cutoff: int) -> set[int]:
        # Drops that began in the half year before the cut-off are visible in the history.
        return {int(s) for s, day in events if cutoff - 182 < int(day) <= cutoff}

    if history.is_empty():
        raise DatasetError("the database has no orders: run `mangalm demo` first")
    return history, injected


def run_dataset_backtest(
    dataset: str,
    *,
    cutoffs: int = 3,
    peers: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the backtest for a named dataset or a path; returns result dicts."""
    from forecasting.backtest import cutoffs_for

    name = dataset.lower()
    root = datasets_root()
    injected = None
    if name == "demo":
        history, injected = load_database_history()
        label = "demo (database)"
    elif name == "cdnow" or (Path(dataset).exists() and "cdnow" in Path(dataset).name.lower()):
        from forecasting.cdnow import run_cdnow

        path = root / "cdnow" if name == "cdnow" else Path(dataset)
        return [run_cdnow(path, progress=progress)]
    elif name == "superstore" or (Path(dataset).exists() and "superstore" in dataset.lower()):
        path = root / "superstore" if name == "superstore" else Path(dataset)
        if not path.exists():
            raise DatasetError(f"{path}: no such file or folder (set MANGALM_DATASETS)")
        history, label = load_superstore(path), f"superstore ({path})"
    elif name == "northwind" or (Path(dataset).exists() and "northwind" in dataset.lower()):
        path = root / "northwind" if name == "northwind" else Path(dataset)
        if not path.exists():
            raise DatasetError(f"{path}: no such folder (set MANGALM_DATASETS)")
        history, label = load_northwind(path), f"northwind ({path})"
    else:
        raise DatasetError(
            f"unknown dataset {dataset!r}: use demo, superstore, northwind, cdnow or a path "
            "to one of them"
        )
    span = history.last_day - history.first_day
    # Long, sparse histories (years of a few orders each) get cut-offs a quarter apart.
    step = 28 if span < 800 else 91
    result = run_backtest(
        history,
        dataset=label,
        cutoffs=cutoffs_for(history, count=cutoffs, step=step),
        seed=seed,
        peers=peers,
        injected=injected,
        progress=progress,
    )
    out = result.to_dict()
    out["data"] = {
        "order_lines": len(history.lines),
        "stores": int(history.lines["store_id"].nunique()),
        "products": int(history.lines["product_id"].nunique()),
        "first_day": str(dt.date(1970, 1, 1) + dt.timedelta(days=history.first_day)),
        "last_day": str(dt.date(1970, 1, 1) + dt.timedelta(days=history.last_day)),
    }
    return [out]


__all__ = ["DatasetError", "load_northwind", "load_superstore", "run_dataset_backtest", "to_day"]
