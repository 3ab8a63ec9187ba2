"""Locust users for `mangalm bench e2e` (see `api.e2e_bench`); run by that command only.

`MANGALM_E2E_PLAN` names the plan (people with tokens and stores, the questions);
`MANGALM_E2E_MODE` is `chat` (the assistant's `POST /api/chat`) or `sql` (the direct SQL
endpoints). Each simulated person takes the next person of the plan and asks its questions in
turn about that person's stores; `MANGALM_E2E_THINK` is the mean pause between questions in
seconds (0: none, the server's ceiling).
"""

from __future__ import annotations

import itertools
import json
import os
import random
from typing import Any

from locust import HttpUser, between, constant, task

PLAN: dict[str, Any] = json.loads(open(os.environ["MANGALM_E2E_PLAN"]).read())  # noqa: SIM115
MODE = os.environ.get("MANGALM_E2E_MODE", "chat")
THINK = float(os.environ.get("MANGALM_E2E_THINK", "0"))
_people = itertools.cycle(PLAN["people"])


class Person(HttpUser):
    """A rep or manager asking the common questions, one after another."""

    # Without think time each person asks again as soon as answered (the server's ceiling);
    # with it, a pause of 0.5-1.5 x THINK seconds between questions, as people type.
    wait_time = between(0.5 * THINK, 1.5 * THINK) if THINK > 0 else constant(0)

    def on_start(self) -> None:
        self.person = next(_people)
        self.random = random.Random(self.person["email"])
        self.questions = itertools.cycle(range(len(PLAN["questions"])))

    @task
    def ask(self) -> None:
        index = next(self.questions)
        question, endpoint = PLAN["questions"][index]
        store = self.random.choice(self.person["stores"])
        name = f"q{index + 1}"
        if MODE == "chat":
            self.client.post(
                "/api/chat",
                json={"text": question.format(store=store["name"])},
                headers={"Authorization": f"Bearer {self.person['token']}"},
                name=name,
            )
        else:
            self.client.get(
                endpoint.format(store_id=store["id"], rep_id=store["rep_id"]), name=name
            )
