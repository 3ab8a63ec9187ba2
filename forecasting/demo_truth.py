"""What the demo generator knows: its order history in memory and the best possible basket.

The demo distributor (`tools.data.demo`) draws each favourite product of a store per order as
an independent coin with a fixed per-store probability, plus a few impulse picks by overall
popularity. Re-running the deterministic generator with the same parameters gives back those
probabilities, so the next-basket task has a known ceiling: an oracle that ranks each store's
products by their true chance of being in an order. Nothing here is used by the models; it
measures how close they come to what the data allows.

    python -m forecasting.demo_truth --stores 500 --products 300 --months 24 \\
        --today 2025-06-30 --seed 42

prints recall@10 of the oracle, the basket model and the baselines at the backtest's rolling
cut-offs, on exactly the orders `mangalm demo` with those parameters loads (`--tasks
next_order,basket` adds those backtest tasks, run on the same orders without a database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecasting.features import DEMAND_STATUSES, History, from_day, to_day

if TYPE_CHECKING:
    from tools.data.demo import DemoGenerator

IMPULSE_RATE = 0.25  # mean impulse picks per order (`DemoGenerator._lines`)


def demo_history(g: DemoGenerator) -> History:
    """The generated orders as a `History`, with the ids an empty database gives them."""
    from tools.data import demo_catalog as cat

    status = np.asarray(g.o_status)
    kept = np.isin(status, DEMAND_STATUSES)
    order = np.asarray(g.l_order)
    line_kept = kept[order]
    start = to_day(g.start)
    lines = pd.DataFrame(
        {
            "order_id": order[line_kept] + 1,
            "store_id": np.asarray(g.o_store)[order[line_kept]] + 1,
            "product_id": np.asarray(g.l_prod)[line_kept] + 1,
            "day": start + np.asarray(g.o_day)[order[line_kept]],
            "quantity": np.asarray(g.l_qty)[line_kept].astype(float),
            "amount": np.asarray(g.l_amount)[line_kept] / 100.0,
        }
    )
    n = len(g.s_region)
    stores = pd.DataFrame(
        {
            "store_id": np.arange(1, n + 1),
            "region": [cat.REGIONS[r] for r in g.s_region],
            "segment": [cat.SEGMENTS[s].name for s in g.s_seg],
        }
    )
    products = pd.DataFrame({"product_id": np.arange(1, len(g.products) + 1)})
    return History(lines, stores, products)


def true_basket_probabilities(g: DemoGenerator, cutoff: int) -> pd.DataFrame:
    """Per (store, product): the generator's chance that the store's next order after the
    cut-off holds the product (favourites active at the cut-off, plus impulse picks)."""
    start = to_day(g.start)
    d = cutoff - start + 1  # the first day an order after the cut-off can fall on
    fav_prod = np.asarray(g.fav_prod)
    fav_p = np.asarray(g.fav_p)
    active = (np.asarray(g.fav_start) <= d) & (d < np.asarray(g.fav_end)) & (fav_prod >= 0)
    n_stores, n_products = fav_prod.shape[0], len(g.products)
    pop = np.asarray(g.p_pop, dtype=float)
    pop = pop / pop.sum()
    # Impulse picks: a Poisson number of draws by popularity, so P(product) = 1 - exp(-rate p).
    impulse = 1.0 - np.exp(-IMPULSE_RATE * pop)
    miss = np.broadcast_to(1.0 - impulse, (n_stores, n_products)).copy()
    rows, cols = np.nonzero(active)
    np.multiply.at(miss, (rows, fav_prod[rows, cols]), 1.0 - fav_p[rows, cols])
    prob = 1.0 - miss
    return pd.DataFrame(
        {
            "store_id": np.repeat(np.arange(1, n_stores + 1), n_products),
            "product_id": np.tile(np.arange(1, n_products + 1), n_stores),
            "probability": prob.ravel(),
        }
    )


def oracle_basket(g: DemoGenerator, cutoff: int, k: int = 10) -> pd.DataFrame:
    """Top `k` products per store by their true probability (ties: product id)."""
    probs = true_basket_probabilities(g, cutoff)
    probs = probs.sort_values(
        ["store_id", "probability", "product_id"], ascending=[True, False, True]
    )
    top = probs[probs.groupby("store_id").cumcount() < k].copy()
    top["rank"] = top.groupby("store_id").cumcount() + 1
    return top.reset_index(drop=True)


def basket_ceiling(g: DemoGenerator, cutoffs: list[int], *, seed: int = 0) -> dict[str, float]:
    """Mean recall@10 over the cut-offs: oracle, basket model, own most-bought, TIFU-KNN."""
    from forecasting import baselines
    from forecasting.backtest import BASKET_HORIZON, recall_at_k
    from forecasting.next_order import BasketModel, next_basket_truth

    history = demo_history(g)
    scores: dict[str, list[float]] = {}
    for cutoff in cutoffs:
        past = history.until(cutoff)
        truth = next_basket_truth(history, cutoff, cutoff + BASKET_HORIZON)
        truth = truth[truth["store_id"].isin(past.lines["store_id"].unique())]
        methods = {
            "oracle": oracle_basket(g, cutoff),
            "model": BasketModel(seed=seed).fit(past, cutoff).predict(past, cutoff, k=10),
            "own_most_bought": baselines.own_most_bought(past, cutoff, k=10),
            "tifu_knn": baselines.TifuKnn().recommend(past, cutoff, k=10),
        }
        for name, recs in methods.items():
            scores.setdefault(name, []).append(recall_at_k(recs, truth, 10)[0])
    return {name: float(np.mean(values)) for name, values in scores.items()}


def main(argv: list[str] | None = None) -> None:
    from forecasting.backtest import cutoffs_for
    from tools.data.demo import generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=500)
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--today", type=dt.date.fromisoformat, default=dt.date.today())
    parser.add_argument("--cutoffs", type=int, default=3)
    parser.add_argument(
        "--tasks",
        default="",
        help="also run these backtest tasks (e.g. next_order,basket) on the same orders",
    )
    args = parser.parse_args(argv)
    g = generate(
        stores=args.stores,
        products=args.products,
        months=args.months,
        seed=args.seed,
        today=args.today,
    )
    history = demo_history(g)
    cutoffs = cutoffs_for(history, count=args.cutoffs)
    result = basket_ceiling(g, cutoffs)
    out: dict[str, object] = {
        "cutoffs": [str(from_day(c)) for c in cutoffs],
        "recall_at_10": result,
    }
    if args.tasks:
        from forecasting.backtest import run_backtest

        backtest = run_backtest(
            history, dataset="demo", tasks=args.tasks.split(","), cutoffs=cutoffs, peers=False
        )
        out["backtest"] = backtest.summary()
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
