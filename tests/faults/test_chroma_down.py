"""The Chroma server is unreachable: questions about what stores said say that the history is
unavailable; every other question is answered as usual, in the same conversation.

The app runs with `CHROMA_URL` at a loopback port nobody listens on, and a store with a
logged complaint, so the history question would have something to find.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.auth import create_access_token
from api.main import create_app
from retrieval.chroma import UNAVAILABLE, forget_clients
from tests.channels.support import free_port
from tests.channels.twilio_support import Shop, build_shop
from tests.factories import make_invoice
from tools.db import make_engine
from tools.models import Communication
from tools.settings import get_settings, load_settings

SECRET = "fault-tests-secret-key-that-is-long-enough-0123"


@pytest.fixture(scope="module")
def shop_db(create_database: Callable[..., str]) -> Iterator[tuple[str, Engine, Shop]]:
    url = create_database(migrate=True)
    engine = make_engine(url)
    shop = build_shop(engine)
    with Session(engine) as session:
        make_invoice(
            session,
            session.merge(shop.sharma),
            "1840",
            invoice_date=dt.date.today() - dt.timedelta(days=45),
        )
        session.add(
            Communication(
                store_id=shop.sharma.id,
                channel="whatsapp",
                direction="inbound",
                kind="complaint",
                text="The last Parle-G cartons arrived torn and two were wet.",
                occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
            )
        )
        session.commit()
    yield url, engine, shop
    engine.dispose()


@pytest.fixture()
def dead_chroma(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"http://127.0.0.1:{free_port()}"
    # The history tools read the process settings, like everything below the API.
    monkeypatch.setenv("CHROMA_URL", url)
    get_settings.cache_clear()
    forget_clients()
    yield url
    forget_clients()


def _chat(client: TestClient, headers: dict[str, str], text: str) -> Any:
    response = client.post(
        "/api/chat", json={"text": text, "message_id": uuid.uuid4().hex}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_history_questions_say_history_is_unavailable_and_others_are_answered(
    shop_db: tuple[str, Engine, Shop], dead_chroma: str
) -> None:
    url, _engine, shop = shop_db
    settings = load_settings(
        database_url=url, secret_key=SECRET, environment="test", chroma_url=dead_chroma
    )
    with TestClient(create_app(settings)) as client:
        token = create_access_token(shop.rep, settings).token
        headers = {"Authorization": f"Bearer {token}"}

        history = _chat(client, headers, "what did Sharma General Store complain about?")
        assert history["intent"] == "search_history"
        assert UNAVAILABLE in history["answer"].lower()
        assert "still work" in history["answer"]
        [call] = history["tool_calls"]
        assert call["name"] == "search_communications"
        assert history["citations"] == []

        owed = _chat(client, headers, "how much does Sharma General Store owe?")
        assert owed["intent"] not in ("search_history", "unavailable")
        assert "unavailable" not in owed["answer"].lower()
        assert "Sharma General Store" in owed["answer"]
        assert "1,840" in owed["answer"] or "1840" in owed["answer"]
        assert all(c.get("error") is None for c in owed["tool_calls"])
