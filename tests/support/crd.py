"""The ConnectionBudget CRD's own schema, to validate objects against it."""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml

from services.operator.spec import GROUP, PLURAL, VERSION
from tests.support.chart import CHART

CRD_FILE = CHART / "crds" / f"{PLURAL}.{GROUP}.yaml"


def crd() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return doc


def schema() -> dict[str, Any]:
    version = next(v for v in crd()["spec"]["versions"] if v["name"] == VERSION)
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return result


def validate(obj: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless ``obj`` fits the CRD's schema
    (openAPIV3Schema is OpenAPI 3.0's dialect of draft 4: boolean exclusiveMinimum)."""
    jsonschema.Draft4Validator(schema(), format_checker=jsonschema.FormatChecker()).validate(obj)
