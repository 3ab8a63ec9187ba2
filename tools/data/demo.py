"""The demo distributor: a deterministic, realistic Indian FMCG distributor loaded with COPY.

Use it from code (tests of other modules do) through one function::

    from tools.data.demo import load_demo
    summary = load_demo(engine_or_connection_or_session, stores=40, products=60, months=6,
                        seed=7, today=datetime.date(2025, 6, 30))

`load_demo` generates the data and loads it in one transaction (its own when given an
`Engine`; the caller's when given a `Connection` or `Session`, which it does not commit). It
returns a `DemoSummary` with row counts, the time taken and the demo logins (email, role,
password). It refuses with `DemoDataExists` when stores are already present, unless
`replace=True`, which first empties every data table in the same transaction.

What is generated (same seed and `today` give identical rows; only password hashes and
server-side timestamps differ):

- users: one admin, two managers with five reps each, one viewer per manager; known passwords
  (see `DEMO_PASSWORDS`), stored as argon2 hashes;
- stores across 16 cities in four regions with segments, owners, phones, addresses,
  coordinates, credit limits and payment terms; each rep owns a contiguous territory;
- products across real brands and categories, priced per case in rupees;
- orders over `months` months up to `today`: each store has its own rhythm and favourite
  basket; festivals (Diwali, Holi, Eid, Durga Puja, Onam, Ganesh Chaturthi, Christmas) lift
  demand; some stores slow down or stop at a known date, some drop a product for a
  competitor's; promised versus delivered dates with late deliveries around peaks;
- promotions (some running on `today`), inventory in `settings.default_warehouse` (some SKUs
  below their reorder point, some out of stock; open orders hold stock through
  `stock_reservations`), invoices for delivered orders and payments by on-time, late and
  partial payers (some invoices overdue on `today`);
- communications (visit notes, WhatsApp messages, call transcripts, complaints, in English and
  Hinglish) that refer to what happened, see `tools.data.demo_comms`;
- `ground_truth` rows recording every injected behaviour, for evaluations: store_slowdown,
  store_stopped, product_dropped (details name the replacement), late_delivery,
  complaint_about_order, order_request, scheme_request, payment_followup (details hold the
  invoice and the amount outstanding that day), late_payer, low_stock, out_of_stock.

Business keys: stores `S00001`, orders `SO-0000001` (external_id), invoices `INV-0000001`,
payments `UPI-00000001` (method + number), communications `DEMO-C0000001`, users
`rep1@demo.mangalm.in` and so on.

Ids are assigned by the generator (after any rows already present) so that lines, invoices and
communications reference their parents without round trips; the sequences are moved past them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from dateutil.relativedelta import relativedelta
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from tools.data import demo_catalog as cat

Progress = Callable[[str, int, int], None]
"""Called as `progress(step, done, total)` while generating and loading."""

DEMO_DOMAIN = "demo.mangalm.in"
DEMO_PASSWORDS: dict[str, str] = {
    "admin": "mangalm-admin",
    "manager": "mangalm-manager",
    "rep": "mangalm-rep",
    "viewer": "mangalm-viewer",
}
N_MANAGERS = 2
REPS_PER_MANAGER = 5
IST = "+05:30"

# Tables the demo writes, in load order (parents before children).
TABLES = (
    "users",
    "stores",
    "products",
    "promotions",
    "orders",
    "order_lines",
    "invoices",
    "payments",
    "inventory",
    "stock_reservations",
    "communications",
    "ground_truth",
)


EXISTS_MESSAGE = (
    "the database already has stores; use --replace to empty it and load the demo again"
)


class DemoError(ValueError):
    """Bad demo parameters; the message says which and why."""


class DemoDataExists(RuntimeError):
    """The database already holds stores; load with `replace=True` to start over."""


@dataclass(frozen=True)
class DemoLogin:
    email: str
    name: str
    role: str
    password: str


@dataclass
class DemoSummary:
    """What `load_demo` loaded."""

    counts: dict[str, int]
    seconds: float
    logins: list[DemoLogin]
    today: dt.date
    seed: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def stores(self) -> int:
        return self.counts.get("stores", 0)

    @property
    def products(self) -> int:
        return self.counts.get("products", 0)

    @property
    def orders(self) -> int:
        return self.counts.get("orders", 0)

    @property
    def order_lines(self) -> int:
        return self.counts.get("order_lines", 0)

    @property
    def communications(self) -> int:
        return self.counts.get("communications", 0)


@dataclass(frozen=True)
class DemoParams:
    stores: int = 500
    products: int = 300
    months: int = 24
    seed: int = 42
    today: dt.date = field(default_factory=dt.date.today)

    def validate(self) -> None:
        if not 10 <= self.stores <= 200_000:
            raise DemoError(f"stores must be between 10 and 200000 (got {self.stores})")
        if not 20 <= self.products <= 20_000:
            raise DemoError(f"products must be between 20 and 20000 (got {self.products})")
        if not 1 <= self.months <= 120:
            raise DemoError(f"months must be between 1 and 120 (got {self.months})")
        if self.seed < 0:
            raise DemoError(f"seed must be zero or positive (got {self.seed})")


@dataclass
class GroundTruthRow:
    kind: str
    store: int | None = None
    product: int | None = None
    order: int | None = None
    communication: int | None = None
    promotion: int | None = None
    day: int | None = None
    details: dict[str, Any] | None = None


def rupees(paise: int) -> str:
    """Indian-grouped rupee amount: 1234567 paise -> 'Rs 12,345.67'."""
    whole, frac = divmod(int(paise), 100)
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
    return f"Rs {digits}" if frac == 0 else f"Rs {digits}.{frac:02d}"


def _money(paise: int) -> str:
    whole, frac = divmod(int(paise), 100)
    return f"{whole}.{frac:02d}"


def _esc(value: str) -> str:
    """Escape a value for COPY text format."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _opt(value: object) -> str:
    return "\\N" if value is None else str(value)


def _weighted_top_k(
    rng: np.random.Generator, weights: np.ndarray, k: np.ndarray, kmax: int
) -> np.ndarray:
    """Per row, k distinct column indices drawn with probability proportional to weights
    (Gumbel top-k). Returns an (n, kmax) array padded with -1."""
    n, _ = weights.shape
    keys = np.log(np.maximum(weights, 1e-12)) + rng.gumbel(size=weights.shape)
    top = np.argsort(-keys, axis=1)[:, :kmax]
    out = np.where(np.arange(kmax)[None, :] < k[:, None], top, -1)
    return out.reshape(n, kmax)


class DemoGenerator:
    """Builds every table of the demo distributor in memory (numpy arrays + small lists)."""

    def __init__(self, params: DemoParams, progress: Progress | None = None) -> None:
        params.validate()
        self.p = params
        self.rng = np.random.default_rng(params.seed)
        self.progress = progress or (lambda step, done, total: None)
        self.today = params.today
        self.start = params.today - relativedelta(months=params.months) + dt.timedelta(days=1)
        self.n_days = (self.today - self.start).days + 1
        self.ground_truth: list[GroundTruthRow] = []
        # Date strings for every day index, with room for due dates past today.
        self.day_str = [
            (self.start + dt.timedelta(days=d)).isoformat() for d in range(self.n_days + 400)
        ]
        self.weekday0 = self.start.weekday()
        self._nice: dict[int, str] = {}

    # ------------------------------------------------------------------ helpers
    def date(self, day: int) -> dt.date:
        return self.start + dt.timedelta(days=int(day))

    def day_of(self, date: dt.date) -> int:
        return (date - self.start).days

    def nice_date(self, day: int) -> str:
        """'12 Mar' as people write it (with the year when not the current one)."""
        if day not in self._nice:
            d = self.date(day)
            self._nice[day] = (
                f"{d.day} {d:%b}" if d.year == self.today.year else f"{d.day} {d:%b %Y}"
            )
        return self._nice[day]

    def stamp(self, day: int, minute_of_day: int) -> str:
        minute_of_day = int(min(max(minute_of_day, 0), 24 * 60 - 1))
        return (
            f"{self.day_str[int(day)]} {minute_of_day // 60:02d}:{minute_of_day % 60:02d}:00{IST}"
        )

    # ------------------------------------------------------------------ generation
    def generate(self) -> DemoGenerator:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("users", self._users),
            ("stores", self._stores),
            ("products", self._products),
            ("promotions", self._promotions),
            ("orders", self._orders),
            ("order lines", self._lines),
            ("deliveries", self._fulfilment),
            ("invoices and payments", self._invoices),
            ("credit limits", self._credit_limits),
            ("inventory", self._inventory),
        ]
        for i, (_name, step) in enumerate(steps):
            self.progress("generate data", i, len(steps) + 1)
            step()
        from tools.data.demo_comms import build_communications

        self.progress("generate data", len(steps), len(steps) + 1)
        self.comms = build_communications(self)
        self.progress("generate data", len(steps) + 1, len(steps) + 1)
        return self

    def _users(self) -> None:
        users: list[dict[str, Any]] = []
        users.append(
            dict(
                email=f"admin@{DEMO_DOMAIN}",
                name="Anita Kapoor",
                role="admin",
                manager=None,
                code="ADM01",
                phone="+919810000001",
                telegram=None,
                channel="web",
            )
        )
        for m in range(N_MANAGERS):
            first, last = cat.MANAGER_NAMES[m % len(cat.MANAGER_NAMES)]
            users.append(
                dict(
                    email=f"manager{m + 1}@{DEMO_DOMAIN}",
                    name=f"{first} {last}",
                    role="manager",
                    manager=None,
                    code=f"MGR{m + 1:02d}",
                    phone=f"+91981100{m + 1:04d}",
                    telegram=None,
                    channel="web",
                )
            )
        self.rep_users: list[int] = []
        for r in range(N_MANAGERS * REPS_PER_MANAGER):
            first, last = cat.REP_NAMES[r % len(cat.REP_NAMES)]
            # Some reps use Telegram, the others WhatsApp; everyone has a phone.
            telegram = 700_000_000 + 1_000 * (r + 1) + 17 * (r + 3) if r % 3 == 0 else None
            self.rep_users.append(len(users))
            users.append(
                dict(
                    email=f"rep{r + 1}@{DEMO_DOMAIN}",
                    name=f"{first} {last}",
                    role="rep",
                    manager=1 + r // REPS_PER_MANAGER,
                    code=f"REP{r + 1:02d}",
                    phone=f"+91982000{r + 1:04d}",
                    telegram=telegram,
                    channel="telegram" if telegram else "whatsapp",
                )
            )
        for m in range(N_MANAGERS):
            users.append(
                dict(
                    email=f"viewer{m + 1}@{DEMO_DOMAIN}",
                    name=f"Team {m + 1} Viewer",
                    role="viewer",
                    manager=1 + m,
                    code=f"VWR{m + 1:02d}",
                    phone=f"+91983000{m + 1:04d}",
                    telegram=None,
                    channel="web",
                )
            )
        self.users = users

    def _stores(self) -> None:
        rng, n = self.rng, self.p.stores
        cities = cat.CITIES
        cw = np.array([c.weight for c in cities])
        city = rng.choice(len(cities), size=n, p=cw / cw.sum())
        segs = cat.SEGMENTS
        sw = np.array([s.weight for s in segs])
        seg = rng.choice(len(segs), size=n, p=sw / sw.sum())
        region = np.array([cat.REGIONS.index(cities[c].region) for c in city])
        locality = np.array([rng.integers(len(cities[c].localities)) for c in city])
        # Localities sit a few kilometres apart around the city centre.
        loc_off = rng.normal(0, 0.05, size=(len(cities), 12, 2))
        lat = np.array([cities[c].lat for c in city]) + loc_off[city, locality, 0]
        lon = np.array([cities[c].lon for c in city]) + loc_off[city, locality, 1]
        lat += rng.normal(0, 0.008, n)
        lon += rng.normal(0, 0.008, n)

        names: list[str] = []
        owners: list[str] = []
        owner_first: list[str] = []
        used: dict[str, int] = {}
        for i in range(n):
            c = cities[city[i]]
            reg = c.region
            s_name = str(rng.choice(cat.SURNAMES[reg]))
            f_name = str(rng.choice(cat.FIRST_NAMES[reg]))
            deity_pool = cat.DEITIES + cat.REGIONAL_DEITIES[reg]
            pattern = str(rng.choice(cat.SEGMENT_NAME_PATTERNS[segs[seg[i]].name]))
            name = pattern.format(
                s=s_name,
                f=f_name,
                d=str(rng.choice(deity_pool)),
                a=str(rng.choice(cat.ADJECTIVES)),
                l=c.localities[locality[i]],
                c=c.name,
            )
            if name in used:
                # Same name elsewhere: people tell them apart by the locality.
                used[name] += 1
                name = f"{name}, {c.localities[locality[i]]}"
                if name in used:
                    name = f"{name} {used[name.split(',')[0]]}"
            used[name] = used.get(name, 0) + 1
            names.append(name)
            owner_f = str(rng.choice(cat.FIRST_NAMES[reg]))
            owner_first.append(owner_f)
            owners.append(f"{owner_f} {s_name}")
        phones = [f"+91{p}" for p in rng.integers(6_000_000_000, 9_999_999_999, size=n)]
        credit = np.array(
            [rng.integers(segs[s].credit_limit[0], segs[s].credit_limit[1] + 1) for s in seg]
        )
        credit = (credit // 5000) * 5000
        terms = np.array([int(rng.choice(segs[s].payment_terms)) for s in seg])
        # Reps own contiguous territories: sort by region, city, locality, then split evenly.
        order = np.lexsort((lat, locality, city, region))
        rep = np.empty(n, dtype=np.int64)
        for r, chunk in enumerate(np.array_split(order, len(self.rep_users))):
            rep[chunk] = r
        self.s_city, self.s_seg, self.s_region = city, seg, region
        self.s_locality, self.s_lat, self.s_lon = locality, lat, lon
        self.s_name, self.s_owner, self.s_owner_first = names, owners, owner_first
        self.s_phone, self.s_credit, self.s_terms, self.s_rep = phones, credit, terms, rep
        self.s_hinglish = rng.random(n) < 0.6
        self.s_street = rng.integers(len(cat.STREETS), size=n)
        self.s_shopno = rng.integers(1, 180, size=n)
        self.s_pin = rng.integers(1, 99, size=n)

    def _products(self) -> None:
        rng, n = self.rng, self.p.products
        categories = list(cat.ITEMS)
        base: list[tuple[str, int, int]] = []  # (category, item index, pack index)
        max_items = max(len(v) for v in cat.ITEMS.values())
        max_packs = max(len(v) for v in cat.PACKS.values())
        # Round-robin so that any size covers every category and item before adding packs.
        for pack in range(max_packs):
            for item_no in range(max_items):
                for category in categories:
                    if item_no < len(cat.ITEMS[category]) and pack < len(cat.PACKS[category]):
                        base.append((category, item_no, pack))
        editions = (
            "",
            " Value Pack",
            " Festive Edition",
            " Family Saver",
            " Combo",
            " Jumbo Pack",
            " Promo Pack",
            " New Improved",
            " Mega Saver",
            " Trial Pack",
        )
        rows: list[dict[str, Any]] = []
        seq = 0
        while len(rows) < n:
            edition = editions[(seq // len(base)) % len(editions)]
            round_no = seq // len(base)
            category, item_i, pack_i = base[seq % len(base)]
            seq += 1
            brand, item, short, factor, regions = cat.ITEMS[category][item_i]
            label, mrp, pieces, unit = cat.PACKS[category][pack_i]
            if round_no >= len(editions):
                edition = f"{edition} {round_no // len(editions) + 1}"
            mrp_piece = round(mrp * factor * (1.1 if edition else 1.0))
            price = round(mrp_piece * pieces * 0.82 * float(rng.uniform(0.96, 1.04)))
            abbrev = "".join(ch for ch in brand.upper() if ch.isalnum())[:5]
            rows.append(
                dict(
                    sku=f"{abbrev}-{len(rows) + 1:04d}",
                    name=f"{item} {label}{edition}",
                    brand=brand,
                    category=category,
                    pack_size=f"{pieces} x {label}" if pieces > 1 else label,
                    unit=unit,
                    price=int(price) * 100,
                    short=short,
                    mrp=mrp_piece,
                    pieces=pieces,
                    regions=regions,
                    rank=item_i,
                    pack=pack_i,
                    edition=bool(edition),
                )
            )
        self.products = rows
        self.categories = categories
        self.p_cat = np.array([categories.index(r["category"]) for r in rows])
        self.p_price = np.array([r["price"] for r in rows], dtype=np.int64)
        brands: list[str] = []
        for r in rows:
            if r["brand"] not in brands:
                brands.append(r["brand"])
        self.brands = brands
        self.p_brand = np.array([brands.index(r["brand"]) for r in rows])
        # Popularity: lead items and the smallest packs sell most; editions sell less.
        pop = np.array(
            [
                (1.0 / math.sqrt(1 + r["rank"]))
                * (1.0 / (1 + 0.6 * r["pack"]))
                * (0.4 if r["edition"] else 1.0)
                for r in rows
            ]
        )
        self.p_pop = pop * rng.lognormal(0, 0.3, n)
        region_w = np.ones((len(cat.REGIONS), n))
        for j, r in enumerate(rows):
            if r["regions"]:
                for ri, reg in enumerate(cat.REGIONS):
                    region_w[ri, j] = 3.0 if reg in r["regions"] else 0.25
        self.p_region_w = region_w
        cat_month = np.ones((len(categories), 13))
        for ci, c in enumerate(categories):
            if c in cat.SEASONALITY:
                cat_month[ci, 1:] = cat.SEASONALITY[c]
        self.cat_month = cat_month
        self.p_festive = np.array([r["category"] in cat.FESTIVE_CATEGORIES for r in rows])

    def _promotions(self) -> None:
        rng, nd = self.rng, self.n_days
        n = int(np.clip(self.p.products // 6, 8, 150))
        fests = cat.festivals_between(self.start, self.today)
        # Seasonal names only in their season; the rest fit any month.
        seasonal = {
            **dict.fromkeys((6, 7, 8, 9), "Monsoon Offer"),
            **dict.fromkeys((3, 4, 5), "Summer Bonanza"),
            **dict.fromkeys((11, 12, 1, 2), "Winter Special"),
        }
        themes = (
            "Shelf Booster",
            "Loyalty Scheme",
            "Stock-up Week",
            "New Launch Offer",
            "Quarter-end Push",
        )
        promos: list[dict[str, Any]] = []
        n_active_today = max(3, n // 5)
        for i in range(n):
            kind = rng.choice(["product", "brand", "category"], p=[0.45, 0.35, 0.2])
            prod = int(rng.choice(len(self.products), p=self.p_pop / self.p_pop.sum()))
            pr = self.products[prod]
            festival = None
            if i < n_active_today:
                # A share of the schemes run today, so "what schemes are on?" has answers.
                length = int(rng.integers(21, 60))
                start = nd - 1 - int(rng.integers(0, length - 7))
            elif fests and rng.random() < 0.4:
                festival = fests[int(rng.integers(len(fests)))]
                fday = self.day_of(festival.date)
                start = fday - int(rng.integers(20, 30))
                length = fday + 3 - start
            else:
                length = int(rng.integers(14, 61))
                start = int(rng.integers(-30, nd - 10))
            end = start + length - 1
            free = kind == "product" and rng.random() < 0.4
            pct = None if free else float(rng.choice([3, 4, 5, 6, 7.5, 8, 10, 12]))
            min_q = (
                int(rng.choice([5, 10, 20]))
                if free
                else (int(rng.choice([2, 5, 10])) if rng.random() < 0.3 else None)
            )
            free_q = (1 if min_q == 5 else 2) if free else None
            segment = None
            region = None
            r = rng.random()
            if r < 0.15:
                segment = cat.SEGMENTS[int(rng.integers(len(cat.SEGMENTS)))].name
            elif r < 0.35:
                region = cat.REGIONS[int(rng.integers(len(cat.REGIONS)))]
            month = self.date(start).month if start >= 0 else self.start.month
            if festival:
                theme = f"{festival.name} Dhamaka"
            elif month in seasonal and rng.random() < 0.5:
                theme = seasonal[month]
            else:
                theme = str(rng.choice(themes))
            if kind == "product":
                target = pr["name"]
                scope = dict(product=prod, brand=None, category=None)
            elif kind == "brand":
                target = pr["brand"]
                scope = dict(product=None, brand=pr["brand"], category=None)
            else:
                target = pr["category"]
                scope = dict(product=None, brand=None, category=pr["category"])
            offer = (
                f"buy {min_q} get {free_q} free"
                if free
                else f"{pct:g}% off" + (f" on {min_q}+ cases" if min_q else "")
            )
            where = (f" for {segment} outlets" if segment else "") + (
                f" in the {region} region" if region else ""
            )
            year = self.date(max(start, 0)).year % 100
            promos.append(
                dict(
                    code=f"SCH{year:02d}-{i + 1:03d}",
                    name=f"{target} {theme}",
                    description=f"{target}: {offer}{where}, "
                    f"{self.date(start):%d %b %Y} to {self.date(end):%d %b %Y}.",
                    pct=pct,
                    min_q=min_q,
                    free_q=free_q,
                    segment=segment,
                    region=region,
                    start=start,
                    end=end,
                    offer=offer,
                    target=target,
                    **scope,
                )
            )
        self.promos = promos
        # Which products each scheme covers.
        self.promo_products: list[np.ndarray] = []
        for pm in promos:
            if pm["product"] is not None:
                mask = np.zeros(len(self.products), dtype=bool)
                mask[pm["product"]] = True
            elif pm["brand"] is not None:
                mask = self.p_brand == self.brands.index(pm["brand"])
            else:
                mask = self.p_cat == self.categories.index(pm["category"])
            self.promo_products.append(mask)

    def _festival_lift(self) -> np.ndarray:
        """(region, day) demand multiplier: a ramp before each festival, a dip after."""
        nd = self.n_days
        lift = np.ones((len(cat.REGIONS), nd + 400))
        self.festivals = cat.festivals_between(self.start, self.today)
        for f in self.festivals:
            fd = self.day_of(f.date)
            regions = [cat.REGIONS.index(r) for r in f.regions] or list(range(len(cat.REGIONS)))
            lo, hi = max(fd - 18, 0), max(fd - 1, 0)
            for ri in regions:
                if hi > lo:
                    lift[ri, lo:hi] *= np.linspace(1.25, f.lift, hi - lo)
                lift[ri, max(fd + 1, 0) : max(fd + 9, 0)] *= 0.85
        return lift

    def _orders(self) -> None:
        rng, nd, n = self.rng, self.n_days, self.p.stores
        segs = cat.SEGMENTS
        interval = np.array([segs[s].interval_days for s in self.s_seg])
        interval = np.clip(interval * rng.lognormal(0, 0.25, n), 2.0, 30.0)
        start_day = np.zeros(n, dtype=np.int64)
        slow_day = np.full(n, 10 * nd, dtype=np.int64)
        slow_factor = np.ones(n)
        slow_qty = np.ones(n)
        stop_day = np.full(n, 10 * nd, dtype=np.int64)
        perm = rng.permutation(n)
        n_new = int(round(n * 0.05))
        n_slow = max(1, int(round(n * 0.08)))
        n_stop = max(1, int(round(n * 0.05)))
        new = perm[:n_new]
        slow = perm[n_new : n_new + n_slow]
        stop = perm[n_new + n_slow : n_new + n_slow + n_stop]
        if n_new:
            start_day[new] = rng.integers(
                int(nd * 0.1), max(int(nd * 0.7), int(nd * 0.1) + 1), n_new
            )
        slow_day[slow] = rng.integers(int(nd * 0.45), int(nd * 0.85), n_slow)
        slow_factor[slow] = rng.uniform(1.8, 2.6, n_slow)
        slow_qty[slow] = rng.uniform(0.5, 0.75, n_slow)
        stop_day[stop] = rng.integers(int(nd * 0.55), int(nd * 0.9), n_stop)
        self.s_interval, self.s_start_day = interval, start_day
        self.s_slow_day, self.s_slow_factor, self.s_slow_qty = slow_day, slow_factor, slow_qty
        self.s_stop_day = stop_day
        self.slow_stores, self.stop_stores, self.new_stores = slow, stop, new
        self.s_slow_reason = rng.integers(len(cat.SLOWDOWN_REASONS), size=n)
        self.s_stop_reason = rng.integers(len(cat.STOP_REASONS), size=n)

        # Inter-order gaps: gamma jitter around each store's interval, in "store time" that
        # runs slower after a slowdown.
        m = int(math.ceil(nd / 2.0 * 1.3)) + 20
        offset = start_day + rng.random(n) * interval
        while True:
            gaps = rng.gamma(6.0, 1.0 / 6.0, size=(n, m)) * interval[:, None]
            u = offset[:, None] + np.cumsum(gaps, axis=1) - gaps[:, :1]
            if (u[:, -1] >= nd).all():
                break
            m *= 2
        sd = slow_day[:, None].astype(float)
        t = np.where(u > sd, sd + (u - sd) * slow_factor[:, None], u)
        day = np.floor(t).astype(np.int64)
        store = np.broadcast_to(np.arange(n)[:, None], day.shape)
        keep = day < nd
        day, store = day[keep], store[keep]
        # Extra stock-up orders before festivals.
        extra_d: list[np.ndarray] = []
        extra_s: list[np.ndarray] = []
        self.lift = self._festival_lift()
        for f in self.festivals:
            fd = self.day_of(f.date)
            in_region = (
                np.isin(self.s_region, [cat.REGIONS.index(r) for r in f.regions])
                if f.regions
                else np.ones(n, dtype=bool)
            )
            chosen = in_region & (rng.random(n) < 0.45 * (f.lift - 1.0) / 0.7)
            extra_s.append(np.nonzero(chosen)[0])
            extra_d.append(fd - rng.integers(4, 15, size=int(chosen.sum())))
        if extra_d:
            day = np.concatenate([day, *extra_d])
            store = np.concatenate([store, *extra_s])
        # Sundays move to Monday (or to Saturday at the end of the window).
        wd = (self.weekday0 + day) % 7
        day = np.where(wd == 6, day + 1, day)
        day = np.where(day > nd - 1, day - 2, day)
        keep = (day >= start_day[store]) & (day < stop_day[store]) & (day >= 0) & (day < nd)
        key = np.unique(day[keep] * n + store[keep])
        self.o_day = key // n
        self.o_store = key % n
        self.n_orders = len(key)

        # Favourite baskets.
        fmin = np.array([segs[s].favourites[0] for s in self.s_seg])
        fmax = np.array([segs[s].favourites[1] for s in self.s_seg])
        k = np.minimum(rng.integers(fmin, fmax + 1), len(self.products) - 3)
        cat_w = np.array(
            [[s.categories.get(c, 0.05) for c in self.categories] for s in segs]
        )  # (segment, category)
        fav_cols = int(k.max()) + 2
        fav_prod = np.full((n, fav_cols), -1, dtype=np.int64)
        for lo in range(0, n, 2000):
            hi = min(lo + 2000, n)
            w = (
                cat_w[self.s_seg[lo:hi]][:, self.p_cat]
                * self.p_pop[None, :]
                * self.p_region_w[self.s_region[lo:hi]]
            )
            fav_prod[lo:hi, : int(k.max())] = _weighted_top_k(rng, w, k[lo:hi], int(k.max()))
        fav_p = np.where(fav_prod >= 0, 0.1 + 0.8 * rng.beta(1.2, 1.5, size=fav_prod.shape), 0.0)
        scale = np.array([segs[s].quantity_scale for s in self.s_seg])
        fav_q = np.maximum(
            1.0, rng.lognormal(np.log(1.5 * scale)[:, None], 0.5, size=fav_prod.shape)
        )
        fav_start = np.zeros(fav_prod.shape, dtype=np.int64)
        fav_end = np.full(fav_prod.shape, 10 * nd, dtype=np.int64)
        # Products a store dropped for a competitor's (same category), at a known date.
        self.dropped: list[tuple[int, int, int, int]] = []  # store, product, replacement, day
        candidates = np.nonzero((rng.random(n) < 0.25) & (stop_day > nd) & (k >= 4))[0]
        for s in candidates:
            col = int(np.argmax(fav_p[s]))
            prod = int(fav_prod[s, col])
            others = np.nonzero(
                (self.p_cat == self.p_cat[prod])
                & (self.p_brand != self.p_brand[prod])
                & ~np.isin(np.arange(len(self.products)), fav_prod[s])
            )[0]
            if len(others) == 0:
                continue
            repl = int(others[np.argmax(self.p_pop[others] * rng.random(len(others)))])
            day = int(
                rng.integers(
                    max(int(nd * 0.4), start_day[s] + 30), max(int(nd * 0.85), start_day[s] + 31)
                )
            )
            if day >= nd - 14:
                continue
            fav_end[s, col] = day
            fav_prod[s, k[s]] = repl
            fav_p[s, k[s]] = fav_p[s, col]
            fav_q[s, k[s]] = fav_q[s, col]
            fav_start[s, k[s]] = day
            self.dropped.append((int(s), prod, repl, day))
        self.fav_prod, self.fav_p, self.fav_q = fav_prod, fav_p, fav_q
        self.fav_start, self.fav_end, self.fav_k = fav_start, fav_end, k

    def _lines(self) -> None:
        rng, nd = self.rng, self.n_days
        n_orders = self.n_orders
        chunk = 100_000
        orders_parts: list[np.ndarray] = []
        prod_parts: list[np.ndarray] = []
        q_parts: list[np.ndarray] = []
        pop = self.p_pop / self.p_pop.sum()
        for lo in range(0, n_orders, chunk):
            hi = min(lo + chunk, n_orders)
            st = self.o_store[lo:hi]
            d = self.o_day[lo:hi]
            prob = self.fav_p[st]
            active = (self.fav_start[st] <= d[:, None]) & (d[:, None] < self.fav_end[st])
            active &= self.fav_prod[st] >= 0
            pick = (rng.random(prob.shape) < prob) & active
            empty = np.nonzero(~pick.any(axis=1))[0]
            if len(empty):
                best = np.argmax(np.where(active[empty], prob[empty], -1.0), axis=1)
                pick[empty, best] = True
            r, c = np.nonzero(pick)
            orders_parts.append(lo + r)
            prod_parts.append(self.fav_prod[st[r], c])
            q_parts.append(self.fav_q[st[r], c])
            # Now and then something outside the usual basket.
            extra = rng.poisson(0.25, hi - lo)
            rows = np.repeat(np.arange(hi - lo), extra)
            orders_parts.append(lo + rows)
            prod_parts.append(rng.choice(len(self.products), size=len(rows), p=pop))
            q_parts.append(np.ones(len(rows)) * 1.0)
            self.progress("generate order lines", hi, n_orders)
        l_order = np.concatenate(orders_parts)
        l_prod = np.concatenate(prod_parts)
        l_q = np.concatenate(q_parts)
        # One line per product per order (an impulse pick may repeat a favourite).
        key = l_order * len(self.products) + l_prod
        key, first = np.unique(key, return_index=True)
        l_order, l_prod, l_q = l_order[first], l_prod[first], l_q[first]
        l_day = self.o_day[l_order]
        l_store = self.o_store[l_order]

        # Schemes: discount (percentage ones) and a quantity lift on what they cover.
        bp = np.zeros(len(l_order), dtype=np.int64)
        boost = np.ones(len(l_order))
        for pm, covered in zip(self.promos, self.promo_products, strict=True):
            lo = int(np.searchsorted(l_day, pm["start"], side="left"))
            hi = int(np.searchsorted(l_day, pm["end"], side="right"))
            if hi <= lo:
                continue
            sl = slice(lo, hi)
            m = covered[l_prod[sl]]
            if pm["segment"] is not None:
                seg_i = [s.name for s in cat.SEGMENTS].index(pm["segment"])
                m &= self.s_seg[l_store[sl]] == seg_i
            if pm["region"] is not None:
                m &= self.s_region[l_store[sl]] == cat.REGIONS.index(pm["region"])
            boost[sl][m] *= 1.2
            if pm["pct"] is not None:
                pct_bp = int(round(pm["pct"] * 100))
                if pm["min_q"]:
                    m &= l_q[sl] * boost[sl] >= pm["min_q"]
                bp[sl][m] = np.maximum(bp[sl][m], pct_bp)

        month = np.array([self.date(d).month for d in range(nd)])
        fest = self.lift[self.s_region[l_store], l_day]
        fest = np.where(self.p_festive[l_prod], fest, fest**0.5)
        season = self.cat_month[self.p_cat[l_prod], month[l_day]]
        slowed = np.where(l_day >= self.s_slow_day[l_store], self.s_slow_qty[l_store], 1.0)
        trend = 1.0 + 0.08 * (l_day - nd) / 365.0
        mean = l_q * fest * season * slowed * trend * boost
        qty = np.maximum(1, np.rint(mean * rng.lognormal(0, 0.3, len(mean)))).astype(np.int64)
        # Price lists are revised every April; older orders carry older prices.
        factor = np.ones(nd)
        for year in range(self.start.year, self.today.year + 1):
            april = self.day_of(dt.date(year, 4, 1))
            if 0 < april <= nd:
                factor[:april] /= 1.045
        unit = np.rint(self.p_price[l_prod] * factor[l_day]).astype(np.int64)
        amount = (qty * unit * (10_000 - bp) + 5_000) // 10_000
        self.l_order, self.l_prod, self.l_qty = l_order, l_prod, qty
        self.l_unit, self.l_bp, self.l_amount = unit, bp, amount
        starts = np.searchsorted(l_order, np.arange(self.n_orders), side="left")
        self.o_line_start = starts
        self.l_no = np.arange(len(l_order)) - starts[l_order] + 1
        self.o_total = np.bincount(l_order, weights=amount, minlength=self.n_orders).astype(
            np.int64
        )

    def _fulfilment(self) -> None:
        rng, nd, n = self.rng, self.n_days, self.n_orders
        st, day = self.o_store, self.o_day
        metro = np.array([c.metro for c in cat.CITIES])[self.s_city[st]]
        lead = np.where(metro, 1, 2) + (rng.random(n) < 0.3)
        promised = day + lead
        in_peak = self.lift[self.s_region[st], day] > 1.15
        late_p = 0.05 + np.where(in_peak, 0.12, 0.0)
        late = rng.random(n) < late_p
        delay = rng.geometric(0.45, n)
        early = (~late) & (lead > 1) & (rng.random(n) < 0.25)
        delivered = np.where(late, promised + delay, np.where(early, promised - 1, promised))
        status = np.full(n, "delivered", dtype=object)
        pending = delivered > nd - 1
        status[pending] = "placed"
        r = rng.random(n)
        # Long delays get cancelled more often; returns are damaged or wrong stock.
        cancelled = ~pending & ((r < 0.025) | (late & (delay >= 4) & (r < 0.2)))
        returned = ~pending & ~cancelled & (rng.random(n) < 0.012)
        status[cancelled] = "cancelled"
        status[returned] = "returned"
        delivered = np.where(pending | cancelled, -1, delivered)
        chan_w = np.array(cat.ORDER_CHANNEL_WEIGHTS)
        store_main = rng.choice(len(cat.ORDER_CHANNELS), size=self.p.stores, p=chan_w)
        any_chan = rng.choice(len(cat.ORDER_CHANNELS), size=n, p=chan_w)
        channel = np.where(rng.random(n) < 0.65, store_main[st], any_chan)
        self.o_promised, self.o_delivered, self.o_status = promised, delivered, status
        self.o_channel = channel
        self.o_late = (delivered > promised) & (delivered >= 0)
        self.o_minute = rng.integers(9 * 60, 20 * 60, n)
        for i in np.nonzero(self.o_late)[0]:
            self.ground_truth.append(
                GroundTruthRow(
                    "late_delivery",
                    store=int(st[i]),
                    order=int(i),
                    day=int(delivered[i]),
                    details={
                        "promised_date": self.day_str[promised[i]],
                        "delivered_date": self.day_str[delivered[i]],
                        "days_late": int(delivered[i] - promised[i]),
                    },
                )
            )
        for s in self.slow_stores:
            self.ground_truth.append(
                GroundTruthRow(
                    "store_slowdown",
                    store=int(s),
                    day=int(self.s_slow_day[s]),
                    details={
                        "interval_days_before": round(float(self.s_interval[s]), 1),
                        "interval_days_after": round(
                            float(self.s_interval[s] * self.s_slow_factor[s]), 1
                        ),
                        "quantity_factor": round(float(self.s_slow_qty[s]), 2),
                        "reason": cat.SLOWDOWN_REASONS[self.s_slow_reason[s]],
                    },
                )
            )
        for s in self.stop_stores:
            mine = day[st == s]
            self.ground_truth.append(
                GroundTruthRow(
                    "store_stopped",
                    store=int(s),
                    day=int(self.s_stop_day[s]),
                    details={
                        "last_order_date": self.day_str[int(mine.max())] if len(mine) else None,
                        "reason": cat.STOP_REASONS[self.s_stop_reason[s]],
                    },
                )
            )
        for s, prod, repl, d in self.dropped:
            self.ground_truth.append(
                GroundTruthRow(
                    "product_dropped",
                    store=s,
                    product=prod,
                    day=d,
                    details={
                        "replaced_by_product_id": None,  # filled with the real id at load
                        "replaced_by_index": repl,
                        "replaced_by": self.products[repl]["name"],
                    },
                )
            )

    def _credit_limits(self) -> None:
        """Set credit limits from what each store actually owes and orders, as a distributor
        would: enough for the store's exposure today (open invoices and placed orders) plus
        two to four typical orders, at least the segment's floor; about half of the chronic
        partial payers are left over their limit (credit checks refuse their new orders).
        A separate random stream keeps every other generated row as it was."""
        rng = np.random.default_rng([self.p.seed, 1_000_003])
        n = self.p.stores
        open_due = np.maximum(self.i_amount - self.i_paid_today, 0)
        owed = np.bincount(self.i_store, weights=open_due, minlength=n)
        placed = np.nonzero(self.o_status == "placed")[0]
        pending = np.bincount(self.o_store[placed], weights=self.o_total[placed], minlength=n)
        counts = np.bincount(self.o_store, minlength=n)
        typical = np.bincount(self.o_store, weights=self.o_total, minlength=n) / np.maximum(
            counts, 1
        )
        exposure = (owed + pending) / 100  # rupees
        headroom = typical / 100 * rng.uniform(2.0, 4.0, n)
        floor = np.array([cat.SEGMENTS[s].credit_limit[0] for s in self.s_seg])
        limit = np.maximum(np.ceil((exposure + headroom) / 5000) * 5000, floor)
        over = (self.s_payer == 2) & (rng.random(n) < 0.5) & (exposure >= 10000)
        limit = np.where(over, np.maximum(np.floor(exposure * 0.8 / 5000) * 5000, 5000), limit)
        self.s_credit = limit.astype(np.int64)

    def _invoices(self) -> None:
        rng, nd = self.rng, self.n_days
        idx = np.nonzero(self.o_status == "delivered")[0]
        idx = idx[self.o_total[idx] > 0]
        st = self.o_store[idx]
        inv_day = self.o_delivered[idx]
        terms = self.s_terms[st]
        due = inv_day + terms
        amount = self.o_total[idx]
        self.i_order, self.i_store, self.i_day, self.i_due, self.i_amount = (
            idx,
            st,
            inv_day,
            due,
            amount,
        )
        n_inv = len(idx)
        payer = rng.choice(3, size=self.p.stores, p=[0.55, 0.30, 0.15])
        self.s_payer = payer
        ptype = payer[st]
        u = rng.random(n_inv)
        on_time_day = inv_day + np.rint(rng.uniform(0.4, 1.0, n_inv) * terms).astype(np.int64)
        slip = rng.random(n_inv) < 0.06
        on_time_day = np.where(slip, due + rng.integers(1, 10, n_inv), on_time_day)
        late_day = due + rng.integers(3, 36, n_inv)
        chronic_day = due + rng.integers(15, 81, n_inv)
        pay_day = np.select([ptype == 0, ptype == 1], [on_time_day, late_day], chronic_day)
        split = ((ptype == 2) & (u < 0.45)) | (u > 0.96)
        split &= amount >= 200
        first_amt = np.where(
            split, np.rint(amount * rng.uniform(0.3, 0.7, n_inv)).astype(np.int64), amount
        )
        second_day = pay_day + np.where(
            ptype == 2, rng.integers(10, 46, n_inv), rng.integers(5, 20, n_inv)
        )
        pays_inv = np.concatenate([np.arange(n_inv), np.nonzero(split)[0]])
        pays_day = np.concatenate([pay_day, second_day[split]])
        pays_amt = np.concatenate([first_amt, (amount - first_amt)[split]])
        keep = pays_day <= nd - 1
        pays_inv, pays_day, pays_amt = pays_inv[keep], pays_day[keep], pays_amt[keep]
        o = np.lexsort((pays_inv, pays_day))
        self.pay_inv, self.pay_day, self.pay_amt = pays_inv[o], pays_day[o], pays_amt[o]
        method_main = rng.integers(len(cat.PAYMENT_METHODS), size=self.p.stores)
        any_method = rng.integers(len(cat.PAYMENT_METHODS), size=len(o))
        self.pay_method = np.where(
            rng.random(len(o)) < 0.8, method_main[self.i_store[self.pay_inv]], any_method
        )
        paid = np.bincount(self.pay_inv, weights=self.pay_amt, minlength=n_inv).astype(np.int64)
        self.i_paid_today = paid
        pay_store = self.i_store[self.pay_inv]
        n_pays = np.bincount(pay_store, minlength=self.p.stores)
        after_due = np.bincount(
            pay_store, weights=self.pay_day - self.i_due[self.pay_inv], minlength=self.p.stores
        )
        for s in np.nonzero(payer > 0)[0]:
            self.ground_truth.append(
                GroundTruthRow(
                    "late_payer",
                    store=int(s),
                    details={
                        "payer_type": "late" if payer[s] == 1 else "chronic_partial",
                        "payments": int(n_pays[s]),
                        "avg_days_after_due": round(float(after_due[s] / n_pays[s]), 1)
                        if n_pays[s]
                        else None,
                    },
                )
            )

    def _inventory(self) -> None:
        rng, nd = self.rng, self.n_days
        n = len(self.products)
        l_day = self.o_day[self.l_order]
        recent = l_day >= nd - 56
        weekly = np.bincount(self.l_prod[recent], weights=self.l_qty[recent], minlength=n) / 8.0
        reorder = np.maximum(2, np.ceil(weekly * 1.2)).astype(np.int64)
        on_hand = np.ceil(weekly * rng.uniform(1.6, 5.0, n)).astype(np.int64) + reorder
        perm = rng.permutation(n)
        n_out = max(1, int(round(n * 0.04)))
        n_low = max(2, int(round(n * 0.10)))
        out, low = perm[:n_out], perm[n_out : n_out + n_low]
        on_hand[out] = 0
        on_hand[low] = np.maximum(1, (reorder[low] * rng.uniform(0.2, 0.9, n_low)).astype(int))
        on_hand[low] = np.minimum(on_hand[low], reorder[low] - 1)
        # Open (placed) orders hold stock, line by line, as confirming an order does.
        available = on_hand.copy()
        holds: list[tuple[int, int, int]] = []  # order, product, quantity
        for line in np.nonzero(self.o_status[self.l_order] == "placed")[0].tolist():
            p = int(self.l_prod[line])
            take = min(int(self.l_qty[line]), int(available[p]))
            if take > 0:
                holds.append((int(self.l_order[line]), p, take))
                available[p] -= take
        self.holds = holds
        reserved = on_hand - available
        self.inv_on_hand, self.inv_reorder, self.inv_reserved = on_hand, reorder, reserved
        for p in out:
            self.ground_truth.append(
                GroundTruthRow(
                    "out_of_stock",
                    product=int(p),
                    day=nd - 1,
                    details={"on_hand": 0, "reorder_point": int(reorder[p])},
                )
            )
        for p in low:
            self.ground_truth.append(
                GroundTruthRow(
                    "low_stock",
                    product=int(p),
                    day=nd - 1,
                    details={"on_hand": int(on_hand[p]), "reorder_point": int(reorder[p])},
                )
            )


# ---------------------------------------------------------------------------- loading


@dataclass
class _Offsets:
    users: int = 0
    stores: int = 0
    products: int = 0
    promotions: int = 0
    orders: int = 0
    order_lines: int = 0
    invoices: int = 0
    payments: int = 0
    inventory: int = 0
    communications: int = 0
    ground_truth: int = 0
    stock_reservations: int = 0


def _chunks(lines: Iterable[str], size: int = 1 << 20) -> Iterator[tuple[str, int]]:
    """Join COPY lines into ~1 MB writes; yields (text, number of rows)."""
    buf: list[str] = []
    length = 0
    for line in lines:
        buf.append(line)
        length += len(line)
        if length >= size:
            yield "".join(buf), len(buf)
            buf, length = [], 0
    if buf:
        yield "".join(buf), len(buf)


class _Writer:
    """Turns a generated `DemoGenerator` into COPY text, table by table."""

    def __init__(
        self, g: DemoGenerator, off: _Offsets, hashes: dict[str, str], *, write_paid: bool
    ) -> None:
        self.g, self.off, self.hashes = g, off, hashes
        # `invoices.paid_amount` is kept by triggers on `payments`; when the load runs with
        # triggers off (see `_can_skip_fk_triggers`) the writer fills it in itself.
        self.write_paid = write_paid

    def users(self) -> Iterator[str]:
        o = self.off.users
        for i, u in enumerate(self.g.users):
            manager = "\\N" if u["manager"] is None else str(o + u["manager"] + 1)
            yield (
                "\t".join(
                    [
                        str(o + i + 1),
                        u["email"],
                        _esc(u["name"]),
                        u["role"],
                        manager,
                        u["code"],
                        u["phone"],
                        _opt(u["telegram"]),
                        u["channel"],
                        self.hashes[u["role"]],
                        "t",
                    ]
                )
                + "\n"
            )

    def stores(self) -> Iterator[str]:
        g, o = self.g, self.off
        for i in range(g.p.stores):
            c = cat.CITIES[g.s_city[i]]
            locality = c.localities[g.s_locality[i]]
            address = {
                "line1": f"Shop No. {g.s_shopno[i]}, {cat.STREETS[g.s_street[i]]}",
                "locality": locality,
                "city": c.name,
                "state": c.state,
                "pincode": f"{c.pincode_prefix}{g.s_pin[i]:03d}",
                "country": "IN",
            }
            yield (
                "\t".join(
                    [
                        str(o.stores + i + 1),
                        f"S{o.stores + i + 1:05d}",
                        _esc(g.s_name[i]),
                        _esc(g.s_owner[i]),
                        g.s_phone[i],
                        _esc(json.dumps(address)),
                        c.name,
                        c.region,
                        f"{g.s_lat[i]:.5f}",
                        f"{g.s_lon[i]:.5f}",
                        cat.SEGMENTS[g.s_seg[i]].name,
                        f"{g.s_credit[i]}.00",
                        str(g.s_terms[i]),
                        str(o.users + g.rep_users[g.s_rep[i]] + 1),
                        "t",
                    ]
                )
                + "\n"
            )

    def products(self) -> Iterator[str]:
        o = self.off.products
        for i, p in enumerate(self.g.products):
            attrs = {
                "mrp": p["mrp"],
                "pieces_per_case": p["pieces"],
                "short_name": p["short"],
            }
            yield (
                "\t".join(
                    [
                        str(o + i + 1),
                        p["sku"],
                        _esc(p["name"]),
                        _esc(p["brand"]),
                        _esc(p["category"]),
                        _esc(p["pack_size"]),
                        p["unit"],
                        _money(p["price"]),
                        _esc(json.dumps(attrs)),
                        "t",
                    ]
                )
                + "\n"
            )

    def promotions(self) -> Iterator[str]:
        g, o = self.g, self.off
        for i, pm in enumerate(g.promos):
            yield (
                "\t".join(
                    [
                        str(o.promotions + i + 1),
                        pm["code"],
                        _esc(pm["name"]),
                        _esc(pm["description"]),
                        "\\N" if pm["product"] is None else str(o.products + pm["product"] + 1),
                        _esc(pm["brand"]) if pm["brand"] else "\\N",
                        _esc(pm["category"]) if pm["category"] else "\\N",
                        pm["segment"] or "\\N",
                        pm["region"] or "\\N",
                        "\\N" if pm["pct"] is None else f"{pm['pct']:.2f}",
                        _opt(pm["min_q"]),
                        _opt(pm["free_q"]),
                        g.day_str[pm["start"]]
                        if pm["start"] >= 0
                        else (g.start + dt.timedelta(days=pm["start"])).isoformat(),
                        g.day_str[pm["end"]]
                        if pm["end"] >= 0
                        else (g.start + dt.timedelta(days=pm["end"])).isoformat(),
                    ]
                )
                + "\n"
            )

    def orders(self) -> Iterator[str]:
        g, o = self.g, self.off
        ds = g.day_str
        channels = cat.ORDER_CHANNELS
        rep_ids = [o.users + u + 1 for u in g.rep_users]
        store_rep = [rep_ids[r] for r in g.s_rep.tolist()]
        for i, (s, d, st, ch, tot, pr, dl, minute) in enumerate(
            zip(
                g.o_store.tolist(),
                g.o_day.tolist(),
                g.o_status.tolist(),
                g.o_channel.tolist(),
                g.o_total.tolist(),
                g.o_promised.tolist(),
                g.o_delivered.tolist(),
                g.o_minute.tolist(),
                strict=True,
            )
        ):
            rep = store_rep[s]
            # Historic orders were created and confirmed when they were placed.
            at = f"{ds[d]} {minute // 60:02d}:{minute % 60:02d}:00{IST}"
            yield (
                f"{o.orders + i + 1}\tSO-{i + 1:07d}\t{o.stores + s + 1}\t{rep}\t{ds[d]}\t{st}\t"
                f"{channels[ch]}\t{tot // 100}.{tot % 100:02d}\t{ds[pr]}\t"
                f"{ds[dl] if dl >= 0 else chr(92) + 'N'}\t"
                f"{rep if ch != 4 else chr(92) + 'N'}\t{at}\t{at}\n"
            )

    def order_lines(self) -> Iterator[str]:
        g, o = self.g, self.off
        for i, (oi, no, p, q, u, bp, a) in enumerate(
            zip(
                g.l_order.tolist(),
                g.l_no.tolist(),
                g.l_prod.tolist(),
                g.l_qty.tolist(),
                g.l_unit.tolist(),
                g.l_bp.tolist(),
                g.l_amount.tolist(),
                strict=True,
            )
        ):
            yield (
                f"{o.order_lines + i + 1}\t{o.orders + oi + 1}\t{no}\t{o.products + p + 1}\t{q}\t"
                f"{u // 100}.{u % 100:02d}\t0.{bp:04d}\t{a // 100}.{a % 100:02d}\n"
            )

    def invoices(self) -> Iterator[str]:
        g, o = self.g, self.off
        ds = g.day_str
        paid = g.i_paid_today.tolist() if self.write_paid else [0] * len(g.i_order)
        for i, (oi, s, d, due, a, p) in enumerate(
            zip(
                g.i_order.tolist(),
                g.i_store.tolist(),
                g.i_day.tolist(),
                g.i_due.tolist(),
                g.i_amount.tolist(),
                paid,
                strict=True,
            )
        ):
            yield (
                f"{o.invoices + i + 1}\tINV-{i + 1:07d}\t{o.stores + s + 1}\t{o.orders + oi + 1}\t"
                f"{ds[d]}\t{ds[due]}\t{a // 100}.{a % 100:02d}\t{p // 100}.{p % 100:02d}\n"
            )

    def payments(self) -> Iterator[str]:
        g, o = self.g, self.off
        ds = g.day_str
        methods = cat.PAYMENT_METHODS
        stores = g.i_store[g.pay_inv].tolist()
        for i, (inv, d, a, m, s) in enumerate(
            zip(
                g.pay_inv.tolist(),
                g.pay_day.tolist(),
                g.pay_amt.tolist(),
                g.pay_method.tolist(),
                stores,
                strict=True,
            )
        ):
            yield (
                f"{o.payments + i + 1}\t{o.invoices + inv + 1}\t{o.stores + s + 1}\t{ds[d]}\t"
                f"{a // 100}.{a % 100:02d}\t{methods[m]}\t{methods[m].upper()}-{i + 1:08d}\n"
            )

    def inventory(self) -> Iterator[str]:
        from tools.settings import get_settings

        g, o = self.g, self.off
        warehouse = _esc(get_settings().default_warehouse)
        for i in range(len(g.products)):
            yield (
                f"{o.inventory + i + 1}\t{warehouse}\t{o.products + i + 1}\t{g.inv_on_hand[i]}\t"
                f"{g.inv_reserved[i]}\t{g.inv_reorder[i]}\n"
            )

    def stock_reservations(self) -> Iterator[str]:
        from tools.settings import get_settings

        o = self.off
        warehouse = _esc(get_settings().default_warehouse)
        for i, (order, product, quantity) in enumerate(self.g.holds):
            yield (
                f"{o.stock_reservations + i + 1}\t{o.orders + order + 1}\t"
                f"{o.products + product + 1}\t{warehouse}\t{quantity}\n"
            )

    def communications(self) -> Iterator[str]:
        g, o = self.g, self.off
        for i, c in enumerate(g.comms):
            author = "\\N" if c.author_user is None else str(o.users + c.author_user + 1)
            yield (
                "\t".join(
                    [
                        str(o.communications + i + 1),
                        f"DEMO-C{i + 1:07d}",
                        str(o.stores + c.store + 1),
                        author,
                        _esc(c.author_name),
                        c.channel,
                        c.direction,
                        c.kind,
                        _esc(c.text),
                        c.occurred_at,
                        "\\N" if c.order is None else str(o.orders + c.order + 1),
                        "\\N" if c.promotion is None else str(o.promotions + c.promotion + 1),
                        c.occurred_at,
                    ]
                )
                + "\n"
            )

    def ground_truth(self) -> Iterator[str]:
        g, o = self.g, self.off
        for i, r in enumerate(g.ground_truth):
            details = dict(r.details or {})
            # Indices become the real ids now that the offsets are known.
            if "replaced_by_index" in details:
                details["replaced_by_product_id"] = (
                    o.products + details.pop("replaced_by_index") + 1
                )
            if "invoice_index" in details:
                details["invoice_id"] = o.invoices + details.pop("invoice_index") + 1
            day = "\\N"
            if r.day is not None:
                day = (g.start + dt.timedelta(days=r.day)).isoformat()
            yield (
                "\t".join(
                    [
                        str(o.ground_truth + i + 1),
                        r.kind,
                        "\\N" if r.store is None else str(o.stores + r.store + 1),
                        "\\N" if r.product is None else str(o.products + r.product + 1),
                        "\\N" if r.order is None else str(o.orders + r.order + 1),
                        "\\N"
                        if r.communication is None
                        else str(o.communications + r.communication + 1),
                        "\\N" if r.promotion is None else str(o.promotions + r.promotion + 1),
                        day,
                        _esc(json.dumps(details, ensure_ascii=False)) if details else "\\N",
                    ]
                )
                + "\n"
            )


COLUMNS: dict[str, str] = {
    "users": "id, email, name, role, manager_id, code, phone, telegram_id, preferred_channel, "
    "password_hash, is_active",
    "stores": "id, code, name, owner_name, phone, address, city, region, lat, lon, segment, "
    "credit_limit, payment_terms_days, rep_id, is_active",
    "products": "id, sku, name, brand, category, pack_size, unit, price, attributes, is_active",
    "promotions": "id, code, name, description, product_id, brand, category, segment, region, "
    "discount_pct, min_quantity, free_quantity, starts_on, ends_on",
    "orders": "id, external_id, store_id, rep_id, order_date, status, source_channel, "
    "total_amount, promised_date, delivered_date, created_by, confirmed_at, created_at",
    "order_lines": "id, order_id, line_no, product_id, quantity, unit_price, discount, amount",
    "invoices": "id, number, store_id, order_id, invoice_date, due_date, amount, paid_amount",
    "payments": "id, invoice_id, store_id, paid_on, amount, method, reference",
    "inventory": "id, warehouse, product_id, on_hand, reserved, reorder_point",
    "stock_reservations": "id, order_id, product_id, warehouse, quantity",
    "communications": "id, external_id, store_id, author_id, author_name, channel, direction, "
    "kind, text, occurred_at, order_id, promotion_id, created_at",
    "ground_truth": "id, kind, store_id, product_id, order_id, communication_id, promotion_id, "
    "event_date, details",
}


def _row_counts(g: DemoGenerator) -> dict[str, int]:
    return {
        "users": len(g.users),
        "stores": g.p.stores,
        "products": len(g.products),
        "promotions": len(g.promos),
        "orders": g.n_orders,
        "order_lines": len(g.l_order),
        "invoices": len(g.i_order),
        "payments": len(g.pay_inv),
        "inventory": len(g.products),
        "stock_reservations": len(g.holds),
        "communications": len(g.comms),
        "ground_truth": len(g.ground_truth),
    }


def data_tables(conn: Connection) -> list[str]:
    """Every table of the schema except Alembic's bookkeeping (what `replace` empties)."""
    rows = conn.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> 'alembic_version' ORDER BY tablename"
        )
    ).scalars()
    return list(rows)


def has_stores(conn: Connection) -> bool:
    """True when the database already holds stores."""
    return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM stores)")).scalar())


BULK_ROWS = 50_000


def _drop_secondary_indexes(conn: Connection, tables: list[str]) -> list[str]:
    """Drop the plain (non-unique, non-constraint) indexes of the given tables while they are
    empty, returning the statements that recreate them.

    Building an index once after COPY (a sort) is far cheaper than maintaining it row by row,
    as the PostgreSQL manual advises for populating a database. It all happens in the load's
    transaction: if anything fails, the indexes come back with the rollback.
    """
    tables = [
        t for t in tables if not conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {t})")).scalar()
    ]
    if not tables:
        return []
    rows = conn.execute(
        text(
            "SELECT quote_ident(ic.relname), pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = ANY(:tables) "
            "AND NOT i.indisunique AND NOT i.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
            "ORDER BY c.relname, ic.relname"
        ),
        {"tables": tables},
    ).all()
    for name, _ in rows:
        conn.execute(text(f"DROP INDEX {name}"))
    return [ddl for _, ddl in rows]


# Triggers the loader may skip: their work it does itself (it writes `invoices.paid_amount`),
# or they have nothing to do for it (a store's rep changes only on update; the sales change
# log matters only until the rollup refresh that ends every load).
LOADER_TRIGGERS = (
    "payments_paid_insert",
    "payments_paid_update",
    "payments_paid_delete",
    "payments_paid_truncate",
    "stores_rep_assigned",
    "stores_region_changed",
    "orders_sales_insert",
    "orders_sales_update",
    "orders_sales_delete",
    "order_lines_sales_insert",
    "order_lines_sales_update",
    "order_lines_sales_delete",
    # The call list's per-store rows (migration 0017): rewritten for every store after the
    # load instead of statement by statement.
    "stores_call_list_insert",
    "stores_call_list_update",
    "invoices_call_list_insert",
    "invoices_call_list_update",
    "invoices_call_list_delete",
    "invoices_call_list_truncate",
    "predictions_call_list_insert",
    "predictions_call_list_update",
    "predictions_call_list_delete",
    "predictions_call_list_truncate",
)


def _can_skip_fk_triggers(conn: Connection) -> bool:
    """True when the session may switch off triggers (superuser) and no table has a trigger
    of its own besides `LOADER_TRIGGERS` (only the internal foreign-key ones and those would
    be skipped)."""
    superuser = conn.execute(
        text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    ).scalar()
    own_triggers = conn.execute(
        text(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT t.tgisinternal AND n.nspname = current_schema() "
            "AND NOT t.tgname = ANY(:known)"
        ),
        {"known": list(LOADER_TRIGGERS)},
    ).scalar()
    return bool(superuser) and own_triggers == 0


@lru_cache(maxsize=1)
def _hash_passwords() -> dict[str, str]:
    from tools.security import hash_password

    # argon2 is deliberately slow: hash each distinct (public) demo password once per process.
    return {role: hash_password(pw) for role, pw in DEMO_PASSWORDS.items()}


def _load(
    conn: Connection,
    g: DemoGenerator,
    *,
    hashes: dict[str, str],
    replace: bool,
    progress: Progress,
    timings: dict[str, float],
) -> dict[str, int]:
    if replace:
        tables = data_tables(conn)
        if tables:
            conn.execute(
                text(
                    "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
                )
            )
    elif has_stores(conn):
        raise DemoDataExists(EXISTS_MESSAGE)
    emails = [u["email"] for u in g.users]
    taken = (
        conn.execute(
            text("SELECT email FROM users WHERE email = ANY(:e) ORDER BY email"), {"e": emails}
        )
        .scalars()
        .all()
    )
    if taken:
        raise DemoDataExists(
            f"demo users already exist ({', '.join(taken[:3])}); use --replace to start over"
        )
    off = _Offsets()
    for table in TABLES:
        setattr(
            off,
            table,
            int(conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar() or 0),
        )
    counts = _row_counts(g)
    raw = conn.connection.driver_connection
    assert raw is not None
    fast = _can_skip_fk_triggers(conn)
    writer = _Writer(g, off, hashes, write_paid=fast)
    if fast:
        # The generator assigns every id itself, so the per-row foreign-key triggers would
        # only re-check what holds by construction; skipping them halves the load time.
        conn.execute(text("SET LOCAL session_replication_role = replica"))
    # With triggers on, every payment updates its invoice: an index built afterwards over
    # those updated rows could not be used while any older transaction of the server is open
    # (`pg_index.indcheckxmin`), so the invoices keep theirs during such a load.
    deferred = _drop_secondary_indexes(
        conn, [t for t in TABLES if counts[t] >= BULK_ROWS and (fast or t != "invoices")]
    )
    with raw.cursor() as cur:
        for table in TABLES:
            t0 = time.perf_counter()
            total = counts[table]
            done = 0
            progress(f"load {table}", 0, total)
            rows: Iterable[str] = getattr(writer, table)()
            with cur.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                for chunk, n_rows in _chunks(rows):
                    copy.write(chunk)
                    done += n_rows
                    progress(f"load {table}", done, total)
            progress(f"load {table}", total, total)
            timings[f"load {table}"] = time.perf_counter() - t0
    if fast:
        conn.execute(text("SET LOCAL session_replication_role = origin"))
    t0 = time.perf_counter()
    if deferred:
        progress("rebuild indexes", 0, len(deferred))
        memory = conn.execute(text("SHOW maintenance_work_mem")).scalar()
        conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
        for i, ddl in enumerate(deferred):
            conn.execute(text(ddl))
            progress("rebuild indexes", i + 1, len(deferred))
        conn.execute(text("SELECT set_config('maintenance_work_mem', :v, true)"), {"v": memory})
        timings["rebuild indexes"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    if fast:
        # What the skipped triggers of the call list would have written, for every store. After
        # the indexes are back: it looks up each store's open invoices and newest predictions.
        conn.execute(text("SELECT call_list_stores_sync(ARRAY(SELECT id FROM stores))"))
    for table in TABLES:
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
            )
        )
    progress("refresh sales rollup", 0, 1)
    from tools.migrate import refresh_rollup

    refresh_rollup(conn)
    timings["refresh rollup"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    progress("analyze", 0, 1)
    from tools.migrate import ROLLUPS

    for table in (*TABLES, *ROLLUPS):
        conn.execute(text(f"ANALYZE {table}"))
    timings["analyze"] = time.perf_counter() - t0
    progress("analyze", 1, 1)
    return counts


def generate(
    *,
    stores: int = 500,
    products: int = 300,
    months: int = 24,
    seed: int = 42,
    today: dt.date | None = None,
    progress: Progress | None = None,
) -> DemoGenerator:
    """Generate the demo distributor in memory (without loading it)."""
    params = DemoParams(stores, products, months, seed, today or dt.date.today())
    return DemoGenerator(params, progress).generate()


def load_demo(
    target: Engine | Connection | Session,
    *,
    stores: int = 500,
    products: int = 300,
    months: int = 24,
    seed: int = 42,
    today: dt.date | None = None,
    replace: bool = False,
    progress: Progress | None = None,
) -> DemoSummary:
    """Generate the demo distributor and load it with COPY (see the module docstring)."""
    started = time.perf_counter()
    report: Progress = progress or (lambda step, done, total: None)
    DemoParams(stores, products, months, seed, today or dt.date.today()).validate()
    if not replace:
        # Refuse before spending time on generation (checked again inside the transaction).
        if isinstance(target, Engine):
            with target.connect() as probe:
                exists = has_stores(probe)
        else:
            exists = has_stores(target.connection() if isinstance(target, Session) else target)
        if exists:
            raise DemoDataExists(EXISTS_MESSAGE)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # argon2 runs in C without the GIL: hash the passwords while the data is generated.
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(_hash_passwords)
        g = generate(
            stores=stores,
            products=products,
            months=months,
            seed=seed,
            today=today,
            progress=report,
        )
        hashes = dict(hashing.result())
    timings["generate"] = time.perf_counter() - t0
    options: dict[str, Any] = dict(hashes=hashes, replace=replace, progress=report, timings=timings)
    if isinstance(target, Engine):
        with target.begin() as conn:
            counts = _load(conn, g, **options)
        from tools.migrate import vacuum_rollups

        vacuum_rollups(target)
    elif isinstance(target, Session):
        counts = _load(target.connection(), g, **options)
    else:
        counts = _load(target, g, **options)
    logins = [
        DemoLogin(u["email"], u["name"], u["role"], DEMO_PASSWORDS[u["role"]]) for u in g.users
    ]
    return DemoSummary(
        counts=counts,
        seconds=time.perf_counter() - started,
        logins=logins,
        today=g.today,
        seed=seed,
        timings=timings,
    )
