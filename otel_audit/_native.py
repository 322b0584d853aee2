"""The optional native integrity core (`otel_audit_native`, built from native/): which path is active.

The pure-Python code (canonical.py, decoding.py, merkle.py, verify/) is the reference and the fallback. The
native module does the same work faster where it is sure: it decodes the common, strict OTLP/JSON shape,
writes canonical bytes, chains digests, folds Merkle ranges and computes fingerprints; anything unusual it
declines and Python handles it. Differential tests hold both to byte-identical results.

``OTEL_AUDIT_NATIVE`` chooses: ``auto`` (the default: native when importable), ``off`` (pure Python), or
``required`` (a ConfigError at first use when the native module is missing or of another interface).
"""

from __future__ import annotations

import os
from typing import Any

ENV = "OTEL_AUDIT_NATIVE"
#: threads the native core may use to scan lines at once (unset or 0: one per core)
THREADS_ENV = "OTEL_AUDIT_NATIVE_THREADS"
#: the interface version this package is written against (otel_audit_native.ABI)
ABI = 2
_CHOICES = {"": "auto", "auto": "auto", "1": "required", "required": "required", "on": "required",
            "0": "off", "off": "off", "false": "off", "no": "off"}

_state: list[Any] = []  # [module or None, why (when None)]
_functions: dict[str, Any] = {}


def _load() -> tuple[Any, str]:
    raw = os.environ.get(ENV, "")
    choice = _CHOICES.get(raw.strip().lower())
    if choice is None:
        from otel_audit.errors import ConfigError

        raise ConfigError(f"{ENV}={raw!r}: use auto, off or required")
    if choice == "off":
        return None, f"{ENV}=off"
    try:
        import otel_audit_native as mod  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        why = f"otel_audit_native is not installed ({exc})"
        mod = None
    else:
        abi = getattr(mod, "ABI", None)
        why = f"otel_audit_native {getattr(mod, '__version__', '?')} has interface {abi!r}, this package needs {ABI}"
        if abi != ABI:
            mod = None
    if mod is None and choice == "required":
        from otel_audit.errors import ConfigError

        raise ConfigError(f"{ENV}=required but the native core cannot be used: {why}. Build it: "
                          "pip install ./native (needs Rust), or install a wheel from native/build.sh")
    return mod, why


def core() -> Any:
    """The native module, or None for the pure-Python path (decided once per process)."""
    if not _state:
        _state[:] = _load()
    return _state[0]


def function(name: str) -> Any:
    """The native module's function `name`, or None on the pure-Python path (cached: a per-record lookup)."""
    try:
        return _functions[name]
    except KeyError:
        mod = core()
        f = _functions[name] = getattr(mod, name) if mod is not None else None
        return f


def threads() -> int:
    """The native core's scanning threads: OTEL_AUDIT_NATIVE_THREADS, else 0 (one per core)."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()) or int(text) > 256:
        from otel_audit.errors import ConfigError

        raise ConfigError(f"{THREADS_ENV}={text!r}: give a number of threads (0 or unset: one per core)")
    return int(text)


def reset() -> None:
    """Decide again at the next `core()` (tests switch paths with the environment variable)."""
    _state.clear()
    _functions.clear()


def describe() -> str:
    """One line naming the active path, for `otel-audit --version`."""
    try:
        mod = core()
    except Exception as exc:  # noqa: BLE001 - a description never raises
        return f"integrity core: unusable ({exc})"
    if mod is None:
        return f"integrity core: pure Python ({_state[1]})"
    return f"integrity core: native {getattr(mod, '__version__', '?')} ({getattr(mod, '__file__', '?')})"
