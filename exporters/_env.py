"""Reading an exporter's settings from environment variables, the way every exporter here does it:
ours first (`OTEL_AUDIT_<VENDOR>_...`), then the vendor's own where one exists; a bad value logs a
warning naming the variable and falls back to the default (the OTel SDK's rule for env config)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otel_audit.errors import ConfigError
from otel_audit.safe import shown

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


def _duration(value: str, where: str) -> float:
    from otel_audit.exporters.file import parse_duration

    return parse_duration(value, where=where)


def env_duration(name: str, default: float, log: logging.Logger) -> float:
    """A positive duration ("30s", "500ms" or seconds) from `name`, else `default`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = _duration(raw, name)
    except ConfigError:
        value = 0.0
    if not value > 0:
        # Not the value itself: a credential set in the wrong variable would be logged.
        log.warning("%s (a value of %d characters) is not a duration above zero (e.g. 30s); using %ss",
                    name, len(raw), default)
        return default
    return value


def env_choice(name: str, choices: Sequence[str], default: str, log: logging.Logger) -> str:
    """One of `choices` (case-insensitive) from `name`, else `default`."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        log.warning("%s=%s is not one of %s; using %s", name, shown(raw), ", ".join(choices), default)
        return default
    return raw


class EnvSettings:
    """Settings named by key, each read from (our variable, the vendor's variable or None)."""

    def __init__(self, variables: Mapping[str, tuple[str, str | None]], log: logging.Logger) -> None:
        self.variables = variables
        self.log = log

    def get(self, name: str) -> str | None:
        for var in self.variables[name]:
            if var:
                value = os.environ.get(var)
                if value is not None and value.strip():
                    return value.strip()
        return None

    def var_name(self, name: str) -> str:
        """The variable a value came from, for messages."""
        ours, generic = self.variables[name]
        return ours if os.environ.get(ours, "").strip() or not generic else generic

    def bool(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        self.log.warning("%s=%s is not true or false; using %s", self.var_name(name), shown(value), default)
        return default

    def int(self, name: str, default: int, check: Callable[[int], Any]) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(check(int(value)))
        except ValueError as exc:
            self.log.warning("%s=%s: %s; using %d", self.var_name(name), shown(value), exc, default)
            return default

    def seconds(self, name: str, default: float) -> float:
        value = self.get(name)
        if value is None:
            return default
        try:
            seconds = _duration(value, self.var_name(name))
            if not seconds > 0:
                raise ConfigError(f"{self.var_name(name)}: must be more than zero")
            return seconds
        except ConfigError as exc:
            self.log.warning("%s; using %gs", exc, default)
            return default
