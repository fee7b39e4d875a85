"""`openid-plugins cleanup`/`associate` on SQL URLs create nothing they were not asked to:
no tables (they point at `openid-plugins db upgrade`), no SQLite file, no directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import table_names

from openid_plugins.cli import main


def test_cleanup_without_the_schema_says_to_upgrade_and_creates_no_tables(
    url: str, prefix: str, dialect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if dialect == "sqlite":
        sqlite3.connect(tmp_path / "openid.db").close()  # the database exists, empty
    assert main(["cleanup", "--store", url]) == 1
    err = capsys.readouterr().err
    assert f"has no tables for prefix {prefix!r}" in err
    assert "run: openid-plugins db upgrade" in err
    assert table_names(url, prefix) == []


@pytest.mark.parametrize("command", [["cleanup"], ["associate", "--once", "--queue", "URL"]])
def test_a_mistyped_sqlite_path_is_an_error_not_a_new_database(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "no-such-dir" / "openid.db"
    url = f"sqlite:///{typo}"
    argv = [url if arg == "URL" else arg for arg in command]
    assert main([*argv, "--store", url]) == 1
    assert f"there is no SQLite database at {typo}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
