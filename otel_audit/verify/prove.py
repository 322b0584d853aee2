"""Proving streams: orders records by (stream, seq), checks chains, Merkle roots, signed checkpoints,
gap markers and lineage, and fills in a Report. Inputs (`inputs`) hand it decoded records.

No OpenTelemetry SDK imports.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from otel_audit import canonical
from otel_audit.canonical import CHECKPOINT_EVENT, DIGEST, GAP_EVENT, PREV_DIGEST, STREAM_ID, STREAM_SEQ
from otel_audit.decoding import DecodeError, decode_canonical_content, decode_log_record
from otel_audit.keys import InvalidSignature, Keyring
from otel_audit.merkle import CompactRange
from otel_audit.note import NoteError, Parent, Predecessor, SignedNote, parse_note
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
#: how a record that strict decoding rejects is named in the report (then the rule, the path, why)
STRICT = "not strict OTLP/JSON"


# -- the verifier -----------------------------------------------------------------------------------


class Verifier:
    """Collects records from any number of inputs, then proves each stream (`finish`)."""

    def __init__(self, keyring: Keyring, *, allow_open: bool = False, ignore_unsigned: bool = False,
                 partial: bool = False) -> None:
        self.partial = partial
        self.keyring = keyring
        self.allow_open = allow_open
        self.ignore_unsigned = ignore_unsigned
        self.report = Report()
        self._streams: dict[str, dict[int, _Rec]] = {}
        self._extra: dict[tuple[str, int], list[_Rec]] = {}  # more records at a seq already seen
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
        """One OTLP/JSON logRecord; `where` and `index` locate it in messages. `resource`: the decoded
        attributes of its resourceLogs' resource, when the input has them (not used yet)."""
        self.report.records += 1
        try:
            event, t, sev, sevtext, body, attrs, *_ = decode_log_record(rec)
        except DecodeError as exc:
            self._malformed(f"{_loc(where, index)}: {STRICT}: {exc}")
            return
        try:
            stream = attrs.pop(STREAM_ID, None)
            seq = attrs.pop(STREAM_SEQ, None)
            prev = attrs.pop(PREV_DIGEST, None)
            digest = attrs.pop(DIGEST, None)
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
            content = canonical.content_bytes(event, t, sev, sevtext, body, attrs)
            pb = bytes.fromhex(prev)
            db = bytes.fromhex(digest)
            if len(pb) != 32 or len(db) != 32:
                raise ValueError("a digest is not 32 bytes")
            head = self._heads.get(stream)
            if head is None:
                head = self._heads[stream] = b'\x00["v1","' + stream.encode() + b'",'  # type: ignore[union-attr]
            calc = _sha256(pb.join((b"\x00", head[1:])) + str(seq).encode() + b"," + content[1:]).digest()
            r = (calc, pb, db, body if event == CHECKPOINT_EVENT and type(body) is str else None)
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
            self._extra.setdefault((stream, seq), []).append(r)
        else:
            per[seq] = r

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
                event, t, _, _, body, attrs = decode_canonical_content(content)
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
        for (stream, seq), more in self._extra.items():
            if stream != sid:
                continue
            variants = [per[seq], *more]
            distinct = set(variants)
            sr.duplicates += len(variants) - len(distinct)
            if len(distinct) > 1:
                conflicts.append(seq)
                # keep the variant consistent with itself and its successor, if one is
                nxt = [per[seq + 1], *self._extra.get((stream, seq + 1), ())] if seq + 1 in per else None
                good = [v for v in variants if v[CALC] == v[DIG]
                        and (nxt is None or any(n[PREV] == v[DIG] for n in nxt))]
                if good:
                    per[seq] = good[0]
        sr.conflicting = sorted(conflicts)
        sr.records = len(per)
        return per

    def _checkpoints(self, sr: StreamReport, chosen: dict[int, _Rec]) -> dict[int, SignedNote]:
        """Parse and check the signature of every checkpoint record; keep the valid ones."""
        valid: dict[int, SignedNote] = {}
        keys: set[str] = set()
        for seq, r in chosen.items():
            if r[NOTE] is None:
                continue
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
            verdict = self._signature(sn)
            if verdict == "ok":
                valid[seq] = sn
                keys.update(s.name for s in sn.signatures if self.keyring.lookup(s.name, s.key_id))
                if not sr.producer:
                    sr.producer = dict(cp.producer)
            elif verdict == "unknown":
                sr.unknown_keys.append(seq)
            elif verdict == "expired":
                sr.expired_keys.append(seq)
            else:
                sr.bad_signatures.append(seq)
        sr.keys = sorted(keys)
        return valid

    def _signature(self, sn: SignedNote) -> str:
        msg = sn.text.encode("utf-8")
        known = False
        expired = False
        for s in sn.signatures:
            key = self.keyring.lookup(s.name, s.key_id)
            if key is None:
                continue
            known = True
            try:
                key.verify(s.signature, msg)
            except InvalidSignature:
                return "bad"
            if not key.valid_at(sn.checkpoint.time_ns):
                expired = True
                continue
            return "ok"
        if expired:
            return "expired"
        return "unknown" if not known else "bad"

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
        for s in seqs:
            if s != tree.size:
                break
            sn = valid.get(s)
            if sn is not None:
                if tree.root() == sn.checkpoint.root:
                    proven_below = s
                else:
                    sr.root_mismatch.append(s)
            tree.append(chosen[s][DIG])
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
        # verdict
        p = sr.problems
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
        if sr.bad_signatures:
            p.append(f"bad checkpoint signature at seq {_fmt_ranges(_ranges(sr.bad_signatures))}")
        if sr.unknown_keys:
            p.append(f"checkpoint signed by a key not in the keyring at seq {_fmt_ranges(_ranges(sr.unknown_keys))}")
        if sr.expired_keys:
            p.append(f"checkpoint signed outside its key's validity at seq {_fmt_ranges(_ranges(sr.expired_keys))}")
        if sr.bad_checkpoints:
            p.append("malformed checkpoint at seq " + ", ".join(f"{b['seq']} ({b['reason']})" for b in sr.bad_checkpoints[:5]))
        if sr.root_mismatch:
            p.append(f"Merkle root differs from the signed checkpoint at seq {_fmt_ranges(_ranges(sr.root_mismatch))}")
        if 0 in chosen and 0 not in valid and not any(b["seq"] == 0 for b in sr.bad_checkpoints) and 0 not in (
            sr.bad_signatures + sr.unknown_keys + sr.expired_keys
        ):
            p.append("seq 0 is not a valid start checkpoint")
        if sr.state == "open":
            last = max(valid) if valid else None
            msg = (
                f"no end-of-stream checkpoint and no successor stream: truncated after seq {top}, or still being "
                f"written (last valid checkpoint at seq {last})"
            )
            (sr.warnings if self.allow_open else p).append(msg)
        if sr.unsealed and sr.state == "crashed":
            sr.warnings.append(
                f"unsealed tail after the crash: seq {_fmt_ranges(sr.unsealed)} chain-consistent but not signed"
            )
        elif sr.unsealed and sr.state != "open" and not p:
            p.append(f"unsealed records: seq {_fmt_ranges(sr.unsealed)}")
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
        sr.status = "failed" if p else "verified"


OLD_GAP_REASON = "dropped by the producer's full delivery spool (fail_open)"  # markers without audit.gap.reason


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
