"""A chat request needs one database connection at a time: authentication gives its connection
back before the turn takes one, so many concurrent requests on a small pool all get answers
instead of timing out waiting for each other's connections."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from api.auth import create_access_token
from api.main import create_app
from tests.channels.twilio_support import build_shop
from tools.db import make_engine
from tools.settings import load_settings

SECRET = "pool-test-secret-key-that-is-long-enough-0123456"


def test_concurrent_chat_turns_share_a_small_pool(create_database: Callable[..., str]) -> None:
    url = create_database(migrate=True)
    setup = make_engine(url)
    shop = build_shop(setup)
    setup.dispose()
    # Two connections, none extra, a short wait: a request holding one connection while
    # waiting for a second would time out here.
    engine = make_engine(url, pool_size=2, max_overflow=0, pool_timeout=3)
    settings = load_settings(
        database_url=url,
        secret_key=SECRET,
        environment="test",
        rate_limit_per_user="1000/minute",
    )
    try:
        with TestClient(create_app(settings, engine=engine)) as client:
            headers = {"Authorization": f"Bearer {create_access_token(shop.rep, settings).token}"}

            def ask(i: int) -> int:
                response = client.post(
                    "/api/chat",
                    json={
                        "text": f"how much does {shop.sharma.name} owe?",
                        "message_id": uuid.uuid4().hex,
                    },
                    headers=headers,
                )
                return response.status_code

            with ThreadPoolExecutor(max_workers=12) as pool:
                codes = list(pool.map(ask, range(24)))
        assert codes == [200] * 24
    finally:
        engine.dispose()
