"""The reference docs cover the code: every route of the OpenAPI document has a
`### METHOD /api/path` heading in docs/api.md, and every event type has a `### type` heading in
docs/events.md."""

from __future__ import annotations

import re
from pathlib import Path

from swarm_core.models import EventType
from swarm_core.openapi import openapi_document

DOCS = Path(__file__).resolve().parents[2] / "docs"


def headings(name: str) -> set[str]:
    text = (DOCS / name).read_text(encoding="utf-8")
    return {m.strip() for m in re.findall(r"^### (.+)$", text, flags=re.MULTILINE)}


def test_every_route_has_a_section_in_api_md():
    documented = headings("api.md")
    routes = {
        f"{method.upper()} /api/{path.removeprefix('/api').lstrip('/')}"
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }
    assert routes, "the OpenAPI document lists no routes"
    assert routes <= documented, sorted(routes - documented)


def test_every_event_type_has_a_section_in_events_md():
    documented = headings("events.md")
    missing = {t.value for t in EventType} - documented
    assert not missing, sorted(missing)
