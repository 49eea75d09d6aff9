"""The gunicorn worker class: ``uvicorn_worker.UvicornWorker`` without the ``Server``
header (it names the server software to anyone scanning for a vulnerable version)."""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker


class StampedeWorker(UvicornWorker):  # type: ignore[misc]  # untyped package
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "server_header": False,
    }
