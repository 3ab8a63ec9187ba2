"""Dates and periods as people write them: "last month", "is hafte", "since Diwali", "15 Oct".

Named periods map to the names the tools accept; anything else becomes explicit start and end
dates. A day without a year is the most recent such day, never one in the future.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from dateutil.relativedelta import relativedelta

# Festival dates (the distributor's seasons). Kept as data: lunar calendars do not compute
# cheaply, and these are published years ahead.
FESTIVALS: dict[str, list[dt.date]] = {
    "diwali": [
        dt.date(2022, 10, 24),
        dt.date(2023, 11, 12),
        dt.date(2024, 11, 1),
        dt.date(2025, 10, 20),
        dt.date(2026, 11, 8),
        dt.date(2027, 10, 29),
    ],
    "holi": [
        dt.date(2023, 3, 8),
        dt.date(2024, 3, 25),
        dt.date(2025, 3, 14),
        dt.date(2026, 3, 4),
        dt.date(2027, 3, 22),
    ],
    "eid": [
        dt.date(2023, 4, 22),
        dt.date(2024, 4, 11),
        dt.date(2025, 3, 31),
        dt.date(2026, 3, 20),
        dt.date(2027, 3, 10),
    ],
    "durga puja": [
        dt.date(2023, 10, 20),
        dt.date(2024, 10, 9),
        dt.date(2025, 9, 28),
        dt.date(2026, 10, 17),
        dt.date(2027, 10, 6),
    ],
    "christmas": [dt.date(y, 12, 25) for y in range(2022, 2028)],
    "new year": [dt.date(y, 1, 1) for y in range(2023, 2029)],
}
FESTIVAL_ALIASES = {
    "deepawali": "diwali",
    "divali": "diwali",
    "dipawali": "diwali",
    "diwaali": "diwali",
    "puja": "durga puja",
    "pooja": "durga puja",
    "durga pooja": "durga puja",
    "xmas": "christmas",
}

NUMBER_WORDS = {
    "ek": 1, "one": 1, "a": 1, "an": 1, "do": 2, "two": 2, "teen": 3, "three": 3,
    "char": 4, "chaar": 4, "four": 4, "paanch": 5, "panch": 5, "five": 5, "chhe": 6, "che": 6,
    "six": 6, "saat": 7, "seven": 7, "aath": 8, "eight": 8, "nau": 9, "nine": 9, "das": 10,
    "dus": 10, "ten": 10, "gyarah": 11, "eleven": 11, "barah": 12, "baarah": 12, "twelve": 12,
    "pandrah": 15, "fifteen": 15, "bees": 20, "twenty": 20, "pachees": 25, "tees": 30,
    "thirty": 30, "chalees": 40, "forty": 40, "pachas": 50, "pachaas": 50, "fifty": 50,
    "sau": 100, "hundred": 100,
}  # fmt: skip


@dataclass(frozen=True)
class Period:
    """A period of days; `name` is set when it is one the tools know by name."""

    start: dt.date
    end: dt.date
    label: str
    name: str | None = None

    def as_args(self) -> dict[str, str]:
        if self.name:
            return {"period": self.name}
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def _week_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def named_period(name: str, today: dt.date) -> Period:
    """The dates of a named period relative to `today` (same names as the tools)."""
    if name == "today":
        return Period(today, today, "today", name)
    if name == "yesterday":
        day = today - dt.timedelta(days=1)
        return Period(day, day, "yesterday", name)
    if name == "this_week":
        return Period(_week_start(today), today, "this week", name)
    if name == "last_week":
        start = _week_start(today) - dt.timedelta(days=7)
        return Period(start, start + dt.timedelta(days=6), "last week", name)
    if name == "this_month":
        return Period(today.replace(day=1), today, "this month", name)
    if name == "last_month":
        end = today.replace(day=1) - dt.timedelta(days=1)
        return Period(end.replace(day=1), end, "last month", name)
    if name == "this_quarter":
        return Period(_quarter_start(today), today, "this quarter", name)
    if name == "last_quarter":
        end = _quarter_start(today) - dt.timedelta(days=1)
        return Period(_quarter_start(end), end, "last quarter", name)
    if name == "this_year":
        return Period(dt.date(today.year, 1, 1), today, "this year", name)
    if name == "last_year":
        return Period(
            dt.date(today.year - 1, 1, 1), dt.date(today.year - 1, 12, 31), "last year", name
        )
    match = re.fullmatch(r"last_(\d+)_days", name)
    if match:
        days = int(match.group(1))
        return Period(today - dt.timedelta(days=days - 1), today, f"the last {days} days", name)
    raise ValueError(f"unknown period {name}")


_NAMED = [
    (r"\b(aaj|today|todays|aj)\b", "today"),
    (r"\b(yesterday|yday|kal ka)\b", "yesterday"),
    (r"\b(this|is|current)\s+(week|hafte|hafta|wk)\b", "this_week"),
    (r"\b(last|previous|pichle|pichhle|pichla|past)\s+(week|hafte|hafta|wk)\b", "last_week"),
    (r"\b(this|is|current)\s+(month|mahine|mahina|mnth|mon)\b", "this_month"),
    (r"\b(last|previous|pichle|pichhle|pichla)\s+(month|mahine|mahina|mnth)\b", "last_month"),
    (r"\b(this|is|current)\s+(quarter|qtr)\b", "this_quarter"),
    (r"\b(last|previous|pichle)\s+(quarter|qtr)\b", "last_quarter"),
    (r"\b(this|is|current)\s+(year|saal|sal|yr)\b", "this_year"),
    (r"\b(last|previous|pichle|pichhle|pichla)\s+(year|saal|sal|yr)\b", "last_year"),
    (r"\b(mtd|month to date)\b", "this_month"),
    (r"\b(ytd|year to date)\b", "this_year"),
]

_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ]  # fmt: skip
    )
    for m in names
}
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY_MONTH = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s*(?:of\s+)?({_MONTH_RE})\b\.?(?:\s*,?\s*(\d{{4}}))?"
)
_MONTH_DAY = re.compile(rf"\b({_MONTH_RE})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:\s*,?\s*(\d{{4}}))?")
_SINCE = re.compile(
    r"\b(?:since|from|se|after)\s+([a-z ]+?)(?:\s*$|[?.!,]|\s+(?:ke|ki|ka|se|till|to)\b)"
)
_UNITS = r"cases?|ctn|cartons?|boxes?|box|pcs|pieces?|units?|dabbe|dabba|peti|packets?|pkts?"
_ORDER_WORDS = re.compile(r"\b(book|order|qty|quantity|bhej|send|chahiye)\b")


def festival_before(name: str, today: dt.date) -> dt.date | None:
    """The most recent date of festival `name` on or before `today`."""
    key = FESTIVAL_ALIASES.get(name, name)
    dates = [d for d in FESTIVALS.get(key, []) if d <= today]
    return max(dates) if dates else None


def parse_day(text: str, today: dt.date) -> dt.date | None:
    """A single day like "15 Oct", "Oct 15", "15/10", "15-10-2026" (never in the future)."""
    text = text.lower()
    match = _DAY_MONTH.search(text)
    if not match:
        m2 = _MONTH_DAY.search(text)
        if m2:
            match_day, month, year = int(m2.group(2)), _MONTHS[m2.group(1)], m2.group(3)
        else:
            m3 = re.search(r"\b(\d{1,2})[/-](\d{1,2})(?:[/-](\d{2,4}))?\b", text)
            if not m3:
                return None
            match_day, month, year = int(m3.group(1)), int(m3.group(2)), m3.group(3)
            if year and len(year) == 2:
                year = "20" + year
    else:
        match_day, month, year = int(match.group(1)), _MONTHS[match.group(2)], match.group(3)
    try:
        if year:
            return dt.date(int(year), month, match_day)
        candidate = dt.date(today.year, month, match_day)
        if candidate > today:
            candidate = dt.date(today.year - 1, month, match_day)
        return candidate
    except ValueError:
        return None


def parse_period(text: str, today: dt.date) -> Period | None:
    """The period a message talks about, or None when it names none."""
    lowered = text.lower()
    for pattern, name in _NAMED:
        if re.search(pattern, lowered):
            return named_period(name, today)
    match = re.search(
        r"\b(?:last|past|pichle|pichhle)\s+(\d+|[a-z]+)\s+(day|days|din|week|weeks|hafte|month|months|mahine)\b",
        lowered,
    )
    if match:
        raw = match.group(1)
        count = int(raw) if raw.isdigit() else NUMBER_WORDS.get(raw)
        if count:
            unit = match.group(2)
            if unit.startswith(("day", "din")):
                return named_period(f"last_{count}_days", today)
            if unit.startswith(("week", "hafte")):
                return named_period(f"last_{count * 7}_days", today)
            start = today - relativedelta(months=count) + dt.timedelta(days=1)
            return Period(start, today, f"the last {count} months")
    match = _SINCE.search(lowered)
    festival = None
    for name in [*FESTIVALS, *FESTIVAL_ALIASES]:
        if re.search(rf"\b{name}\b", lowered):
            festival = name
            break
    if festival and re.search(r"\b(since|from|after|baad|se)\b", lowered):
        start = festival_before(festival, today)
        if start:
            key = FESTIVAL_ALIASES.get(festival, festival)
            return Period(start, today, f"since {key.title()} ({start.isoformat()})")
    if match or re.search(r"\bsince\b", lowered):
        day = parse_day(lowered.split("since", 1)[-1] if "since" in lowered else lowered, today)
        if day:
            return Period(day, today, f"since {day.strftime('%d %b %Y')}")
    month_only = re.search(rf"\b(?:in|during|for|of)\s+({_MONTH_RE})\b(?:\s+(\d{{4}}))?", lowered)
    if month_only and not re.search(rf"\d\s*{month_only.group(1)}", lowered):
        month = _MONTHS[month_only.group(1)]
        year = int(month_only.group(2)) if month_only.group(2) else today.year
        if not month_only.group(2) and dt.date(year, month, 1) > today:
            year -= 1
        start = dt.date(year, month, 1)
        end = min(start + relativedelta(months=1) - dt.timedelta(days=1), today)
        return Period(start, end, start.strftime("%B %Y"))
    return None


def parse_quantity(text: str) -> int | None:
    """A quantity like "10 cases", "dus dabbe", "qty 5"; None when there is none."""
    lowered = text.lower()
    match = re.search(rf"\b(\d{{1,5}})\s*(?:x\s*)?({_UNITS})?\b", lowered)
    if match and (match.group(2) or _ORDER_WORDS.search(lowered)):
        return int(match.group(1))
    words = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
    match = re.search(rf"\b({words})\s+({_UNITS})\b", lowered)
    if match:
        return NUMBER_WORDS[match.group(1)]
    return None
