"""Exceptions raised by otel-audit. Every message says what was wrong, where, and what to do."""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every error otel-audit raises on purpose."""


class _Scrubbed(AuditError):
    """An error whose message may quote input (a config value, an argument, a key): the message
    passes `otel_audit.safe.scrub` first, so a credential put in the wrong place (a token pasted
    into ``checkpoint_every``, an API key as an event name) is not repeated in clear."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            from otel_audit.safe import scrub_message

            args = (scrub_message(args[0]), *args[1:])
        super().__init__(*args)


class ConfigError(_Scrubbed, ValueError):
    """A configuration file, key or value is wrong; the message names the file and key."""


class EmitError(_Scrubbed):
    """`AuditLogger` refused a call (its constructor, `emit` or a typed helper) before anything was emitted.

    Every exception `AuditLogger` raises on a bad argument is one of these; the message names the
    event, the argument or attribute key, what was expected and what was given (never an
    attribute's value, which may be a secret). The subclasses below are also `TypeError` or
    `ValueError`, as the checks raised before these classes existed, so `except TypeError` and
    `except ValueError` keep working.
    """


class EmitTypeError(EmitError, TypeError):
    """An argument of the wrong type (not a mapping, not a str, ...)."""


class EmitValueError(EmitError, ValueError):
    """An argument of the right type with an unusable value (unknown outcome, severity, timestamp ...)."""


class AttributeTypeError(EmitTypeError):
    """An attribute (or body) value of the wrong type: not an OTel AnyValue, or not its catalog type."""


class AttributeValueError(EmitValueError):
    """An attribute (or body) value the signed record could not carry as given: a lone surrogate in a
    string, an int outside int64, a number out of its catalog range, nesting or size over the bounds."""


class UnknownEventError(EmitValueError):
    """An event name that is not in the catalog."""


class MissingAttributeError(EmitValueError):
    """A catalog event was emitted without one of its required attributes."""


class KeyringError(_Scrubbed):
    """A key or keyring file is missing, malformed, or does not match."""


class InputError(AuditError):
    """Input to the verifier is unusable (not OTLP JSON, unreadable, wrong shape)."""


class DeliveryError(AuditError):
    """An audit record could not be handed on and the configured mode says fail closed."""
