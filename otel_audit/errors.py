"""Exceptions raised by otel-audit. Every message says what was wrong, where, and what to do."""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every error otel-audit raises on purpose."""


class ConfigError(AuditError, ValueError):
    """A configuration file, key or value is wrong; the message names the file and key."""


class UnknownEventError(AuditError, ValueError):
    """An event name that is not in the catalog."""


class MissingAttributeError(AuditError, ValueError):
    """A catalog event was emitted without one of its required attributes."""


class KeyringError(AuditError):
    """A key or keyring file is missing, malformed, or does not match."""


class InputError(AuditError):
    """Input to the verifier is unusable (not OTLP JSON, unreadable, wrong shape)."""


class DeliveryError(AuditError):
    """An audit record could not be handed on and the configured mode says fail closed."""
