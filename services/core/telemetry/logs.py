"""JSON logs, one object a line, carrying the current request id.

A small stdlib formatter rather than a logging framework: the stack only needs a stable
JSON shape that log collectors parse, plus the request id from a contextvar (set by the
api's request-context middleware, and by the worker around each task).
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# The api's access log (written by services.core.telemetry.access_log, in this module's JSON shape).
ACCESS_LOGGER = "stampede.access"

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            # strftime on a struct_time: a third of datetime.isoformat's cost, per log line.
            "ts": f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))}"
            f".{int(record.msecs):03d}+00:00",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(level: str, json_format: bool) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the app, gunicorn and uvicorn alike."""
    formatter = (
        {"()": f"{__name__}.JsonFormatter"}
        if json_format
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # Our access log replaces uvicorn's: it knows the route and the request id.
            "uvicorn.access": {"handlers": [], "propagate": False},
            # uvicorn-worker gives uvicorn.error gunicorn's handlers and turns propagation
            # off; under our config those are none, so its lines reached only Python's
            # last-resort handler: plain text, tracebacks over many lines, INFO dropped.
            # Everything goes to the root's JSON handler instead.
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"handlers": [], "propagate": False},
            # billiard (Celery's process pool) logs "Process ... exited with signal 9" here
            # and turns propagation off: without a handler of its own the line reached
            # Python's last-resort handler as plain text.
            "multiprocessing": {"level": "WARNING", "handlers": ["default"], "propagate": False},
        },
    }
