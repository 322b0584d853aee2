"""Proving streams: orders records by (stream, seq), checks chains, Merkle roots, signed checkpoints,
gap markers and lineage, and fills in a Report. Inputs (`inputs`) hand it decoded records.

No OpenTelemetry SDK imports.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from otel_audit import canonical
from otel_audit.canonical import CHECKPOINT_EVENT, DIGEST, GAP_EVENT, PREV_DIGEST, RECORD, STREAM_ID, STREAM_SEQ
from otel_audit.decoding import DecodeError, decode_canonical_content, decode_log_record
from otel_audit.keys import Keyring, NoteCheck, PublicKey, _ts
from otel_audit.merkle import CompactRange
from otel_audit.note import NoteError, Parent, Predecessor, SignedNote, parse_note
from otel_audit.verify.liveness import Liveness, record_key_finding
from otel_audit.verify.report import (
    CALC,
    DIG,
    NOTE,
    PREV,
    Report,
    StreamReport,
    _fmt_ranges,
    _gaps,
    _loc,
    _parse_bridges,
    _parse_ranges,
    _ranges,
    _Rec,
    _subtract,
)

_sha256 = hashlib.sha256
_ABSENT: Any = object()

#: The resource attributes a checkpoint's producer line may name (processors/signing.py `_producer_of`:
#: its _PRODUCER_KEYS, then process.pid). A record's resource that names one of them with another value
#: than its stream's signed checkpoints contradicts them; keys the producer line lacks were added in transit.
PRODUCER_KEYS = ("service.name", "service.namespace", "service.instance.id", "service.version", "host.name",
                 "process.pid")
#: Not compared in a forked child's stream (see Verifier._misattributed).
PROCESS_DEPENDENT_KEYS = ("service.instance.id", "process.pid")
#: What the signing processor writes on a checkpoint record besides its note (`_emit_checkpoint`); every
#: version since the first wrote exactly these, with the note's time and severity INFO (9).
CHECKPOINT_ATTRIBUTES = {"audit.category": "integrity", "audit.action": "checkpoint", "audit.outcome": "success"}
CHECKPOINT_SEVERITY = (9, "INFO")
MAX_IDENTITIES = 64  # distinct producer identities kept per stream; more are counted, not kept
MAX_RUNS = 1000  # seq runs kept per identity (and embedded mismatches per stream); the counts stay exact

#: how a record that strict decoding rejects is named in the report (then the rule, the path, why)
STRICT = "not strict OTLP/JSON"


# -- the verifier -----------------------------------------------------------------------------------


class Verifier:
    """Collects records from any number of inputs, then proves each stream (`finish`)."""

    def __init__(self, keyring: Keyring, *, allow_open: bool = False, ignore_unsigned: bool = False,
                 partial: bool = False, roots_at: Mapping[str, Iterable[int]] | None = None,
                 at: int | None = None) -> None:
        self.partial = partial
        # stream -> tree sizes whose root `verify --state` needs recomputed (StreamReport.roots_at)
        self.roots_at = {sid: frozenset(sizes) for sid, sizes in (roots_at or {}).items()}
        self.at = at  # unix ns to judge liveness at (verify --at / --now): an open stream silent since is a problem
        self._liveness = Liveness(keyring)
        self.keyring = keyring
        self.allow_open = allow_open
        self.ignore_unsigned = ignore_unsigned
        self.report = Report()
        self._streams: dict[str, dict[int, _Rec]] = {}
        self._extra: dict[str, dict[int, list[_Rec]]] = {}  # stream -> seq -> more records at a seq already seen
        # what proving needs beyond a record's digests (_observe): a checkpoint record's own fields by its
        # computed digest, embedded canonical content that disagrees, the producer identities of resources
        self._cp_fields: dict[bytes, tuple[int, Any, Any, dict[str, Any]]] = {}
        self._embedded_bad: dict[str, list[int]] = {}
        self._idents: dict[str, dict[tuple[Any, ...], list[Any]]] = {}  # stream -> identity -> [n, where, runs]
        self._ident_overflow: dict[str, int] = {}
        self._res_obj: Any = None
        self._res_key: tuple[Any, ...] = ()
        self._heads: dict[str, bytes] = {}
        # declared stream -> (marker seq, "a-b,c", "a-b:<prev of a>:<digest of b>;...", reason, destination,
        # the marker's own stream): a marker declares seqs of its own stream or, with audit.gap.stream, of an
        # earlier one (records replayed from a spool after a restart)
        self._gap_claims: dict[str, list[tuple[int, Any, Any, Any, Any, str]]] = {}
        self._sealed_in: dict[str, set[int]] = {}  # stream -> seqs proven there (gap markers of later streams)
        self._times: dict[str, list[int]] = {}

    # reading

    def add_files(self, paths: Iterable[Path], progress: Callable[[int], None] | None = None) -> None:
        from otel_audit.verify.inputs import add_otlp_file

        for p in paths:
            add_otlp_file(self, p, progress)

    def add_file(self, path: Path, progress: Callable[[int], None] | None = None) -> None:
        from otel_audit.verify.inputs import add_otlp_file

        add_otlp_file(self, path, progress)

    def _malformed(self, msg: str) -> None:
        if len(self.report.malformed) < 100:
            self.report.malformed.append(msg)
        elif len(self.report.malformed) == 100:
            self.report.malformed.append("... more malformed lines not listed")

    def add_request(self, doc: Any, where: str) -> None:
        from otel_audit.verify.inputs import add_request

        add_request(self, doc, where)

    def add_record(self, rec: Mapping[str, Any], where: str, index: int = 0, *,
                   resource: Mapping[str, Any] | None = None) -> None:
        """One OTLP/JSON logRecord; `where` and `index` locate it in messages; `resource` holds the decoded
        attributes of its resourceLogs' resource (None: not known, as from a SIEM export)."""
        self.report.records += 1
        try:
            event, t, sev_number, sev_text, body, attrs, *_ = decode_log_record(rec)
        except DecodeError as exc:
            self._malformed(f"{_loc(where, index)}: {STRICT}: {exc}")
            return
        try:
            stream = attrs.pop(STREAM_ID, None)
            seq = attrs.pop(STREAM_SEQ, None)
            prev = attrs.pop(PREV_DIGEST, None)
            digest = attrs.pop(DIGEST, None)
            embedded = attrs.pop(RECORD, _ABSENT)
            if stream is None:
                self.report.unsigned += 1
                if len(self.report.unsigned_examples) < 5:
                    self.report.unsigned_examples.append(f"{_loc(where, index)} ({event!r})")
                return
            per = self._streams.get(stream)  # type: ignore[arg-type]
            if per is None and (type(stream) is not str or len(stream) != 32 or not _is_hex(stream)):
                self._malformed(f"{_loc(where, index)}: audit.stream.id is not 32 lower-case hex digits")
                return
            if type(seq) is not int or seq < 0 or type(prev) is not str or type(digest) is not str:
                self._malformed(f"{_loc(where, index)}: integrity attributes have the wrong form")
                return
            content = canonical.content_bytes(event, t, sev_number, sev_text, body, attrs)
            pb = bytes.fromhex(prev)
            db = bytes.fromhex(digest)
            if len(pb) != 32 or len(db) != 32:
                raise ValueError("a digest is not 32 bytes")
            head = self._heads.get(stream)
            if head is None:
                head = self._heads[stream] = b'\x00["v1","' + stream.encode() + b'",'  # type: ignore[union-attr]
            calc = _sha256(pb.join((b"\x00", head[1:])) + str(seq).encode() + b"," + content[1:]).digest()
            r = (calc, pb, db, body if event == CHECKPOINT_EVENT and type(body) is str else None)
            self._observe(stream, seq, calc, event, t, sev_number, sev_text, body, attrs,  # type: ignore[arg-type]
                          embedded, content, resource, _loc(where, index))
            if event == GAP_EVENT:
                self._add_gap_claim(stream, seq, attrs)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error, canonical.CanonicalError) as exc:
            self._malformed(f"{_loc(where, index)}: record cannot be read ({type(exc).__name__}: {exc})")
            return
        self._store(stream, seq, t, r, per)  # type: ignore[arg-type]

    def _add_gap_claim(self, stream: str, seq: int, attrs: Mapping[str, Any]) -> None:
        target = attrs.get("audit.gap.stream")
        if not isinstance(target, str) or not target:
            target = stream
        self._gap_claims.setdefault(target, []).append((*_gap_claim(seq, attrs), stream))

    def _store(self, stream: str, seq: int, t: int, r: _Rec, per: dict[int, _Rec] | None) -> None:
        if per is None:
            per = self._streams[stream] = {}
            self._times[stream] = [t, t]
        else:
            tt = self._times[stream]
            if t and (not tt[0] or t < tt[0]):
                tt[0] = t
            if t > tt[1]:
                tt[1] = t
        if seq in per:
            self._extra.setdefault(stream, {}).setdefault(seq, []).append(r)
        else:
            per[seq] = r

    def _observe(self, stream: str, seq: int, calc: bytes, event: Any, t: int, sev_number: Any, sev_text: Any,
                 body: Any, attrs: Mapping[str, Any], embedded: Any, content: bytes,
                 resource: Mapping[str, Any] | None, where: str) -> None:
        """What proving needs of a decoded record beyond its digests: a checkpoint record's own fields (they
        must be those its signed note determines), whether embedded canonical content (`audit.integrity.record`,
        `_ABSENT` when the record has none) is the record's own, and the producer identity its resource names."""
        if event == CHECKPOINT_EVENT and type(body) is str:
            self._cp_fields[calc] = (t, sev_number, sev_text, dict(attrs))
        if embedded is not _ABSENT and (type(embedded) is not str
                                        or embedded.encode("utf-8", "surrogatepass") != content):
            bad = self._embedded_bad.setdefault(stream, [])
            if len(bad) < MAX_RUNS:
                bad.append(seq)
        if resource is None:
            return
        if resource is not self._res_obj:  # one resource object serves every record of its resourceLogs
            self._res_obj = resource
            self._res_key = tuple((k, type(v).__name__, v if isinstance(v, (str, int, float)) else repr(v))
                                  for k in PRODUCER_KEYS if k in resource for v in (resource[k],))
        key = self._res_key
        if not key:
            return
        per = self._idents.get(stream)
        if per is None:
            per = self._idents[stream] = {}
        ent = per.get(key)
        if ent is None:
            if len(per) >= MAX_IDENTITIES:
                self._ident_overflow[stream] = self._ident_overflow.get(stream, 0) + 1
                return
            ent = per[key] = [0, where, []]
        ent[0] += 1
        runs = ent[2]
        if runs and runs[-1][1] == seq - 1:
            runs[-1][1] = seq
        elif len(runs) < MAX_RUNS:
            runs.append([seq, seq])

    def add_canonical(self, stream: Any, seq: Any, prev: Any, digest: Any, content: Any, where: str) -> None:
        """A record known by its carried canonical content (`audit.integrity.record`) and integrity fields,
        as a backend that flattens attributes holds it; the digest is checked over exactly those bytes,
        which must be the canonical encoding of what they hold (`decoding.decode_canonical_content`)."""
        self.report.records += 1
        try:
            if isinstance(seq, str) and seq.isascii() and seq.isdigit() and str(int(seq)) == seq:
                seq = int(seq)
            if (type(stream) is not str or len(stream) != 32 or not _is_hex(stream) or type(seq) is not int
                    or seq < 0 or type(prev) is not str or type(digest) is not str or type(content) is not str):
                self._malformed(f"{where}: integrity fields have the wrong form")
                return
            try:
                event, t, sev_number, sev_text, body, attrs = decode_canonical_content(content)
            except DecodeError as exc:
                self._malformed(f"{where}: {STRICT}: {exc}")
                return
            raw = content.encode("utf-8")
            pb, db = bytes.fromhex(prev), bytes.fromhex(digest)
            if len(pb) != 32 or len(db) != 32:
                raise ValueError("a digest is not 32 bytes")
            head = self._heads.get(stream)
            if head is None:
                head = self._heads[stream] = b'\x00["v1","' + stream.encode() + b'",'
            calc = _sha256(pb.join((b"\x00", head[1:])) + str(seq).encode() + b"," + raw[1:]).digest()
            r = (calc, pb, db, body if event == CHECKPOINT_EVENT and type(body) is str else None)
            self._observe(stream, seq, calc, event, t, sev_number, sev_text, body, attrs, _ABSENT, raw, None, where)
            if event == GAP_EVENT:
                self._add_gap_claim(stream, seq, attrs)
        except (ValueError, TypeError) as exc:
            self._malformed(f"{where}: record cannot be read ({type(exc).__name__}: {exc})")
            return
        self._store(stream, seq, t, r, self._streams.get(stream))

    # proving

    def finish(self) -> Report:
        rep = self.report
        notes: dict[str, dict[int, SignedNote]] = {}
        claims: dict[str, list[tuple[str, Predecessor]]] = {}  # predecessor id -> [(successor id, claim)]
        forks: dict[str, list[tuple[str, Parent]]] = {}  # parent id -> [(child id, claim)]
        prepared: dict[str, tuple[StreamReport, dict[int, _Rec]]] = {}
        for sid, per in self._streams.items():
            sr = StreamReport(sid)
            chosen = self._choose(sr, sid, per)
            notes[sid] = self._checkpoints(sr, chosen)
            start = notes[sid].get(0)
            if start is not None and start.checkpoint.prev is not None:
                claims.setdefault(start.checkpoint.prev.stream_id, []).append((sid, start.checkpoint.prev))
                sr.predecessor = start.checkpoint.prev.stream_id
            if start is not None and start.checkpoint.parent is not None:
                forks.setdefault(start.checkpoint.parent.stream_id, []).append((sid, start.checkpoint.parent))
                sr.parent = start.checkpoint.parent.stream_id
            tt = self._times[sid]
            sr.first_time_ns, sr.last_time_ns = tt[0] or None, tt[1] or None
            prepared[sid] = (sr, chosen)
        for sid in self._proving_order(prepared):
            sr, chosen = prepared[sid]
            self._prove(sr, chosen, notes[sid], claims.get(sid, []), forks.get(sid, []))
            rep.streams.append(sr)
        by_id = {s.stream_id: s for s in rep.streams}

        def lineage_gap(sr: StreamReport, msg: str) -> None:
            # a stream that names an earlier one (restart) or its parent (fork) that the input lacks: the
            # earlier records may have been deleted whole, so it fails unless the audit is partial on purpose
            if self.partial:
                sr.warnings.append(msg + " (accepted: --partial)")
            else:
                sr.problems.append(msg + "; verify it with them, or pass --partial for an archive that starts "
                                   "mid-lineage")
                sr.status = "failed"

        for pred, succs in claims.items():
            if pred not in self._streams:
                for succ, claim in succs:
                    lineage_gap(by_id[succ], f"predecessor stream {pred} ({'closed' if claim.closed else 'crashed'} "
                                             f"at seq {claim.size}) is not in the input")
        for parent, kids in forks.items():
            if parent not in self._streams:
                for kid, pclaim in kids:
                    lineage_gap(by_id[kid], f"parent stream {parent} (forked after its checkpoint at seq "
                                            f"{pclaim.size}) is not in the input")
        rep.streams.sort(key=lambda s: (s.first_time_ns or 0, s.stream_id))
        if rep.malformed:
            rep.problems.append(f"{len(rep.malformed)} malformed line(s) or record(s)")
        if rep.unsigned and not self.ignore_unsigned:
            rep.problems.append(f"{rep.unsigned} record(s) carry no integrity attributes (unsigned)")
        if not rep.streams and (rep.records or rep.unsigned):
            rep.problems.append("no signed stream in the input: nothing is proven")
        return rep

    def _proving_order(self, streams: Mapping[str, Any]) -> list[str]:
        """Streams whose gap markers declare records of other streams are proven before those streams."""
        after: dict[str, set[str]] = {}
        for target, cl in self._gap_claims.items():
            for c in cl:
                if c[5] != target:
                    after.setdefault(target, set()).add(c[5])
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done; a cycle (only a forgery makes one) is cut
        for root in streams:
            stack = [(root, iter(sorted(after.get(root, ()))))]
            if state.get(root):
                continue
            state[root] = 1
            while stack:
                node, deps = stack[-1]
                nxt = next((d for d in deps if d in streams and not state.get(d)), None)
                if nxt is not None:
                    state[nxt] = 1
                    stack.append((nxt, iter(sorted(after.get(nxt, ())))))
                    continue
                stack.pop()
                state[node] = 2
                order.append(node)
        return order

    def _choose(self, sr: StreamReport, sid: str, per: dict[int, _Rec]) -> dict[int, _Rec]:
        """One record per seq: duplicates are fine, differing variants are conflicts."""
        conflicts: list[int] = []
        extra = self._extra.get(sid, {})
        for seq, more in extra.items():
            variants = [per[seq], *more]
            distinct = set(variants)
            sr.duplicates += len(variants) - len(distinct)
            if len(distinct) > 1:
                conflicts.append(seq)
                # keep the variant consistent with itself and its successor, if one is
                nxt = [per[seq + 1], *extra.get(seq + 1, ())] if seq + 1 in per else None
                good = [v for v in variants if v[CALC] == v[DIG]
                        and (nxt is None or any(n[PREV] == v[DIG] for n in nxt))]
                if good:
                    per[seq] = good[0]
        sr.conflicting = sorted(conflicts)
        sr.records = len(per)
        return per

    def _checkpoints(self, sr: StreamReport, chosen: dict[int, _Rec]) -> dict[int, SignedNote]:
        """Parse and check the signature of every checkpoint record, and that the record itself is what its
        note determines; keep the valid ones. Every key that signed (or claims to) lands in sr.signing_keys."""
        valid: dict[int, SignedNote] = {}
        by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
        for seq in sorted(s for s, r in chosen.items() if r[NOTE] is not None):
            r = chosen[seq]
            sr.checkpoints += 1
            try:
                sn = parse_note(r[NOTE])
            except NoteError as exc:
                sr.bad_checkpoints.append({"seq": seq, "reason": str(exc)})
                continue
            cp = sn.checkpoint
            if cp.origin.rsplit("/", 1)[-1] != sr.stream_id:
                sr.bad_checkpoints.append({"seq": seq, "reason": f"origin {cp.origin!r} names another stream"})
                continue
            if cp.size != seq:
                sr.bad_checkpoints.append({"seq": seq, "reason": f"commits to size {cp.size}, stands at seq {seq}"})
                continue
            if cp.chain != r[PREV]:
                sr.bad_checkpoints.append({"seq": seq, "reason": "chain line disagrees with the record's prev digest"})
                continue
            check = self.keyring.check_note(sn)
            if check.status != "ok":
                record_key_finding(sr, seq, check)
            verdict, named = _named_keys(check)
            for name, kid, status, key in named:
                k = by_key.get((name, kid, status))
                if k is None:
                    k = by_key[(name, kid, status)] = {
                        "name": name, "key_id": kid, "status": status, "seqs": [],
                        "not_before": _ts(key.not_before) if key else None,
                        "not_after": _ts(key.not_after) if key else None, "times": [cp.time_ns, cp.time_ns]}
                k["seqs"].append(seq)
                k["times"] = [min(k["times"][0], cp.time_ns), max(k["times"][1], cp.time_ns)]
            if verdict == "ok":
                differs = _disagreement(self._cp_fields.get(r[CALC]), sn, sn.signatures[0].name)
                if differs:
                    sr.disagreeing_checkpoints.append({"seq": seq, "fields": differs})
                    continue
                valid[seq] = sn
                if not sr.producer:
                    sr.producer = dict(cp.producer)
            elif verdict == "unknown":
                sr.unknown_keys.append(seq)
            elif verdict == "expired":
                sr.expired_keys.append(seq)
            else:
                sr.bad_signatures.append(seq)
        sr.keys = sorted({k["name"] for k in by_key.values() if k["status"] == "ok"})
        sr.signing_keys = [
            {"name": k["name"], "key_id": k["key_id"], "status": k["status"], "seqs": _ranges(k["seqs"]),
             "not_before": k["not_before"], "not_after": k["not_after"],
             "checkpoint_times": [_ts(k["times"][0]), _ts(k["times"][1])]}
            for k in sorted(by_key.values(), key=lambda k: (k["seqs"][0], k["name"], k["status"]))
        ]
        return valid

    def _prove(
        self,
        sr: StreamReport,
        chosen: dict[int, _Rec],
        valid: dict[int, SignedNote],
        successors: list[tuple[str, Predecessor]],
        children: list[tuple[str, Parent]],
    ) -> None:
        seqs = sorted(chosen)
        top = seqs[-1] if seqs else -1
        sr.events = len(chosen) - sr.checkpoints
        # self-consistency of every record: the digest it carries is the one its content gives
        bad = {s for s, r in chosen.items() if r[CALC] != r[DIG]}
        # links between neighbours
        for s in seqs:
            nxt = chosen.get(s + 1)
            if nxt is not None and nxt[PREV] != chosen[s][DIG] and s not in bad and s + 1 not in bad:
                sr.broken_links.append([s, s + 1])
        sr.modified = sorted(bad - set(sr.conflicting))
        # where the stream ends
        end_seq = next((s for s in sorted(valid) if valid[s].checkpoint.end), None)
        length = top + 1
        if valid:
            length = max(length, max(valid) + 1)
        claim = successors[0] if successors else None
        if len(successors) > 1:
            sr.problems.append(
                "forked lineage: streams " + ", ".join(sorted(s for s, _ in successors))
                + " each name this stream as their predecessor (a copied or restored chain state)"
            )
        for succ, pred in successors:
            sr.successor = sr.successor or succ
            length = max(length, pred.size + 1)
            got = valid.get(pred.size)
            if not _names_checkpoint(got, pred):
                sr.problems.append(
                    f"successor stream {succ} says this stream reached a checkpoint at seq {pred.size} that is "
                    "missing or differs here"
                )
            if pred.closed and got is not None and not got.checkpoint.end:
                sr.problems.append(f"successor says this stream closed at seq {pred.size}, but that is no end checkpoint")
        # forked children: the parent goes on with its own records, so they say nothing of its end
        sr.children = sorted({kid for kid, _ in children})
        for kid, fork in children:
            length = max(length, fork.size + 1)
            if not _names_checkpoint(valid.get(fork.size), fork):
                sr.problems.append(
                    f"child stream {kid} says it was forked from this stream after a checkpoint at seq {fork.size} "
                    "that is missing or differs here"
                )
        if end_seq is not None:
            sr.state = "closed"
            sr.inserted = [s for s in seqs if s > end_seq]
            length = end_seq + 1
        elif claim is not None:
            sr.state = "closed" if claim[1].closed else "crashed"
        sr.length = length
        sr.missing = _gaps(seqs, length)
        # sealing: walk down from the top; a valid checkpoint anchors its chain line, a sealed
        # record anchors its prev digest, anything else loses the anchor
        sealed: set[int] = set()
        anchor: bytes | None = None
        below: int | None = None  # the seq handled just before (one above this one, if no gap)
        # chain links across runs of records the producer declared dropped: b -> (a, prev of a, digest of b)
        own = sr.stream_id
        claims = self._gap_claims.get(own, ())

        def proven(mseq: int, mstream: str) -> bool:
            return mseq in sealed if mstream == own else mseq in self._sealed_in.get(mstream, ())

        bridges: dict[int, tuple[int, int, bytes, bytes, str]] = {}
        for mseq, _, chain, _, _, mstream in claims:
            for a, b, pa, db in _parse_bridges(chain):
                bridges[b] = (mseq, a, pa, db, mstream)
        for s in reversed(seqs):  # sparse: a forged huge seq must not make us walk a huge range
            if below is not None and below != s + 1 and anchor is not None:
                # a gap: cross it only over runs a sealed gap marker declares, link by link
                at = below - 1
                while at > s and anchor is not None:
                    br = bridges.get(at)
                    if br is None or not proven(br[0], br[4]) or br[3] != anchor or br[1] <= s:
                        anchor = None
                        break
                    anchor = br[2]
                    at = br[1] - 1
            elif below != s + 1:
                anchor = None
            below = s
            r = chosen[s]
            sn = valid.get(s)
            if sn is not None and s not in bad:
                sealed.add(s)  # its own signature covers it
                anchor = sn.checkpoint.chain
            elif anchor is not None and s not in bad and r[DIG] == anchor:
                sealed.add(s)
                anchor = r[PREV]
            else:
                anchor = None
        sr.sealed = len(sealed)
        # Merkle roots where the tree can be rebuilt (every leaf from 0 present). The leaves are the
        # digests the records carry: a signed root over them proves every one of them, so a record
        # whose content gives its carried digest is proven even when a neighbour was altered.
        tree = CompactRange()
        proven_below = 0
        want = self.roots_at.get(own, ())
        for s in seqs:
            if s != tree.size:
                break
            if s in want:
                sr.roots_at[s] = tree.root().hex()
            sn = valid.get(s)
            if sn is not None:
                if tree.root() == sn.checkpoint.root:
                    proven_below = s
                else:
                    sr.root_mismatch.append(s)
            tree.append(chosen[s][DIG])
        _state_summary(sr, tree, want, valid)
        if proven_below:
            sealed.update(q for q in seqs if q < proven_below and q not in bad)
            sr.sealed = len(sealed)
        self._sealed_in[own] = sealed
        # records the producer itself declared not delivered (a full spool in fail_open mode, a fail_closed
        # refusal, a destination's rejection), in a sealed gap marker
        declared: list[list[int]] = []
        present = set(seqs)
        for mseq, text, _, reason, dest, mstream in sorted(claims, key=lambda c: (c[5] != own, c[5], c[0])):
            if proven(mseq, mstream) and isinstance(text, str):
                rs = _parse_ranges(text)
                declared.extend(rs)
                absent = _ranges(q for a, b in rs for q in range(a, min(b, a + 100_000) + 1) if q not in present)
                entry = {"marker": mseq, "seqs": rs, "reason": reason, "destination": dest, "missing": absent}
                if mstream != own:
                    entry["marker_stream"] = mstream
                sr.declared.append(entry)
        if declared and sr.missing:
            sr.missing, sr.dropped = _subtract(sr.missing, declared)
        inserted = set(sr.inserted)
        unsealed = [s for s in seqs if s not in sealed and s not in bad and s not in inserted]
        sr.unsealed = _ranges(unsealed)
        # what is proven, and why the rest is not: records after the last valid checkpoint of a crashed or open
        # stream are chain-consistent at best (an insider can rewrite them), never proven
        sr.proven = _ranges(sorted(sealed))
        conflicting = set(sr.conflicting)
        last_valid = max(valid) if valid else None
        tail_reason = {"crashed": "after_crash", "open": "open_tail"}.get(sr.state)
        tail = [s for s in unsealed if s not in conflicting and tail_reason and last_valid is not None
                and s > last_valid]
        in_tail = set(tail)
        rest = [s for s in unsealed if s not in conflicting and s not in in_tail]
        for reason, rs in (
            (tail_reason or "unsealed", _ranges(tail)),
            ("unsealed", _ranges(rest)),
            ("modified", _ranges(s for s in sr.modified if s not in inserted)),
            ("conflicting", _ranges(s for s in sr.conflicting if s not in sealed)),
            ("inserted", _ranges(s for s in sr.inserted if s not in sealed)),
            ("missing", sr.missing),
            ("dropped", sr.dropped),
        ):
            if rs:
                sr.unproven[reason] = rs
        sr.embedded_mismatch = sorted(set(self._embedded_bad.get(own, ())) - bad)
        self._misattributed(sr)
        # verdict
        p = sr.problems
        key_only = bool(sr.checkpoints) and not valid and (
            len(sr.unknown_keys) + len(sr.expired_keys) + len(sr.bad_signatures) == sr.checkpoints)
        key_msgs = _key_messages(sr.signing_keys)
        if key_only:
            # say first why nothing verifies: neither a truncation nor a bad start is known then
            if len(sr.unknown_keys) == sr.checkpoints:
                names = ", ".join(f"{k['name']} (id {k['key_id']})" for k in sr.signing_keys
                                  if k["status"] == "unknown")
                p.append(f"every checkpoint of this stream is signed by a key not in your keyring: {names}; verify "
                         "with a keyring that holds it (otel-audit keys export, on the producer)")
            p.extend(key_msgs)
            key_msgs = []
        if not valid:
            p.append("no valid signed checkpoint: nothing in this stream is proven")
        if sr.modified:
            p.append(f"modified: seq {_fmt_ranges(_ranges(sr.modified))}")
        if sr.missing:
            p.append(f"missing: seq {_fmt_ranges(sr.missing)}")
        if sr.conflicting:
            p.append(f"conflicting records at seq {_fmt_ranges(_ranges(sr.conflicting))}")
        if sr.inserted:
            p.append(f"inserted after the end of the stream: seq {_fmt_ranges(_ranges(sr.inserted))}")
        if sr.broken_links:
            p.append("chain broken between seq " + ", ".join(f"{a} and {b}" for a, b in sr.broken_links[:12]))
        p.extend(key_msgs)
        for d in sr.disagreeing_checkpoints[:12]:
            p.append(f"checkpoint at seq {d['seq']} disagrees with its signed note: " + ", ".join(
                f"{name} {_say(v['record'])} (note {_say(v['note'])})" for name, v in d["fields"].items()))
        if len(sr.disagreeing_checkpoints) > 12:
            p.append(f"... and {len(sr.disagreeing_checkpoints) - 12} more checkpoints that disagree with their notes")
        if sr.bad_checkpoints:
            p.append("malformed checkpoint at seq " + ", ".join(f"{b['seq']} ({b['reason']})" for b in sr.bad_checkpoints[:5]))
        if sr.root_mismatch:
            p.append(f"Merkle root differs from the signed checkpoint at seq {_fmt_ranges(_ranges(sr.root_mismatch))}")
        if 0 in chosen and 0 not in valid and not key_only and not any(b["seq"] == 0 for b in sr.bad_checkpoints) \
                and not any(d["seq"] == 0 for d in sr.disagreeing_checkpoints) \
                and 0 not in (sr.bad_signatures + sr.unknown_keys + sr.expired_keys):
            p.append("seq 0 is not a valid start checkpoint")
        for m in sr.misattributed:
            p.append(f"records at seq {_fmt_ranges(m['seqs'])} ({m['count']:,} record(s), e.g. {m['where']}) are under "
                     f"a resource naming {m['key']}={m['found']!r}, but this stream's signed checkpoints name "
                     f"{m['key']}={m['signed']!r}")
        over = self._ident_overflow.get(own)
        if over:
            p.append(f"{over:,} record(s) are under more than {MAX_IDENTITIES} distinct producer resources; "
                     "they were not compared with the signed producer")
        if sr.embedded_mismatch:
            p.append(f"embedded canonical content ({RECORD}) is not the record's own at seq "
                     f"{_fmt_ranges(_ranges(sr.embedded_mismatch))}")
        if sr.state == "open" and not key_only:
            msg = (
                f"no end-of-stream checkpoint and no successor stream: truncated after seq {top}, or still being "
                f"written (last valid checkpoint at seq {last_valid})"
            )
            (sr.warnings if self.allow_open else p).append(msg)
        if tail and sr.state == "crashed":
            sr.warnings.append(
                f"unsealed tail after the crash: seq {_fmt_ranges(_ranges(tail))} chain-consistent but not signed"
            )
        if rest and valid and not p:
            p.append(f"unsealed records: seq {_fmt_ranges(_ranges(rest))}")
        for d in sr.declared:
            what = d["reason"]
            at = f"seq {d['marker']}" + (f" of stream {d['marker_stream']}" if "marker_stream" in d else "")
            if d["missing"]:
                sr.warnings.append(
                    f"dropped (declared): seq {_fmt_ranges(d['missing'])} {what}, as the signed gap marker at {at} "
                    "declares"
                )
            gone = {q for a, b in d["missing"] for q in range(a, b + 1)}
            here = _ranges(q for a, b in d["seqs"] for q in range(a, min(b, a + 100_000) + 1) if q not in gone)
            if here:
                sr.warnings.append(
                    f"declared: seq {_fmt_ranges(here)} {what}, as the signed gap marker at {at} "
                    "declares; present in this input"
                )
        if sr.duplicates:
            sr.warnings.append(f"{sr.duplicates} exact duplicate(s), as at-least-once delivery makes (harmless)")
        self._liveness.check(sr, valid, at=self.at)
        sr.status = "failed" if p else "verified"


    def _misattributed(self, sr: StreamReport) -> None:
        """Resources of the stream's records that name a producer key (PRODUCER_KEYS) with another value than its
        signed checkpoints: sr.misattributed.

        A forked child's (a stream with a parent line) process-dependent keys are not compared: after a fork the
        SDK gives the provider's resource a new service.instance.id (and process attributes) while the producer
        line of the child's checkpoints is made from the resource the signing processor was built with."""
        idents = self._idents.get(sr.stream_id)
        signed = sr.producer
        if not idents or not signed:
            return
        loose = PROCESS_DEPENDENT_KEYS if sr.parent else ()
        found: dict[tuple[str, str, Any], dict[str, Any]] = {}
        for ident, (n, where, runs) in idents.items():
            for k, tname, v in ident:
                if k not in signed or k in loose:
                    continue  # added in transit (the producer line does not name it), or a fork child's own
                sv = signed[k]
                if type(v) is type(sv) and v == sv:
                    continue
                e = found.get((k, tname, v))
                if e is None:
                    e = found[(k, tname, v)] = {"key": k, "found": v, "signed": sv, "seqs": [], "count": 0,
                                                "where": where}
                e["count"] += n
                e["seqs"].extend(runs)
        sr.misattributed = sorted(
            ({**e, "seqs": _merge_runs(e["seqs"])} for e in found.values()),
            key=lambda e: (e["seqs"][0] if e["seqs"] else [0], e["key"]),
        )


def _merge_runs(runs: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(runs):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _show(v: Any) -> Any:
    """A value as a report may hold it (JSON-safe, short)."""
    if v is None or type(v) in (int, bool):
        return v
    if type(v) is str:
        return v if len(v) <= 200 else v[:200] + "..."
    text = repr(v)
    return text if len(text) <= 200 else text[:200] + "..."


def _say(v: Any) -> str:
    return "absent" if v is None else repr(v)


def _disagreement(fields: tuple[int, Any, Any, dict[str, Any]] | None, sn: SignedNote,
                  key_name: str) -> dict[str, dict[str, Any]]:
    """Where a checkpoint record's own fields differ from what its note and signing key determine (the signing
    processor's `_emit_checkpoint`): {field: {"record": value, "note": value}}; empty when they agree. Then the
    record's content, and so the digest it carries, follow from the signed note and its prev digest alone."""
    cp = sn.checkpoint
    if fields is None:
        return {"record": {"record": "not read", "note": "read"}}
    t, sev_number, sev_text, attrs = fields
    out: dict[str, dict[str, Any]] = {}
    if type(t) is not int or t != cp.time_ns:
        out["time"] = {"record": _show(t), "note": cp.time_ns}
    if (type(sev_number) is not int or type(sev_text) is not str
            or (sev_number, sev_text) != CHECKPOINT_SEVERITY):
        out["severity"] = {"record": f"{_show(sev_number)} {_show(sev_text)}",
                           "note": f"{CHECKPOINT_SEVERITY[0]} {CHECKPOINT_SEVERITY[1]}"}
    expected: dict[str, Any] = {**CHECKPOINT_ATTRIBUTES, "audit.checkpoint.kind": cp.kind,
                                "audit.checkpoint.size": cp.size, "audit.checkpoint.key": key_name}
    for k in sorted(set(attrs) | set(expected)):
        got, want = attrs.get(k, _ABSENT), expected.get(k, _ABSENT)
        if type(got) is not type(want) or got != want:
            out[k] = {"record": None if got is _ABSENT else _show(got), "note": None if want is _ABSENT else want}
    return out


def _named_keys(check: NoteCheck) -> tuple[str, list[tuple[str, str, str, PublicKey | None]]]:
    """(verdict ok|unknown|expired|bad, the keys it rests on: (name, key id hex, status, key or None))."""
    if check.status == "ok":
        return "ok", [(k.name, k.key_id.hex(), "ok", k) for k in check.good]
    if check.status == "bad":
        return "bad", [(k.name, k.key_id.hex(), "bad", k) for k in check.bad]
    if check.status == "expired":
        return "expired", [(k.name, k.key_id.hex(), "expired", k) for k in check.expired]
    return "unknown", [(s.name, s.key_id.hex(), "unknown", None) for s in check.unknown]


def _key_messages(signing_keys: list[dict[str, Any]]) -> list[str]:
    """One problem per key that failed checkpoints, naming the key, its id and, when expired, its window."""
    out = []
    for k in signing_keys:
        who = f"key {k['name']} (id {k['key_id']})"
        at = f"checkpoint(s) at seq {_fmt_ranges(k['seqs'])}"
        if k["status"] == "unknown":
            out.append(f"{at} signed by {who}, which is not in your keyring")
        elif k["status"] == "bad":
            out.append(f"bad signature by {who} on {at}: not made by that key over this checkpoint")
        elif k["status"] == "expired":
            first, last = k["checkpoint_times"]
            when = first if first == last else f"{first} to {last}"
            window = " ".join(x for x in (f"from {k['not_before']}" if k["not_before"] else "",
                                          f"until {k['not_after']}" if k["not_after"] else "") if x)
            out.append(f"{at} signed by {who} at {when}, outside its validity in your keyring (valid {window})")
    return out


OLD_GAP_REASON = "dropped by the producer's full delivery spool (fail_open)"  # markers without audit.gap.reason


def _state_summary(sr: StreamReport, tree: CompactRange, want: Iterable[int], valid: Mapping[int, SignedNote]) -> None:
    """For `verify --state`: the roots still wanted (the whole tree when it reaches that size, else the
    input's own valid checkpoint there) and the stream's latest valid checkpoint."""
    for n in want:
        if n not in sr.roots_at:
            if n == tree.size:
                sr.roots_at[n] = tree.root().hex()
            elif n in valid:
                sr.roots_at[n] = valid[n].checkpoint.root.hex()
    if valid:
        cp = valid[max(valid)].checkpoint
        start = valid.get(0)
        prev = start.checkpoint.prev if start is not None else None
        sr.latest_checkpoint = {
            "size": cp.size, "root": base64.b64encode(cp.root).decode(), "chain": base64.b64encode(cp.chain).decode(),
            "time_ns": cp.time_ns, "kind": cp.kind, "end": cp.end,
            "prev": None if prev is None else {"stream": prev.stream_id, "size": prev.size,
                                               "root": base64.b64encode(prev.root).decode(), "closed": prev.closed},
        }


def _names_checkpoint(got: SignedNote | None, claim: Predecessor | Parent) -> bool:
    """Does a later stream's claim (a successor's predecessor line, a child's parent line) name this
    valid checkpoint exactly?"""
    return got is not None and got.checkpoint.root == claim.root and got.checkpoint.chain == claim.chain


def _gap_claim(seq: int, attrs: Mapping[str, Any]) -> tuple[int, Any, Any, str, str | None]:
    """What a gap marker declares: (its seq, seqs, chain links, reason, destination)."""
    reason = attrs.get("audit.gap.reason")
    dest = attrs.get("audit.gap.destination")
    return (seq, attrs.get("audit.gap.seqs"), attrs.get("audit.gap.chain"),
            reason if isinstance(reason, str) and reason else OLD_GAP_REASON,
            dest if isinstance(dest, str) and dest else None)


def _is_hex(s: str) -> bool:
    try:
        bytes.fromhex(s)
    except ValueError:
        return False
    return s == s.lower()
