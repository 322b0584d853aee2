"""What the private accesses in otel_audit._sdk_compat buy on the hot path, against their public spellings.

Severity: the signing and spool processors read each record's SeverityNumber as an int. Three ways are
timed per read: the enum member's `_value_` slot read directly (what the processors did before the
compatibility module), `severity_int` (the compatibility module's C attrgetter over `_value_`, what they
do now) and the public `.value` (an enum property, slow on CPython 3.11). Attributes: reading a record's
8 attributes through `attributes_view` (the dict behind BoundedAttributes) against iterating the
BoundedAttributes mapping itself. The baseline for "does it matter" is the signed pipeline's cost per
record (SDK + SigningProcessor + BatchLogRecordProcessor + do-nothing exporter), measured in the same
run: `*_share_of_signed_record` = the extra cost of the public spelling / one signed record.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from _common import (
    Config,
    Figures,
    NullExporter,
    batch_processor,
    benchmark,
    emit_all,
    make_records,
    median,
    provider_with,
)
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadWriteLogRecord

from otel_audit._sdk_compat import attributes_view, severity_int
from otel_audit.keys import Signer
from otel_audit.processors.signing import SigningProcessor

_READS = 200_000


def _ns_per_call(loop: Callable[[int], object], n: int, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        loop(n)
        times.append(time.perf_counter() - start)
    return median(times) / n * 1e9


def _signed_us_per_record(cfg: Config) -> float:
    records = make_records()
    signer = Signer.generate("bench")
    n = max(cfg.records // 4, 2000)
    out = []
    for _ in range(cfg.runs):
        downstream = batch_processor(NullExporter(), n + n // 1000 + 16)
        provider = provider_with(SigningProcessor(signer, downstream=downstream, checkpoint_every=1000))
        try:
            out.append(emit_all(provider, records, n) / n * 1e6)
        finally:
            provider.shutdown()
    return median(out)


@benchmark("sdk_compat")
def bench_sdk_compat(cfg: Config) -> Figures:
    """ns per severity read and per attribute walk: private slot vs. compat function vs. public API."""
    sevs = [SeverityNumber.INFO, SeverityNumber.WARN, SeverityNumber.ERROR, SeverityNumber.DEBUG] * 25

    def empty(n: int) -> None:
        for _ in range(n // 100):
            for s in sevs:
                x = s  # noqa: F841 - the loop's own cost, subtracted from the others

    def direct(n: int) -> None:
        for _ in range(n // 100):
            for s in sevs:
                x = s._value_  # noqa: F841

    def compat(n: int) -> None:
        f = severity_int
        for _ in range(n // 100):
            for s in sevs:
                x = f(s)  # noqa: F841

    def public(n: int) -> None:
        for _ in range(n // 100):
            for s in sevs:
                x = s.value  # noqa: F841

    attrs = make_records()[0].attributes
    rec = ReadWriteLogRecord(LogRecord(attributes=attrs)).log_record.attributes

    def view(n: int) -> None:
        for _ in range(n):
            for _k, _v in attributes_view(rec).items():
                pass

    def mapping(n: int) -> None:
        for _ in range(n):
            for _k, _v in rec.items():
                pass

    runs = max(cfg.runs, 5)
    base = _ns_per_call(empty, _READS, runs)
    sev_direct = _ns_per_call(direct, _READS, runs) - base
    sev_compat = _ns_per_call(compat, _READS, runs) - base
    sev_public = _ns_per_call(public, _READS, runs) - base
    walks = _READS // 20
    attr_view = _ns_per_call(view, walks, runs)
    attr_mapping = _ns_per_call(mapping, walks, runs)
    signed_ns = _signed_us_per_record(cfg) * 1000
    cfg.note(f"{_READS} severity reads and {walks} walks of {len(attrs)} attributes per run, {runs} runs, medians; "
             "severity figures net of the empty loop")
    cfg.note("per signed record the signing and spool processors read the severity once each, "
             "and the spool, elastic and datadog paths walk the attributes")
    return {
        "severity_direct_value_slot_ns": sev_direct,
        "severity_int_compat_ns": sev_compat,
        "severity_public_value_ns": sev_public,
        "attributes_view_walk_ns": attr_view,
        "attributes_mapping_walk_ns": attr_mapping,
        "signed_pipeline_ns_per_record": signed_ns,
        "public_value_share_of_signed_record": 2 * (sev_public - sev_compat) / signed_ns,
        "compat_vs_direct_share_of_signed_record": 2 * (sev_compat - sev_direct) / signed_ns,
        "mapping_walk_share_of_signed_record": (attr_mapping - attr_view) / signed_ns,
    }
