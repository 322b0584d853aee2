"""Keyed pseudonyms for sensitive values, in HashiCorp Vault's ``hmac-sha256:<hex>`` form.

A redacted value is replaced by ``HMAC-SHA256(key, utf8(value))``, so the same secret always
gives the same pseudonym under one key: an auditor who knows a value (and holds the key) can
compute its pseudonym with :func:`hmac_value` and search the trail for it, while the trail
itself never holds the value. This is pseudonymisation, not integrity: the signing processor
is what makes the trail tamper-evident.

No OpenTelemetry imports here: the CLI (``otel-audit hash VALUE``) uses this module alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import NoReturn

from otel_audit.errors import ConfigError

__all__ = [
    "HMAC_PREFIX",
    "MIN_KEY_BYTES",
    "SecretBytes",
    "hmac_value",
    "load_hmac_key",
]

#: Prefix of every pseudonym; the same one Vault's audit devices write.
HMAC_PREFIX = "hmac-sha256:"

#: Shortest key accepted, in bytes. A short key makes pseudonyms of low-entropy values
#: (phone numbers, card numbers) cheap to brute-force; 32 random bytes is what to use.
MIN_KEY_BYTES = 16

_HOW_TO = (
    "give the key as 'base64:<b64>', 'hex:<hex>', 'file:/path/to/keyfile' or a string of at least "
    f"{MIN_KEY_BYTES} bytes; generate one with: "
    "python -c \"import secrets; print('hex:' + secrets.token_hex(32))\""
)


class SecretBytes:
    """Key material that never shows itself in ``repr()``, ``str()``, logs or tracebacks.

    Use :meth:`reveal` at the one place that needs the bytes. Equality is constant-time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: bytes | bytearray | memoryview) -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"SecretBytes takes bytes, not {type(value).__name__}")
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """Return the secret bytes themselves."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "SecretBytes(***)"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretBytes):
            return hmac.compare_digest(self._value, other._value)
        return NotImplemented

    def __hash__(self) -> int:
        # Hashable so it can sit in frozen config objects; the hash is of a digest, not the key.
        return hash(hashlib.sha256(b"otel-audit SecretBytes\x00" + self._value).digest())

    def __reduce__(self) -> NoReturn:
        # Pickling would write the key to wherever the pickle goes (multiprocessing, caches).
        raise TypeError("SecretBytes cannot be pickled; pass the key spec and load it again")


def hmac_value(key: bytes | SecretBytes, value: str | bytes) -> str:
    """Return ``"hmac-sha256:" + hex(HMAC-SHA256(key, utf8(value)))``.

    ``key`` is the raw key (as returned by :func:`load_hmac_key`); ``value`` a string, encoded
    as UTF-8, or bytes, used as they are.
    """
    raw_key = key.reveal() if isinstance(key, SecretBytes) else key
    if not isinstance(raw_key, (bytes, bytearray)):
        raise TypeError(f"hmac_value key must be bytes or SecretBytes, not {type(key).__name__}")
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise TypeError(f"hmac_value value must be str or bytes, not {type(value).__name__}")
    return HMAC_PREFIX + hmac.new(raw_key, data, hashlib.sha256).hexdigest()


def load_hmac_key(spec: str | bytes | SecretBytes | None, *, where: str) -> bytes:
    """Turn a key spec from an argument, env var or config file into key bytes.

    Accepted forms:

    * ``bytes`` (or :class:`SecretBytes`): the key itself;
    * ``"base64:<data>"``: standard or URL-safe base64, padding optional;
    * ``"hex:<data>"``: hexadecimal;
    * ``"file:/path"``: the file's content with surrounding whitespace stripped; if that
      content itself starts with ``base64:`` or ``hex:`` it is decoded as above;
    * any other string: its UTF-8 bytes.

    Every form must give at least :data:`MIN_KEY_BYTES` bytes. ``where`` names the source
    (``"config.yaml: processors.redaction.hmac_key"``, ``"--key"``) for error messages. Errors
    raise :class:`~otel_audit.errors.ConfigError`; the key, or any part of it, is never in the
    message.
    """
    if spec is None:
        _fail(where, "no HMAC key was given")
    if isinstance(spec, SecretBytes):
        return _checked(spec.reveal(), where, "the key")
    if isinstance(spec, (bytes, bytearray, memoryview)):
        return _checked(bytes(spec), where, "the key")
    if not isinstance(spec, str):
        _fail(where, f"the key must be a string or bytes, not {type(spec).__name__}")
    if spec.startswith("file:"):
        path = spec[len("file:") :]
        if not path:
            _fail(where, "'file:' is not followed by a path")
        try:
            with open(path, "rb") as f:
                content = f.read()
        except OSError as exc:
            # Chaining the OSError is harmless: it holds the path and the reason, not the key.
            _fail(where, f"cannot read key file {path!r}: {exc.strerror or type(exc).__name__}")
        content = content.strip()
        what = f"key file {path!r}"
        if content.startswith((b"base64:", b"hex:")):
            text = _ascii_or_none(content)
            if text is None:
                _fail(where, f"{what} starts with an encoding prefix but is not ASCII")
            return _decode_prefixed(text, where, what)
        return _checked(content, where, what)
    if spec.startswith(("base64:", "hex:")):
        return _decode_prefixed(spec, where, "the key")
    raw = _utf8_or_none(spec)
    if raw is None:
        _fail(where, "the key string is not valid Unicode text (lone surrogates)")
    return _checked(raw, where, "the key string")


def _decode_prefixed(text: str, where: str, what: str) -> bytes:
    prefix, _, data = text.partition(":")
    data = "".join(data.split())  # tolerate line-wrapped base64/hex
    if prefix == "hex":
        raw = _unhex_or_none(data)
        if raw is None:
            _fail(where, f"{what} says 'hex:' but is not valid hexadecimal")
        return _checked(raw, where, what)
    raw = _unbase64_or_none(data)
    if raw is None:
        _fail(where, f"{what} says 'base64:' but is not valid base64")
    return _checked(raw, where, what)


# The decoders below swallow their exceptions and the caller raises outside the ``except``
# block: a decode error keeps the offending input (the key) in its attributes, and raising
# inside the handler would chain it to our ConfigError as ``__context__``.


def _ascii_or_none(data: bytes) -> str | None:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        return None


def _utf8_or_none(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _unhex_or_none(data: str) -> bytes | None:
    try:
        return bytes.fromhex(data)
    except ValueError:
        return None


def _unbase64_or_none(data: str) -> bytes | None:
    data = data.replace("-", "+").replace("_", "/")
    data += "=" * (-len(data) % 4)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _checked(raw: bytes, where: str, what: str) -> bytes:
    if not raw:
        _fail(where, f"{what} is empty")
    if len(raw) < MIN_KEY_BYTES:
        _fail(where, f"{what} is {len(raw)} bytes, shorter than the minimum of {MIN_KEY_BYTES}")
    return raw


def _fail(where: str, problem: str) -> NoReturn:
    raise ConfigError(f"{where}: {problem}; {_HOW_TO}")
