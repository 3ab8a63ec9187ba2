"""Communications of the demo distributor, written from what really happened in the data.

Every message, note, call transcript and complaint is built from generated facts: a complaint
about a late delivery names an order that was delivered after its promised date (and sets
`order_id`), a scheme request names a promotion that was running for that store (and sets
`promotion_id`), a payment follow-up quotes the invoice's real outstanding amount on that day,
a visit note after a store's slowdown gives the reason, a WhatsApp order lists the order's
actual lines. Owners write in Hinglish or English (a per-store habit); reps write their notes
mostly in English. What refers to what is recorded in the ground truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np

from tools.data import demo_catalog as cat

if TYPE_CHECKING:
    from tools.data.demo import DemoGenerator, GroundTruthRow


@dataclass
class Comm:
    store: int
    author_user: int | None
    author_name: str
    channel: str
    direction: str
    kind: str
    text: str
    occurred_at: str
    day: int
    order: int | None = None
    promotion: int | None = None


class _Draws:
    """Seeded random draws: Python's generator for the many single draws (far cheaper per
    call), numpy's for whole arrays."""

    def __init__(self, seed: int) -> None:
        self.np = np.random.default_rng([seed, 7])
        self.py = random.Random(seed * 1_000_003 + 7)

    @overload
    def random(self, size: None = None) -> float: ...
    @overload
    def random(self, size: int) -> np.ndarray: ...
    def random(self, size: int | None = None) -> float | np.ndarray:
        return self.py.random() if size is None else self.np.random(size)

    @overload
    def integers(self, low: int, high: int | None = None, size: None = None) -> int: ...
    @overload
    def integers(self, low: int, high: int | None, size: int) -> np.ndarray: ...
    def integers(
        self, low: int, high: int | None = None, size: int | None = None
    ) -> int | np.ndarray:
        """Like numpy's: `high` excluded; one argument means [0, low)."""
        if size is not None:
            return self.np.integers(low, high, size)
        if high is None:
            low, high = 0, low
        # Scaling a uniform draw is several times cheaper than randrange, and exact enough.
        return low + int(self.py.random() * (high - low))

    def poisson(self, lam: float) -> int:
        return int(self.np.poisson(lam))


class _Builder:
    def __init__(self, g: DemoGenerator) -> None:
        from tools.data.demo import rupees

        self.g = g
        self.rng = _Draws(g.p.seed)
        self.rupees = rupees
        self.comms: list[Comm] = []
        self.truth: list[tuple[int, GroundTruthRow]] = []  # (comm index, row)
        self.links: list[tuple[int, int]] = []  # (ground truth index, comm index)
        self.live_cache: dict[int, list[int]] = {}  # day -> schemes open to every store

    # -------------------------------------------------------------- helpers
    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return options[self.rng.integers(len(options))]

    def rep_of(self, store: int) -> tuple[int, str]:
        user = self.g.rep_users[int(self.g.s_rep[store])]
        return user, self.g.users[user]["name"]

    def unit(self, product: int) -> str:
        return str(self.g.products[product]["unit"])

    def units(self, product: int, quantity: int) -> str:
        """'3 cases', '1 bag'."""
        unit = self.unit(product)
        return f"{quantity} {unit}" if quantity == 1 else f"{quantity} {unit}s"

    def short(self, product: int) -> str:
        return str(self.g.products[product]["short"])

    def lines_of(self, order: int) -> list[tuple[int, int]]:
        """(product, quantity) of an order's lines, largest first."""
        g = self.g
        lo = int(g.o_line_start[order])
        hi = int(g.o_line_start[order + 1]) if order + 1 < g.n_orders else len(g.l_order)
        pairs = list(zip(g.l_prod[lo:hi].tolist(), g.l_qty[lo:hi].tolist(), strict=True))
        pairs.sort(key=lambda x: -x[1])
        return pairs

    def add(
        self,
        store: int,
        day: int,
        minute: int,
        *,
        kind: str,
        channel: str,
        direction: str,
        text: str,
        by_rep: bool,
        order: int | None = None,
        promotion: int | None = None,
    ) -> int:
        g = self.g
        if by_rep:
            author, name = self.rep_of(store)
        else:
            author, name = None, g.s_owner[store]
        self.comms.append(
            Comm(
                store=int(store),
                author_user=author,
                author_name=name,
                channel=channel,
                direction=direction,
                kind=kind,
                text=text,
                occurred_at=g.stamp(day, minute),
                day=int(day),
                order=None if order is None else int(order),
                promotion=None if promotion is None else int(promotion),
            )
        )
        return len(self.comms) - 1

    def truth_row(self, comm: int, row: GroundTruthRow) -> None:
        self.truth.append((comm, row))

    def active(self, store: int, day: int) -> bool:
        g = self.g
        return bool(g.s_start_day[store] <= day < g.s_stop_day[store])

    # -------------------------------------------------------------- kinds
    def late_complaints(self) -> None:
        from tools.data.demo import GroundTruthRow

        g, rng = self.g, self.rng
        for o in np.nonzero(g.o_late)[0].tolist():
            if rng.random() >= 0.55:
                continue
            s = int(g.o_store[o])
            promised, delivered = int(g.o_promised[o]), int(g.o_delivered[o])
            day = promised + 1 + int(rng.integers(0, max(delivered - promised - 1, 0) + 1))
            day = min(day, delivered)
            items = self.lines_of(o)[:2]
            names = " aur ".join(self.short(p) for p, _ in items)
            ext = f"SO-{o + 1:07d}"
            waiting = day - promised
            if g.s_hinglish[s]:
                text = self.pick(
                    (
                        f"Bhaiya, order {ext} abhi tak nahi aaya. {g.nice_date(promised)} ko "
                        f"delivery bola tha. {names} ka stock khatam ho gaya, aaj bhej do please.",
                        f"Sir {ext} ka maal kab aayega? {waiting} din late ho gaya hai, "
                        f"customer wapas ja rahe hain. {names} urgent chahiye.",
                        f"Delivery phir se late hai bhai. {g.nice_date(int(g.o_day[o]))} ka order "
                        f"({ext}) abhi tak pending. {names} khatam hai dukaan mein.",
                    )
                )
            else:
                text = self.pick(
                    (
                        f"Our order {ext} from {g.nice_date(int(g.o_day[o]))} has still not "
                        f"arrived; it was promised for {g.nice_date(promised)}. We are out of "
                        f"{names.replace(' aur ', ' and ')}.",
                        f"Delivery for {ext} is late again. Promised {g.nice_date(promised)}, "
                        f"nothing yet. Please send today, {names.replace(' aur ', ' and ')} "
                        "shelves are empty.",
                    )
                )
            channel = "whatsapp" if rng.random() < 0.65 else "phone"
            if channel == "phone":
                rep_first = self.rep_of(s)[1].split()[0]
                text = (
                    f"Owner: {text}\n"
                    f"{rep_first}: Sorry {g.s_owner_first[s]}ji, vehicle issue tha. "
                    f"I am checking with the warehouse and will call back.\n"
                    f"Owner: Theek hai, but this keeps happening."
                )
            c = self.add(
                s,
                day,
                int(rng.integers(9 * 60, 13 * 60)),
                kind="complaint",
                channel=channel,
                direction="inbound",
                text=text,
                by_rep=False,
                order=o,
            )
            self.truth_row(
                c,
                GroundTruthRow(
                    "complaint_about_order",
                    store=s,
                    order=o,
                    day=day,
                    details={
                        "issue": "late_delivery",
                        "days_late_when_sent": waiting,
                        "days_late_total": delivered - promised,
                    },
                ),
            )

    def return_complaints(self) -> None:
        from tools.data.demo import GroundTruthRow

        g, rng = self.g, self.rng
        issues = (
            ("damaged", "the cartons came torn and wet", "peti phati hui aur geeli aayi"),
            ("near_expiry", "the stock is close to expiry", "maal expiry ke paas hai"),
            ("wrong_item", "it was the wrong pack size", "galat pack size aa gaya"),
        )
        for o in np.nonzero(g.o_status == "returned")[0].tolist():
            if rng.random() >= 0.85:
                continue
            s = int(g.o_store[o])
            day = int(g.o_delivered[o])
            issue, en, hi = issues[int(rng.integers(len(issues)))]
            p, q = self.lines_of(o)[0]
            ext = f"SO-{o + 1:07d}"
            if g.s_hinglish[s]:
                text = (
                    f"Order {ext} mein {self.short(p)} ki {q} peti aayi, {hi}. Poora order "
                    "wapas le jao aur naya bhejo."
                )
            else:
                text = (
                    f"In order {ext}, {self.units(p, q)} of {g.products[p]['name']} arrived but "
                    f"{en}. We are returning the order, please replace it."
                )
            c = self.add(
                s,
                day,
                int(rng.integers(10 * 60, 19 * 60)),
                kind="complaint",
                channel="whatsapp",
                direction="inbound",
                text=text,
                by_rep=False,
                order=o,
            )
            self.truth_row(
                c,
                GroundTruthRow(
                    "complaint_about_order",
                    store=s,
                    order=o,
                    product=p,
                    day=day,
                    details={"issue": issue},
                ),
            )

    def order_messages(self) -> None:
        from tools.data.demo import GroundTruthRow

        g, rng = self.g, self.rng
        whatsapp = cat.ORDER_CHANNELS.index("whatsapp")
        phone = cat.ORDER_CHANNELS.index("phone")
        for o in np.nonzero((g.o_channel == whatsapp) | (g.o_channel == phone))[0].tolist():
            is_call = int(g.o_channel[o]) == phone
            if rng.random() >= (0.15 if is_call else 0.3):
                continue
            s = int(g.o_store[o])
            lines = self.lines_of(o)
            minute = max(int(g.o_minute[o]) - int(rng.integers(5, 90)), 8 * 60)
            day = int(g.o_day[o])
            if is_call:
                text = self._order_call(s, o, lines)
                c = self.add(
                    s,
                    day,
                    minute,
                    kind="call",
                    channel="phone",
                    direction="inbound",
                    text=text,
                    by_rep=True,
                    order=o,
                )
            else:
                shown = lines[:6]
                items = ", ".join(f"{q} {self.unit(p)} {self.short(p)}" for p, q in shown)
                rest = len(lines) - len(shown)
                if g.s_hinglish[s]:
                    opener = self.pick(
                        (
                            f"Bhaiya, {self.short(lines[0][0])} ka stock khatam ho gaya, "
                            "kal tak bhej do.",
                            "Namaste bhaiya, order likh lo.",
                            "Is hafte ka order bhej raha hoon.",
                        )
                    )
                    tail = f" Baaki {rest} item pichhli baar jaisa." if rest else ""
                else:
                    opener = self.pick(
                        (
                            "Please send the following.",
                            "This week's order:",
                            "Order for delivery tomorrow please.",
                        )
                    )
                    tail = f" Plus {rest} more items as usual." if rest else ""
                text = f"{opener} {items}.{tail}"
                c = self.add(
                    s,
                    day,
                    minute,
                    kind="message",
                    channel="whatsapp",
                    direction="inbound",
                    text=text,
                    by_rep=False,
                    order=o,
                )
            self.truth_row(
                c,
                GroundTruthRow(
                    "order_request",
                    store=s,
                    order=o,
                    day=day,
                    details={"lines": len(lines), "channel": "phone" if is_call else "whatsapp"},
                ),
            )

    def _order_call(self, s: int, o: int, lines: list[tuple[int, int]]) -> str:
        g = self.g
        rep_first = self.rep_of(s)[1].split()[0]
        owner = g.s_owner_first[s]
        out = [
            f"{rep_first}: Namaste {owner}ji, {rep_first} from Mangalm Distributors. "
            "Aaj ka order bataiye.",
            f"Owner: Haan {rep_first}, likh lo.",
        ]
        for p, q in lines[:12]:
            out.append(f"Owner: {self.short(p)}, {q} {self.unit(p)}.")
            out.append(f"{rep_first}: {g.products[p]['name']}, {self.units(p, q)}, noted.")
        if len(lines) > 12:
            out.append(f"Owner: Baaki {len(lines) - 12} item pichhli baar jaisa.")
        total = self.rupees(int(g.o_total[o]))
        promised = g.nice_date(int(g.o_promised[o]))
        out.append(f"{rep_first}: Total {total} hai. Delivery {promised} tak ho jayegi.")
        out.append("Owner: Theek hai, dhanyavaad.")
        return "\n".join(out)

    def scheme_requests(self) -> None:
        from tools.data.demo import GroundTruthRow

        g, rng = self.g, self.rng
        nd = g.n_days
        target = int(round(g.p.stores * 3 * min(g.p.months, 24) / 24))
        seg_names = [s.name for s in cat.SEGMENTS]
        made = 0
        tries = 0
        while made < target and tries < target * 20:
            tries += 1
            i = int(rng.integers(len(g.promos)))
            pm = g.promos[i]
            lo, hi = max(pm["start"], 0), min(pm["end"], nd - 1)
            if hi < lo:
                continue
            day = int(rng.integers(lo, hi + 1))
            s = int(rng.integers(g.p.stores))
            if not self.active(s, day):
                continue
            if pm["segment"] and seg_names[int(g.s_seg[s])] != pm["segment"]:
                continue
            if pm["region"] and cat.REGIONS[int(g.s_region[s])] != pm["region"]:
                continue
            covered = g.promo_products[i]
            favs = [int(p) for p in g.fav_prod[s] if p >= 0 and covered[p]]
            if favs:
                prod = favs[int(rng.integers(len(favs)))]
            else:
                cand = np.nonzero(covered)[0]
                prod = int(cand[np.argmax(g.p_pop[cand])])
            qty = int(pm["min_q"] or rng.integers(3, 15))
            if g.s_hinglish[s]:
                text = self.pick(
                    (
                        f"Bhaiya, {pm['name']} wala scheme ({pm['code']}) hamare liye bhi "
                        f"lagao. {pm['offer']} mile toh {qty} {self.unit(prod)} {self.short(prod)} "
                        "le lenge.",
                        f"Suna hai {pm['name']} scheme chal rahi hai, {pm['offer']}. "
                        f"Hamein bhi do, {qty} {self.unit(prod)} {self.short(prod)} chahiye.",
                    )
                )
                channel, direction, by_rep, kind = "whatsapp", "inbound", False, "message"
            elif rng.random() < 0.5:
                text = (
                    f"Is the {pm['code']} scheme ({pm['offer']} on {pm['target']}) open for us? "
                    f"We would take {self.units(prod, qty)} of {g.products[prod]['name']}."
                )
                channel, direction, by_rep, kind = "whatsapp", "inbound", False, "message"
            else:
                text = (
                    f"Visit: owner asked for the {pm['name']} scheme ({pm['code']}, "
                    f"{pm['offer']}). Willing to take {self.units(prod, qty)} of "
                    f"{g.products[prod]['name']} if applied on this bill."
                )
                channel, direction, by_rep, kind = "visit", "internal", True, "note"
            c = self.add(
                s,
                day,
                int(rng.integers(10 * 60, 19 * 60)),
                kind=kind,
                channel=channel,
                direction=direction,
                text=text,
                by_rep=by_rep,
                promotion=i,
            )
            self.truth_row(
                c,
                GroundTruthRow(
                    "scheme_request",
                    store=s,
                    product=prod,
                    promotion=i,
                    day=day,
                    details={"code": pm["code"], "quantity": qty},
                ),
            )
            made += 1

    def payment_followups(self) -> None:
        from tools.data.demo import GroundTruthRow

        g, rng = self.g, self.rng
        nd = g.n_days
        n_inv = len(g.i_order)
        if n_inv == 0:
            return
        never = 10 * nd
        last_pay = np.full(n_inv, -1, dtype=np.int64)
        np.maximum.at(last_pay, g.pay_inv, g.pay_day)
        last_pay[last_pay < 0] = never
        paid_total = np.zeros(n_inv, dtype=np.int64)
        np.add.at(paid_total, g.pay_inv, g.pay_amt)
        # An invoice has at most two payments (in full, or in two parts), in date order.
        first_day = np.full(n_inv, never, dtype=np.int64)
        first_amt = np.zeros(n_inv, dtype=np.int64)
        second_day = np.full(n_inv, never, dtype=np.int64)
        second_amt = np.zeros(n_inv, dtype=np.int64)
        invs, first = np.unique(g.pay_inv, return_index=True)
        first_day[invs], first_amt[invs] = g.pay_day[first], g.pay_amt[first]
        rest = np.ones(len(g.pay_inv), dtype=bool)
        rest[first] = False
        second_day[g.pay_inv[rest]] = g.pay_day[rest]
        second_amt[g.pay_inv[rest]] = g.pay_amt[rest]
        d1, a1, d2, a2 = (x.tolist() for x in (first_day, first_amt, second_day, second_amt))
        fully_paid = paid_total >= g.i_amount
        late_hist = fully_paid & (last_pay > g.i_due + 7)
        overdue_now = ~fully_paid & (g.i_due < nd - 4)
        chosen = np.nonzero((late_hist & (rng.random(n_inv) < 0.25)) | overdue_now)[0]
        for inv in chosen.tolist():
            s = int(g.i_store[inv])
            due = int(g.i_due[inv])
            if overdue_now[inv]:
                day = max(due + 3, nd - 1 - int(rng.integers(0, 12)))
            else:
                hi = min(int(last_pay[inv]) - 1, due + 30)
                day = int(rng.integers(due + 5, max(hi, due + 5) + 1))
            day = min(day, nd - 1)
            before = (a1[inv] if d1[inv] <= day else 0) + (a2[inv] if d2[inv] <= day else 0)
            outstanding = int(g.i_amount[inv]) - before
            if outstanding <= 0:
                continue
            number = f"INV-{inv + 1:07d}"
            amount = self.rupees(int(g.i_amount[inv]))
            owed = self.rupees(outstanding)
            rep_first = self.rep_of(s)[1].split()[0]
            owner = g.s_owner_first[s]
            days_over = day - due
            promise = g.nice_date(min(day + int(rng.integers(2, 8)), nd + 300))
            if rng.random() < 0.6:
                partial = f" ({self.rupees(before)} received so far)" if before else ""
                text = "\n".join(
                    [
                        f"{rep_first}: Namaste {owner}ji, {rep_first} from Mangalm. Invoice "
                        f"{number} for {amount} was due on {g.nice_date(due)}; {owed} is still "
                        f"pending{partial}.",
                        "Owner: "
                        + self.pick(
                            (
                                f"Haan ji, is hafte market thoda slow hai. {promise} tak de dunga.",
                                f"Cheque ready hai, {promise} ko le jaana.",
                                f"Sorry, bhool gaya. {promise} tak UPI kar deta hoon.",
                                "Aadha abhi kar deta hoon, baaki agle hafte.",
                            )
                        ),
                        f"{rep_first}: Theek hai, {days_over} din ho gaye hain due date se. "
                        "Please clear it so the next order is not held.",
                        "Owner: Pakka.",
                    ]
                )
                c = self.add(
                    s,
                    day,
                    int(rng.integers(10 * 60, 18 * 60)),
                    kind="call",
                    channel="phone",
                    direction="outbound",
                    text=text,
                    by_rep=True,
                )
            else:
                text = (
                    f"Namaste {owner}ji, reminder: invoice {number} ({amount}) was due on "
                    f"{g.nice_date(due)}. Outstanding {owed}. Kindly pay by UPI or cheque. "
                    f"- {self.rep_of(s)[1]}, Mangalm Distributors"
                )
                c = self.add(
                    s,
                    day,
                    int(rng.integers(10 * 60, 18 * 60)),
                    kind="message",
                    channel="whatsapp",
                    direction="outbound",
                    text=text,
                    by_rep=True,
                )
            self.truth_row(
                c,
                GroundTruthRow(
                    "payment_followup",
                    store=s,
                    day=day,
                    details={
                        "invoice_index": inv,
                        "invoice_number": number,
                        "outstanding": outstanding / 100,
                        "days_overdue": days_over,
                        "still_overdue_today": bool(overdue_now[inv]),
                    },
                ),
            )

    def behaviour_notes(self) -> None:
        """Notes about slowdowns, stopped stores and dropped products (linked in the truth)."""
        g, rng = self.g, self.rng
        nd = g.n_days
        by_key = {
            (r.kind, r.store, r.product): i
            for i, r in enumerate(g.ground_truth)
            if r.kind in ("store_slowdown", "store_stopped", "product_dropped")
        }
        for s in g.slow_stores.tolist():
            sd = int(g.s_slow_day[s])
            day = sd + int(rng.integers(14, 45))
            if day >= nd:
                continue
            before = g.s_interval[s]
            after = before * g.s_slow_factor[s]
            reason = cat.SLOWDOWN_REASONS[int(g.s_slow_reason[s])]
            text = (
                f"Visit: orders from {g.s_name[s]} have slowed; they used to order every "
                f"{before:.0f} days, now about every {after:.0f}, and smaller quantities. Owner "
                f"says {reason}. Need a retention offer."
            )
            c = self.add(
                s,
                day,
                int(rng.integers(11 * 60, 18 * 60)),
                kind="note",
                channel="visit",
                direction="internal",
                text=text,
                by_rep=True,
            )
            self.links.append((by_key[("store_slowdown", s, None)], c))
        for s in g.stop_stores.tolist():
            day = int(g.s_stop_day[s]) + int(rng.integers(10, 30))
            if day >= nd:
                continue
            reason = cat.STOP_REASONS[int(g.s_stop_reason[s])]
            text = (
                f"Visit: {g.s_name[s]} has not ordered since {g.nice_date(int(g.s_stop_day[s]))}."
                f" Found that the {reason}. Marking for follow-up."
            )
            c = self.add(
                s,
                day,
                int(rng.integers(11 * 60, 18 * 60)),
                kind="note",
                channel="visit",
                direction="internal",
                text=text,
                by_rep=True,
            )
            self.links.append((by_key[("store_stopped", s, None)], c))
        for s, prod, repl, d in g.dropped:
            day = d + int(rng.integers(7, 40))
            if day >= nd or not self.active(s, day):
                continue
            if g.s_hinglish[s]:
                text = (
                    f"Owner: {self.short(prod)} ab mat bhejna, customer {self.short(repl)} "
                    f"maang rahe hain. {self.short(repl)} hi bhejo aage se."
                )
                c = self.add(
                    s,
                    day,
                    int(rng.integers(10 * 60, 19 * 60)),
                    kind="message",
                    channel="whatsapp",
                    direction="inbound",
                    text=text,
                    by_rep=False,
                )
            else:
                text = (
                    f"Visit: {g.s_name[s]} stopped taking {g.products[prod]['name']}; switched "
                    f"to {g.products[repl]['name']} because customers ask for it and the margin "
                    "is better."
                )
                c = self.add(
                    s,
                    day,
                    int(rng.integers(10 * 60, 19 * 60)),
                    kind="note",
                    channel="visit",
                    direction="internal",
                    text=text,
                    by_rep=True,
                )
            self.links.append((by_key[("product_dropped", s, prod)], c))

    def delivery_queries(self) -> None:
        """Owners asking where their pending (placed) orders are."""
        g, rng = self.g, self.rng
        nd = g.n_days
        for o in np.nonzero(g.o_status == "placed")[0].tolist():
            if rng.random() >= 0.3:
                continue
            s = int(g.o_store[o])
            day = min(int(g.o_day[o]) + 1, nd - 1)
            ext = f"SO-{o + 1:07d}"
            text = (
                f"Bhaiya {ext} kab tak aayega? {g.nice_date(int(g.o_promised[o]))} bola tha."
                if g.s_hinglish[s]
                else f"When will order {ext} be delivered? It was promised for "
                f"{g.nice_date(int(g.o_promised[o]))}."
            )
            self.add(
                s,
                day,
                int(rng.integers(9 * 60, 12 * 60)),
                kind="message",
                channel="whatsapp",
                direction="inbound",
                text=text,
                by_rep=False,
                order=o,
            )

    def visit_notes(self) -> None:
        """Routine visit notes and calls, grounded in each store's real basket and orders."""
        g, rng = self.g, self.rng
        nd = g.n_days
        per_store = max(1, int(round(g.p.months * 0.55)))
        # Orders are in date order, so a stable sort by store keeps each store's in date order.
        by_store = np.argsort(g.o_store, kind="stable")
        starts = np.concatenate([[0], np.cumsum(np.bincount(g.o_store, minlength=g.p.stores))])
        for s in range(g.p.stores):
            orders = by_store[starts[s] : starts[s + 1]]
            lo, hi = int(g.s_start_day[s]), min(int(g.s_stop_day[s]), nd) - 1
            if hi <= lo:
                continue
            favs = [int(p) for p in g.fav_prod[s] if p >= 0]
            k = int(rng.poisson(per_store))
            for day in np.sort(rng.integers(lo, hi + 1, k)).tolist():
                if (g.weekday0 + day) % 7 == 6:
                    day = max(day - 1, lo)
                past = orders[g.o_day[orders] <= day]
                fav = self.g.products[favs[int(rng.integers(len(favs)))]] if favs else None
                text = self._visit_text(s, day, past, fav)
                self.add(
                    s,
                    day,
                    int(rng.integers(10 * 60, 19 * 60)),
                    kind="note",
                    channel="visit",
                    direction="internal",
                    text=text,
                    by_rep=True,
                )

    def _visit_text(self, s: int, day: int, past: np.ndarray, fav: dict | None) -> str:
        g, rng = self.g, self.rng
        seg = cat.SEGMENTS[int(g.s_seg[s])].name
        locality = cat.CITIES[int(g.s_city[s])].localities[int(g.s_locality[s])]
        where = seg if locality in g.s_name[s] else f"{seg}, {locality}"
        parts = [f"Visited {g.s_name[s]} ({where})."]
        if len(past):
            last = int(past[-1])
            days_ago = day - int(g.o_day[last])
            parts.append(
                f"Last order {g.nice_date(int(g.o_day[last]))} ({days_ago} days ago), "
                f"{self.rupees(int(g.o_total[last]))}."
            )
        if fav is not None:
            parts.append(
                self.pick(
                    (
                        f"{fav['short']} moving well, shelf nearly empty.",
                        f"Owner happy with {fav['short']}; asked about bigger packs.",
                        f"Competitor rep offering a better margin than us on {fav['category']}.",
                        f"Put up {fav['brand']} display near the counter.",
                        f"{fav['short']} stock okay for a week.",
                        f"Owner complained that {fav['short']} MRP went up, customers grumbling.",
                    )
                )
            )
        if day not in self.live_cache:
            self.live_cache[day] = [
                i
                for i, pm in enumerate(g.promos)
                if pm["start"] <= day <= pm["end"] and not pm["segment"] and not pm["region"]
            ]
        live = self.live_cache[day]
        if live and rng.random() < 0.3:
            pm = g.promos[live[int(rng.integers(len(live)))]]
            parts.append(f"Pitched {pm['name']} ({pm['offer']}).")
        parts.append(
            self.pick(
                (
                    "Payment collected as per schedule.",
                    "Owner busy with customers, short visit.",
                    "Requested delivery before 11 am next time.",
                    "Will place order on WhatsApp tomorrow.",
                    "Discussed festival stocking plan.",
                    "No issues.",
                )
            )
        )
        return " ".join(parts)


def build_communications(g: DemoGenerator) -> list[Comm]:
    """All communications in time order; adds their ground truth rows to `g.ground_truth`."""
    b = _Builder(g)
    b.late_complaints()
    b.return_complaints()
    b.order_messages()
    b.scheme_requests()
    b.payment_followups()
    b.behaviour_notes()
    b.delivery_queries()
    b.visit_notes()
    order = sorted(range(len(b.comms)), key=lambda i: (b.comms[i].occurred_at, b.comms[i].store))
    position = np.empty(len(order), dtype=np.int64)
    position[np.array(order, dtype=np.int64)] = np.arange(len(order))
    for comm, row in b.truth:
        row.communication = int(position[comm])
        g.ground_truth.append(row)
    for gt_index, comm in b.links:
        g.ground_truth[gt_index].communication = int(position[comm])
    return [b.comms[i] for i in order]
