"""Scratch PostgreSQL databases for the benchmarks: each run creates its own, named
``prep_es_bench_<token>_<purpose>``, and drops them at the end, also on failure."""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from prep_es.store.settings import PostgresLocation, parse_database_url

URL_VARIABLE: Final = "PREP_ES_BENCH_DATABASE_URL"
SERVER_URL_DEFAULT: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX: Final = "prep_es_bench_"


@dataclass
class ScratchDatabases:
    server_url: str
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    created: list[str] = field(default_factory=list)

    def create(self, purpose: str) -> str:
        """A new empty database; its URL."""
        name = f"{DATABASE_PREFIX}{self.token}_{purpose}"
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )
        self.created.append(name)
        return urlunsplit(urlsplit(self.server_url)._replace(path=f"/{name}"))

    def drop_all(self) -> None:
        while self.created:
            name = self.created.pop()
            assert name.startswith(DATABASE_PREFIX), name
            try:
                with psycopg.connect(self.server_url, autocommit=True) as connection:
                    connection.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
            except psycopg.Error as error:
                print(f"warning: could not drop database {name}: {error}", file=sys.stderr)


def postgres_location(url: str) -> PostgresLocation:
    location = parse_database_url(url)
    if not isinstance(location, PostgresLocation):
        raise SystemExit(f"{URL_VARIABLE} must be a postgresql:// URL")
    return location
