"""Rendering a verification report as text for people (`--format json` uses Report.to_json)."""

from __future__ import annotations

from otel_audit.verify.liveness import describe_handover, iso
from otel_audit.verify.report import UNPROVEN_REASONS, Report

# -- rendering --------------------------------------------------------------------------------------


def render_text(rep: Report) -> str:
    lines = [
        f"otel-audit verify: {rep.files} file(s), {rep.records:,} record(s), {len(rep.streams)} stream(s)"
    ]
    if rep.at is not None:
        lines.append(f"liveness judged at {iso(rep.at)} (--at / --now)")
    for s in rep.streams:
        who = s.producer.get("service.name") or "?"
        host = s.producer.get("host.name")
        if host:
            who += f"@{host}"
        if s.signed == "ingest":
            who += ", signed at ingest"
        head = (
            f"stream {s.stream_id} [{who}] {s.state if s.sealed else 'state unknown'}: {s.records:,} record(s) "
            f"({s.events:,} events, {s.checkpoints:,} checkpoints), {s.sealed:,} sealed"
        )
        lines.append(f"{'VERIFIED' if s.status == 'verified' else 'FAILED  '} {head}")
        signers = list(dict.fromkeys(f"{k['name']} (id {k['key_id']})" for k in s.signing_keys if k["status"] == "ok"))
        if signers and s.signed == "ingest":
            lines.append(f"    signed at ingest by the audit service, not by its producer (the hop before the "
                         f"service is trusted): {', '.join(signers)}")
        elif signers:
            lines.append(f"    signed by: {', '.join(signers)}")
        if s.predecessor:
            lines.append(f"    follows stream {s.predecessor}")
        if s.successor:
            lines.append(f"    followed by stream {s.successor}")
        if s.parent:
            lines.append(f"    child of stream {s.parent}")
        if s.children:
            lines.append(f"    parent of stream{'s' if len(s.children) > 1 else ''} {', '.join(s.children)}")
        lines.extend(f"    key handover: {describe_handover(h)}" for h in s.handovers if h["cosigned"])
        lines.extend(f"    PROBLEM: {p}" for p in s.problems)
        lines.extend(f"    note: {w}" for w in s.warnings)
    if rep.unsigned:
        ex = "; ".join(rep.unsigned_examples)
        lines.append(f"{'note' if not any('unsigned' in p for p in rep.problems) else 'PROBLEM'}: "
                     f"{rep.unsigned} record(s) without integrity attributes, e.g. {ex}")
    for m in rep.malformed[:20]:
        lines.append(f"PROBLEM: {m}")
    for t in rep.torn:
        lines.append(f"note: {t}; the records in it were never acknowledged as written")
    if len(rep.read_as) > 1 or set(rep.read_as) - {"otlp"}:
        lines.append("read as: " + ", ".join(f"{k} {n:,}" for k, n in rep.read_as.items()) + " line(s) or document(s)")
    lines.extend(f"skipped: {s}" for s in rep.skipped[:20])
    if len(rep.skipped) > 20:
        lines.append(f"skipped: ... and {len(rep.skipped) - 20} more (--format json lists them all)")
    if rep.state is not None:
        st = rep.state
        lines.append(
            f"state {st['file']}: {st['lineages_known']} lineage(s) known, {len(st['checked'])} checked, "
            f"{len(st['advanced'])} advanced, {len(st['new'])} new"
            + (f", {len(st['outside'])} outside the input ({', '.join(st['outside'][:10])}"
               + (", ..." if len(st["outside"]) > 10 else "") + ")" if st["outside"] else "")
            + f"; {st.get('note', '')}"
        )
    lines.append(result_line(rep))
    return "\n".join(lines) + "\n"


def result_line(rep: Report) -> str:
    """The last line: exactly how many records were proven, in how many streams, and what was not proven."""
    unproven = rep.unproven
    ok_reasons = [r for r in ("after_crash", "open_tail", "dropped") if unproven.get(r)]
    if rep.ok:
        head = f"result: VERIFIED - {rep.proven:,} record(s) proven in {rep.proven_streams} stream(s)"
        parts = [f"{unproven[r]:,} {UNPROVEN_REASONS[r]}" for r in ok_reasons]
        if unproven.get("unsigned"):
            parts.append(f"{unproven['unsigned']:,} unsigned record(s) ignored (--ignore-unsigned), not proven")
        if not parts:
            return f"result: VERIFIED - all {rep.proven:,} record(s) proven in {rep.proven_streams} stream(s)"
        return head + "; " + "; ".join(parts)
    bad = [s for s in rep.streams if s.status != "verified"]
    not_proven = sum(n for r, n in unproven.items() if r not in ("missing", "dropped"))
    return (
        f"result: FAILED - {len(bad)} of {len(rep.streams)} stream(s) with integrity problems; "
        f"{rep.proven:,} record(s) proven, {not_proven:,} present but not proven"
        + (f"; {'; '.join(rep.problems)}" if rep.problems else "")
    )
