"""Hot-path SQL rendered once per dialect and prefix, for the DB-API driver directly.

Statements are written once as templates: ``{nonces}`` and the like stand for the tables of
``schema.py`` (named from those ``Table`` objects, quoted by the dialect's identifier
preparer) and ``?`` for a positional parameter, which becomes ``%s`` for psycopg and
PyMySQL. Only those validated names are ever interpolated; values always travel as
parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Dialect

from .schema import Tables


class Renderer:
    """Templates to SQL text in one dialect's syntax, placeholders and quoting."""

    def __init__(self, dialect: Dialect, t: Tables) -> None:
        self.dialect = dialect.name
        # PyMySQL and psycopg accept %s whatever their declared paramstyle. No template
        # contains a literal % (these drivers would need it doubled) or a literal ?.
        self.mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._quote = dialect.identifier_preparer.quote
        self._tables = {
            "associations": self._quote(t.associations.name),
            "nonces": self._quote(t.nonces.name),
            "cache": self._quote(t.cache.name),
            "queue": self._quote(t.queue.name),
        }

    def __call__(self, template: str, **clauses: str) -> str:
        """``template`` with its tables named, placeholders in the driver's style, and
        ``{clause}`` fields (fixed SQL keywords chosen by the caller) filled in."""
        return template.format(**self._tables, **clauses).replace("?", self.mark)

    def upsert(self, table: str, columns: Sequence[str], keys: Sequence[str]) -> str:
        """INSERT a row of ``columns`` into ``{table}``, or UPDATE its other columns where
        ``keys`` already exist: one statement, atomic on every dialect."""
        names = ", ".join(self._quote(c) for c in columns)
        marks = ", ".join("?" * len(columns))
        others = [self._quote(c) for c in columns if c not in keys]
        if self.dialect == "mysql":
            # VALUES() works on MariaDB and on every MySQL (8.0.20+ merely deprecates it).
            conflict = "ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in others)
        else:
            conflict = (
                f"ON CONFLICT ({', '.join(self._quote(k) for k in keys)}) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in others)
            )
        # Only quoted identifiers and placeholders are joined here, never a value.
        return self(f"INSERT INTO {{{table}}} ({names}) VALUES ({marks}) {conflict}")  # noqa: S608
