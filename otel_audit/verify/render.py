"""Rendering a verification report as text for people (`--format json` uses Report.to_json)."""

from __future__ import annotations

from otel_audit.verify.report import Report

# -- rendering --------------------------------------------------------------------------------------


def render_text(rep: Report) -> str:
    lines = [
        f"otel-audit verify: {rep.files} file(s), {rep.records:,} record(s), {len(rep.streams)} stream(s)"
    ]
    for s in rep.streams:
        who = s.producer.get("service.name") or "?"
        host = s.producer.get("host.name")
        if host:
            who += f"@{host}"
        head = (
            f"stream {s.stream_id} [{who}] {s.state}: {s.records:,} record(s) "
            f"({s.events:,} events, {s.checkpoints:,} checkpoints), {s.sealed:,} sealed"
        )
        lines.append(f"{'VERIFIED' if s.status == 'verified' else 'FAILED  '} {head}")
        if s.keys:
            lines.append(f"    signed by: {', '.join(s.keys)}")
        if s.predecessor:
            lines.append(f"    follows stream {s.predecessor}")
        if s.successor:
            lines.append(f"    followed by stream {s.successor}")
        if s.parent:
            lines.append(f"    child of stream {s.parent}")
        if s.children:
            lines.append(f"    parent of stream{'s' if len(s.children) > 1 else ''} {', '.join(s.children)}")
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
    bad = [s for s in rep.streams if s.status != "verified"]
    if rep.ok:
        lines.append(f"result: VERIFIED - {len(rep.streams)} stream(s), every record proven")
    else:
        lines.append(
            f"result: FAILED - {len(bad)} of {len(rep.streams)} stream(s) with integrity problems"
            + (f"; {'; '.join(rep.problems)}" if rep.problems else "")
        )
    return "\n".join(lines) + "\n"
