"""Decoding OTLP/JSON values for the verifier (the integrity core). No OpenTelemetry SDK imports."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any


def _special_double(x: str) -> float:
    v = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(x)
    return float(x) if v is None else v


def decode_value(v: Mapping[str, Any]) -> Any:
    """An OTLP/JSON AnyValue as a Python value, tolerant as the OTLP spec asks of decoders."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        x = v["doubleValue"]
        return _special_double(x) if isinstance(x, str) else float(x)
    if "bytesValue" in v:
        return base64.b64decode(v["bytesValue"])
    if "arrayValue" in v:
        return [decode_value(x) for x in (v["arrayValue"] or {}).get("values", ())]
    if "kvlistValue" in v:
        return {kv["key"]: decode_value(kv.get("value") or {}) for kv in (v["kvlistValue"] or {}).get("values", ())}
    return None
