"""Splitting long replies, and the background turn runner."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from assistant.messages import InboundMessage, Reply
from channels.base import OutboundChannel, TurnRunner, split_text


def test_split_keeps_every_character_and_respects_the_limit() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 150 for i in range(12))
    parts = split_text(text, 4096)
    assert all(len(p) <= 4096 for p in parts) and len(parts) > 1
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )


def test_split_a_word_longer_than_the_limit() -> None:
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    with pytest.raises(ValueError):
        split_text("x", 0)


class Recorder(OutboundChannel):
    name = "sms"
    max_length = 50

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send_text(self, recipient: str, text: str) -> None:
        self.sent.append((recipient, text))


@dataclass
class Result:
    reply: Reply
    duplicate: bool = False


def test_runner_sends_replies_and_skips_duplicates() -> None:
    seen: set[str] = set()

    def handle(message: InboundMessage) -> Result:
        duplicate = message.message_id in seen
        seen.add(message.message_id or "")
        return Result(Reply(text="Sharma owes a lot. " * 5), duplicate)

    channel = Recorder()
    runner = TurnRunner(handle, {"sms": channel})

    async def scenario() -> None:
        for _ in range(3):
            await runner.submit(
                InboundMessage(channel="sms", sender="+91999", text="dues?", message_id="SM1")
            )
        await runner.drain()

    asyncio.run(scenario())
    assert {r for r, _ in channel.sent} == {"+91999"}
    assert all(len(t) <= 50 for _, t in channel.sent)
    assert " ".join(t for _, t in channel.sent).count("Sharma") == 5
