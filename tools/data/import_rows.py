"""The fields `mangalm import` understands, and the pydantic models that validate one row.

Values arrive as the strings of a CSV cell. The parsers here read them the way the file was
written (`CsvOptions`: decimal mark, date format, time zone travel in the validation context),
so "1.234,50" with `--decimal ,` is 1234.50 and "08/11/2020" with `--date-format %d/%m/%Y`
is 8 November. Each error message names the problem in words a person can act on; the importer
prefixes it with the file's column name.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from tools.data.import_csv import CsvOptions

CENT = Decimal("0.01")
DISCOUNT_STEP = Decimal("0.0001")
_CURRENCY = re.compile(r"^(?:rs\.?|inr|usd|eur|[$€£₹])\s*|\s*(?:rs\.?|inr|usd|eur|[$€£₹])$", re.I)
_GROUPED = {
    ".": re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$"),
    ",": re.compile(r"^[-+]?\d{1,3}(?:\.\d{3})+(?:,\d*)?$"),
}


def _options(info: ValidationInfo) -> CsvOptions:
    context = info.context or {}
    options = context.get("options")
    return options if isinstance(options, CsvOptions) else CsvOptions()


@lru_cache(maxsize=65536)
def read_decimal(value: str, decimal_mark: str) -> Decimal:
    """A number as written in the file: decimal mark, thousands grouping, currency signs."""
    text = _CURRENCY.sub("", value.strip().replace("\u00a0", "").replace(" ", ""))
    negative = text.startswith("(") and text.endswith(")")  # accounting negatives: (12.50)
    if negative:
        text = text[1:-1]
    if _GROUPED[decimal_mark].match(text):
        text = text.replace("," if decimal_mark == "." else ".", "")
    if decimal_mark == ",":
        if "." in text:
            raise ValueError(
                f"{value!r} is not a number with ',' as the decimal mark "
                "(pass --decimal . for files that use points)"
            )
        text = text.replace(",", ".")
    elif "," in text:
        raise ValueError(
            f"{value!r} is not a number with '.' as the decimal mark "
            "(pass --decimal , for files that use commas)"
        )
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a number")
    return -number if negative else number


def _decimal(value: Any, info: ValidationInfo) -> Any:
    return read_decimal(value, _options(info).decimal) if isinstance(value, str) else value


def _money(value: Any, info: ValidationInfo) -> Any:
    """An amount of money, rounded to the cent as the database stores it."""
    if not isinstance(value, str):
        return value
    return read_decimal(value, _options(info).decimal).quantize(CENT, ROUND_HALF_UP)


def _whole(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str):
        return value
    number = read_decimal(value, _options(info).decimal)
    if number != number.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _fraction(value: Any, info: ValidationInfo) -> Any:
    """A discount: 0.15, 0,15 (with --decimal ,) or 15%."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.endswith("%"):
        return read_decimal(text[:-1], _options(info).decimal) / 100
    number = read_decimal(text, _options(info).decimal)
    if number > 1:
        raise ValueError(f"{value!r} is not a fraction between 0 and 1 (write 0.15 or 15% for 15%)")
    return number


def _formats(base: str) -> tuple[str, ...]:
    if "%H" in base or "%I" in base:
        return (base,)
    return (base, base + " %H:%M:%S", base + " %H:%M", base + "T%H:%M:%S")


@lru_cache(maxsize=65536)
def read_datetime(value: str, options: CsvOptions) -> dt.datetime:
    """A timestamp as written in the file; naive ones are in `options.timezone`."""
    text = value.strip()
    parsed: dt.datetime | None = None
    if options.date_format:
        for fmt in _formats(options.date_format):
            try:
                parsed = dt.datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if parsed is None:
            raise ValueError(f"{value!r} is not a date in the format {options.date_format}")
    else:
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO date (YYYY-MM-DD); pass --date-format for other "
                "layouts, e.g. --date-format %d/%m/%Y"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zoneinfo.ZoneInfo(options.timezone))
    return parsed


def _date(value: Any, info: ValidationInfo) -> Any:
    return read_datetime(value, _options(info)).date() if isinstance(value, str) else value


def _datetime(value: Any, info: ValidationInfo) -> Any:
    return read_datetime(value, _options(info)) if isinstance(value, str) else value


_TRUE = {"1", "true", "t", "yes", "y", "x"}
_FALSE = {"0", "false", "f", "no", "n", "-"}


def _flag(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not yes/no (use 1/0, true/false or yes/no)")


def _choice(synonyms: dict[str, str]) -> Any:
    def normalise(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        key = " ".join(value.strip().casefold().replace("_", " ").replace("-", " ").split())
        if key in synonyms:
            return synonyms[key]
        allowed = ", ".join(sorted(set(synonyms.values())))
        raise ValueError(f"{value!r} is not one of {allowed}")

    return BeforeValidator(normalise)


STATUS_SYNONYMS = {
    **{s: s for s in ("draft", "placed", "delivered", "cancelled", "returned")},
    "canceled": "cancelled",
    "open": "placed",
    "pending": "placed",
    "confirmed": "placed",
    "booked": "placed",
    "shipped": "delivered",
    "dispatched": "delivered",
    "completed": "delivered",
    "complete": "delivered",
    "closed": "delivered",
    "invoiced": "delivered",
    "return": "returned",
}
KIND_SYNONYMS = {
    **{k: k for k in ("note", "message", "call", "complaint")},
    "visit": "note",
    "visit note": "note",
    "memo": "note",
    "comment": "note",
    "whatsapp": "message",
    "sms": "message",
    "email": "message",
    "chat": "message",
    "msg": "message",
    "phone": "call",
    "phone call": "call",
    "call transcript": "call",
    "transcript": "call",
    "complain": "complaint",
    "issue": "complaint",
}
DIRECTION_SYNONYMS = {
    **{d: d for d in ("inbound", "outbound", "internal")},
    "in": "inbound",
    "incoming": "inbound",
    "received": "inbound",
    "out": "outbound",
    "outgoing": "outbound",
    "sent": "outbound",
    "note": "internal",
}


Text16 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=16)]
Text20 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)]
Text32 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)]
Text50 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
Text100 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Text255 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)]
Text500 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
# NUMERIC(14, 2) holds up to 999,999,999,999.99.
MAX_MONEY = Decimal("999999999999.99")
Money = Annotated[Decimal, BeforeValidator(_money), Field(ge=0, le=MAX_MONEY)]
PositiveMoney = Annotated[Decimal, BeforeValidator(_money), Field(gt=0, le=MAX_MONEY)]
Whole = Annotated[int, BeforeValidator(_whole), Field(ge=0, le=2_000_000_000)]
Quantity = Annotated[int, BeforeValidator(_whole), Field(gt=0, le=2_000_000_000)]
Fraction = Annotated[Decimal, BeforeValidator(_fraction), Field(ge=0, le=1)]
Day = Annotated[dt.date, BeforeValidator(_date)]
Moment = Annotated[dt.datetime, BeforeValidator(_datetime)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Latitude = Annotated[float, BeforeValidator(_decimal), Field(ge=-90, le=90)]
Longitude = Annotated[float, BeforeValidator(_decimal), Field(ge=-180, le=180)]
Status = Annotated[
    Literal["draft", "placed", "delivered", "cancelled", "returned"], _choice(STATUS_SYNONYMS)
]
Kind = Annotated[Literal["note", "message", "call", "complaint"], _choice(KIND_SYNONYMS)]
Direction = Annotated[Literal["inbound", "outbound", "internal"], _choice(DIRECTION_SYNONYMS)]


class Row(BaseModel):
    """Base of every row model: strings in, typed values out, unknown fields refused."""

    model_config = ConfigDict(extra="forbid")


class StoreFields(Row):
    store_code: Code = Field(min_length=1, description="the store's unique code (customer id)")
    store_name: Text255 | None = Field(None, description="the store's name")
    owner_name: Text200 | None = Field(None, description="owner or contact person")
    phone: Text32 | None = Field(None, description="phone number")
    address: Text500 | None = Field(None, description="street address")
    postal_code: Text20 | None = Field(None, description="postal code (kept in the address)")
    state: Text100 | None = Field(None, description="state (kept in the address)")
    country: Text100 | None = Field(None, description="country (kept in the address)")
    city: Text100 | None = Field(None, description="city")
    region: Text100 | None = Field(None, description="sales region")
    segment: Text50 | None = Field(None, description="kirana, chemist, supermarket, ...")
    lat: Latitude | None = Field(None, description="latitude")
    lon: Longitude | None = Field(None, description="longitude")
    credit_limit: Money | None = Field(None, description="credit limit")
    payment_terms_days: Whole | None = Field(None, description="days to pay an invoice")
    rep: Text255 | None = Field(None, description="assigned rep: a user's email or code")


class StoreRow(StoreFields):
    """A row of a stores file (the name is needed only for stores that are new)."""


class ProductFields(Row):
    sku: Code = Field(min_length=1, description="the product's unique SKU (product id)")
    product_name: Text255 | None = Field(None, description="the product's name")
    brand: Text100 | None = Field(None, description="brand")
    category: Text100 | None = Field(None, description="category")
    pack_size: Text100 | None = Field(None, description="pack size, e.g. '24 x 100 g'")
    unit: Text20 | None = Field(None, description="unit sold: case, piece, ... (default case)")


class ProductRow(ProductFields):
    """A row of a products file (the name is needed only for products that are new)."""

    price: Money | None = Field(None, description="list price per unit")
    discontinued: Flag | None = Field(None, description="1/yes: no longer sold")
    on_hand: Whole | None = Field(None, description="units in stock (inventory)")
    reorder_point: Whole | None = Field(None, description="reorder level (inventory)")
    warehouse: Code | None = Field(None, description="warehouse of the stock (default MAIN)")


class OrderHeaderFields(StoreFields):
    order_id: Text100 | None = Field(None, description="the order's id in the file")
    order_date: Day = Field(description="order date")
    status: Status | None = Field(None, description="order status (default delivered)")
    promised_date: Day | None = Field(None, description="promised / required date")
    delivered_date: Day | None = Field(None, description="delivery / shipped date")

    @model_validator(mode="after")
    def _delivery_after_order(self) -> OrderHeaderFields:
        if self.delivered_date is not None and self.delivered_date < self.order_date:
            raise ValueError(
                f"delivered_date {self.delivered_date} is before order_date {self.order_date}"
            )
        return self


class OrderLineFields(ProductFields):
    quantity: Quantity = Field(description="units ordered (whole number > 0)")
    unit_price: Money | None = Field(None, description="price per unit before discount")
    amount: Money | None = Field(
        None, description="line amount after discount (sales); the unit price is derived"
    )
    discount: Fraction | None = Field(None, description="discount fraction, 0.15 or 15%")

    @model_validator(mode="after")
    def _price_the_line(self) -> OrderLineFields:
        """Fill in whichever of unit price and amount the file does not give."""
        discount = self.discount or Decimal(0)
        if self.amount is not None:
            amount = self.amount.quantize(CENT, ROUND_HALF_UP)
            if self.unit_price is not None:
                unit_price = self.unit_price.quantize(CENT, ROUND_HALF_UP)
            elif discount < 1:
                unit_price = (amount / (self.quantity * (1 - discount))).quantize(
                    CENT, ROUND_HALF_UP
                )
            else:
                raise ValueError("a line with a 100% discount needs unit_price to be mapped")
        elif self.unit_price is not None:
            unit_price = self.unit_price.quantize(CENT, ROUND_HALF_UP)
            amount = (self.unit_price * self.quantity * (1 - discount)).quantize(
                CENT, ROUND_HALF_UP
            )
        else:
            raise ValueError("the line has neither a unit price nor an amount")
        self.unit_price = unit_price
        self.amount = amount
        self.discount = discount.quantize(DISCOUNT_STEP, ROUND_HALF_UP)
        return self


class FlatOrderRow(OrderHeaderFields, OrderLineFields):
    """One row per order line, with the order's header repeated on each."""


class OrderHeaderRow(OrderHeaderFields):
    order_id: Text100 = Field(min_length=1, description="the order's id in the file")


class OrderLineRow(OrderLineFields):
    order_id: Text100 = Field(min_length=1, description="the order's id in the file")


class PaymentRow(Row):
    invoice_number: Code = Field(min_length=1, description="invoice number")
    store_code: Code | None = Field(None, description="the store billed (needed for new invoices)")
    invoice_date: Day | None = Field(None, description="invoice date (needed for new invoices)")
    due_date: Day | None = Field(None, description="due date (default: store's payment terms)")
    invoice_amount: Money | None = Field(None, description="invoice amount (new invoices)")
    order_id: Text100 | None = Field(None, description="the invoiced order's id (optional)")
    paid_on: Day | None = Field(None, description="payment date")
    amount: PositiveMoney | None = Field(None, description="amount paid (empty: invoice only)")
    method: Text32 | None = Field(None, description="cash, UPI, cheque, ...")
    reference: Text100 | None = Field(None, description="payment reference (unique)")

    @model_validator(mode="after")
    def _consistent(self) -> PaymentRow:
        if (
            self.due_date is not None
            and self.invoice_date is not None
            and self.due_date < self.invoice_date
        ):
            raise ValueError(f"due_date {self.due_date} is before invoice_date {self.invoice_date}")
        if self.amount is not None and self.paid_on is None:
            raise ValueError("the payment has an amount but no paid_on date")
        if self.amount is not None:
            self.amount = self.amount.quantize(CENT, ROUND_HALF_UP)
        return self


class CommunicationRow(Row):
    store_code: Code = Field(min_length=1, description="the store it is about")
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] = Field(
        description="what was said or written"
    )
    occurred_at: Moment = Field(description="when (date or date and time)")
    kind: Kind | None = Field(None, description="note, message, call or complaint (default note)")
    channel: Text16 | None = Field(None, description="visit, whatsapp, phone, ... (default import)")
    direction: Direction | None = Field(
        None, description="inbound, outbound or internal (default: internal for notes)"
    )
    author: Text200 | None = Field(
        None, description="who wrote or said it (a user's email links it)"
    )
    external_id: Text100 | None = Field(
        None, description="the message's unique id (default: derived from store, time and text)"
    )
    order_id: Text100 | None = Field(None, description="the order it is about (optional)")


ATTRIBUTE_PREFIX = "attr."

ENTITY_MODELS: dict[str, tuple[type[Row], ...]] = {
    "stores": (StoreRow,),
    "products": (ProductRow,),
    "orders": (OrderHeaderFields, OrderLineFields),
    "payments": (PaymentRow,),
    "communications": (CommunicationRow,),
}
ENTITIES = tuple(ENTITY_MODELS)
# Entities whose `attr.NAME=column` mappings go into products.attributes.
ATTRIBUTE_ENTITIES = ("products", "orders")


def entity_fields(entity: str) -> dict[str, tuple[bool, str]]:
    """field name -> (required, description) for an entity, in a stable order."""
    fields: dict[str, tuple[bool, str]] = {}
    for model in ENTITY_MODELS[entity]:
        for name, info in model.model_fields.items():
            fields[name] = (info.is_required(), info.description or "")
    return fields


def describe_fields(entity: str) -> str:
    """A one-line list of an entity's fields for help texts (required ones marked with *)."""
    parts = [
        f"{name}*" if required else name for name, (required, _) in entity_fields(entity).items()
    ]
    extra = ", attr.NAME (product attribute)" if entity in ATTRIBUTE_ENTITIES else ""
    return ", ".join(parts) + extra


def error_reason(error: ValidationError, columns: dict[str, str]) -> str:
    """One readable reason from a row's validation errors, naming the file's columns."""
    parts: list[str] = []
    for item in error.errors(include_url=False):
        loc = item.get("loc", ())
        field = str(loc[0]) if loc else ""
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        message = message.replace("Input should be", "must be").replace(
            "String should have", "must have"
        )
        kind = item.get("type", "")
        if kind == "missing":
            message = "is empty" if field in columns else "is required"
        given = item.get("input")
        if field and kind not in ("value_error", "missing") and isinstance(given, str | int):
            message = f"{message} (got {given!r})"
        if field:
            label = f"{columns[field]}" if field in columns else field
            parts.append(f"{label}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)
