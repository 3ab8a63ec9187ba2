"""An app factory that fails, for `api.serve`'s tests of a worker that cannot start."""

from __future__ import annotations


def create_app() -> None:
    raise RuntimeError("this app cannot be built")
