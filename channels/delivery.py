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
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, text

from assistant.messages import InboundMessage

log = logging.getLogger(__name__)

# Longer than a send may take with its retries (a 429 waits up to 30 s, three attempts).
SENDING_LEASE_SECONDS = 300

_MARK = text(
    """
    UPDATE conversation_turns
       SET reply = coalesce(reply, '{}'::jsonb)
                   || jsonb_build_object('delivery',
                                         jsonb_build_object('state', CAST(:state AS text),
                                                            'at', now()))
     WHERE channel = :channel AND message_id = :message_id
    """
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

    def _mark(self, message: InboundMessage, state: str) -> None:
        # One statement: autocommit spares the BEGIN and COMMIT round trips.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(
                _MARK,
                {"state": state, "channel": message.channel, "message_id": message.message_id},
            )

    def sent(self, message: InboundMessage) -> None:
        """The provider accepted the whole reply."""
        self._mark(message, "sent")

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
