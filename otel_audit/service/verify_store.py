"""`otel-audit verify --store URL`: re-prove a service's store offline with the reference verifier.

Every event row's stored envelope and record (exactly what was received and verified on ingest) go to the
same Verifier `otel-audit verify` runs on archives, each located by its row (``store:<url>#<event id>``), so an
edited record is named by its event id. The row's filter columns (actor, action, client address, ...) are
derived again from its record and compared: a query answers from those columns, so an edited column is a
problem too, even when the signed record is intact. Rows the store lacks show as missing seqs, as in an archive.

The other tables answer queries and proofs too, so they are checked against the re-proven events: every
checkpoint row must be the note of a stored checkpoint record of its stream (same size, root, time and kind;
a row whose record is gone names a cut), its witness cosignature must verify (with ``witnesses``, else it is
listed as not checked), and no stream row may claim more records, more proven or a closed stream than the
events give. With ``state`` (docs/state.md) the store must also hold everything an earlier run verified, which
catches a tail cut back together with its checkpoint rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from otel_audit.keys import Keyring
from otel_audit.service.own import SERVICE_NAME
from otel_audit.verify.prove import Verifier
from otel_audit.verify.report import Report

#: the columns derived from the record, compared with what the record gives
DERIVED = ("stream_id", "stream_seq", "ts", "observed_ts", "event", "category", "outcome", "actor", "user_id",
           "target_type", "target_id", "client_address", "client_address_key", "service", "session_id", "trace_id",
           "severity", "severity_text", "body", "attrs", "canonical", "digest", "prev", "signed")
MAX_LISTED = 100
FINDING_EVENT = "security.integrity.violated"


def verify_store(url: str, keyring: Keyring, *, allow_open: bool = False, ignore_unsigned: bool = False,
                 partial: bool = False, at: int | None = None, witnesses: Keyring | None = None,
                 state: str | None = None) -> Report:
    from otel_audit.verify import state as audit_state

    if witnesses is not None:  # the service's own stream is signed with its (witness) keys
        keyring = _merged(keyring, witnesses)
    with audit_state.opened(state) as st:
        rep = _verify_store(url, keyring, allow_open=allow_open, ignore_unsigned=ignore_unsigned, partial=partial,
                            at=at, witnesses=witnesses, roots_at=st.roots_wanted() if st is not None else None)
        if st is not None:
            st.check(rep, partial=partial)
            st.commit(rep)
    return rep


def _merged(a: Keyring, b: Keyring) -> Keyring:
    out = Keyring(a)
    have = {(k.name, k.key_id) for k in a}
    for k in b:
        if (k.name, k.key_id) not in have:
            out.add(k, "--witness-keys")
    return out


def _verify_store(url: str, keyring: Keyring, *, allow_open: bool, ignore_unsigned: bool, partial: bool,
                  at: int | None, witnesses: Keyring | None, roots_at: Any) -> Report:
    from otel_audit.service.ingest import Ingest
    from otel_audit.service.store import open_store

    store = open_store(url, readonly=True)
    try:
        v = Verifier(keyring, allow_open=allow_open, ignore_unsigned=ignore_unsigned, partial=partial, at=at,
                     roots_at=roots_at)
        rep = v.report
        seen: dict[str, _Seen] = {}
        rep.files += 1
        derive = Ingest(store, keyring)
        bad_columns = 0
        for row in store.iter_rows():
            where = f"store:{store.url}#{row['id']}"
            rep.lines += 1
            try:
                resource = orjson.loads(row["resource"])
                scope = orjson.loads(row["scope"])
                record = orjson.loads(row["record"])
            except orjson.JSONDecodeError:
                v._malformed(f"{where}: the stored envelope or record is not JSON")
                continue
            doc = {"resourceLogs": [{"resource": resource, "scopeLogs": [{"scope": scope, "logRecords": [record]}]}]}
            v.add_request(doc, where)
            _observe(seen, row)
            differs = _columns_differ(derive, row, resource, record, store.dialect.stored)
            if differs:
                bad_columns += 1
                if bad_columns <= MAX_LISTED:
                    rep.problems.append(f"{where}: column(s) {', '.join(differs)} differ from what the stored record "
                                        "gives: a query answers from them, so they were edited in the store")
        if bad_columns > MAX_LISTED:
            rep.problems.append(f"... {bad_columns - MAX_LISTED} more rows with edited columns not listed")
        rep.read_as["store"] = rep.lines
        v.finish()
        _check_checkpoints(store, seen, witnesses, rep)
        _check_streams(store, seen, rep)
        _check_findings(store, seen, witnesses, rep)
        return rep
    finally:
        store.close()


class _Seen:
    """What the event rows of one stream hold: their seqs, and each checkpoint record's body by seq."""

    __slots__ = ("seqs", "checkpoints", "findings")

    def __init__(self) -> None:
        self.seqs: set[int] = set()
        self.checkpoints: dict[int, str | None] = {}
        self.findings: list[tuple[int, str]] = []  # the service's own finding events: (seq, attributes JSON)


def _observe(seen: dict[str, _Seen], row: dict[str, Any]) -> None:
    from otel_audit.canonical import CHECKPOINT_EVENT

    c = row["columns"]
    sid, seq = c["stream_id"], c["stream_seq"]
    if not isinstance(sid, str) or not isinstance(seq, int):
        return
    s = seen.get(sid)
    if s is None:
        s = seen[sid] = _Seen()
    s.seqs.add(seq)
    if c["event"] == CHECKPOINT_EVENT:
        s.checkpoints[seq] = c["body"] if isinstance(c["body"], str) else None
    elif c["event"] == FINDING_EVENT and c["service"] == SERVICE_NAME:
        s.findings.append((seq, c["attrs"]))


def _check_findings(store: Any, seen: dict[str, _Seen], witnesses: Keyring | None, rep: Report) -> None:
    """Every finding the service's own (verified, witness-signed) stream records has its findings row, with the
    evidence it hashed: findings are not chained, their signed events are."""
    if witnesses is None:
        return
    names = {k.name for k in witnesses}
    reports = {s.stream_id: s for s in rep.streams}
    signed: list[tuple[str, int, dict[str, Any]]] = []
    for sid, s in seen.items():
        sr = reports.get(sid)
        if not s.findings or sr is None or sr.status != "verified" or not sr.keys:
            continue
        if not all(k.split(" ", 1)[0] in names for k in sr.keys):
            continue  # not the service's stream: another producer's events of that name prove nothing here
        for seq, attrs in s.findings:
            try:
                a = orjson.loads(attrs)
            except orjson.JSONDecodeError:
                continue  # the columns check names an edited attrs column
            if isinstance(a, dict) and isinstance(a.get("audit.finding.evidence_sha256"), str):
                signed.append((sid, seq, a))
    if not signed:
        return
    import hashlib

    have = set()
    for f in store.findings(None, limit=1 << 62):
        have.add((f["stream_id"], f["stream_seq"], f["kind"], hashlib.sha256(bytes(f["evidence"])).hexdigest()))
    missing = 0
    for sid, seq, a in signed:
        target = a.get("audit.target.id")
        key = (None if target == "a request" else target, a.get("audit.finding.seq"), a.get("audit.finding.kind"),
               a["audit.finding.evidence_sha256"])
        if key not in have:
            missing += 1
            if missing <= MAX_LISTED:
                rep.problems.append(
                    f"store:{store.url}#{sid}-{seq}: the service's signed event of a {key[2]} finding (stream "
                    f"{key[0]}, seq {key[1]}) has no findings row with the evidence it hashed: the finding "
                    "was deleted or its evidence edited")
    if missing > MAX_LISTED:
        rep.problems.append(f"... {missing - MAX_LISTED} more findings missing not listed")


def _check_checkpoints(store: Any, seen: dict[str, _Seen], witnesses: Keyring | None, rep: Report) -> None:
    """Every checkpoint row is the note of a stored checkpoint record, and its cosignature verifies."""
    from otel_audit.note import NoteError, parse_note
    from otel_audit.service import proof as tlog

    listed = 0
    unchecked = 0

    def problem(msg: str) -> None:
        nonlocal listed
        listed += 1
        if listed <= MAX_LISTED:
            rep.problems.append(msg)

    for cp in store.checkpoints():
        sid, size = cp["stream_id"], cp["size"]
        where = f"store:{store.url} checkpoints row of stream {sid} at size {size}"
        body = seen[sid].checkpoints.get(size) if sid in seen else None
        if body is None:
            problem(f"{where}: no checkpoint record of the stream is stored at seq {size}: the events it proved "
                    "were removed from the store (or the row was made up)")
            continue
        if cp["note"] != body:
            problem(f"{where}: its note is not the one the stored checkpoint record carries: the row was edited")
            continue
        try:
            sn = parse_note(body)
        except NoteError as exc:
            problem(f"{where}: its note does not parse ({exc})")
            continue
        c = sn.checkpoint
        differs = [name for name, a, b in (("size", size, c.size), ("root", bytes(cp["root"]), c.root),
                                           ("time_ns", cp["time_ns"], c.time_ns), ("kind", cp["kind"], c.kind))
                   if a != b]
        if differs:
            problem(f"{where}: column(s) {', '.join(differs)} differ from its signed note: the row was edited")
            continue
        if witnesses is None:
            unchecked += 1
            continue
        try:
            tlog.check_cosignature(sn.text, cp["cosignature"], witnesses)
        except tlog.ProofError as exc:
            problem(f"{where}: the witness cosignature: {exc}")
    if listed > MAX_LISTED:
        rep.problems.append(f"... {listed - MAX_LISTED} more checkpoint rows with problems not listed")
    if unchecked:
        rep.skipped.append(f"{unchecked} witness cosignature(s) of the checkpoints table not checked: give the "
                           "witness's public keyring (--witness-keys)")


def _check_streams(store: Any, seen: dict[str, _Seen], rep: Report) -> None:
    """No stream row claims more than the re-proven events give: the service's live view reads it."""
    reports = {s.stream_id: s for s in rep.streams}
    for st in store.streams():
        sid = st["stream_id"]
        where = f"store:{store.url} streams row of stream {sid}"
        s = seen.get(sid)
        present = len(s.seqs) if s is not None else 0
        linked = 0
        while s is not None and linked in s.seqs:
            linked += 1
        sr = reports.get(sid)
        proven = 0
        if sr is not None and sr.status == "verified":
            for lo, hi in sr.proven:
                if lo == proven:
                    proven = hi + 1
        lies = []
        if st["records"] > present:
            lies.append(f"{st['records']} records (the store holds {present})")
        if st["length"] > linked:
            lies.append(f"{st['length']} linked (seqs 0..{linked - 1} are stored)" if linked
                        else f"{st['length']} linked (seq 0 is not stored)")
        if st["proven"] > proven and (sr is None or sr.status == "verified"):  # a failed stream is named already
            lies.append(f"{st['proven']} proven (the events prove {proven})")
        if st["closed"] and (sr is None or sr.state != "closed"):
            lies.append("closed (no valid end checkpoint is stored)")
        if lies:
            rep.problems.append(f"{where}: it claims {', '.join(lies)}: the row was edited, or the events it "
                                "describes were removed")


def _columns_differ(derive: Any, row: dict[str, Any], resource: Any, record: Any,
                    stored_as: Callable[[Any], Any]) -> list[str]:
    from otel_audit.decoding import DecodeError, decode_attributes

    try:
        attrs = decode_attributes(resource.get("attributes", [])) if isinstance(resource, dict) else {}
        service = attrs.get("service.name") if type(attrs.get("service.name")) is str else None
        got = derive._row(record, row["resource"], row["scope"], service, 0).row  # noqa: SLF001 - the same derivation
    except (DecodeError, ValueError, TypeError, AttributeError):
        return []  # the verifier names an unreadable record
    stored = row["columns"]
    out = []
    for name in DERIVED:
        if stored[name] != stored_as(getattr(got, name)):
            out.append(name)
    return out
