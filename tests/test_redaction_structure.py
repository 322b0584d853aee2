"""Redaction by structure: JSON text (config changes, JSON attributes and bodies) is redacted field by field.

Through the real pipeline built from a config file (redaction -> signing -> file exporter), in
hmac and mask mode: `config_changed` before/after, a JSON string attribute and a JSON body that
hold provider keys, authorization headers, cookies and private keys, some three levels deep. No
raw secret may appear in the archive's bytes; the field names stay, unchanged fields stay equal,
and `otel-audit verify` (a child process) accepts the archive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import attr_value, child_env

import otel_audit
from otel_audit.pseudonym import hmac_value, load_hmac_key
from otel_audit.verify import iter_records

HMAC_KEY = "hex:" + "5c" * 32
KEY = load_hmac_key(HMAC_KEY, where="test")

PROVIDER_KEY_OLD = "pk-live-OLD7f3a9c2e1b0d4"
PROVIDER_KEY_NEW = "pk-live-NEW0a1b2c3d4e5f6"
AUTH_OLD = "Basic b2xkdXNlcjpvbGRwYXNzd29yZA"
AUTH_NEW = "Basic bmV3dXNlcjpuZXdwYXNzd29yZA"
COOKIE = "sessionid=ck-5e4d3c2b1a09f8e7"
PEM_BODY_OLD = "MIIEowIBAAKCAQEAoldoldoldPEMbody"
PEM_BODY_NEW = "MIIEowIBAAKCAQEAnewnewnewPEMbody"
DEEP_OLD = "deep-secret-OLD-91c2d3e4"
DEEP_NEW = "deep-secret-NEW-a7b8c9d0"
DB_PASSWORD = "Tr0ub4dor-db-77"
NOTE_PASSWORD = "hunter2-note-55"
ATTR_AUTH = "attr-bearer-value-3f2e1d0c"
BODY_COOKIE = "body-cookie-value-8a7b6c5d"
BODY_PK = "body-provider-key-1b2c3d4e"

RAW_SECRETS = [
    PROVIDER_KEY_OLD, PROVIDER_KEY_NEW, "b2xkdXNlcjpvbGRwYXNzd29yZA", "bmV3dXNlcjpuZXdwYXNzd29yZA",
    "ck-5e4d3c2b1a09f8e7", PEM_BODY_OLD, PEM_BODY_NEW, DEEP_OLD, DEEP_NEW, DB_PASSWORD, NOTE_PASSWORD,
    ATTR_AUTH, BODY_COOKIE, BODY_PK,
]


def pem(body: str) -> str:
    return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"


def side(provider_key: str, auth: str, pem_body: str, deep: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "provider_key": provider_key,
        "headers": {"authorization": auth, "cookie": COOKIE, "accept": "application/json"},
        "tls": {"private_key": pem(pem_body), "verify": True},
        "limits": {"rpm": 600, "burst": 20},
        # depth 3: upstreams[0].auth.provider_key, and a.b.c.authorization
        "upstreams": [{"region": "eu-west-1", "auth": {"provider_key": deep, "scheme": "key"}}],
        "a": {"b": {"c": {"authorization": deep, "label": "kept"}}},
        "db_password": DB_PASSWORD,
        "notes": f"rotated; old password={NOTE_PASSWORD} retired",
    }


BEFORE = side(PROVIDER_KEY_OLD, AUTH_OLD, PEM_BODY_OLD, DEEP_OLD, "team-a")
AFTER = side(PROVIDER_KEY_NEW, AUTH_NEW, PEM_BODY_NEW, DEEP_NEW, "team-b")
ATTR_JSON = json.dumps({"headers": [{"authorization": ATTR_AUTH}, {"x-trace": "t-1"}]})
BODY_JSON = json.dumps(
    {"request": {"cookie": BODY_COOKIE, "cfg": {"provider_key": BODY_PK}}, "path": "/v1/x"}, indent=1
)


def config_text(keys_dir: Path, archive: Path, mode: str) -> str:
    return f"""\
processors:
  redaction: {{mode: {mode}, hmac_key: "{HMAC_KEY}"}}
  signing: {{keys_dir: {json.dumps(str(keys_dir))}}}
exporters:
  file: {{path: {json.dumps(str(archive))}, fsync: never}}
service:
  pipelines:
    logs/audit: {{processors: [redaction, signing], exporters: [file]}}
"""


def write_archive(tmp_path: Path, keys_dir: Path, mode: str) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Emit a config change and a JSON-carrying event through the configured pipeline; records by event."""
    archive = tmp_path / "audit.jsonl"
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(config_text(keys_dir, archive, mode))
    audit = otel_audit.configure(cfg)
    audit.logger.config_changed("configuration.team.updated", "team-1", BEFORE, AFTER, actor="admin-1")
    audit.logger.emit(
        "data_access.logs.queried", {"audit.actor.id": "admin-1", "app.request.json": ATTR_JSON}, body=BODY_JSON
    )
    audit.shutdown()
    records = {rec.get("eventName", ""): rec for _, rec in iter_records([archive])}
    return archive, records


def verify(archive: Path, keys_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_audit.cli", "verify", "--keys", str(keys_dir), str(archive)],
        capture_output=True, text=True, timeout=120, env=child_env(), check=False,
    )


def field_names(value: Any, prefix: str = "") -> set[str]:
    """Every dotted path of a parsed JSON value (list items by index)."""
    out: set[str] = set()
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        path = f"{prefix}{k}"
        out.add(path)
        out |= field_names(v, path + ".")
    return out


def h(value: str) -> str:
    return hmac_value(KEY, value)


@pytest.mark.parametrize("mode", ["hmac", "mask"])
def test_no_raw_secret_in_the_archive_and_it_verifies(tmp_path: Path, keys_dir: Path, mode: str) -> None:
    """No secret of before/after, the JSON attribute or the JSON body is anywhere in the archive's bytes."""
    archive, records = write_archive(tmp_path, keys_dir, mode)
    data = archive.read_bytes()
    leaked = [s for s in RAW_SECRETS if s.encode() in data]
    assert not leaked, leaked
    assert {"configuration.team.updated", "data_access.logs.queried"} <= set(records)
    proc = verify(archive, keys_dir)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


def test_config_change_keeps_fields_and_pseudonymises_secrets(tmp_path: Path, keys_dir: Path) -> None:
    """hmac: every field name remains, unchanged fields stay equal, each secret is its keyed pseudonym."""
    _, records = write_archive(tmp_path, keys_dir, "hmac")
    rec = records["configuration.team.updated"]
    before_text = attr_value(rec, "audit.change.before")
    before, after = json.loads(before_text), json.loads(attr_value(rec, "audit.change.after"))
    # re-serialized canonically, as config_changed writes JSON
    assert before_text == json.dumps(before, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert field_names(before) == field_names(BEFORE) and field_names(after) == field_names(AFTER)
    # what changed is visible
    assert (before["name"], after["name"]) == ("team-a", "team-b")
    assert before["provider_key"] == h(PROVIDER_KEY_OLD) != after["provider_key"] == h(PROVIDER_KEY_NEW)
    assert before["headers"]["authorization"] == h(AUTH_OLD) != after["headers"]["authorization"]
    assert before["tls"]["private_key"] == h(pem(PEM_BODY_OLD)) != after["tls"]["private_key"]
    assert before["upstreams"][0]["auth"]["provider_key"] == h(DEEP_OLD)
    assert after["upstreams"][0]["auth"]["provider_key"] == h(DEEP_NEW)
    assert before["a"]["b"]["c"]["authorization"] == h(DEEP_OLD)
    # unchanged fields are equal, secret or not
    assert before["headers"]["cookie"] == after["headers"]["cookie"] == h(COOKIE)
    assert before["db_password"] == after["db_password"] == h(DB_PASSWORD)
    for path in (("limits",), ("headers", "accept"), ("tls", "verify"), ("a", "b", "c", "label")):
        b, a, orig = before, after, BEFORE
        for p in path:
            b, a, orig = b[p], a[p], orig[p]
        assert b == a == orig, path
    assert before["upstreams"][0]["region"] == "eu-west-1" and before["upstreams"][0]["auth"]["scheme"] == "key"
    # a value pattern inside a plain string field
    assert before["notes"] == f"rotated; old password={h(NOTE_PASSWORD)} retired"
    rules = set(attr_value(rec, "audit.redaction.rules"))
    assert rules == {"api_key", "bearer_token", "private_key", "password"}


def test_config_change_in_mask_mode(tmp_path: Path, keys_dir: Path) -> None:
    """mask: the same fields, secrets replaced by [REDACTED:<rule>], other fields as they were."""
    _, records = write_archive(tmp_path, keys_dir, "mask")
    rec = records["configuration.team.updated"]
    before, after = (json.loads(attr_value(rec, f"audit.change.{s}")) for s in ("before", "after"))
    assert field_names(before) == field_names(BEFORE)
    for doc in (before, after):
        # each member is named by the rule whose key=value pattern its key is
        assert doc["provider_key"] == doc["upstreams"][0]["auth"]["provider_key"] == "[REDACTED:api_key]"
        assert doc["headers"]["authorization"] == doc["headers"]["cookie"] == "[REDACTED:bearer_token]"
        assert doc["a"]["b"]["c"]["authorization"] == "[REDACTED:bearer_token]"
        assert doc["tls"]["private_key"] == "[REDACTED:private_key]"
        assert doc["db_password"] == "[REDACTED:password]"
        assert doc["limits"] == BEFORE["limits"] and doc["headers"]["accept"] == "application/json"
    assert (before["name"], after["name"]) == ("team-a", "team-b")


def test_json_attribute_and_body_are_redacted_by_structure(tmp_path: Path, keys_dir: Path) -> None:
    """A JSON string attribute and a JSON body: secrets pseudonymised by key, the rest kept, sorted keys."""
    _, records = write_archive(tmp_path, keys_dir, "hmac")
    rec = records["data_access.logs.queried"]
    attr = attr_value(rec, "app.request.json")
    assert json.loads(attr) == {"headers": [{"authorization": h(ATTR_AUTH)}, {"x-trace": "t-1"}]}
    body = rec["body"]["stringValue"]
    assert body == json.dumps(
        {"path": "/v1/x", "request": {"cfg": {"provider_key": h(BODY_PK)}, "cookie": h(BODY_COOKIE)}},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    assert attr_value(rec, "audit.redaction.count") == 3


def test_clean_invalid_and_duplicate_key_json_text(tmp_path: Path, keys_dir: Path) -> None:
    """Clean JSON keeps its bytes; text that only looks like JSON is scanned as text; duplicate keys all redacted."""
    archive = tmp_path / "audit.jsonl"
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(config_text(keys_dir, archive, "hmac"))
    audit = otel_audit.configure(cfg)
    clean = '{ "b": 1,  "a": [true, null, "x"] }'
    broken = "{not json, password=hunter2-broken}"
    dupes = '{"note": "password=hunter2-dupe", "note": "ok", "authorization": "hunter2-a1", "authorization": "x"}'
    audit.logger.emit("data_access.logs.queried", {"audit.actor.id": "a", "app.clean": clean,
                                                   "app.broken": broken, "app.dupes": dupes})
    audit.shutdown()
    (rec,) = [r for _, r in iter_records([archive]) if r.get("eventName") == "data_access.logs.queried"]
    assert attr_value(rec, "app.clean") == clean
    assert attr_value(rec, "app.broken") == f"{{not json, password={h('hunter2-broken')}}}"
    # duplicate keys: every member is redacted and kept, in order
    assert attr_value(rec, "app.dupes") == (
        f'{{"authorization":"{h("hunter2-a1")}","authorization":"{h("x")}",'
        f'"note":"password={h("hunter2-dupe")}","note":"ok"}}'
    )
    assert b"hunter2" not in archive.read_bytes()
