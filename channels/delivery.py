"""Whether a webhook turn's reply reached the provider, so that it is sent once.

A turn's writes (an order, a note) commit together with its audit row, before the reply is
sent. If the send fails, or the process dies before it finishes, the provider's redelivery of
the same message is a duplicate turn: nothing is done again, and its stored reply is sent then,
once. A redelivery of a message whose reply went out sends nothing.

The state is kept with the turn's structured reply (`conversation_turns.reply`, key
`delivery`: `{"state": "sending" | "sent" | "failed", "at": time}`). "sending" is written with
the audit row itself, in the turn's transaction (`assistant.turn.write_turn` for a message
`with_delivery_tracked`); the turn runner records "sent" or "failed" after the send, or
"sending" again when a redelivery resends (`claim_resend`). A send that never finished (a
crashed process) counts as failed once it is older than `SENDING_LEASE_SECONDS`.

"sent" is recorded for every reply that went out while the previous record was being written
in one statement (`record_sent`): under load the replies of several turns share a round trip
and a commit; alone, a reply's is written at once, as before. Both run on the driver's cursor
(`tools.db.DirectStatement`): every webhook message records one.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine, text

from assistant.messages import InboundMessage
from tools.db import DirectStatement

log = logging.getLogger(__name__)

# Longer than a send may take with its retries (a 429 waits up to 30 s, three attempts).
SENDING_LEASE_SECONDS = 300

_MARK = DirectStatement(
    text(
        """
    UPDATE conversation_turns
       SET reply = coalesce(reply, '{}'::jsonb)
                   || jsonb_build_object('delivery',
                                         jsonb_build_object('state', CAST(:state AS text),
                                                            'at', now()))
     WHERE channel = :channel AND message_id = :message_id
    """
    )
)

_MARK_SENT_MANY = DirectStatement(
    text(
        """
    UPDATE conversation_turns AS turn
       SET reply = coalesce(turn.reply, '{}'::jsonb)
                   || jsonb_build_object('delivery',
                                         jsonb_build_object('state', 'sent', 'at', now()))
      FROM unnest(CAST(:channels AS text[]), CAST(:message_ids AS text[]))
           AS sent (channel, message_id)
     WHERE turn.channel = sent.channel AND turn.message_id = sent.message_id
    """
    )
)

_CLAIM_RESEND = text(
    """
    UPDATE conversation_turns
       SET reply = reply || jsonb_build_object('delivery',
                                               jsonb_build_object('state', 'sending',
                                                                  'at', now()))
     WHERE channel = :channel AND message_id = :message_id
       AND answer IS NOT NULL
       AND (reply -> 'delivery' ->> 'state' = 'failed'
            OR (reply -> 'delivery' ->> 'state' = 'sending'
                AND CAST(reply -> 'delivery' ->> 'at' AS timestamptz)
                    < now() - make_interval(secs => :lease)))
    RETURNING id
    """
)


class Deliveries:
    """Records the delivery of webhook replies in the audit rows of `engine`'s database."""

    def __init__(self, engine: Engine, *, lease_seconds: float = SENDING_LEASE_SECONDS) -> None:
        self.engine = engine
        self.lease_seconds = lease_seconds
        # Replies sent while "sent" was being recorded for earlier ones (see `record_sent`).
        self._waiting: list[tuple[InboundMessage, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    def _mark(self, message: InboundMessage, state: str) -> None:
        # One statement: autocommit spares the BEGIN and COMMIT round trips.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            _MARK.run(
                conn,
                {"state": state, "channel": message.channel, "message_id": message.message_id},
            )

    def sent(self, message: InboundMessage) -> None:
        """The provider accepted the whole reply."""
        self._mark(message, "sent")

    def sent_many(self, messages: list[InboundMessage]) -> None:
        """The provider accepted these replies (one statement)."""
        if len(messages) == 1:
            self.sent(messages[0])
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            _MARK_SENT_MANY.run(
                conn,
                {
                    "channels": [m.channel for m in messages],
                    "message_ids": [m.message_id for m in messages],
                },
            )

    async def record_sent(self, message: InboundMessage) -> bool:
        """Record that `message`'s reply was sent, from the event loop; True once recorded,
        False when it could not be (logged).

        At most one statement is being written at a time: replies sent meanwhile wait for it
        and are then recorded together, in one statement.
        """
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            # (A writer of another, finished event loop answers nobody here.)
            self._waiting = [(m, w) for m, w in self._waiting if w.get_loop() is loop]
            self._writer = None
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((message, waiter))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_sent())
        return await waiter

    async def _write_sent(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                recorded = False
                try:
                    await asyncio.to_thread(self.sent_many, [m for m, _ in batch])
                    recorded = True
                except Exception:
                    log.warning(
                        "could not record that the replies of %d messages were sent",
                        len(batch),
                        exc_info=True,
                    )
                finally:
                    _answer(batch, recorded)
        finally:
            # Only when the writer itself was cancelled is anyone left waiting.
            waiting, self._waiting = self._waiting, []
            _answer(waiting, False)

    def failed(self, message: InboundMessage) -> None:
        """The send failed: a redelivery of the message sends the reply."""
        self._mark(message, "failed")

    def claim_resend(self, message: InboundMessage) -> bool:
        """For a redelivered message: True (and marked as sending) when the earlier turn's
        reply must be sent now because its send failed or never finished."""
        with self.engine.begin() as conn:
            row = conn.execute(
                _CLAIM_RESEND,
                {
                    "channel": message.channel,
                    "message_id": message.message_id,
                    "lease": self.lease_seconds,
                },
            ).first()
        return row is not None


def _answer(waiting: list[tuple[InboundMessage, asyncio.Future[bool]]], recorded: bool) -> None:
    for _, waiter in waiting:
        if not waiter.done():
            waiter.set_result(recorded)
