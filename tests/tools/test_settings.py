"""Settings: bad values fail at start-up with a message naming the setting."""

from __future__ import annotations

import pytest

from tools.settings import DEFAULT_SECRET, SettingsError, load_settings


def test_database_url_is_normalised_to_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example:5432/sales")
    assert load_settings().database_url == "postgresql+psycopg://u:p@db.example:5432/sales"


def test_non_postgres_database_url_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.db")
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "localhost:6379"),
        ("CHROMA_URL", "chroma:8000"),
        ("LLM_PROVIDER", "gpt"),
        ("EMBEDDINGS", "word2vec"),
        ("DIGEST_TIME", "25:00"),
        ("ACCESS_TOKEN_MINUTES", "-5"),
    ],
)
def test_bad_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in str(info.value)


def test_production_refuses_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", DEFAULT_SECRET)
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings()
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    assert load_settings().environment == "production"


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("REDIS_URL=redis://127.0.0.1:6379/3\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().redis_url == "redis://127.0.0.1:6379/3"
