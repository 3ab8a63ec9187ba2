"""The `mangalm` command.

Every command reads the one Settings; a bad setting or an unreachable database ends the
command with a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from tools.db import DatabaseError, describe_database, get_engine
from tools.settings import SettingsError, get_settings

app = typer.Typer(
    name="mangalm",
    help="Mangalm Sales Assistant: a conversational assistant for distributors' sales teams.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class CommandError(RuntimeError):
    """An expected failure of a command; printed as one line, exit code 2."""


def friendly(func: F) -> F:
    """Turn expected errors into one clear line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (SettingsError, DatabaseError, CommandError) as error:
            err.print(f"[bold red]error:[/] {error}", highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Configure logging once for every command."""
    try:
        level = "DEBUG" if verbose else get_settings().log_level
    except SettingsError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(code=2) from None
    logging.basicConfig(
        level=logging.WARNING if level == "INFO" and not verbose else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _announce_database() -> None:
    err.print(describe_database(), style="dim", highlight=False)


@app.command()
@friendly
def init() -> None:
    """Create or migrate the database schema to the newest version."""
    from tools.migrate import current_revision, head_revision, upgrade

    _announce_database()
    engine = get_engine()
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    if before == after:
        console.print(f"Database schema is current (revision {after}).")
    else:
        console.print(f"Database schema migrated from {before or 'empty'} to {after}.")
    assert after == head_revision()


@db_app.command("info")
@friendly
def db_info() -> None:
    """Say which database is in use and its schema revision."""
    from tools.migrate import current_revision, head_revision

    console.print(describe_database(), highlight=False)
    console.print(f"schema revision: {current_revision(get_engine())} (newest {head_revision()})")


@db_app.command("downgrade")
@friendly
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for empty.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Migrate the schema down (data in dropped tables is lost)."""
    from tools.migrate import downgrade

    _announce_database()
    if not yes and not typer.confirm(f"Downgrade the schema to {revision}?"):
        raise typer.Exit(code=1)
    downgrade(get_engine(), revision)
    console.print(f"Database schema downgraded to {revision}.")


def _existing_file(path: Path) -> Path:
    if not path.exists():
        raise CommandError(f"{path}: no such file")
    if not path.is_file():
        raise CommandError(f"{path}: not a file")
    return path


if __name__ == "__main__":  # pragma: no cover
    app()
