"""The docs stay true: links resolve inside the repository, the generated configuration
page is current, the commands they name exist, and the ones that are safe to run work."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from devstack.release import configdoc
from tests.support.endpoints import TABLES, DatabaseEndpoint, RedisEndpoint
from tests.support.gunicorn import run_gunicorn

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", page.read_text())
    headings = re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        missing_file = not resolved.is_relative_to(REPO) or not resolved.exists()
        if missing_file or (
            anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved)
        ):
            broken.append(target)
    assert not broken, f"{_page_id(page)}: links that do not resolve: {broken}"


def test_nothing_points_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.md", "*.py", "*.sh", "*.yaml", "Makefile", "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    this = Path(__file__).relative_to(REPO).as_posix()
    outside = [
        name
        for name in tracked
        if name != this and re.search(r"\.\./shared|DESIGN\.md", (REPO / name).read_text())
    ]
    assert not outside, f"references to files that no clone has: {outside}"


def test_configuration_page_is_generated_from_the_settings() -> None:
    assert configdoc.CONFIGURATION_DOC.read_text() == configdoc.render(), (
        "docs/configuration.md is stale: run `make docs`"
    )


def test_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines < 150, f"README.md has {lines} lines: details belong in docs/"


def test_every_make_target_named_in_the_docs_exists() -> None:
    targets = set(re.findall(r"^([a-z0-9-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    named = {
        (page.name, target)
        for page in PAGES
        for target in re.findall(r"(?:`|^)make ([a-z][a-z0-9-]*)", page.read_text(), re.MULTILINE)
    }
    missing = sorted((page, target) for page, target in named if target not in targets)
    assert not missing, f"make targets the docs name but the Makefile lacks: {missing}"


def test_every_python_module_named_in_the_docs_exists() -> None:
    named = {
        module for page in PAGES for module in re.findall(r"python -m ([\w.]+)", page.read_text())
    }
    assert named
    missing = sorted(m for m in named if importlib.util.find_spec(m) is None)
    assert not missing, f"modules the docs run but the code lacks: {missing}"


def _local_stack_commands() -> list[str]:
    """Commands the docs show for the local stack's CLIs (`STAMPEDE_PROFILE=dev …`)."""
    return sorted(
        {
            line.strip()
            for page in PAGES
            for language, block in _code_blocks(page.read_text())
            if language == "sh"
            for line in block.splitlines()
            if line.startswith("STAMPEDE_PROFILE=dev .venv/bin/python -m services.")
        }
    )


@pytest.mark.parametrize("command", _local_stack_commands())
def test_local_stack_commands_run_as_written(
    command: str, migrated_postgres: DatabaseEndpoint, pgbouncer_server: DatabaseEndpoint
) -> None:
    # As written, but against the test database instead of the local stack's ports: the
    # dev profile only fills in what the environment leaves unset.
    env = {
        **os.environ,
        "STAMPEDE_DB__URL": pgbouncer_server.url,
        "STAMPEDE_DB__MIGRATION_URL": migrated_postgres.url,
    }
    result = subprocess.run(
        ["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def _readme_tour() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## A short tour") :]
    return next(block for language, block in _code_blocks(section) if language == "sh")


@pytest.mark.slow
def test_the_readme_tour_runs_against_demo_data(
    tmp_path: Path,
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
    api_token: str,
) -> None:
    """The tour's curl commands, as written, against a real server on seeded demo data:
    every request succeeds, and the order costs what the tour says it does. The key the
    tour reads from the local stack is one made for this test's database."""
    seed_env = {
        **os.environ,
        "STAMPEDE_PROFILE": "prod",
        "STAMPEDE_DB__URL": pgbouncer_server.url,
        "STAMPEDE_DB__MIGRATION_URL": migrated_postgres.url,
        "STAMPEDE_REDIS__CACHE_URL": cache_redis_server.url,
    }
    seeded = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.seed",
            *("--users", "20", "--products", "40"),
            "--orders",
            "10",
        ],
        cwd=REPO,
        env=seed_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stderr
    redis.Redis.from_url(cache_redis_server.url).flushdb()
    tour = _readme_tour()
    try:
        with run_gunicorn(
            tmp_path, database_url=pgbouncer_server.url, cache_url=cache_redis_server.url
        ) as api:
            assert "$(cat .stack/dev-api-key)" in tour
            script = tour.replace("http://127.0.0.1:8000", api.base_url).replace(
                "$(cat .stack/dev-api-key)", api_token
            )
            # Every request must succeed (curl exits non-zero on a 4xx/5xx).
            strict_curl = 'curl() { command curl --fail-with-body -sS "$@"; echo; }\n'
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", strict_curl + script],
                capture_output=True,
                text=True,
                timeout=60,
            )
    finally:
        with psycopg.connect(migrated_postgres.dsn, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    assert result.returncode == 0, result.stdout + result.stderr
    promised = re.search(r'"total_cents":(\d+)', tour)
    assert promised is not None
    assert f'"total_cents":{promised.group(1)}' in result.stdout, result.stdout
