"""Run Alembic programmatically, straight against Postgres (never through PgBouncer).

DDL and Alembic's version bookkeeping want a session-level connection; the migration URL
(``STAMPEDE_DB__MIGRATION_URL``) points at Postgres itself. In Kubernetes this runs as the
pre-install/pre-upgrade Job, before new api pods start.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from services.core.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in the password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> None:
    command.current(alembic_config(database_url), verbose=True)


def default_url() -> str:
    return Settings().migration_database_url
