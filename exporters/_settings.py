"""Exporter settings as data: one declarative model per exporter, read the same way from a
collector-shaped YAML block, from constructor keyword arguments and from environment variables.

A `Setting` names a constructor keyword, the value parser that reads it, its default, the
environment variables that may give it (ours first, then a vendor's alias), a one-line meaning
and whether it is a secret. A `Model` is an exporter's list of them:

* `Model.resolve(given)`: what a constructor does with its keyword arguments. A value given
  (not None) is parsed, so collector-shaped values work as in the YAML (``timeout="10s"``,
  ``tls={"ca_file": ...}``, ``max_event_size="5MiB"``) as well as the typed ones (``10.0``,
  `TlsSettings`); a bad one raises `ConfigError` naming the keyword. A value not given is read
  from the first of the setting's environment variables that is set; a bad one logs a warning
  naming the variable (never its value) and the default is used, the OTel SDK's rule.
* `Model.read_block(cfg, where)`: the keyword arguments of a collector-shaped block; an
  unknown key is a `ConfigError` listing the valid keys, a bad value one naming the key path.
* `Model.markdown()`: the reference section of docs/settings.md (``python -m
  otel_audit.exporters settings`` prints the whole page).

Every parser accepts both the typed value and the collector's text for it, and says what it
expected in terms of the key path it was given; a secret's value is never part of a message.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from otel_audit.errors import ConfigError
from otel_audit.safe import redact_url

__all__ = [
    "Bool",
    "Check",
    "Choice",
    "Duration",
    "Fn",
    "Model",
    "Number",
    "Parser",
    "ProxyUrl",
    "RETRY_KEYS",
    "Retry",
    "Setting",
    "Size",
    "StrList",
    "StrMap",
    "TLS_KEYS",
    "Text",
    "Tls",
    "Url",
    "Whole",
    "readable_file",
    "tls_version",
    "check_headers",
    "header_problem",
    "parse_duration",
    "proxy_url",
    "url_parts",
]

_log = logging.getLogger(__name__)


# -- durations ---------------------------------------------------------------------------------------

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
MAX_DURATION = 100 * 365 * 86400.0  # longer is a typo, and a timer's wait() overflows on it
_DURATION_HINT = 'write a number of seconds or a string such as "1s", "500ms", "2m" or "1h30m"'


def parse_duration(value: object, *, where: str) -> float:
    """A duration in seconds from a number of seconds or a Go duration string ("1m30s").

    Raises `ConfigError` naming ``where`` for anything else, including negative and
    non-finite durations.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: {type(value).__name__} {value!r} is not a duration; {_DURATION_HINT}")
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_go_duration(text, value, where)
        else:
            if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
                raise ConfigError(f"{where}: {value!r} is not a duration; {_DURATION_HINT}")
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ConfigError(f"{where}: {value!r} is not a finite duration (give zero to 100 years); {_DURATION_HINT}")
    if seconds < 0:
        raise ConfigError(f"{where}: {value!r} is negative; a duration must be zero or more (at most 100 years)")
    if seconds > MAX_DURATION:
        raise ConfigError(f"{where}: {value!r} is more than the longest duration accepted (100 years); "
                          f"{_DURATION_HINT}")
    return seconds


def _parse_go_duration(text: str, original: str, where: str) -> float:
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if not text:
        raise ConfigError(f"{where}: {original!r} is not a duration; {_DURATION_HINT}")
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ConfigError(f"{where}: {original!r} is not a duration; {_DURATION_HINT}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


# -- value parsers -----------------------------------------------------------------------------------


class Parser:
    """Reads one setting's value: ``parser(value, where)`` returns it checked and typed, or raises
    `ConfigError` starting with ``where``. `from_text` reads an environment variable's text."""

    kind = "value"

    def __call__(self, value: Any, where: str) -> Any:
        raise NotImplementedError

    def from_text(self, text: str, where: str) -> Any:
        return self(text, where)

    def show(self, value: Any) -> str:
        """A default as the reference shows it."""
        if value is None:
            return "unset"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return f'"{value}"' if value else '""'
        if isinstance(value, Mapping):
            return ", ".join(f"{k}: {v}" for k, v in value.items()) or "{}"
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(map(str, value)) + "]"
        return str(value)


@dataclass(frozen=True)
class Duration(Parser):
    """Seconds from a number or a Go duration ("10s", "500ms", "1m30s")."""

    positive: bool = True
    kind = "duration"

    def __call__(self, value: Any, where: str) -> float:
        seconds = parse_duration(value, where=where)
        if self.positive and not seconds > 0:
            raise ConfigError(f"{where}: must be above zero; e.g. 10s")
        return seconds

    def show(self, value: Any) -> str:
        if value is None:
            return "unset"
        if value and value % 3600 == 0:
            return f"{value / 3600:g}h"
        if value and value % 60 == 0:
            return f"{value / 60:g}m"
        return f"{value:g}s" if value >= 1 or not value else f"{value * 1000:g}ms"


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "t": 10**12, "tb": 10**12, "ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20,
               "gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40}


@dataclass(frozen=True)
class Size(Parser):
    """A number of bytes from a whole number or a size ("5MiB" binary, "1MB" decimal, "512KiB")."""

    least: int = 0
    most: int = 1 << 40
    at_least: bool = False  # say "at least N and at most M" instead of "from N to M"
    why: str = ""  # what the bounds are, for the message
    kind = "size"

    def __call__(self, value: Any, where: str) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and (m := _SIZE.fullmatch(value.strip())) and m.group(2).lower() in _SIZE_UNITS:
            amount = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
            number = int(amount) if amount.is_integer() else None
        if number is None or not self.least <= number <= self.most:
            bounds = _range(self.least, self.most, self.at_least)
            raise ConfigError(f"{where}: expected a whole number of bytes {bounds}{self.why} (or a size such as "
                              f"5MiB or 1MB), got {value!r}")
        return number


_TRUE_TEXT = ("true", "1", "yes", "on")
_FALSE_TEXT = ("false", "0", "no", "off")


@dataclass(frozen=True)
class Bool(Parser):
    """true or false (YAML's booleans, or the text "true"/"false"); an environment variable
    may also say 1/0, yes/no, on/off."""

    kind = "bool"

    def __call__(self, value: Any, where: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ConfigError(f"{where}: expected true or false, got {value!r}")

    def from_text(self, text: str, where: str) -> bool:
        t = text.strip().lower()
        if t in _TRUE_TEXT or t in _FALSE_TEXT:
            return t in _TRUE_TEXT
        raise ConfigError(f"{where}: expected true or false, got {text!r}")


@dataclass(frozen=True)
class Whole(Parser):
    """A whole number from `least` to `most` (a numeric string, as ${env:VAR} yields, too)."""

    least: int = 0
    most: int = 100_000_000
    unit: str = ""
    at_least: bool = False  # say "at least N and at most M" instead of "from N to M"
    kind = "integer"

    def __call__(self, value: Any, where: str) -> int:
        number = value
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int) or not self.least <= number <= self.most:
            unit = f" {self.unit}" if self.unit else ""
            raise ConfigError(f"{where}: expected a whole number{unit} {_range(self.least, self.most, self.at_least)}, "
                              f"got {value!r}")
        return number


@dataclass(frozen=True)
class Number(Parser):
    """A finite number from `least` to `most`."""

    least: float = 0.0
    most: float = 1e12
    kind = "number"

    def __call__(self, value: Any, where: str) -> float:
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
        if (isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number)
                or not self.least <= number <= self.most):
            raise ConfigError(f"{where}: expected a number from {self.least:g} to {self.most:g}, got {value!r}")
        return float(number)


@dataclass(frozen=True)
class Text(Parser):
    """A string on one line (optionally not empty)."""

    nonempty: bool = False
    what: str = "a string on one line"
    kind = "string"

    def __call__(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or any(c in value for c in "\r\n\0") or (self.nonempty and not value.strip()):
            raise ConfigError(f"{where}: expected {self.what}, got {_kind_of(value)}")
        return value


@dataclass(frozen=True)
class Choice(Parser):
    """One of `choices` (case-insensitive); `aliases` maps other spellings (e.g. "" -> "none")."""

    choices: tuple[str, ...] = ()
    aliases: Mapping[Any, str] = field(default_factory=dict)
    kind = "choice"

    def __call__(self, value: Any, where: str) -> str:
        if isinstance(value, (str, bool)) and value in self.aliases:
            return self.aliases[value]
        if isinstance(value, str) and value.strip().lower() in self.choices:
            return value.strip().lower()
        use = " or ".join(self.choices) if len(self.choices) <= 2 else "one of " + ", ".join(self.choices)
        raise ConfigError(f"{where}: {value!r} is not supported; use {use}")

    def show(self, value: Any) -> str:
        return super().show(value) + f" (one of {', '.join(self.choices)})"


def _schemes_text(schemes: Sequence[str]) -> str:
    """("http", "https") -> "an http(s)"; ("http", "https", "socks5", "socks5h") -> "an http(s) or socks5(h)"."""
    words: list[str] = []
    for s in schemes:
        if s + "s" in schemes or s + "h" in schemes:
            words.append(f"{s}({'s' if s + 's' in schemes else 'h'})")
        elif not (s.endswith(("s", "h")) and s[:-1] in schemes):
            words.append(s)
    text = " or ".join(words)
    return ("an " if text[:1] in "aeiouh" else "a ") + text


def _shown(url: str) -> str:
    return redact_url(url)  # no password, no credential-looking query value


def url_parts(value: Any, *, schemes: Sequence[str] = ("http", "https"), credentials: bool = True,
              query: bool = True, example: str = "https://host:443") -> SplitResult:
    """The parts of a URL every URL and proxy setting of every exporter must have: a string that parses,
    a scheme of `schemes`, a host, and a port (when given) from 1 to 65535; without credentials or a
    query/fragment unless allowed. Raises `ConfigError` whose message does not name the key (a parser
    or an exporter's check puts it in front); a password in the URL is never shown."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"expected a URL such as {example}, got {_kind_of(value)}")
    url = value.strip()
    bad = next((c for c in url if c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:  # urllib drops tabs and newlines silently and keeps the rest: no request could use it
        what = "a space (write one in a path as %20)" if bad == " " else f"the character {bad!r}"
        raise ConfigError(f"{_shown(url)!r} is not a URL: it holds {what}; write e.g. {example}")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:  # "Invalid IPv6 URL", a bad character in the host
        raise ConfigError(f"{_shown(url)!r} is not a URL ({exc}); write e.g. {example}") from None
    if parts.scheme.lower() not in schemes or not host:
        raise ConfigError(f"{_shown(url)!r} is not {_schemes_text(schemes)} URL with a host; write e.g. {example}")
    problem = _host_problem(parts.netloc.rpartition("@")[2], host)
    if problem:
        raise ConfigError(f"{_shown(url)!r} has a bad host: {problem}; write e.g. {example}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:  # above 65535 or not a number (urllib raises), or 0 (no connection can use it)
        raise ConfigError(f"{_shown(url)!r} has a bad port; give a port from 1 to 65535")
    if not credentials and (parts.username or parts.password):
        raise ConfigError("the URL must not carry credentials")
    if not query and (parts.query or parts.fragment):
        raise ConfigError(f"{_shown(url)!r} must not have a query or fragment")
    return parts


def _host_problem(hostport: str, host: str) -> str:
    """What is wrong with a URL's host[:port] text (`host`: urllib's hostname of it), or ""."""
    if hostport.startswith("["):  # an IPv6 literal, with an optional zone ("fe80::1%eth0")
        literal, _, rest = hostport[1:].partition("]")
        address, _, zone = literal.partition("%")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return f"[{literal}] is not an IPv6 address"
        if "%" in literal and not re.fullmatch(r"[A-Za-z0-9._-]+", zone):
            return f"the IPv6 zone {zone!r} is not usable"
        if rest and not rest.startswith(":"):
            return "text after the ]"
        return ""
    name = hostport.rpartition(":")[0] if ":" in hostport else hostport
    if ":" in name:
        return "an IPv6 address must be written in brackets, e.g. http://[::1]:8080"
    if any(not (c.isalnum() or c in "-._") for c in name):
        return f"{name!r} holds a character a host name cannot have (letters, digits, '-', '.' and '_' only)"
    labels = name.rstrip(".").split(".")
    if not host.rstrip(".") or any(not label for label in labels):
        return f"{name!r} has an empty label (two dots, or a leading dot)"
    return ""


@dataclass(frozen=True)
class Url(Parser):
    """A URL with a host and a usable port (`url_parts`), of one of `schemes`; without credentials,
    query or fragment unless allowed."""

    schemes: tuple[str, ...] = ("http", "https")
    credentials: bool = False
    query: bool = False
    kind = "URL"

    def __call__(self, value: Any, where: str) -> str:
        try:
            url_parts(value, schemes=self.schemes, credentials=self.credentials, query=self.query)
        except ConfigError as exc:
            raise ConfigError(_located(str(exc), where)) from None
        return str(value).strip()


#: the proxy schemes requests can use; socks5 / socks5h need PySocks (``pip install 'requests[socks]'``)
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def proxy_url(value: Any) -> str:
    """A proxy URL requests can use: http(s), or socks5(h) when PySocks is installed; credentials in it
    are how requests authenticates to the proxy. ConfigError (without the key) otherwise."""
    import importlib.util

    parts = url_parts(value, schemes=PROXY_SCHEMES, query=False, example="http://proxy:3128")
    if parts.scheme.lower().startswith("socks") and importlib.util.find_spec("socks") is None:
        raise ConfigError(f"{_shown(str(value).strip())!r}: a {parts.scheme} proxy needs PySocks, which is not "
                          "installed; pip install 'requests[socks]', or use an http:// proxy")
    return str(value).strip()


@dataclass(frozen=True)
class ProxyUrl(Parser):
    """A proxy URL (`proxy_url`): http(s), or socks5(h) with PySocks installed."""

    kind = "URL"

    def __call__(self, value: Any, where: str) -> str:
        try:
            return proxy_url(value)
        except ConfigError as exc:
            raise ConfigError(_located(str(exc), where)) from None


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_GRPC_KEY = re.compile(r"[0-9a-z_.-]+")


def header_problem(name: str, value: str, *, grpc: bool = False) -> str:
    """What makes `name: value` a header HTTP (or, `grpc`, gRPC metadata) cannot carry, or "". The
    message names the header, never the value (it may be a credential)."""
    if grpc:
        key = name.lower()  # the exporter sends the name lower-cased, as gRPC requires
        if not _GRPC_KEY.fullmatch(key):
            return (f"{name!r} is not a gRPC metadata key (letters, digits, '-', '_' and '.' only, "
                    "sent in lower case)")
        if key.startswith("grpc-"):
            return f"{name!r}: names starting with grpc- are reserved for gRPC itself"
        if key.endswith("-bin"):
            return f"{name!r}: a -bin key carries binary metadata, which a YAML string cannot give"
        if any(not 0x20 <= ord(c) <= 0x7E for c in value):
            return (f"the value of {name!r} holds a character gRPC metadata cannot carry (printable ASCII only; "
                    "the value is not shown)")
        return ""
    if any(c not in _TCHAR for c in name):
        return (f"{name!r} is not an HTTP header name (RFC 9110 token: letters, digits and "
                "!#$%&'*+-.^_`|~, no spaces)")
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
        return (f"the value of {name!r} holds a line break or another control character HTTP cannot carry "
                "(the value is not shown)")
    if value[:1].isspace():
        return f"the value of {name!r} starts with whitespace, which HTTP drops (the value is not shown)"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return (f"the value of {name!r} holds a character HTTP/1.1 cannot send (Latin-1 only; the value is "
                "not shown)")
    return ""


def check_headers(value: Any, where: str, *, reserved: frozenset[str] = frozenset(),
                  grpc: bool = False) -> dict[str, str]:
    """Request headers (gRPC metadata when `grpc`) from a mapping of names to strings; a `ConfigError`
    naming `where` and the header for one that cannot be sent. Values are never shown."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of header names to strings, got {_kind_of(value)}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k.strip():
            raise ConfigError(f"{where}: header names must be non-empty strings, got {k!r}")
        if not isinstance(v, str):
            raise ConfigError(f"{where}.{k}: must be a string, got a {type(v).__name__}; quote the value")
        if k.lower() in reserved:
            raise ConfigError(f"{where}: header {k!r} is set by the exporter itself and cannot be configured")
        problem = header_problem(k, v, grpc=grpc)
        if problem:
            raise ConfigError(f"{where}: {problem}")
        out[k] = v
    return out


@dataclass(frozen=True)
class StrMap(Parser):
    """HTTP headers: a mapping of names (RFC 9110 tokens) to values on one line (values may be
    credentials: never shown). Environment text is ``name=value,...`` with URL-encoded values, as
    OTEL_EXPORTER_OTLP_HEADERS."""

    reserved: frozenset[str] = frozenset()  # names (lowercase) that may not be given
    grpc: bool = False  # gRPC metadata rather than HTTP headers
    kind = "mapping"

    def __call__(self, value: Any, where: str) -> dict[str, str]:
        return check_headers(value, where, reserved=self.reserved, grpc=self.grpc)

    def from_text(self, text: str, where: str) -> dict[str, str]:
        """`name=value,...`; an unusable entry is skipped with a warning naming its position and name only
        (the value may be a secret)."""
        from urllib.parse import unquote

        out: dict[str, str] = {}
        for i, item in enumerate(text.split(",")):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or not name or name.lower() in self.reserved:
                _log.warning("%s: entry %d (%r) is not 'name=value' with a header the exporter does not set; "
                             "ignored", where, i, name if sep else "?")
                continue
            value = unquote(value.strip())
            problem = header_problem(name, value, grpc=self.grpc)
            if problem:
                _log.warning("%s: entry %d: %s; ignored", where, i, problem)
                continue
            out[name] = value
        return out

    def show(self, value: Any) -> str:
        return "{}" if not value else ", ".join(f"{k}: {v}" for k, v in value.items())


@dataclass(frozen=True)
class StrList(Parser):
    """A list of strings; environment text separates them with spaces or commas."""

    kind = "list"

    def __call__(self, value: Any, where: str) -> list[str]:
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {_kind_of(value)}")
        return list(value)

    def from_text(self, text: str, where: str) -> list[str]:
        return [t for t in re.split(r"[\s,]+", text) if t]

    def show(self, value: Any) -> str:
        return "[]" if not value else str(list(value))


#: the keys of the shared `tls` block, as unknown-key messages list them
TLS_KEYS = _TLS_KEYS = ("ca_file", "cert_file", "key_file", "insecure_skip_verify", "min_version", "max_version",
                         "insecure")
#: TLS versions as the collector's configtls writes them
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
#: the collector's configtls client keys otel-audit cannot honour, and what to do instead
TLS_COLLECTOR_ONLY = {
    "ca_pem": "put the PEM text in a file and give ca_file",
    "cert_pem": "put the PEM text in a file and give cert_file",
    "key_pem": "put the PEM text in a file and give key_file",
    "include_system_ca_certs_pool": "the system CAs are used when ca_file is not given; with ca_file only it is "
                                    "trusted (put both in one bundle file to trust both)",
    "server_name_override": "connect to the name the certificate carries (or map it in /etc/hosts)",
    "cipher_suites": "Python's ssl defaults are used",
    "curve_preferences": "Python's ssl defaults are used",
    "reload_interval": "the files are read when the exporter starts; restart to load new ones",
    "tpm_config": "a TPM-held key is not supported",
}


def readable_file(value: Any, where: str) -> str:
    """A path to a regular file this process can read, else a `ConfigError` naming `where`."""
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(f"{where}: expected a file path, got {_kind_of(value)}")
    if not os.path.isfile(value) or not os.access(value, os.R_OK):
        raise ConfigError(f"{where}: {value!r} is not a readable file; check the path")
    return value


def tls_version(value: Any, where: str) -> str:
    """A TLS version as the collector writes it: "1.0" to "1.3" (a YAML number 1.2 too)."""
    text = f"{value:.1f}" if isinstance(value, float) else value
    if not isinstance(text, str) or text.strip() not in TLS_VERSIONS:
        raise ConfigError(f"{where}: {value!r} is not a TLS version; use one of {', '.join(TLS_VERSIONS)} "
                          "(quoted, e.g. \"1.2\")")
    return text.strip()


@dataclass(frozen=True)
class Tls(Parser):
    """The collector's `tls` block (configtls) as `TlsSettings`; a `TlsSettings` as it is. The files
    must be readable regular files; min_version / max_version bound the TLS version; the collector's
    keys that cannot be honoured here are refused, saying what to do instead."""

    kind = "tls"

    def __call__(self, value: Any, where: str) -> Any:
        from otel_audit.exporters._http import TlsSettings

        if value is None or isinstance(value, TlsSettings):
            return value or TlsSettings()
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping ({', '.join(_TLS_KEYS[:6])})")
        kw: dict[str, Any] = {}
        for k, v in value.items():
            if k in ("ca_file", "cert_file", "key_file"):
                kw[k] = readable_file(v, f"{where}.{k}")
            elif k in ("insecure_skip_verify", "insecure"):
                v = Bool()(v, f"{where}.{k}")
                if k == "insecure_skip_verify":
                    kw[k] = v
            elif k in ("min_version", "max_version"):
                if v not in (None, ""):  # the collector's "": its default (1.2 / the newest)
                    kw[k] = tls_version(v, f"{where}.{k}")
            elif k in TLS_COLLECTOR_ONLY:
                raise ConfigError(f"{where}.{k}: a collector tls key otel-audit cannot honour; "
                                  f"{TLS_COLLECTOR_ONLY[k]}")
            else:
                raise ConfigError(f"{where}.{k}: unknown key; valid keys: {', '.join(_TLS_KEYS)}")
        if ("cert_file" in kw) != ("key_file" in kw):
            raise ConfigError(f"{where}: cert_file and key_file go together")
        low, high = kw.get("min_version"), kw.get("max_version")
        if low and high and TLS_VERSIONS.index(low) > TLS_VERSIONS.index(high):
            raise ConfigError(f"{where}: min_version {low} is above max_version {high}")
        return TlsSettings(**kw)

    def show(self, value: Any) -> str:
        return "system CAs, verified"


#: the keys of the shared `retry_on_failure` block, as unknown-key messages list them
RETRY_KEYS = _RETRY_KEYS = ("enabled", "initial_interval", "max_interval", "max_elapsed_time", "multiplier",
               "randomization_factor")
MAX_MULTIPLIER = 1000.0  # retry_on_failure.multiplier: past this the second wait is max_interval anyway


@dataclass(frozen=True)
class Retry(Parser):
    """The collector's `retry_on_failure` block (configretry) as `RetrySettings`."""

    kind = "retry"

    def __call__(self, value: Any, where: str) -> Any:
        from otel_audit.exporters._http import RetrySettings

        if value is None or isinstance(value, RetrySettings):
            return value or RetrySettings()
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping (enabled, initial_interval, max_interval, "
                              "max_elapsed_time)")
        kw: dict[str, Any] = {}
        for k, v in value.items():
            w = f"{where}.{k}"
            if k == "enabled":
                kw[k] = Bool()(v, w)
            elif k in ("initial_interval", "max_interval", "max_elapsed_time"):
                kw[k] = parse_duration(v, where=w)
            elif k in ("multiplier", "randomization_factor"):
                # randomization_factor in [0, 1] as the collector's configretry (more makes a wait negative)
                most = 1.0 if k == "randomization_factor" else MAX_MULTIPLIER
                if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                        or not 0 <= v <= most):
                    raise ConfigError(f"{w}: expected a number from 0 to {most:g}, got {v!r}")
                kw[k] = float(v)
            else:
                raise ConfigError(f"{w}: unknown key; valid keys: {', '.join(_RETRY_KEYS)}")
        return RetrySettings(**kw)

    def show(self, value: Any) -> str:
        return "enabled, 5s doubling by 1.5 to 30s, give up after 5m"


@dataclass(frozen=True)
class Check(Parser):
    """An exporter's own check: ``check(value)`` returns the value or raises ValueError with a
    message that does not start with the key (it is prefixed with ``where``)."""

    check: Callable[[Any], Any] = lambda v: v
    kind: str = "string"
    text: Callable[[str], Any] | None = None  # how environment text becomes a value, if not as it is

    def __call__(self, value: Any, where: str) -> Any:
        try:
            return self.check(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(_located(str(exc), where)) from None

    def from_text(self, text: str, where: str) -> Any:
        return self(self.text(text) if self.text else text, where)


def _range(least: float, most: float, at_least: bool) -> str:
    return f"of at least {least} and at most {most}" if at_least else f"from {least} to {most}"


@dataclass(frozen=True)
class Fn(Parser):
    """A parser from a function ``fn(value, where)`` that raises ConfigError starting with ``where``."""

    fn: Callable[[Any, str], Any] = lambda v, w: v
    kind: str = "value"

    def __call__(self, value: Any, where: str) -> Any:
        return self.fn(value, where)


def _located(msg: str, where: str) -> str:
    """A check's message under the key path `where`: "endpoint must be ..." -> "<where>: must be ...",
    ".key: unknown" -> "<where>.key: unknown", anything else -> "<where>: <msg>"."""
    if msg.startswith((where + ":", where + ".", where + "[")):
        return msg
    if msg.startswith("."):
        return where + msg
    name = where.rsplit(".", 1)[-1].rsplit(" ", 1)[-1]
    for head in (name + ": ", name + " "):
        if msg.startswith(head):
            return f"{where}: {msg[len(head):]}"
    return f"{where}: {msg}"


def _kind_of(value: Any) -> str:
    """A value for a message: short scalars as they are, anything else by its type."""
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    if isinstance(value, str) and len(value) <= 40:
        return repr(value)
    return f"a {type(value).__name__}"


# -- settings and models -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting of an exporter.

    name: the constructor's keyword. key: its place in the YAML block when that differs (a
    dotted path such as ``api.key``; ``""``: not in the block). aliases: other YAML keys for it
    (older names). env: environment variables that give it when the keyword is not given,
    first set wins (ours, then the vendor's). unused: a collector key accepted and checked,
    then not used (documented as such). required: the message's tail when the block lacks it.
    """

    name: str
    parse: Parser
    default: Any = None
    env: tuple[str, ...] = ()
    doc: str = ""
    secret: bool = False
    key: str | None = None
    aliases: tuple[str, ...] = ()
    unused: bool = False
    required: str = ""
    default_doc: str | None = None  # the default as the reference shows it, when not the value itself

    @property
    def path(self) -> str:
        return self.name if self.key is None else self.key

    def parse_value(self, value: Any, where: str) -> Any:
        return self._safely(self.parse, value, where)

    def parse_text(self, text: str, where: str) -> Any:
        return self._safely(self.parse.from_text, text, where)

    def _safely(self, fn: Callable[[Any, str], Any], value: Any, where: str) -> Any:
        try:
            return fn(value, where)
        except ConfigError as exc:
            if not self.secret:
                raise
            msg = str(exc)
            shown = [repr(value), str(value)] if isinstance(value, str) and value else []
            if any(s and s in msg for s in shown):  # a secret's value never appears in a message
                raise ConfigError(f"{where}: not a usable {self.parse.kind} (the value is not shown: "
                                  "it is a secret)") from None
            raise


class Model:
    """The settings of one exporter: read from keyword arguments, the environment and YAML."""

    def __init__(self, exporter: str, settings: Iterable[Setting], *, ignored: Iterable[str] = (),
                 extra_keys: Iterable[str] = (), title: str = "", intro: str = "",
                 unknown_hint: str = "", list_keys: Iterable[str] | None = None) -> None:
        self.exporter = exporter
        self.settings = tuple(settings)
        self.by_name = {s.name: s for s in self.settings}
        #: collector keys that change nothing here: accepted and ignored so a block moves unchanged
        self.ignored = frozenset(ignored)
        #: keys the exporter's own from_config reads besides the settings' (cross-checked blocks)
        self.extra_keys = tuple(extra_keys)
        self.title = title or exporter
        self.intro = intro
        self.unknown_hint = unknown_hint
        self._list_keys = tuple(list_keys) if list_keys is not None else None

    # -- the keys of the YAML block

    def top_keys(self) -> list[str]:
        keys: list[str] = []
        for s in self.settings:
            if s.path:
                for k in (s.path, *s.aliases):
                    head = k.split(".", 1)[0]
                    if head not in keys:
                        keys.append(head)
        keys.extend(k for k in self.extra_keys if k not in keys)
        return keys

    def valid_keys(self) -> list[str]:
        return list(self._list_keys) if self._list_keys is not None else self.top_keys()

    def _section_keys(self, head: str) -> list[str]:
        out: list[str] = []
        for s in self.settings:
            for k in (s.path, *s.aliases):
                if k.startswith(head + "."):
                    sub = k[len(head) + 1:].split(".", 1)[0]
                    if sub not in out:
                        out.append(sub)
        return out

    # -- reading

    def given(self, arguments: Mapping[str, Any], collector: Mapping[str, Any]) -> dict[str, Any]:
        """A constructor's arguments: its named ones (None: not given) and the collector-shaped rest
        (`**collector`: the keys of a block that are no argument name, e.g. `retry_on_failure`, a
        nested `api: {key: ...}`, an alias or an ignored key), read as `read_block` reads them.
        An argument the reference names in brackets (a setting whose block key differs from its
        name, such as ``tls_ca_file`` or ``retry_block``) is taken as an argument too."""
        out = {k: v for k, v in arguments.items() if k in self.by_name}
        collector = dict(collector)
        block_keys = {*self.top_keys(), *self.ignored}
        for k in list(collector):
            s = self.by_name.get(k)
            if s is not None and s.path != s.name and not s.unused and k not in block_keys:
                if out.get(k) is not None:
                    raise ConfigError(f"{self.exporter}: {k} is given twice")
                out[k] = collector.pop(k)
        if collector:
            try:
                block = self.read_block(collector, self.exporter, required=False)
            except ConfigError as exc:  # the named arguments' secrets stay out of it too
                raise self.masked(exc, self.secret_values(out, by_name=True)) from None
            for k, v in block.items():
                if out.get(k) is not None:
                    raise ConfigError(f"{self.exporter}: {k} is given twice (also under its collector name)")
                out[k] = v
        return out

    def resolve(self, given: Mapping[str, Any], *, names: Iterable[str] | None = None) -> dict[str, Any]:
        """Each setting (of `names`, else all) from `given`, else its environment variables, else its
        default. A bad given value raises ConfigError naming the keyword; a bad environment value
        logs a warning naming the variable and falls back to the default."""
        out: dict[str, Any] = {}
        for name in names if names is not None else self.by_name:
            s = self.by_name[name]
            if s.unused:
                continue
            value = given.get(name)
            if value is not None:
                try:
                    out[name] = s.parse_value(value, name)
                except ConfigError as exc:
                    raise self.masked(exc, self.secret_values(given, by_name=True)) from None
                continue
            out[name] = self.from_env(s)
        return out

    # -- secrets in messages

    def secret_values(self, values: Mapping[str, Any] | None = None, *, by_name: bool = False) -> list[str]:
        """The texts of this exporter's secret settings: in `values` (a block, or keyword arguments when
        `by_name`) and in their environment variables. A message that quotes any other value masks them,
        so a credential pasted into the wrong key is never shown."""
        found: list[str] = []
        for s in self.settings:
            if not s.secret:
                continue
            if values is not None:
                for k in (s.name,) if by_name else tuple(k for k in (s.path, *s.aliases) if k):
                    v = values.get(k) if by_name else _lookup(values, k)
                    found.extend(_texts(v))
            env = self.env_text(s)
            if env is not None:
                found.extend(_texts(env[1]))
        return sorted({t for t in found if len(t) >= _MIN_MASKED}, key=len, reverse=True)

    @staticmethod
    def mask(text: str, secrets: Iterable[str]) -> str:
        """`text` with every occurrence of each of `secrets` replaced by [secret]."""
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= _MIN_MASKED:
                text = text.replace(secret, "[secret]")
        return text

    def masked(self, exc: ConfigError, secrets: Iterable[str]) -> ConfigError:
        """`exc`, or a ConfigError with the same text where the secrets are masked."""
        msg = str(exc)
        shown = self.mask(msg, secrets)
        return exc if shown == msg else ConfigError(shown)

    def missing(self, name: str, what: str = "") -> ConfigError:
        """The error of a required setting given neither as an argument nor by its variables."""
        s = self.by_name[name]
        where = f", or set {' or '.join(s.env)}" if s.env else ""
        # "<what> given:", not "<what>:": "token: pass token" would read as a credential to the scrubber
        return ConfigError(f"no {what or name} given: pass {name}{where}")

    def env_text(self, s: Setting) -> tuple[str, str] | None:
        """(variable, text) of the first of the setting's variables set to something."""
        for var in s.env:
            raw = os.environ.get(var)
            if raw is not None and raw.strip():
                return var, raw.strip()
        return None

    def from_env(self, s: Setting) -> Any:
        found = self.env_text(s)
        if found is None:
            return s.default
        var, raw = found
        try:
            return s.parse_text(raw, var)
        except ConfigError as exc:
            msg = str(exc) if not s.secret else f"{var} is not usable"
            if not s.secret:
                # the value itself stays out (a credential set in the wrong variable would be logged)
                msg = self.mask(msg.replace(repr(raw), f"(a value of {len(raw)} characters)"),
                                self.secret_values())
            _log.warning("%s; using %s", msg, "the default" if s.default is None else s.parse.show(s.default))
            return s.default

    def read_block(self, cfg: Any, where: str, *, required: bool = True) -> dict[str, Any]:
        """The constructor keywords of a collector-shaped block: only the keys it holds, parsed.
        Unknown keys raise ConfigError listing the valid ones; ignored keys are passed over. A message
        never shows the block's own secrets (a token pasted into another key is masked)."""
        try:
            return self._read_block(cfg, where, required=required)
        except ConfigError as exc:
            raise self.masked(exc, self.secret_values(cfg if isinstance(cfg, Mapping) else None)) from None

    def _read_block(self, cfg: Any, where: str, *, required: bool) -> dict[str, Any]:
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(cfg).__name__}; "
                              f"valid keys are {', '.join(self.valid_keys())}")
        top = self.top_keys()
        for key in cfg:
            if key in self.ignored:
                continue
            if key not in top:
                hint = f"; {self.unknown_hint}" if self.unknown_hint else ""
                raise ConfigError(f"{where}.{key}: unknown key{hint}; "
                                  f"valid keys are {', '.join(self.valid_keys())}")
        for head in top:
            sub = self._section_keys(head)
            if sub and cfg.get(head) is not None:
                section = cfg[head]
                if not isinstance(section, Mapping):
                    raise ConfigError(f"{where}.{head}: expected a mapping ({', '.join(sub)})")
                for k in section:
                    if k not in sub:
                        raise ConfigError(f"{where}.{head}.{k}: unknown key; valid keys: {', '.join(sub)}")
        kw: dict[str, Any] = {}
        for s in self.settings:
            if not s.path:
                continue
            present = [k for k in (s.path, *s.aliases) if _lookup(cfg, k) is not _MISSING]
            if len(present) > 1:
                raise ConfigError(f"{where}.{present[1]}: {present[0]} is set too; give only {s.path}")
            if not present:
                if s.required and required:
                    raise ConfigError(f"{where}.{s.path}: {s.required}")
                continue
            value = _lookup(cfg, present[0])
            if value is None or (s.required and value == ""):
                if s.required:
                    raise ConfigError(f"{where}.{s.path}: {s.required}")
                continue
            parsed = s.parse_value(value, f"{where}.{present[0]}")
            if not s.unused:
                kw[s.name] = parsed
        return kw

    def defaults(self) -> dict[str, Any]:
        return {s.name: s.default for s in self.settings if not s.unused}

    # -- documentation

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.intro:
            lines += [self.intro, ""]
        lines += ["| key | type | default | environment | meaning |", "|---|---|---|---|---|"]
        for s in self.settings:
            key = f"`{s.path}`" if s.path else f"(argument `{s.name}`)"
            if s.aliases:
                key += " (also " + ", ".join(f"`{a}`" for a in s.aliases) + ")"
            if s.path and s.path != s.name and not s.unused:
                key += f" (argument `{s.name}`)"
            env = ", ".join(f"`{v}`" for v in s.env) or "-"
            meaning = s.doc
            if s.secret:
                meaning = "**secret** (never shown in a message or log). " + meaning
            if s.unused:
                meaning = "accepted and checked as the collector does, not used here. " + meaning
            if s.required:
                meaning = "**required**. " + meaning
            default = s.default_doc if s.default_doc is not None else s.parse.show(s.default)
            lines.append(f"| {key} | {s.parse.kind} | {_md(default)} | {env} | {_md(meaning)} |")
        if self.ignored:
            lines += ["", "Accepted and ignored (collector-only): " + ", ".join(f"`{k}`" for k in sorted(self.ignored))
                      + "."]
        return "\n".join(lines) + "\n"


_MISSING = object()
_MIN_MASKED = 6  # a shorter "secret" would mask ordinary words of a message


def _texts(value: Any) -> list[str]:
    """The strings a secret setting's value holds (a string, a list's items, a mapping's values)."""
    if isinstance(value, str):
        return [value.strip(), value] if value.strip() else []
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _texts(v)]
    return []


def _lookup(cfg: Mapping[str, Any], path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- the reference page ------------------------------------------------------------------------------

_HEADER = """# Exporter settings

Generated from the settings models in `exporters/` by
`python -m otel_audit.exporters settings > docs/settings.md`; do not edit by hand
(`tests/test_settings.py` fails when this page is stale).

Every exporter reads the same settings three ways: the collector-shaped block under
`exporters:` in an otel-audit YAML/JSON file (the key column), keyword arguments of its class
(the same names; for a nested key the argument named in brackets), and, for what neither gives,
the environment variables listed (first set wins; a bad value logs a warning and the default is
used). Values take the collector's forms everywhere: durations as `10s`, `500ms`, `1m30s` or a
number of seconds; sizes as a number of bytes or `5MiB` (binary), `1MB` (decimal); booleans as
`true`/`false` (an environment variable may also say `1`/`0`); `tls` and `retry_on_failure` as
mappings. Secrets are never shown in a message or a log line.

The shared blocks:

* `tls`: `ca_file`, `cert_file` and `key_file` (together; readable regular files, checked when
  the file is loaded), `insecure_skip_verify` (true: do not verify the server's certificate),
  `min_version` / `max_version` (`"1.0"` to `"1.3"`, as the collector writes them: the TLS
  versions offered; OTLP/gRPC always offers 1.2 and 1.3, so there only a range holding both is
  accepted), `insecure` (accepted; for OTLP/gRPC: plaintext). The collector's other `tls` keys
  (`ca_pem`, `cert_pem`, `key_pem`, `include_system_ca_certs_pool`, `server_name_override`,
  `cipher_suites`, `curve_preferences`, `reload_interval`, `tpm_config`) are refused with what
  to do instead.
* `headers`: names are HTTP tokens (RFC 9110; for OTLP/gRPC metadata keys of letters, digits,
  `-`, `_` and `.`, sent in lower case, not `grpc-*` or `*-bin`), values on one line (no control
  characters, no leading whitespace; Latin-1 for HTTP, printable ASCII for gRPC). A header that
  cannot be sent is a configuration error naming it, never showing its value.
* every URL (endpoints and proxies): a scheme the setting takes, a host (a name of letters,
  digits, `-`, `.` and `_`, or an IPv4 address, or an IPv6 address in brackets), a port from 1
  to 65535 when given, no spaces or control characters anywhere (write a space in a path as
  `%20`), and no `user:password@` where the transport cannot use it (OTLP/gRPC).
* `retry_on_failure`: `enabled` (true), `initial_interval` (5s), `max_interval` (30s),
  `max_elapsed_time` (5m; 0: never give up), `multiplier` (1.5), `randomization_factor` (0.5).
"""


def models() -> list[Model]:
    """Every exporter's model, in the order of the reference."""
    from otel_audit.exporters import datadog, elastic, file, otlp, splunk_hec, webhook

    return [file.SETTINGS, otlp.GRPC_SETTINGS, otlp.HTTP_SETTINGS, splunk_hec.SETTINGS, datadog.SETTINGS,
            elastic.SETTINGS, webhook.SETTINGS]


def reference() -> str:
    """docs/settings.md: the header and one section per exporter."""
    return _HEADER + "".join("\n" + m.markdown() for m in models())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m otel_audit.exporters settings``: print docs/settings.md."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["settings"]:
        print("usage: python -m otel_audit.exporters settings  (prints docs/settings.md)", file=sys.stderr)
        return 2
    sys.stdout.write(reference())
    return 0
