"""Tests for otel_audit.catalog: the event catalog as data, its mappings and its renderings."""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from otel_audit import catalog
from otel_audit.errors import UnknownEventError

# CADF action taxonomy (DMTF DSP0262 / pycadf); a "/" refines a root action.
CADF_ACTIONS = {
    "backup",
    "capture",
    "create",
    "configure",
    "read",
    "update",
    "delete",
    "monitor",
    "start",
    "stop",
    "deploy",
    "undeploy",
    "enable",
    "disable",
    "send",
    "receive",
    "authenticate",
    "revoke",
    "renew",
    "restore",
    "evaluate",
    "allow",
    "deny",
    "notify",
    "unknown",
}
CADF_REFINEMENTS = {"authenticate/login", "authenticate/logout"}
CADF_OUTCOMES = {"success", "failure", "pending", "unknown"}

# ECS event.category allowed values with the event.type values ECS expects for each.
ECS_CATEGORY_TYPES = {
    "api": {
        "access",
        "admin",
        "allowed",
        "change",
        "creation",
        "deletion",
        "denied",
        "end",
        "info",
        "start",
        "user",
    },
    "authentication": {"start", "end", "info"},
    "configuration": {"access", "change", "creation", "deletion", "info"},
    "database": {"access", "change", "info", "error"},
    "driver": {"change", "end", "info", "start"},
    "email": {"info"},
    "file": {"access", "change", "creation", "deletion", "info"},
    "host": {"access", "change", "end", "info", "start"},
    "iam": {"admin", "change", "creation", "deletion", "group", "info", "user"},
    "intrusion_detection": {"allowed", "denied", "info", "start"},
    "library": {"start"},
    "malware": {"info", "start"},
    "network": {"access", "allowed", "connection", "denied", "end", "info", "protocol", "start"},
    "package": {"access", "change", "deletion", "info", "installation", "start"},
    "process": {"access", "change", "end", "info", "start"},
    "registry": {"access", "change", "creation", "deletion"},
    "session": {"start", "end", "info"},
    "threat": {"indicator"},
    "vulnerability": {"info"},
    "web": {"access", "error", "info"},
}
ECS_TYPES = {
    "access",
    "admin",
    "allowed",
    "change",
    "connection",
    "creation",
    "deletion",
    "denied",
    "device",
    "end",
    "error",
    "group",
    "indicator",
    "info",
    "installation",
    "protocol",
    "start",
    "user",
}

SPECS = list(catalog.EVENTS.values())
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2}$")


def test_category_counts_match_the_feature_list() -> None:
    """Each category holds the number of events the feature list asks for."""
    counts = Counter(spec.category for spec in SPECS)
    assert counts == {
        "authentication": 10,
        "authorization": 6,
        "configuration": 15,
        "data_access": 5,
        "security": 9,  # the feature list's 8, and security.integrity.violated of the audit service
        "integrity": 2,
    }


def test_categories_are_listed_in_display_order() -> None:
    """categories() returns every category that has events, in the catalog's display order."""
    assert catalog.categories() == [
        "authentication",
        "authorization",
        "configuration",
        "data_access",
        "security",
        "integrity",
    ]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_names_are_dotted_lower_case_under_their_category(spec: catalog.EventSpec) -> None:
    """User events are named <category>.<object>.<action> and keyed by their own name."""
    assert catalog.EVENTS[spec.name] is spec
    if spec.category == "integrity":
        assert spec.name in ("audit.checkpoint", "audit.spool.backlog_dropped")
        return
    assert NAME_RE.match(spec.name), spec.name
    assert spec.name.split(".")[0] == spec.category


def test_named_events_from_the_design_exist() -> None:
    """Names other modules depend on are in the catalog under the exact spelling."""
    for name in (
        "authentication.login.succeeded",
        "authentication.login.failed",
        "authorization.permission.denied",
        "configuration.virtual_key.created",
        "security.prompt_injection.detected",
        "data_access.pii.detected",
        "audit.checkpoint",
    ):
        assert catalog.get(name).name == name
    assert catalog.get("audit.checkpoint").category == "integrity"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_cadf_values_come_from_the_taxonomy(spec: catalog.EventSpec) -> None:
    """Every CADF action is a taxonomy action (or a known refinement) and every outcome is valid."""
    assert spec.cadf_action in CADF_ACTIONS | CADF_REFINEMENTS
    assert spec.cadf_outcome in CADF_OUTCOMES


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_ecs_values_come_from_the_allowed_lists(spec: catalog.EventSpec) -> None:
    """ECS categories and types are allowed values, and each type suits one of the categories."""
    assert spec.ecs_category and spec.ecs_type
    assert set(spec.ecs_category) <= set(ECS_CATEGORY_TYPES)
    assert set(spec.ecs_type) <= ECS_TYPES
    expected = set().union(*(ECS_CATEGORY_TYPES[c] for c in spec.ecs_category))
    assert set(spec.ecs_type) <= expected, (spec.ecs_category, spec.ecs_type)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_severity_follows_outcome_and_category(spec: catalog.EventSpec) -> None:
    """Failure events default to at least WARN, security events to WARN or ERROR, others to INFO+."""
    assert spec.severity in catalog.SEVERITIES
    rank = catalog.SEVERITIES.index
    if spec.cadf_outcome == "failure":
        assert rank(spec.severity) >= rank("WARN")
    if spec.category == "security":
        assert spec.severity in ("WARN", "ERROR")
    assert rank(spec.severity) >= rank("INFO")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_attribute_lists_are_clean(spec: catalog.EventSpec) -> None:
    """Required and optional keys are disjoint, unique, reserve nothing and never require a secret."""
    keys = spec.required + spec.optional
    assert len(keys) == len(set(keys))
    for key in keys:
        assert re.match(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", key), key
        assert not key.startswith(("audit.integrity.", "audit.stream.")), key
        assert key not in ("audit.category", "audit.action", "audit.outcome"), key
    for key in spec.required:
        assert not re.search(r"password|secret|token$|api_key\.value|credential", key), key
    assert len(spec.required) <= 4


def test_configuration_events_carry_target_actor_and_change() -> None:
    """Every configuration event requires actor and target and can carry before/after values."""
    for spec in SPECS:
        if spec.category != "configuration":
            continue
        assert {"audit.actor.id", "audit.target.id"} <= set(spec.required), spec.name
        keys = set(spec.required + spec.optional)
        assert {"audit.change.before", "audit.change.after"} <= keys, spec.name


def test_unknown_name_error_lists_close_matches() -> None:
    """A misspelt name raises UnknownEventError naming close matches and the catalog command."""
    with pytest.raises(UnknownEventError) as info:
        catalog.get("authentication.login.succeded")
    message = str(info.value)
    assert "authentication.login.succeded" in message
    assert "authentication.login.succeeded" in message
    assert "otel-audit catalog" in message


def test_unknown_name_without_close_match_still_points_to_the_catalog() -> None:
    """A name with no close match raises UnknownEventError that still says how to list events."""
    with pytest.raises(UnknownEventError, match="otel-audit catalog"):
        catalog.get("zzz")


def test_unknown_event_error_is_a_value_error() -> None:
    """UnknownEventError can be caught as ValueError, and a non-str name is a TypeError."""
    with pytest.raises(ValueError):
        catalog.get("nope.nope.nope")
    with pytest.raises(TypeError):
        catalog.get(42)  # type: ignore[arg-type]


def test_render_json_holds_every_event_and_is_stable() -> None:
    """The JSON rendering parses, has every event with all fields, and is byte-for-byte stable."""
    text = catalog.render_json()
    assert text == catalog.render_json()
    data = json.loads(text)
    assert set(data) == set(catalog.EVENTS)
    assert list(data) == sorted(data)
    login = data["authentication.login.succeeded"]
    assert login["cadf_action"] == "authenticate/login"
    assert login["required"] == ["user.id"]
    assert list(login) == sorted(login)
    assert text.startswith('{\n  "')


def test_render_json_of_a_subset() -> None:
    """render_json renders only the specs it is given."""
    specs = [catalog.get("audit.checkpoint")]
    assert list(json.loads(catalog.render_json(specs))) == ["audit.checkpoint"]


def test_render_markdown_has_a_table_per_category_and_every_event() -> None:
    """The Markdown rendering has one heading per category and a table row for every event."""
    text = catalog.render_markdown()
    for category in catalog.categories():
        assert f"\n## {category}\n" in text
    for name in catalog.EVENTS:
        assert f"| `{name}` |" in text
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert headings == catalog.categories()


def test_catalog_imports_no_opentelemetry() -> None:
    """catalog.py imports no OpenTelemetry module, so readers of the catalog stay light."""
    tree = ast.parse(Path(catalog.__file__).read_text(encoding="utf-8"))
    modules = [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in modules if m.startswith("opentelemetry")]


def test_event_spec_is_frozen() -> None:
    """EventSpec instances cannot be modified after construction."""
    spec = catalog.get("authentication.logout.succeeded")
    with pytest.raises(AttributeError):
        spec.severity = "ERROR"  # type: ignore[misc]
    with pytest.raises(TypeError):
        catalog.EVENTS["x"] = spec  # type: ignore[index]
