"""``docs/configuration.md``, generated from the ``Settings`` class, never hand-edited.

Every field of every settings group becomes one row: its environment variable, its
default and its ``Field(description=...)``; each group's docstring introduces its table.
``make docs`` (``python -m devstack.release.configdoc``) rewrites the page; a test fails
when it is stale.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from services.core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION_DOC = REPO_ROOT / "docs" / "configuration.md"

_PREFIX = Settings.model_config.get("env_prefix", "")
_DELIMITER = Settings.model_config.get("env_nested_delimiter", "__")

_INTRO = f"""\
# Configuration

<!-- Generated from services/core/settings.py by `make docs`; a test keeps it current. -->

Every process (api, worker, relay, migrations) reads one settings object,
`services/core/settings.py`, from environment variables: the prefix `{_PREFIX}`, then the
group and the field joined by `{_DELIMITER}` (`{_PREFIX}DB{_DELIMITER}POOL_SIZE=10`).
Nothing else in the code reads the environment. Outside the `dev` profile the secrets
(database URL, cache Redis URL; broker URL and SMTP host for the worker) have no default,
and a process refuses to start without them. Settings also refuse worker timings that
could deliver a live task twice (see [delivery](delivery.md)).
"""


def _default(field: FieldInfo) -> str:
    value: Any = field.default
    if value is PydanticUndefined or value is None:
        return "—"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _group_rows(name: str, model: type[BaseModel]) -> list[str]:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field_name, field in model.model_fields.items():
        variable = f"{_PREFIX}{name}{_DELIMITER}{field_name}".upper()
        rows.append(f"| `{variable}` | {_default(field)} | {_cell(field.description or '')} |")
    return rows


def render() -> str:
    """The whole page, deterministic."""
    lines = [_INTRO]
    top_level = [
        (name, field)
        for name, field in Settings.model_fields.items()
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel))
    ]
    lines.append("## Profile\n")
    lines.append("| variable | default | meaning |")
    lines.append("|---|---|---|")
    for name, field in top_level:
        variable = f"{_PREFIX}{name}".upper()
        lines.append(f"| `{variable}` | {_default(field)} | {_cell(field.description or '')} |")
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        lines.append(f"\n## `{_PREFIX}{name.upper()}{_DELIMITER}*`\n")
        # The group's own docstring only (getdoc would inherit BaseModel's).
        own = model.__dict__.get("__doc__")
        doc = inspect.cleandoc(own) if own else ""
        if doc:
            lines.append(doc.replace("``", "`") + "\n")
        lines.extend(_group_rows(name, model))
    return "\n".join(lines) + "\n"


def main() -> int:
    CONFIGURATION_DOC.parent.mkdir(parents=True, exist_ok=True)
    CONFIGURATION_DOC.write_text(render())
    print(f"wrote {CONFIGURATION_DOC.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
