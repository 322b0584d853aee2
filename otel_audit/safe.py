"""Redaction of credentials in URLs and text, for every error message, log line and check-config output.

An endpoint may carry a credential: ``user:password@`` (otlphttp, Elasticsearch), a query value
(Splunk ``?token=``, Datadog ``?dd-api-key=``, Elasticsearch ``?api_key=``), or a secret path
segment (Slack and other webhook URLs). `redact_url` masks each of them with ``***`` and keeps
the rest (scheme, host, port, the readable path), so a message still says where it went wrong.
`redact_text` does the same for every URL, and every ``url: /path?query`` of urllib3, in a text
such as an exception's message.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: every CLI start imports this module
if TYPE_CHECKING:
    from otel_audit.processors.redaction import RedactionProcessor

MASK = "***"

#: Query parameter and header names (lower case, '-' and '_' ignored) whose values are credentials.
_SECRET_NAMES = frozenset({
    "token", "apikey", "key", "secret", "password", "passwd", "pwd", "pass", "sig", "signature",
    "accesstoken", "auth", "authorization", "ddapikey", "ddapplicationkey", "applicationkey", "appkey",
    "clientsecret", "code", "credential", "credentials", "session", "sessionid", "jwt", "bearer",
    "privatekey", "hectoken", "splunktoken", "xapikey", "xauthtoken", "cookie", "proxyauthorization",
})
_SECRET_PARTS = ("token", "secret", "password", "passwd", "apikey", "auth", "signature", "credential", "key")


def is_secret_name(name: str) -> bool:
    """True when a query parameter or header called `name` carries a credential."""
    n = re.sub(r"[-_.\s]", "", name.lower())
    return n in _SECRET_NAMES or any(p in n for p in _SECRET_PARTS)


def entropy(s: str) -> float:
    """Shannon entropy of `s` in bits per character (random base64 is ~5, English words ~3)."""
    counts = {c: s.count(c) for c in set(s)}
    return -sum(k / len(s) * math.log2(k / len(s)) for k in counts.values())


def _secret_segment(seg: str) -> bool:
    """A path segment that looks like a secret: long, mixed letters and digits, high entropy."""
    if len(seg) < 16 or not re.fullmatch(r"[A-Za-z0-9_\-.~%=+]+", seg):
        return False
    if seg.startswith(("whsec_", "xox", "sk_", "sk-", "ghp_")):
        return True
    has_digit = any(c.isdigit() for c in seg)
    has_alpha = any(c.isalpha() for c in seg)
    if not (has_digit and has_alpha) and len(seg) < 32:
        return False
    if len(seg) >= 24 and entropy(seg) >= 3.5:
        return True
    return has_digit and has_alpha and entropy(seg) >= 3.2


_NAME_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,47}")


def describe_key(key: str) -> str:
    """A mapping key as an error message may show it: as it is if it reads like a field name,
    else ``<key of N characters>`` (a key can be caller data: a credential, an e-mail address)."""
    if _NAME_LIKE.fullmatch(key) and not _secret_segment(key) and not any(
        len(part) >= 16 and _secret_segment(part) for part in re.split(r"[._]", key)
    ):
        return key
    return f"<key of {len(key)} characters>"


def _redact_path(path: str) -> str:
    return "/".join(MASK if _secret_segment(seg) else seg for seg in path.split("/"))


def _redact_query(query: str) -> str:
    if not query:
        return query
    from urllib.parse import parse_qsl, urlencode  # here: every CLI start imports this module (ipaddress ...)

    try:
        pairs = parse_qsl(query, keep_blank_values=True)
    except ValueError:
        return MASK
    if not pairs:
        return MASK if _secret_segment(query) else query
    out = [(k, MASK if is_secret_name(k) or _secret_segment(v) else v) for k, v in pairs]
    return urlencode(out, safe="*")


def redact_url(url: object) -> str:
    """`url` with any password of ``user:password@``, credential-like query values and secret-looking
    path segments replaced by ``***``; the fragment is dropped. Never raises."""
    if not isinstance(url, str):
        return repr(url) if url is not None else "None"
    from urllib.parse import urlsplit, urlunsplit

    url = url.strip()
    if "://" not in url and "@" in url.partition("/")[0]:  # user:password@host:port, no scheme
        url = "//" + url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a bracket in the authority: the scheme and host still say where, the rest masked
        m = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*:)?//([^/?#\s]*@)?([^/?#@\s]*)", url)
        if m is None:
            return "<unparsable URL>"
        user = m.group(2) or ""
        if user:
            user = f"{user.partition(':')[0]}:{MASK}@" if ":" in user else f"{MASK}@"
        rest = url[m.end():]
        return f"{m.group(1) or ''}//{user}{m.group(3)}{'/' + MASK if rest else ''} (unparsable URL)"
    if not parts.scheme and not parts.netloc:  # host:port, or a bare path
        return _redact_path(url.partition("?")[0]) + ("?" + _redact_query(url.partition("?")[2]) if "?" in url else "")
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    out = urlunsplit((parts.scheme, netloc, _redact_path(parts.path), _redact_query(parts.query), ""))
    return out[2:] if out.startswith("//") else out


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()]+")
_URLLIB3_PATH = re.compile(r"(url: |\"[A-Z]+ )(/[^\s'\"<>()]*)")  # "url: /p?q" and '"POST /p?q HTTP/1.1"'
_USERINFO = re.compile(r"(?<![\w.%~+-])([\w.%~+-]+):([^\s@/'\"<>]+)@(?=[\w.\[\]-])")


def redact_text(text: object) -> str:
    """`text` with every URL in it, and every urllib3 ``url: /path?query``, passed through `redact_url`."""
    s = str(text)
    s = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), s)
    s = _USERINFO.sub(lambda m: f"{m.group(1)}:{MASK}@" if m.group(2) != MASK else m.group(0), s)
    return _URLLIB3_PATH.sub(lambda m: m.group(1) + redact_url(m.group(2)), s)


def redact_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers with the values of credential headers replaced by ``***``."""
    return {k: (MASK if is_secret_name(k) else v) for k, v in (headers or {}).items()}


_SCRUBBER: list[RedactionProcessor] = []


def scrub(text: object) -> str:
    """`redact_text`, then every credential the redaction processor's secret rules find, masked
    (``[REDACTED:api_key]``): for messages that may quote input. Never raises."""
    s = redact_text(text)
    try:
        if not _SCRUBBER:
            from otel_audit.processors.redaction import RedactionProcessor

            _SCRUBBER.append(RedactionProcessor(mode="mask", rules=["api_key", "bearer_token", "password",
                                                                    "private_key"]))
        return _SCRUBBER[0].scan_text(s)
    except Exception:  # noqa: BLE001 - a message must still be raised; the URL pass has run
        return s


#: the "where: " heads of a message ("audit.yaml: exporters.elasticsearch.auth: "): a key path, then our text
_LOCATION_HEAD = re.compile(r"(?:[^\s:'\"]+|[A-Za-z]:[\\/][^\s:'\"]*): ")
#: a config file's path as a message's first head, spaces allowed ("/home/me/my app/audit.yaml: ")
_FILE_HEAD = re.compile(r"[^:'\"\n]+\.(?:ya?ml|json): ")


def scrub_message(text: object) -> str:
    """`scrub` for a message of ours: "<file>: <key path>: <what is wrong>". The key path heads are
    scrubbed apart from the text after them, so that a key named ``auth`` or ``token`` does not make
    our own words after it (``auth: authenticator extensions ...``) read as its secret value; a value
    quoted right after a head (``token: 'abc...'``) stays with its key and is scrubbed as before."""
    s = str(text)
    heads: list[str] = []
    pos = 0
    if (first := _FILE_HEAD.match(s)) is not None and s[first.end():first.end() + 1] not in ("'", '"', ""):
        heads.append(scrub(first.group()[:-2]) + ": ")
        pos = first.end()
    while (m := _LOCATION_HEAD.match(s, pos)) is not None and s[m.end():m.end() + 1] not in ("'", '"', ""):
        heads.append(scrub(m.group()[:-2]) + ": ")
        pos = m.end()
    if not heads:
        return scrub(s)
    # after a secret-named key, only an ordinary lower-case word is ours ("auth: authenticator ..."); a
    # value pasted there unquoted ("password: hunter2-...") is scrubbed with its key as context
    word = re.match(r"[^\s,;:.()]*", s[pos:])
    if is_secret_name(s[:pos - 2].rsplit(".", 1)[-1]) and word is not None and not re.fullmatch(r"[a-z]+",
                                                                                                  word.group()):
        return scrub(s)
    return "".join(heads) + scrub(s[pos:])


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for a log line or message: at most ``limit`` characters, scrubbed."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return scrub(text)


class RedactingFilter(logging.Filter):
    """A logging filter for handlers: the formatted message of every record passes `scrub`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _rewrite(record, scrub)


def _rewrite(record: logging.LogRecord, clean: Callable[[str], str]) -> bool:
    """Replace the record's formatted message by `clean` of it where that differs; always lets it through."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave it to the handler's own error path
        return True
    safe = clean(message)
    if safe != message:
        record.msg, record.args = safe, None
    return True


#: Loggers of the HTTP libraries the exporters use; their own lines name the URL they requested.
THIRD_PARTY_LOGGERS = (
    "urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests",
    "opentelemetry.exporter.otlp.proto.http._log_exporter", "opentelemetry.exporter.otlp.proto.grpc.exporter",
)
_installed = False


def guard_third_party_loggers() -> None:
    """Put a RedactingFilter on the loggers of urllib3, requests and the OTLP exporters (once)."""
    global _installed
    if _installed:
        return
    _installed = True
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).addFilter(RedactingFilter())


#: Loggers of the OpenTelemetry SDK whose lines quote an environment value as given (a header of
#: OTEL_EXPORTER_OTLP_HEADERS, an item of OTEL_RESOURCE_ATTRIBUTES ...) while a pipeline is built: a credential in a
#: malformed variable would be printed in clear. These are public modules, guarded before the SDK is imported;
#: the SDK's private modules' loggers (a boolean variable's parser, the batch processors, the configurator) are
#: found by name prefix once the SDK is imported (`guard_sdk_loggers`), so no private module is named here.
SDK_LOGGERS = ("opentelemetry.util.re", "opentelemetry.sdk.resources", "opentelemetry.sdk.trace.export")
#: SDK messages (by how they begin) whose argument at the index is a whole item of an environment variable:
#: shown by its length only, as otel-audit's own lines do, since headers and resource items are where
#: credentials are put (and a malformed one matches no secret rule reliably).
_ENV_ITEM_ARGS = (
    ("Header format invalid!", 0),                      # opentelemetry.util.re: OTEL_EXPORTER_OTLP_*HEADERS
    ("Invalid key value resource attribute pair", 0),  # opentelemetry.sdk.resources: OTEL_RESOURCE_ATTRIBUTES
    ("Invalid value for %s: %r", 1),                   # environment_variables: a boolean variable's value
)
_sdk_guarded: set[str] = set()


class EnvEchoFilter(RedactingFilter):
    """A logging filter for the SDK's own loggers: an environment item the SDK quotes whole (`_ENV_ITEM_ARGS`) is
    replaced by its length, and the rest of the line passes `scrub` (RedactingFilter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg, args = record.msg, record.args
        if isinstance(msg, str) and isinstance(args, tuple):
            for start, index in _ENV_ITEM_ARGS:
                if msg.startswith(start) and len(args) > index:
                    item = args[index]
                    size = len(item) if isinstance(item, str) else len(repr(item))
                    shown = f"<an item of {size} characters, not shown: it may hold a credential>"
                    record.args = (*args[:index], shown, *args[index + 1:])
                    if "%r" in msg:  # shown as given, not repr'd
                        record.msg = msg.replace("%r", "%s")
                    break
        if _SCRUBBER or _redaction_loaded():
            return super().filter(record)
        # The SDK logs some of these lines from its resource detectors' threads while the main thread imports the
        # SDK; `scrub` would import the redaction processor, which imports the SDK: a deadlock. Until it is
        # loaded, the URL pass only (the items the SDK quotes whole are replaced above either way).
        return _rewrite(record, redact_text)


def _redaction_loaded() -> bool:
    """The redaction processor's module is imported whole (so `scrub` imports nothing)."""
    module = sys.modules.get("otel_audit.processors.redaction")
    spec = getattr(module, "__spec__", None)
    return module is not None and not getattr(spec, "_initializing", False) and hasattr(module, "RedactionProcessor")


def guard_sdk_loggers() -> None:
    """Put an `EnvEchoFilter` on the SDK loggers of `SDK_LOGGERS` and on every ``opentelemetry.*`` logger that
    exists by now (each once). Called at import of otel_audit (before the SDK's own import reads
    OTEL_RESOURCE_ATTRIBUTES) and whenever a pipeline is built, once the SDK is imported and before it reads the
    environment; the filters stay, so the SDK's configurator (traces, metrics) reading the same variables
    afterwards is covered too."""
    names = [*SDK_LOGGERS, *(n for n, lg in list(logging.Logger.manager.loggerDict.items())
                             if n.startswith("opentelemetry.") and isinstance(lg, logging.Logger))]
    for name in names:
        if name not in _sdk_guarded:
            _sdk_guarded.add(name)
            logging.getLogger(name).addFilter(EnvEchoFilter())
