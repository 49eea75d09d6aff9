"""The multiprocess metrics directory is reset in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.core.telemetry.prometheus import MULTIPROC_ENV, prepare_multiprocess_dir


@pytest.fixture(autouse=True)
def no_multiprocess_variable_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_multiprocess_dir sets the variable in os.environ; without a recorded value to
    restore, it would outlive these tests and turn prometheus_client's multiprocess mode
    on for every later test in this pytest process."""
    monkeypatch.setenv(MULTIPROC_ENV, "unset-after-the-test")
    monkeypatch.delenv(MULTIPROC_ENV)


def test_prepare_empties_the_directory_but_keeps_it(tmp_path: Path) -> None:
    # In the pod it is an emptyDir mount point on a read-only root: it cannot be removed.
    directory = tmp_path / "metrics"
    (directory / "nested").mkdir(parents=True)
    (directory / "counter_1.db").write_bytes(b"stale")
    (directory / "nested" / "gauge_2.db").write_bytes(b"stale")
    handle = os.open(directory, os.O_RDONLY)
    try:
        prepare_multiprocess_dir(str(directory))
        # Still the same directory: a removed one would have no links left.
        assert os.fstat(handle).st_nlink > 0
    finally:
        os.close(handle)
    assert list(directory.iterdir()) == []
    assert os.environ[MULTIPROC_ENV] == str(directory)


def test_prepare_creates_a_missing_directory(tmp_path: Path) -> None:
    prepare_multiprocess_dir(str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir()
