"""Channel-neutral messages: what comes in (`InboundMessage`) and what goes out (`Reply`).

Channels parse their provider's format into an `InboundMessage` and render a `Reply` in their
medium; a channel that cannot show a table, chart or buttons falls back to `Reply.as_text()`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr


class InboundMessage(BaseModel):
    """One message from a person, as every channel delivers it."""

    channel: Literal["web", "telegram", "whatsapp", "sms", "voice", "cli", "api"]
    sender: str = Field(description="Phone number, Telegram id, or user email, per channel")
    text: str = Field(max_length=4000)
    message_id: str | None = Field(
        default=None, description="The provider's id, used to ignore redeliveries"
    )
    user_id: int | None = Field(default=None, description="Set when the channel authenticated")
    button_payload: str | None = Field(default=None, description="Payload of a pressed button")
    received_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    # Set by the webhook turn runner (never by a sender): the turn's audit row is written with
    # the reply's delivery state "sending" (see `channels.delivery`).
    _delivery_tracked: bool = PrivateAttr(default=False)

    @property
    def delivery_tracked(self) -> bool:
        """Whether this turn's reply delivery is tracked in its audit row."""
        return self._delivery_tracked

    def with_delivery_tracked(self) -> InboundMessage:
        """A copy whose turn records its reply as being sent, with the audit row."""
        copy = self.model_copy()
        copy._delivery_tracked = True
        return copy


class Button(BaseModel):
    """A quick reply; `payload` is sent back as the next message's `button_payload`."""

    label: str
    payload: str


class Table(BaseModel):
    """Rows for a table; every cell is a value taken from a tool result."""

    columns: list[str]
    rows: list[list[Any]]
    title: str | None = None


class ChartSpec(BaseModel):
    """A simple chart: one or more series over shared labels."""

    kind: Literal["bar", "line"] = "bar"
    title: str
    labels: list[str]
    series: dict[str, list[float]]
    unit: str | None = None


class Citation(BaseModel):
    """A quoted communication the answer relies on."""

    communication_id: int
    store: str | None = None
    date: str | None = None
    author: str | None = None
    channel: str | None = None
    snippet: str | None = None


class Reply(BaseModel):
    """The assistant's answer for one turn, before any channel renders it."""

    text: str
    table: Table | None = None
    chart: ChartSpec | None = None
    buttons: list[Button] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    intent: str | None = None
    notice: str | None = Field(
        default=None, description="A remark about how the answer was produced"
    )

    def as_text(self, *, max_rows: int = 10) -> str:
        """Plain-text rendering for channels without rich elements."""
        parts = [self.text]
        if self.table and self.table.rows:
            for row in self.table.rows[:max_rows]:
                parts.append(" - " + ", ".join(str(cell) for cell in row))
            if len(self.table.rows) > max_rows:
                parts.append(f" ... and {len(self.table.rows) - max_rows} more")
        if self.buttons:
            parts.append("Reply " + " or ".join(f"'{b.label}'" for b in self.buttons) + ".")
        if self.citations:
            parts.append(
                "Sources: "
                + "; ".join(
                    f"#{c.communication_id} ({c.store or ''} {c.date or ''})".replace(" )", ")")
                    for c in self.citations
                )
            )
        if self.notice:
            parts.append(self.notice)
        return "\n".join(parts)
