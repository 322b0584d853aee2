"""Redaction: replace secrets and personal data in audit records before they are signed.

``RedactionProcessor`` is the first processor of the audit pipeline. It edits each record in
place, so that what the signing processor chains, and every exporter ships, never held the
secret. A found value is replaced by its keyed pseudonym ``hmac-sha256:<hex>`` (Vault's
form: the same value always gives the same pseudonym under one key, so an auditor can search
for a known value with ``otel-audit hash VALUE``) or, in ``mask`` mode, by
``[REDACTED:<rule>]``.

What is found:

* by pattern, in every string of the body and the attributes (values and mapping keys),
  however deeply nested: ``api_key``, ``bearer_token``, ``password``, ``private_key``
  (secrets) and ``email``, ``phone``, ``card`` (personal data). ``api_key`` includes every
  credential format of detect-secrets' regex plugins (``processors/secret_rules.py``), and
  bare AWS secret access keys (40 characters of base64 with random-data entropy);
  ``password`` includes HTTP Basic and Digest credentials;
* by attribute key: the whole value of an attribute (or of a nested mapping entry) whose key,
  or whose key's last dotted segment, is a sensitive key such as ``password`` or
  ``authorization``, or ends in one as a word (``db_password``, ``x-dd-api-key``,
  ``clientSecret``) (rule name ``sensitive_key``);
* by attribute key, when asked: IP addresses in ``client.address`` and its kin
  (``client_ip``);
* by structure, in a string that holds a JSON object or array (``AuditLogger.config_changed``
  writes ``audit.change.before``/``after`` so; JSON attributes and bodies): each member is
  treated like an attribute, so a sensitive key's value is replaced at any depth and every
  string is scanned by pattern; a member whose key a ``key=value`` pattern names
  (``db_password``, ``apiKey``) is replaced whole under that pattern's rule. A JSON text that
  had something replaced is written again with sorted keys and no spaces; one with nothing, or
  one that does not parse (or nests deeper than 64), stays text and is
  scanned as text. Only strings that start with ``{``/``[`` and end with ``}``/``]`` are parsed.

Integrity attributes (``audit.integrity.*``, ``audit.stream.*``) and checkpoint records are
never touched. A record that had something replaced gets ``audit.redaction.rules`` and
``audit.redaction.count``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import json
import logging
import re
import string
import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Final, Literal, NamedTuple

from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.util.types import AnyValue

from otel_audit.canonical import CHECKPOINT_EVENT
from otel_audit.errors import ConfigError
from otel_audit.processors.secret_rules import BASE64_TABLE, LibraryRule, WeakScanner, default_rules, has_run, span_at
from otel_audit.pseudonym import HMAC_PREFIX, SecretBytes, hmac_value, load_hmac_key
from otel_audit.safe import entropy

__all__ = [
    "BUILTIN_RULES",
    "CLIENT_ADDRESS_KEYS",
    "DEFAULT_SENSITIVE_KEYS",
    "PII_EVENT_NAME",
    "PII_RULES",
    "RedactionProcessor",
    "SECRET_RULES",
    "SENSITIVE_KEY_RULE",
    "SENSITIVE_KEY_WORDS",
]

_logger = logging.getLogger(__name__)

SECRET_RULES: Final = ("api_key", "bearer_token", "password", "private_key")
PII_RULES: Final = ("email", "phone", "card", "client_ip")
#: Every built-in rule name, accepted by ``RedactionProcessor(rules=...)``.
BUILTIN_RULES: Final = SECRET_RULES + PII_RULES
#: Rule name reported when a value was replaced because of its key.
SENSITIVE_KEY_RULE: Final = "sensitive_key"

#: Keys whose whole value is replaced; compared case-insensitively, ``-`` and ``_`` alike,
#: camelCase split into words, against the whole attribute key and against its last dotted
#: segment, which may also end in one of them as a word (``db_password``, ``x-dd-api-key``).
DEFAULT_SENSITIVE_KEYS: Final = (
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pass",
    "pwd",
    "secret",
    "secret_key",
    "secret_value",
    "token",
    "api_key",
    "apikey",
    "api_token",
    "x-api-key",
    "authorization",
    "proxy-authorization",
    "auth",
    "bearer",
    "cookie",
    "set-cookie",
    "credentials",
    "creds",
    "private_key",
    "provider_key",
    "client_secret",
    "access_token",
    "refresh_token",
    "id_token",
    "otp",
)
# Sensitive for a plain value only: a mapping under them ({"auth": {"scheme": ..., "token": ...}})
# is redacted by its own keys and patterns.
_SCALAR_ONLY_KEYS: Final = frozenset({"auth", "credentials", "creds"})
#: ``<word>_key`` is sensitive for these words (``access_key``, ``signing_key``, ``DD_APP_KEY``).
SENSITIVE_KEY_WORDS: Final = (
    "access", "account", "app", "application", "auth", "client", "decryption", "encryption",
    "hmac", "license", "master", "private", "provider", "root", "shared", "signing", "ssh",
    "storage", "subscription",
)
# "password" ending a key or followed by what names another copy of it: PGPASSWORD,
# password1, password_confirmation, new_password_again (not passwords_changed, password_expired).
_PASSWORD_IN_KEY = re.compile(
    r"pass(?:word|wd|phrase)(?:\d*|_?(?:confirm\w*|again|repeat|new|old|current|plain(?:text)?))$"
)

#: Attributes the ``client_ip`` rule looks at (current semantic conventions, then legacy names).
CLIENT_ADDRESS_KEYS: Final = (
    "client.address",
    "source.address",
    "network.peer.address",
    "http.client_ip",
    "net.peer.ip",
    "net.sock.peer.addr",
)

PII_EVENT_NAME: Final = "data_access.pii.detected"
RULES_ATTRIBUTE: Final = "audit.redaction.rules"
COUNT_ATTRIBUTE: Final = "audit.redaction.count"
ERROR_ATTRIBUTE: Final = "audit.redaction.error"
_PROTECTED_PREFIXES: Final = ("audit.integrity.", "audit.stream.")
# Ours: scanning them would only find our own rule names.
_OWN_KEYS: Final = frozenset({RULES_ATTRIBUTE, COUNT_ATTRIBUTE, ERROR_ATTRIBUTE})
_FAILED: Final = "[REDACTION_FAILED]"
# A whole pseudonym or mask, as this module writes them.
_ALREADY = re.compile(r"hmac-sha256:[0-9a-f]{64}|\[REDACTED(?::[A-Za-z0-9_.\-]+)?\]|\[REDACTION_FAILED\]")

Mode = Literal["hmac", "mask"]

# ---------------------------------------------------------------------------------------------
# Patterns.
#
# A rule is a list of alternatives (_Alt). ``(?P<V>...)`` marks the part of a match that is
# the secret (the value after ``password=``, the token after ``Bearer``); without it the whole
# match is. _Scanner.combine joins the alternatives of several rules into one regex and tells
# them apart by an empty group at the end of each (the last group to close is ``lastindex``).
#
# Speed, measured on CPython's ``re``: a regex whose alternatives all start with a literal
# character gets a first-character prefilter, and one that starts with a look-behind or a
# case-insensitive class does not, which made a first version cost ~100 ns per character. So:
#
# * the secret regex runs on the lower-cased string (same length, same offsets) and every
#   alternative starts with a lower-case literal; where case matters (``AKIA``, ``eyJ``), a
#   check on the original text confirms the match;
# * word-boundary look-behinds come after the first literal (``sk-(?<![a-z0-9_-]...)``: "sk-",
#   not preceded by a token character), so a failed attempt costs one character compare;
# * the phone/card regex starts with the single class [0-9+(] and dispatches with
#   look-behinds, so non-digit text is skipped by the prefilter;
# * a key word's own boundary (``db_password`` yes, ``bypassword`` no, ``userPassword`` yes)
#   is checked in Python on the rare candidate, as camelCase needs the original case.
# ---------------------------------------------------------------------------------------------

# (original string, start of the match, text that would be replaced) -> is it a finding?
_Check = Callable[[str, int, str], bool]
# (original string, start of the match) -> the span to replace, or None: not a finding
_Span = Callable[[str, int], "tuple[int, int] | None"]


class _Alt(NamedTuple):
    rule: str
    source: str
    check: _Check | None = None
    # Lower-case strings one of which every match contains: a long string is searched only
    # with the alternatives whose anchors it holds. Alternatives sharing a tuple form a group.
    anchors: tuple[str, ...] = ()
    # If set, decides the finding and its span in place of ``check`` and the V groups: the
    # regex alternative is then only the literal prefix of a detect-secrets pattern.
    span: _Span | None = None


def _not_after(cls: str, width: int) -> str:
    """After ``width`` literal characters: they are not preceded by a character of ``cls``."""
    return f"(?<!{cls}{'.' * width})"


def _starts(prefix: str) -> _Check:
    return lambda s, i, _t: s.startswith(prefix, i)


def _key_start_ok(s: str, i: int, _t: str) -> bool:
    """The key word at ``s[i]`` starts a word: after a non-alphanumeric, or a camelCase hump."""
    if i == 0:
        return True
    before = s[i - 1]
    return not before.isalnum() or (before.islower() and s[i].isupper())


_KV_VALUE = (
    r"[\"']?[ \t]*(?::=|=>|::|[:=]|%3a|%3d)[ \t]*"
    r"(?:\"(?P<V>(?:[^\"\\\n]|\\.){1,1024})\""
    r"|'(?P<V>[^'\n]{1,1024})'"
    r"|(?P<V>[^\s\"'&,;}\]]{1,1024}))"
)


# Values after a key word that are no secret: words of a sentence ("password: expired after
# 90 days"), type names ("password: str"), and placeholders ("${env:DB_PASSWORD}", "<redacted>").
_NOT_A_VALUE: Final = frozenset(
    "none null nil true false yes no on off required optional expired invalid missing empty unset "  # noqa: SIM905
    "changed updated reset rotated revoked must should not str string int bool bytes any redacted "
    "hidden masked removed set enabled disabled ok n/a na unknown see is was the a an for of and or "
    "to in after before length policy holds has have expected got needs need cannot can contains "
    "requires gives give takes use write".split()
    # an authorization scheme: the credentials follow it (or were already replaced)
    + "bearer basic digest apikey splunk ssws token negotiate ntlm hmac aws4-hmac-sha256".split()  # noqa: SIM905
)
_PLACEHOLDER = re.compile(r"\$\{.*\}?|<[^<>]*>?|\{\{.*|%[sd]|\*+|x{3,}|\[redacted[^\]]*\]?", re.IGNORECASE)


def _value_ok(text: str) -> bool:
    """``text``, found after a key word, can be a secret (see _NOT_A_VALUE, _PLACEHOLDER)."""
    bare = text.strip("().,:;!?")
    if bare.lower() in _NOT_A_VALUE or _PLACEHOLDER.fullmatch(bare) is not None:
        return False
    if len(bare) <= 2 and not any(c.isalnum() for c in bare):
        return False  # "=", "::": a separator the pattern took for the value
    # A PEM block after "private_key:" is the private-key rule's, which takes the whole block.
    return not bare.startswith("-----")


def _kv_ok(s: str, i: int, t: str) -> bool:
    # An ARN names a secret and does not hold it: arn:aws:secretsmanager:...:secret:prod/db
    if i > 0 and s[i - 1] == ":" and s[:4].lower() == "arn:":
        return False
    return _key_start_ok(s, i, t) and _value_ok(t)


def _kv(rule: str, keyword: str, anchors: tuple[str, ...]) -> _Alt:
    """``keyword=value``, ``"keyword": "value"``, ``'keyword': 'value'``; the value is secret.

    ``keyword`` is a lower-case regex that starts with a literal.
    """
    return _Alt(rule, keyword + _KV_VALUE, _kv_ok, anchors)


def _key_word_before(s: str, i: int, t: str) -> bool:
    """A ``key`` at ``s[i]`` ends ``<word>_key`` for a word of SENSITIVE_KEY_WORDS (``accessKey``)."""
    j = i
    if j > 0 and s[j - 1] in "_-":
        j -= 1
    before = s[max(0, j - 16) : j].lower()
    for word in SENSITIVE_KEY_WORDS:
        if before.endswith(word) and _key_start_ok(s, j - len(word), t):
            return _value_ok(t)
    return False


_AWS_KEY_ID = re.compile(r"A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}")
_T = "[a-z0-9_-]"  # a token character, lower-cased

_KEY_ANCHORS = (
    "sk-", "akia", "asia", "abia", "acca", "gh", "github_pat_", "aiza", "xox",
    "k_live_", "k_test_", "hf_", "npm_", "shp", "sq0", "datadog",
)
_API_KEY = [
    # OpenAI (sk-, sk-proj-, sk-svcacct-), Anthropic (sk-ant-api03-) and the like
    _Alt("api_key", f"sk-{_not_after(_T, 3)}{_T}{{20,}}", _starts("sk-"), _KEY_ANCHORS),
    # AWS access key ids: long-term AKIA, temporary ASIA, ...
    _Alt(
        "api_key",
        f"a(?:kia|sia|bia|cca){_not_after('[a-z0-9]', 4)}[a-z0-9]{{16}}(?![a-z0-9])",
        lambda _s, _i, t: _AWS_KEY_ID.fullmatch(t) is not None,
        _KEY_ANCHORS,
    ),
    # GitHub classic (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained tokens
    _Alt("api_key", f"gh[pousr]_{_not_after('[a-z0-9_]', 4)}[a-z0-9]{{20,}}", _starts("gh"), _KEY_ANCHORS),
    _Alt(
        "api_key",
        f"github_pat_{_not_after('[a-z0-9_]', 11)}[a-z0-9_]{{22,}}",
        _starts("github_pat_"),
        _KEY_ANCHORS,
    ),
    # Google API keys
    _Alt("api_key", f"aiza{_not_after(_T, 4)}{_T}{{30,}}", _starts("AIza"), _KEY_ANCHORS),
    # Slack bot, user, app, refresh ... tokens
    _Alt("api_key", f"xox[abeoprs]-{_not_after(_T, 5)}[a-z0-9-]{{10,}}", _starts("xox"), _KEY_ANCHORS),
    # Stripe secret and restricted keys, live and test
    _Alt("api_key", f"sk_(?:live|test)_{_not_after(_T, 8)}[a-z0-9]{{16,}}", _starts("sk_"), _KEY_ANCHORS),
    _Alt("api_key", f"rk_(?:live|test)_{_not_after(_T, 8)}[a-z0-9]{{16,}}", _starts("rk_"), _KEY_ANCHORS),
    # Hugging Face user access tokens: hf_ and 34 letters of both cases
    _Alt(
        "api_key",
        f"hf_{_not_after(_T, 3)}[a-z]{{30,}}(?![a-z0-9])",
        lambda s, i, t: s.startswith("hf_", i) and not t[3:].islower() and not t[3:].isupper(),
        _KEY_ANCHORS,
    ),
    # npm access tokens
    _Alt("api_key", f"npm_{_not_after('[a-z0-9_]', 4)}[a-z0-9]{{36}}(?![a-z0-9])", _starts("npm_"), _KEY_ANCHORS),
    # Shopify access tokens and shared secrets
    _Alt(
        "api_key", f"shp(?:at|ss|ca|pa)_{_not_after(_T, 6)}[a-f0-9]{{32}}(?![a-z0-9])", _starts("shp"), _KEY_ANCHORS
    ),
    # Square access tokens and OAuth secrets
    _Alt("api_key", f"sq0(?:atp|csp|idp)-{_not_after(_T, 7)}[a-z0-9_\\-]{{22,}}", _starts("sq0"), _KEY_ANCHORS),
    # Datadog API (32 hex) and application (40 hex) keys in a text that names Datadog
    _Alt(
        "api_key",
        r"datadog[^\n]{0,40}?(?<![a-f0-9])(?P<V>[a-f0-9]{40}|[a-f0-9]{32})(?![a-z0-9])",
        None,
        _KEY_ANCHORS,
    ),
    # api_key=..., api-secret: ..., apiToken=..., app_key=..., AccountKey=...
    _kv("api_key", r"api[_-]?(?:key|secret|token)", ("api", "app", "accountkey", "accesskey")),
    _kv("api_key", r"app[_-]?key", ("api", "app", "accountkey", "accesskey")),
    _kv("api_key", "accountkey", ("api", "app", "accountkey", "accesskey")),
    _kv("api_key", "sharedaccesskey", ("api", "app", "accountkey", "accesskey")),
    _kv("private_key", r"private[_-]?key", ("private",)),
    # access_key=..., signing-key: ..., providerKey=..., DD-APPLICATION-KEY: ...
    _Alt("api_key", "key" + _KV_VALUE, _key_word_before, ("key",)),
    # a credential in a URL query: ?key=..., &sig=..., &code=...
    _Alt("api_key", r"\?(?:sig|signature|key|code|auth)=(?P<V>[^&\s#\"']{1,2048})", None, ("?",)),
    _Alt("api_key", r"&(?:sig|signature|key|code|auth)=(?P<V>[^&\s#\"']{1,2048})", None, ("&",)),
    # <password>...</password>, <apiKey>...</apiKey>
    _Alt(
        "api_key",
        r"<(?:password|passwd|secret|client_?secret|token|access_?token|api_?key|private_?key|credentials?)>"
        r"(?P<V>[^<]{1,4096})</",
        None,
        ("<",),
    ),
]

_BEARER_ANCHORS = ("bearer", "eyj", "authoriz", "cookie", "auth")
_DIGEST_PARAM = r'[a-z][a-z0-9_\-]{0,31}[ \t]*=[ \t]*(?:"(?:[^"\\\n]|\\.){0,1024}"|[^\s,"]{1,1024})'
_SCHEMES = "bearer|basic|apikey|splunk|ssws|token|negotiate|ntlm|hmac|aws4-hmac-sha256"


def _credential_header(rule: str, keyword: str, anchors: tuple[str, ...]) -> _Alt:
    """``keyword: <scheme> <credentials>`` (Authorization and its kin): the credentials are secret.

    A known scheme is kept; Bearer-like schemes and a bare key take one token, Digest its
    parameter list, a quoted value all of it, so the text after the header survives.
    """
    return _Alt(
        rule,
        keyword + r"[\"']?[ \t]*[:=][ \t]*(?:"
        r"\"(?P<V>[^\"\n]{1,4096})\"|'(?P<V>[^'\n]{1,4096})'"
        rf"|digest[ \t]+(?P<V>{_DIGEST_PARAM}(?:[ \t]*,[ \t]*{_DIGEST_PARAM}){{0,32}})"
        rf"|(?:{_SCHEMES})[ \t]+(?P<V>[^\s\"',;]{{1,4096}})"
        r"|(?P<V>[^\s\"',;]{1,4096}))",
        _kv_ok,
        anchors,
    )


_HEADER_VALUE = (
    r"[\"']?[ \t]*[:=][ \t]*"
    r"(?:\"(?P<V>[^\"\n]{1,4096})\"|'(?P<V>[^'\n]{1,4096})'|(?P<V>[^\r\n\"']{1,4096}))"
)
_BEARER_TOKEN = [
    _Alt(
        "bearer_token",
        rf"bearer{_not_after('[a-z0-9]', 6)}(?:[ \t]+|%20)(?P<V>[a-z0-9\-._~+/]{{8,}}=*)",
        None,
        _BEARER_ANCHORS,
    ),
    # percent-encoded: Authorization%3A%20Bearer%20...
    _Alt("bearer_token", r"bearer%20(?P<V>[a-z0-9\-._~]{8,})", None, _BEARER_ANCHORS),
    # JWS compact form: header and payload are base64url JSON objects ("eyJ" is '{"').
    _Alt(
        "bearer_token",
        rf"eyj{_not_after(_T, 3)}{_T}{{4,}}\.eyj{_T}{{4,}}\.{_T}*",
        lambda s, i, t: s.startswith("eyJ", i) and ".eyJ" in t,
        _BEARER_ANCHORS,
    ),
    # token=..., access_token=..., "refreshToken": "..." (the key word check allows a prefix
    # word joined by "_", "-", "." or camelCase)
    _kv("bearer_token", "token", ("token",)),
    # Authorization: <any scheme> <credentials> (the scheme, if a known one, is kept)
    _credential_header("bearer_token", "authorization", _BEARER_ANCHORS),
    # Cookie: / Set-Cookie: the whole header value
    _Alt("bearer_token", "cookie" + _HEADER_VALUE, _kv_ok, _BEARER_ANCHORS),
    _credential_header("bearer_token", "auth", _BEARER_ANCHORS),
]

_PASSWORD_ANCHORS = ("pass", "pwd", "secret", "basic", "digest", "cred", "otp", "mysql", "curl", "jdbc:")
_PASSWORD = [
    _kv("password", "pass(?:word|wd|phrase|_word|code)?", _PASSWORD_ANCHORS),
    _kv("password", r"cred(?:ential)?s?", _PASSWORD_ANCHORS),
    _kv("password", "otp", _PASSWORD_ANCHORS),
    # "my password is ..."
    _Alt("password", r"password[ \t]+is[ \t]+(?P<V>[^\s]{4,256})", _kv_ok, _PASSWORD_ANCHORS),
    # mysql -pSECRET, curl -u user:SECRET, sshpass -p SECRET
    _Alt("password", r"mysql[^\n]{0,200}?[ \t]-p(?P<V>[^\s]{1,256})", None, _PASSWORD_ANCHORS),
    _Alt(
        "password",
        r"curl[^\n]{0,200}?[ \t](?:-u|--user)[ \t]+[^\s:]{1,256}:(?P<V>[^\s]{1,256})",
        None,
        _PASSWORD_ANCHORS,
    ),
    _Alt(
        "password",
        r"sshpass[ \t]+-p[ \t]*(?:'(?P<V>[^'\n]{1,256})'|\"(?P<V>[^\"\n]{1,256})\"|(?P<V>[^\s]{1,256}))",
        None,
        _PASSWORD_ANCHORS,
    ),
    # jdbc:oracle:thin:user/SECRET@host
    _Alt("password", r"jdbc:oracle:thin:[^/\s@:]{1,128}/(?P<V>[^@\s]{1,256})@", None, _PASSWORD_ANCHORS),
    _kv("password", "pwd", _PASSWORD_ANCHORS),
    # secret=..., client_secret=..., aws_secret_access_key=..., secretKey=...
    _kv("password", r"secret(?:[_-]?(?:access[_-]?)?key|[_-]?value)?", _PASSWORD_ANCHORS),
    # HTTP Basic credentials (RFC 7617): base64 of "user:password"
    _Alt(
        "password",
        rf"basic{_not_after('[a-z0-9]', 5)}[ \t]+(?P<V>[a-z0-9+/]{{4,}}={{0,2}})(?![a-z0-9+/=])",
        lambda _s, _i, t: _basic_ok(t),
        _PASSWORD_ANCHORS,
    ),
    # HTTP Digest credentials (RFC 7616): the whole list of parameters after the scheme
    _Alt(
        "password",
        rf"digest{_not_after('[a-z0-9]', 6)}[ \t]+(?P<V>{_DIGEST_PARAM}(?:[ \t]*,[ \t]*{_DIGEST_PARAM}){{0,32}})",
        lambda _s, _i, t: "response" in t.lower(),
        _PASSWORD_ANCHORS,
    ),
]

def _basic_ok(text: str) -> bool:
    """``text`` is base64 of something with a ``:`` in it (user:password), not an English word."""
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (ValueError, binascii.Error):
        return False
    return b":" in decoded


# A bare AWS secret access key: 40 characters of base64 standing alone, with upper- and
# lower-case letters and digits (a git SHA-1 or a hex digest has no upper case) and the
# entropy of random data (~4.9 bits per character; English-like text is far below).
_BARE_SECRET = re.compile(r"(?<![A-Za-z0-9/+=_\-])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=_\-])")
_CAMEL_WORDS = re.compile(r"(?:[A-Z][a-z]+|[A-Z]{1,3})+[0-9]{0,4}")
_BARE_MIN_ENTROPY: Final = 4.2


def _bare_secret_ok(text: str) -> bool:
    if text.isalnum() and (text.islower() or text.isupper()):
        return False
    if not (any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)):
        return False
    if _CAMEL_WORDS.fullmatch(text):  # ThisIsAVeryLongCamelCaseIdentifierName40
        return False
    try:  # base64 of text (an event name, a path) is no key: a key decodes to random bytes
        decoded = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        decoded = b""
    if decoded and all(32 <= b < 127 for b in decoded):
        return False
    return entropy(text) >= _BARE_MIN_ENTROPY


_BLOCK_ANCHORS = ("://", "-----begin", "%3a%2f%2f")
# credentials in a URL: scheme://user:password@host (user may be empty: redis://:pw@host),
# also percent-encoded
_URL_PASSWORD = [
    # (not one already masked: ``user:***@``, as otel_audit.safe.redact_url and a store's URL show it)
    _Alt("password", r"://[^\s/@:]{0,256}:(?P<V>(?!\*+@)[^\s/@]{1,256})@", None, _BLOCK_ANCHORS),
    _Alt("password", r"%3a%2f%2f[^\s/@%]{0,256}%3a(?P<V>[^\s/@]{1,256}?)%40", None, _BLOCK_ANCHORS),
]

# Up to the END line, or to the end of the string if it was cut short (a truncated key is
# still a secret).
_PRIVATE_KEY = [
    _Alt(
        "private_key",
        r"-----begin (?:[a-z0-9]+ )*private key(?: block)?-----"
        r"[\s\S]*?(?:-----end (?:[a-z0-9]+ )*private key(?: block)?-----|\Z)",
        _starts("-----BEGIN"),
        _BLOCK_ANCHORS,
    )
]


# Searched (in the original string) only when it holds an "@".
_EMAIL = [
    _Alt(
        "email",
        r"[A-Za-z0-9._%+-](?<![A-Za-z0-9._%+-].)[A-Za-z0-9._%+-]{0,63}@"
        r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])",
        lambda s, i, t: _email_ok(s, i, t),
    )
]


def _email_ok(s: str, i: int, text: str) -> bool:
    """Not the user of a URL (``postgres://app@db.internal``) nor an scp-style remote
    (``git@github.com:acme/gateway.git``): an address, not a person's."""
    if s[max(0, i - 2) : i] == "//":
        return False
    end = i + len(text)
    return not (s[end : end + 1] == ":" and end + 1 < len(s) and not s[end + 1].isspace())


def _phone_ok(_s: str, _i: int, text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    if text[0] == "+":
        return (
            # no upper bound: "+1 415 555 0132 123" is better redacted whole than left
            digits >= 7 and text.count("(") == text.count(")") and _PHONE_DOUBLE_SEPARATOR.search(text) is None
        )
    return 9 <= digits <= 12


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_CARD_GROUPINGS: Final = ((4, 6, 5), (4, 6, 4))  # Amex, Diners
_CARD_SEPARATOR = re.compile(r"[ \-]")
_PHONE_DOUBLE_SEPARATOR = re.compile(r"[ .\-]{2}|\(\)")


def _card_ok(_s: str, _i: int, text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    if len(digits) == len(text):
        # Ungrouped: only issuer digits 2-6 (Mastercard, Amex/Diners/JCB, Visa, Discover/
        # UnionPay), which keeps millisecond and nanosecond epoch timestamps (1...) out.
        if digits[0] not in "23456":
            return False
    else:
        groups = tuple(len(g) for g in _CARD_SEPARATOR.split(text))
        fours = len(groups) >= 4 and all(n == 4 for n in groups[:-1]) and 1 <= groups[-1] <= 4
        if not (fours or groups in _CARD_GROUPINGS):
            return False
    return _luhn_ok(digits)


# Cards and phone numbers. The combined regex is "[0-9+(]" followed by these alternatives,
# each of which first checks with a look-behind which character that was. Plain digit runs
# (ids, timestamps) are no phone number: a national number needs separators, an
# international one its "+"; a digit run is a card only if it passes _card_ok.
_NOT_MORE_DIGITS = r"(?![\w]|[.\-][0-9])"
# The first character; not inside a word; and six more characters that can be part of a
# number (every alternative below needs them), which rejects most digits cheaply.
_NUMBER_PREFIX = r"[0-9+(](?<!\w.)(?=[0-9 .()\-]{6})"
_NUMBERS = [
    # 13-19 digits, optionally grouped by single spaces or dashes; the second look-behind
    # keeps a match from starting inside a longer grouped number.
    _Alt(
        "card",
        r"(?<=[0-9])(?<![\w.+].)(?<![0-9][ \-].)(?:[ \-]?[0-9]){12,18}(?![\w]|[ \-][0-9])",
        _card_ok,
    ),
    # E.164-ish: + and at least 7 digits, with single separators and balanced parentheses
    _Alt("phone", r"(?<=\+)(?<![\w+].)[1-9][0-9 .()\-]{5,22}[0-9](?![0-9])", _phone_ok),
    # NANP: (415) 555-0132, 415-555-0132, 415.555.0132, 415 555 0132
    _Alt(
        "phone",
        r"(?<=\()(?<![\w.+\-].)[2-9][0-9]{2}\)[ .\-]?[2-9][0-9]{2}[ .\-][0-9]{4}" + _NOT_MORE_DIGITS,
        _phone_ok,
    ),
    _Alt(
        "phone",
        r"(?<=[2-9])(?<![\w.+\-].)[0-9]{2}[ .\-][2-9][0-9]{2}[ .\-][0-9]{4}" + _NOT_MORE_DIGITS,
        _phone_ok,
    ),
    # trunk prefix 0: 020 7946 0958, 07700 900123, 030 12345678
    _Alt(
        "phone",
        r"(?<=0)(?<![\w.+\-].)[1-9][0-9]{1,4}[ \-][0-9]{3,4}[ \-]?[0-9]{3,4}" + _NOT_MORE_DIGITS,
        _phone_ok,
    ),
]

_SECRETS: Final = (*_PRIVATE_KEY, *_BEARER_TOKEN, *_API_KEY, *_PASSWORD, *_URL_PASSWORD)


def _library_alternatives() -> tuple[list[_Alt], WeakScanner]:
    """detect-secrets' patterns (processors/secret_rules.py) as alternatives of the secret scanner.

    The patterns with literal prefixes become one alternative per first character of their
    prefixes (``a(?:kia|sia|ws|ccountkey=)``: fewer alternatives keep the combined regex
    fast): it finds a prefix, lower-cased, on the lower-cased string like every alternative,
    and the patterns with that prefix, matched on the original string there, decide the
    finding and its span. They come after the processor's own alternatives, which win where
    both match. The patterns without a literal prefix go to a WeakScanner stage.
    """
    rules = default_rules()
    by_first: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    for r in rules:
        for prefix in sorted({p.lower() for p in r.prefixes or ()}):
            by_first.setdefault(prefix[0], []).append((prefix, r.regex))
    anchors = tuple(sorted({prefix for group in by_first.values() for prefix, _ in group}))
    alts: list[_Alt] = []
    for first, group in sorted(by_first.items()):
        tails = sorted({prefix[1:] for prefix, _ in group}, key=lambda t: (-len(t), t))
        source = re.escape(first) + "(?:" + "|".join(map(re.escape, tails)) + ")"
        alts.append(_Alt("api_key", source, None, anchors, _group_span(group)))
    return alts, WeakScanner(rules)


def _alnum_min_width(rules: Iterable[LibraryRule]) -> int:
    """The shortest match of a library pattern that could be letters and digits only."""
    return min((r.min_width for r in rules if r.alnum_possible), default=1 << 30)


def _group_span(group: list[tuple[str, re.Pattern[str]]]) -> _Span:
    finders = [(prefix, len(prefix), span_at(regex)) for prefix, regex in group]

    def find(s: str, i: int) -> tuple[int, int] | None:
        for prefix, n, span in finders:
            if s[i : i + n].lower() == prefix:
                found = span(s, i)
                if found is not None:
                    return found
        return None

    return find


# Phone numbers and cards hold a run of seven digits and separators (or "+1..."); a string
# without one skips that regex.
_DIGITS_HINT = re.compile(r"[0-9+(][0-9 .()\-]{6}")
_MIN_LEN: Final = 5  # "pwd=x"
_GATE_ABOVE: Final = 128  # strings longer than this are checked for anchors first
_CLEAN_CACHE_SIZE: Final = 4096
_CLEAN_CACHE_MAX_LEN: Final = 128
_ALNUM_CLEAN_BELOW: Final = 13  # an alphanumeric string this short matches no rule
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# (rule, value group numbers, check, index of the alternative, span)
_Entry = tuple[str, tuple[int, ...], "_Check | None", int, "_Span | None"]


def _first_literal(source: str) -> str | None:
    """The first character of ``source`` as regex text (``a``, ``\\?``), if it is a plain literal
    that no quantifier follows; else None."""
    if not source:
        return None
    if source[0] == "\\":
        first = source[:2]
        if len(first) < 2 or first[1].isalnum():  # \d, \w, \b ...: a class or an assertion
            return None
    elif source[0] in "([.^$|*+?{":
        return None
    else:
        first = source[0]
    if source[len(first) : len(first) + 1] in ("*", "+", "?", "{"):
        return None
    return first


def _by_first_character(sources: list[str]) -> str:
    """``sources`` joined by ``|``, those that start with the same literal character behind it once:
    ``t(?:oken...|ls...)|a(?:kia...|pi...)``. The regex engine then tries, at each position, one
    branch per first character instead of every alternative (~50 of them): the same matches (only
    alternatives with the same first character can match at one position, and among them the
    order is kept), at about half the cost."""
    groups: dict[str, list[str]] = {}
    order: list[str] = []
    loose: list[tuple[int, str]] = []
    for i, source in enumerate(sources):
        first = _first_literal(source)
        if first is None:
            loose.append((i, source))
            continue
        if first not in groups:
            groups[first] = []
            order.append(first)
        groups[first].append(source[len(first) :])
    if loose:  # keep the order exactly
        return "|".join(sources)
    parts = [
        f"{first}(?:{'|'.join(groups[first])})"
        if len(groups[first]) > 1
        else first + groups[first][0]
        for first in order
    ]
    return "|".join(parts)


class _Scanner:
    """One combined regex over several alternatives; finds matches and replaces their secret part.

    Findings are leftmost first; at one position, the first alternative (in list order) that
    matches and passes its check wins. A check can reject a match the regex engine preferred,
    so then the later alternatives are tried at the same position before moving on.
    """

    __slots__ = ("_alts", "_dispatch", "_prefix", "_rest", "_rest_lock", "match", "search")

    def __init__(
        self,
        regex: re.Pattern[str],
        dispatch: dict[int | None, _Entry],
        alts: tuple[_Alt, ...] = (),
        prefix: str = "",
    ) -> None:
        self.search = regex.search
        self.match = regex.match
        self._dispatch = dispatch
        self._alts = alts
        self._prefix = prefix
        self._rest: dict[int, _Scanner | None] = {}
        self._rest_lock = threading.Lock()

    @classmethod
    def combine(cls, alts: Iterable[_Alt], prefix: str = "") -> _Scanner | None:
        alts = tuple(alts)
        if not alts:
            return None
        sources: list[str] = []
        groups_of: list[list[str]] = []
        n = 0
        for k, alt in enumerate(alts):
            source = alt.source
            value_groups = []
            while "(?P<V>" in source:
                n += 1
                value_groups.append(f"v{n}")
                source = source.replace("(?P<V>", f"(?P<v{n}>", 1)
            sources.append(f"{source}(?P<m{k}>)")
            groups_of.append(value_groups)
        joined = "|".join(sources) if prefix else _by_first_character(sources)
        regex = re.compile(f"{prefix}(?:{joined})" if prefix else joined)
        dispatch: dict[int | None, _Entry] = {
            regex.groupindex[f"m{k}"]: (
                alt.rule, tuple(regex.groupindex[g] for g in groups_of[k]), alt.check, k, alt.span
            )
            for k, alt in enumerate(alts)
        }
        return cls(regex, dispatch, alts, prefix)

    @classmethod
    def custom(cls, rule: str, regex: re.Pattern[str]) -> _Scanner:
        """A user's pattern: the whole match is replaced, or its group named ``value``."""
        value = regex.groupindex.get("value")
        entry: _Entry = (rule, (value,) if value else (), None, 0, None)
        # Any lastindex (the user's own groups) maps to the one rule.
        dispatch: dict[int | None, _Entry] = {None: entry}
        dispatch.update((i, entry) for i in range(1, regex.groups + 1))
        return cls(regex, dispatch)

    def _after(self, k: int) -> _Scanner | None:
        """The scanner over the alternatives after the k-th, built on first use."""
        try:
            return self._rest[k]
        except KeyError:
            pass
        with self._rest_lock:
            if k not in self._rest:
                self._rest[k] = _Scanner.combine(self._alts[k + 1 :], self._prefix)
            return self._rest[k]

    def _accept(self, m: re.Match[str], s: str, target: str) -> tuple[str, int, int, int] | None:
        """The finding at ``m.start()``: (rule, start, end of the replaced text, end of match)."""
        at = m.start()
        scanner = self
        while True:
            rule, values, check, k, span = scanner._dispatch[m.lastindex]
            if span is not None:
                found = span(s, at)
                if found is not None:
                    return rule, found[0], found[1], max(found[1], m.end())
            else:
                start, end = m.span()
                for g in values:
                    vs, ve = m.span(g)
                    if vs >= 0:
                        start, end = vs, ve
                        break
                if start < end and (check is None or check(s, at, s[start:end])):
                    return rule, start, end, m.end()
            # Not a finding after all (a digit run failing Luhn, "bypassword=", an empty
            # custom match): try the later alternatives here.
            rest = scanner._after(k) if scanner._alts else None
            if rest is None:
                return None
            later = rest.match(target, at)
            if later is None:
                return None
            scanner, m = rest, later

    def sub(self, s: str, replace: Callable[[str, str], str], fired: list[str], folded: str | None = None) -> str:
        """Return ``s`` with every finding replaced, appending each finding's rule to ``fired``.

        ``folded``, if given, is ``s`` lower-cased (same length), and is what gets searched.
        """
        target = s if folded is None else folded
        search = self.search
        m = search(target)
        if m is None:
            return s
        out: list[str] = []
        last = 0
        while m is not None:
            at = m.start()
            hit = self._accept(m, s, target)
            if hit is None:
                m = search(target, at + 1)
                continue
            rule, start, end, match_end = hit
            out.append(s[last:start])
            out.append(replace(rule, s[start:end]))
            fired.append(rule)
            last = end
            m = search(target, max(match_end, at + 1))
        if not out:
            return s
        out.append(s[last:])
        return "".join(out)


class _FoldedScanner:
    """The secret scanner: searches the lower-cased string, replaces in the original.

    A short string is searched with every alternative at once. A long one (a prompt, a
    request body) is first checked for the anchors of each group of alternatives, and
    searched only with the groups it holds: the same findings, as an alternative whose
    anchor is absent cannot match, at a fraction of the cost. The regex for each combination
    of groups is built on first use; there are at most 2**groups of them.
    """

    __slots__ = ("_alts", "_by_mask", "_full", "_groups", "_lock")

    def __init__(self, alts: Iterable[_Alt]) -> None:
        self._alts = tuple(alts)
        self._full = _Scanner.combine(self._alts)
        groups: dict[tuple[str, ...], int] = {}
        for alt in self._alts:
            groups.setdefault(alt.anchors, 1 << len(groups))
        self._groups = tuple(groups.items())
        self._by_mask: dict[int, _Scanner] = {}
        self._lock = threading.Lock()

    def _for_mask(self, mask: int) -> _Scanner:
        scanner = self._by_mask.get(mask)
        if scanner is None:
            with self._lock:
                scanner = self._by_mask.get(mask)
                if scanner is None:
                    wanted = {anchors for anchors, bit in self._groups if bit & mask}
                    built = _Scanner.combine(a for a in self._alts if a.anchors in wanted)
                    assert built is not None
                    scanner = self._by_mask[mask] = built
        return scanner

    def sub(self, s: str, replace: Callable[[str, str], str], fired: list[str]) -> str:
        folded = s.lower()
        if len(folded) != len(s):  # a few non-ASCII characters lower-case to two
            folded = s.translate(_ASCII_LOWER)
        if len(s) <= _GATE_ABOVE:
            scanner = self._full
            assert scanner is not None
        else:
            mask = 0
            for anchors, bit in self._groups:
                for anchor in anchors:
                    if anchor in folded:
                        mask |= bit
                        break
            if not mask:
                return s
            scanner = self._for_mask(mask)
        return scanner.sub(s, replace, fired, folded)


_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _norm_key(key: str) -> str:
    return key.lower().replace("-", "_")


def _names(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(
            f"RedactionProcessor({what}=...): expected a list of strings, got {type(value).__name__}; "
            f"write {what}=[...]"
        )
    names = tuple(value)
    for n in names:
        if not isinstance(n, str) or not n:
            raise ConfigError(f"RedactionProcessor({what}=...): every entry must be a non-empty string, got {n!r}")
    return names


# What on_emit does with a top-level attribute, decided once per key and cached.
_SCAN, _SKIP, _SENSITIVE, _CLIENT_IP, _PROTECTED = 0, 1, 2, 3, 4
_KEY_HOLDS_FINDING: Final = 8  # a flag on a plan: the key itself is to be redacted
_DIGEST_ATTRIBUTE: Final = "audit.integrity.digest"
_PLAN_CACHE_MAX: Final = 4096


class RedactionProcessor(LogRecordProcessor):
    """Replaces secrets and personal data in each log record, in place, before signing.

    Add it to the ``LoggerProvider`` before the signing processor. ``mode="hmac"`` (default)
    replaces a found value by ``hmac-sha256:<hex>`` under ``hmac_key`` (see
    :func:`otel_audit.pseudonym.load_hmac_key` for the accepted forms); ``mode="mask"`` by
    ``[REDACTED:<rule>]``. ``rules`` selects built-in rules (default: all of
    :data:`BUILTIN_RULES`); ``client_ip`` applies only with ``redact_client_ip=True`` (which
    adds it to any ``rules``). ``custom_patterns`` adds rules ``{name: regex}``; a group named
    ``value`` in a pattern limits the replacement to that group. Attributes named in
    ``allow_keys`` (top-level attribute keys, exact) are left as they are. If
    ``pii_event_logger`` is given, each record in which personal data was found makes one
    ``data_access.pii.detected`` event through that logger; it is emitted from ``on_emit``, so
    it reaches the next processors just before the record that caused it.

    Bad arguments raise :class:`~otel_audit.errors.ConfigError` (a ``ValueError``).
    """

    def __init__(
        self,
        *,
        mode: Mode = "hmac",
        hmac_key: bytes | str | SecretBytes | None = None,
        rules: Sequence[str] | None = None,
        redact_client_ip: bool = False,
        sensitive_keys: Sequence[str] = DEFAULT_SENSITIVE_KEYS,
        allow_keys: Sequence[str] = (),
        custom_patterns: Mapping[str, str] | None = None,
        pii_event_logger: Logger | None = None,
    ) -> None:
        if mode not in ("hmac", "mask"):
            raise ConfigError(f"RedactionProcessor(mode={mode!r}): mode must be 'hmac' or 'mask'")
        self._mode: Mode = mode
        self._key: SecretBytes | None = None
        if mode == "hmac":
            if hmac_key is None:
                raise ConfigError(
                    "RedactionProcessor(mode='hmac') needs hmac_key (at least 16 bytes, e.g. "
                    "'hex:' + 64 hex digits, or 'file:/path'); or choose mode='mask'"
                )
            self._key = SecretBytes(load_hmac_key(hmac_key, where="RedactionProcessor(hmac_key=...)"))

        if rules is None:
            selected = set(BUILTIN_RULES)
        else:
            selected = set(_names(rules, "rules"))
            unknown = sorted(selected - set(BUILTIN_RULES))
            if unknown:
                raise ConfigError(
                    f"RedactionProcessor(rules=...): unknown rule(s) {', '.join(map(repr, unknown))}; "
                    f"known rules are {', '.join(BUILTIN_RULES)} (add your own with custom_patterns)"
                )
            if "client_ip" in selected and not redact_client_ip:
                raise ConfigError(
                    "RedactionProcessor(rules=[..., 'client_ip']): client addresses are redacted only "
                    "with redact_client_ip=True; set it, or drop 'client_ip' from rules"
                )
        # client_ip is opt-in: an address is often what an audit trail is for.
        self._client_ip = bool(redact_client_ip)
        if self._client_ip:
            selected.add("client_ip")
        else:
            selected.discard("client_ip")
        self._rules: tuple[str, ...] = tuple(r for r in BUILTIN_RULES if r in selected)

        secrets = [a for a in _SECRETS if a.rule in selected]
        self._weak: WeakScanner | None = None
        self._alnum_clean_below = _ALNUM_CLEAN_BELOW
        if "api_key" in selected:
            library, weak = _library_alternatives()
            secrets.extend(library)
            self._weak = weak if len(weak) else None
            self._alnum_clean_below = min(_ALNUM_CLEAN_BELOW, _alnum_min_width(default_rules()))
        self._secret_scanner = _FoldedScanner(secrets) if secrets else None
        self._email_scanner = _Scanner.combine(a for a in _EMAIL if a.rule in selected)
        self._number_scanner = _Scanner.combine((a for a in _NUMBERS if a.rule in selected), _NUMBER_PREFIX)
        self._custom = self._compile_custom(custom_patterns)
        self._bare = "api_key" in selected  # bare AWS secret access keys

        self._sensitive = frozenset(_norm_key(k) for k in _names(sensitive_keys, "sensitive_keys"))
        # With the default keys, <word>_key and password-like keys too (PGPASSWORD, password1).
        self._default_keys = tuple(sensitive_keys) == DEFAULT_SENSITIVE_KEYS
        extra = (f"{w}_key" for w in SENSITIVE_KEY_WORDS) if self._default_keys else ()
        words = sorted({*self._sensitive, *extra}, key=len, reverse=True)
        self._sensitive_suffix = re.compile("(?:^|_)(?:" + "|".join(map(re.escape, words)) + ")$")
        self._allow = frozenset(_names(allow_keys, "allow_keys"))
        self._ip_keys = frozenset(CLIENT_ADDRESS_KEYS)
        self._plan: dict[str, int] = {}
        self._resources: dict[int, tuple[Resource, Resource, tuple[str, ...]]] = {}
        self._clean: set[str] = set()
        self._sensitive_cache: dict[str, bool] = {}
        self._key_rules: dict[str, str | None] = {}

        if pii_event_logger is not None and not callable(getattr(pii_event_logger, "emit", None)):
            raise ConfigError(
                "RedactionProcessor(pii_event_logger=...): expected an OpenTelemetry Logger "
                f"(from LoggerProvider.get_logger), got {type(pii_event_logger).__name__}"
            )
        self._pii_logger = pii_event_logger
        self._pii_names = frozenset(PII_RULES)
        self._local = threading.local()
        self._masks = {
            name: f"[REDACTED:{name}]" for name in (*BUILTIN_RULES, SENSITIVE_KEY_RULE, *(c[0] for c in self._custom))
        }
        self._replace = self._hmac if mode == "hmac" else self._mask
        stages: list[Callable[[str, list[str]], str]] = []
        if self._custom:
            stages.append(self._custom_stage)
        if self._secret_scanner is not None:
            stages.append(self._secret_stage)
        if self._weak is not None:
            stages.append(self._weak.sub_stage(self._replace))
        if self._bare:
            stages.append(self._bare_stage)
        if self._email_scanner is not None:
            stages.append(self._email_stage)
        if self._number_scanner is not None:
            stages.append(self._number_stage)
        self._stages = tuple(stages)
        _logger.debug(
            "redaction: mode=%s rules=%s custom=%s sensitive_keys=%d",
            mode,
            self._rules,
            [c[0] for c in self._custom],
            len(self._sensitive),
        )

    @staticmethod
    def _compile_custom(patterns: Mapping[str, str] | None) -> list[tuple[str, _Scanner]]:
        if patterns is None:
            return []
        if not isinstance(patterns, Mapping):
            raise ConfigError(
                "RedactionProcessor(custom_patterns=...): expected a mapping {rule name: regex}, "
                f"got {type(patterns).__name__}"
            )
        reserved = {*BUILTIN_RULES, SENSITIVE_KEY_RULE}
        out: list[tuple[str, _Scanner]] = []
        for name, source in patterns.items():
            where = f"RedactionProcessor(custom_patterns={{{name!r}: ...}})"
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                raise ConfigError(f"{where}: a rule name must be letters, digits, '_', '.' or '-'")
            if name in reserved:
                raise ConfigError(f"{where}: {name!r} is a built-in rule name; choose another name")
            if not isinstance(source, str):
                raise ConfigError(f"{where}: the pattern must be a string, got {type(source).__name__}")
            try:
                regex = re.compile(source)
            except re.error as exc:
                raise ConfigError(f"{where}: not a valid regular expression: {exc}") from None
            if regex.fullmatch(""):
                raise ConfigError(f"{where}: the pattern matches the empty string; it must match something")
            out.append((name, _Scanner.custom(name, regex)))
        return out

    def __repr__(self) -> str:
        return (
            f"RedactionProcessor(mode={self._mode!r}, rules={self._rules!r}, custom={[c[0] for c in self._custom]!r})"
        )

    def redact_resource(self, resource: Resource) -> Resource:
        """``resource`` with its attributes redacted as a record's are (``resource`` itself when nothing was found).

        The pipeline builders give the ``LoggerProvider`` and the signing processor this resource, so that
        every record the pipeline exports, its own checkpoints and gap markers too, and the producer line of
        the signed checkpoints carry the same redacted values. With a plain ``LoggerProvider``, pass
        ``SigningProcessor(..., resource=redaction.redact_resource(provider.resource))``.
        """
        if not isinstance(resource, Resource):
            raise TypeError(f"redact_resource: expected an opentelemetry Resource, got {type(resource).__name__}")
        return self._resource(resource)[0] if resource.attributes else resource

    def scan_text(self, text: str) -> str:
        """``text`` with every finding of the value patterns replaced (no record, no annotation)."""
        return self._scan(text, []) if isinstance(text, str) else text

    # -- replacement -------------------------------------------------------------------------

    def _hmac(self, rule: str, text: str) -> str:
        assert self._key is not None
        return hmac_value(self._key, text)

    def _mask(self, rule: str, text: str) -> str:
        return self._masks.get(rule) or f"[REDACTED:{rule}]"

    def _scan(self, s: str, fired: list[str]) -> str:
        """Replace every pattern finding in ``s``."""
        n = len(s)
        if n < _MIN_LEN:
            return s
        if n < self._alnum_clean_below and not self._custom and s.isalnum():
            return s
        # Most attribute values recur (user names, models, paths, outcomes): remember the
        # short ones that held nothing. Only clean strings are kept, never a secret.
        clean = self._clean
        cacheable = n <= _CLEAN_CACHE_MAX_LEN
        if cacheable and s in clean:
            return s
        if (s[0] in _JSON_OPEN and s[-1] in _JSON_CLOSE) or (
            (s[0] in _JSON_SPACE or s[-1] in _JSON_SPACE) and s.strip()[:1] in _JSON_OPEN
        ):
            structured = self._scan_json(s, fired)
            if structured is not None:
                if cacheable and structured is s:
                    if len(clean) >= _CLEAN_CACHE_SIZE:
                        clean.clear()
                    clean.add(s)
                return structured
        original = s
        # A pseudonym or mask already in the string (a re-run, or an earlier stage here) is
        # never matched into: each stage then scans the text around them. This keeps
        # pseudonyms searchable and makes redacting twice change nothing.
        tokens = HMAC_PREFIX in s or "[REDACT" in s
        for stage in self._stages:
            if tokens:
                s = _around_tokens(stage, s, fired)
            else:
                new = stage(s, fired)
                if new is not s:
                    tokens = True
                    s = new
        if cacheable and s is original:
            if len(clean) >= _CLEAN_CACHE_SIZE:
                clean.clear()
            clean.add(s)
        return s

    # The stages of _scan, in order. Custom patterns come first, so that the built-in rules
    # never see their output.

    def _custom_stage(self, s: str, fired: list[str]) -> str:
        for _, scanner in self._custom:
            s = scanner.sub(s, self._replace, fired)
        return s

    def _secret_stage(self, s: str, fired: list[str]) -> str:
        assert self._secret_scanner is not None
        return self._secret_scanner.sub(s, self._replace, fired)

    def _bare_stage(self, s: str, fired: list[str]) -> str:
        if len(s) < 40 or not has_run(s, 40, BASE64_TABLE):
            return s
        out: list[str] = []
        last = 0
        for m in _BARE_SECRET.finditer(s):
            text = m.group()
            if _bare_secret_ok(text):
                out.append(s[last : m.start()])
                out.append(self._replace("api_key", text))
                fired.append("api_key")
                last = m.end()
        if not out:
            return s
        out.append(s[last:])
        return "".join(out)

    def _email_stage(self, s: str, fired: list[str]) -> str:
        assert self._email_scanner is not None
        return self._email_scanner.sub(s, self._replace, fired) if "@" in s else s

    def _number_stage(self, s: str, fired: list[str]) -> str:
        assert self._number_scanner is not None
        return self._number_scanner.sub(s, self._replace, fired) if _DIGITS_HINT.search(s) else s

    def _whole(
        self, value: str | bytes | int | float, fired: list[str], rule: str = SENSITIVE_KEY_RULE
    ) -> AnyValue:
        """Replace a whole value found under a sensitive key (``rule`` names why)."""
        if isinstance(value, str):
            if not value or _already_redacted(value):
                return value
            text: str | bytes = value
        elif isinstance(value, (bytes, bytearray)):
            if not value:
                return value
            text = bytes(value)
        else:  # int or float: a PIN or an account number is a secret too
            text = repr(value)
        fired.append(rule)
        if self._key is not None:
            return hmac_value(self._key, text)
        return self._masks.get(rule) or f"[REDACTED:{rule}]"

    # -- JSON text: redacted by structure ----------------------------------------------------

    def _scan_json(self, s: str, fired: list[str]) -> str | None:
        """Redact the JSON text ``s`` by structure; None if it is no JSON (then it is scanned as text).

        ``_scan`` calls this for a string whose first and last characters are ``{``/``[`` and
        ``}``/``]``, so other strings cost two character compares more. A JSON text that had
        something replaced is written again in canonical form (sorted keys, no spaces, as
        ``AuditLogger.config_changed`` writes it); one that had nothing stays as it was.
        """
        duplicates: list[bool] = []

        def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Pairs:
            out = dict(pairs)
            if len(out) == len(pairs):
                return out
            duplicates.append(True)
            return _Pairs(pairs)

        try:
            doc = json.loads(s, object_pairs_hook=hook)
        except (ValueError, RecursionError):
            # Not JSON, or too deep: the text patterns then see all of it.
            return None
        found: list[str] = []
        try:
            new = self._redact_json(doc, found, None, 0)
        except _TooDeep:
            return None
        if new is doc:
            return s
        fired.extend(found)
        if duplicates:
            return _dump(new)
        return json.dumps(new, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def _redact_json(self, value: Any, fired: list[str], rule: str | None, depth: int) -> Any:
        """Like ``_redact`` for parsed JSON; ``rule`` is set under a key whose whole value is secret."""
        if isinstance(value, _Pairs):
            if depth >= _JSON_MAX_DEPTH:
                raise _TooDeep
            pairs = [
                (self._scan(k, fired), self._redact_json(v, fired, rule or self._member_rule(k, v), depth + 1))
                for k, v in value
            ]
            if all(nk is k and nv is v for (nk, nv), (k, v) in zip(pairs, value, strict=True)):
                return value
            return _Pairs(pairs)
        if isinstance(value, dict):
            if depth >= _JSON_MAX_DEPTH:
                raise _TooDeep
            changed: dict[str, Any] | None = None
            named = self._named_value(value)
            for k, v in value.items():
                member = SENSITIVE_KEY_RULE if k == named else self._member_rule(k, v)
                new = self._redact_json(v, fired, rule or member, depth + 1)
                new_k = self._scan(k, fired)  # a key can hold an e-mail address too
                if new is not v or new_k is not k:
                    if changed is None:
                        changed = dict(value)
                    if new_k is not k:
                        del changed[k]
                    changed[new_k] = new
            return value if changed is None else changed
        if isinstance(value, list):
            if depth >= _JSON_MAX_DEPTH:
                raise _TooDeep
            items: list[Any] | None = None
            secret_at = self._paired_values(value)
            for i, v in enumerate(value):
                new = self._redact_json(v, fired, rule or (SENSITIVE_KEY_RULE if i in secret_at else None), depth + 1)
                if new is not v:
                    if items is None:
                        items = list(value)
                    items[i] = new
            return value if items is None else items
        if isinstance(value, str):
            return self._whole(value, fired, rule) if rule else self._scan(value, fired)
        if value is None or isinstance(value, bool):
            return value
        if rule and isinstance(value, (int, float)):
            return self._whole(value, fired, rule)
        return value

    def _member_rule(self, key: str, value: Any) -> str | None:
        if isinstance(value, (dict, list)) and self._scalar_only(key):
            return None
        return self._key_rule(key)

    def _key_rule(self, key: str) -> str | None:
        """The rule under which a JSON member named ``key`` is secret as a whole, or None.

        A key the text patterns would take the value of (``db_password``, ``apiKey``, a
        custom pattern's key word) is named by that rule, as in ``key=value`` text; else a
        sensitive key (same rules as for attribute names) by ``sensitive_key``.
        """
        hit = self._key_rules.get(key, _UNKNOWN)
        if hit is not _UNKNOWN:
            return hit
        found: list[str] = []

        def probe(rule: str, text: str) -> str:
            if text == _PROBE_VALUE:
                found.append(rule)
            return _PROBE_VALUE

        text = f"{key}={_PROBE_VALUE}"
        scratch: list[str] = []
        for _, scanner in self._custom:
            scanner.sub(text, probe, scratch)
        if self._secret_scanner is not None:
            self._secret_scanner.sub(text, probe, scratch)
        result: str | None = found[0] if found else (SENSITIVE_KEY_RULE if self._is_sensitive(key) else None)
        if len(self._key_rules) >= _PLAN_CACHE_MAX:
            self._key_rules.clear()
        self._key_rules[key] = result
        return result

    def _redact(self, value: Any, fired: list[str], sensitive: bool) -> Any:
        """Return ``value`` with findings replaced; the same object if nothing was."""
        t = type(value)
        if t is str:
            return self._whole(value, fired) if sensitive else self._scan(value, fired)
        if value is None or t is bool:
            return value
        if t is int or t is float:
            return self._whole(value, fired) if sensitive else value
        if t is bytes or t is bytearray:
            if sensitive:
                return self._whole(value, fired)
            # Text in bytes is scanned like a string (other bytes round-trip unchanged).
            text = bytes(value).decode("utf-8", "surrogateescape")
            new_text = self._scan(text, fired)
            return value if new_text is text else new_text.encode("utf-8", "surrogateescape")
        if isinstance(value, Mapping):
            changed: dict[Any, Any] | None = None
            named = self._named_value(value)
            for k, v in value.items():
                k_sensitive = isinstance(k, str) and self._is_sensitive(k)
                if k_sensitive and isinstance(v, (Mapping, list, tuple)) and self._scalar_only(k):
                    k_sensitive = False
                new = self._redact(v, fired, sensitive or k_sensitive or k == named)
                # a key can hold a secret too (a map of usage by credential)
                new_k = self._scan(k, fired) if type(k) is str else k
                if new is not v or new_k is not k:
                    if changed is None:
                        changed = dict(value)
                    if new_k is not k:
                        del changed[k]
                    changed[new_k] = new
            return value if changed is None else changed
        if isinstance(value, (list, tuple)):
            items: list[Any] | None = None
            secret_at = self._paired_values(value)
            for i, v in enumerate(value):
                new = self._redact(v, fired, sensitive or i in secret_at)
                if new is not v:
                    if items is None:
                        items = list(value)
                    items[i] = new
            if items is None:
                return value
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, str):  # a str subclass
            return self._redact(str(value), fired, sensitive)
        return value

    # -- headers as data: [["authorization", X]], ["Authorization", X, ...], {"name": .., "value": X}

    def _named_value(self, value: Mapping[Any, Any]) -> str | None:
        """The member holding the value of a ``{"name": <key>, "value": <secret>}`` pair (HAR
        headers, OTel-style key/value lists) when the name is a sensitive key; else None."""
        if len(value) > 4:
            return None
        name = value.get("name", value.get("key"))
        if not isinstance(name, str) or len(name) > 64 or not self._sensitive_uncached(name):
            return None
        return "value" if "value" in value else None

    def _paired_values(self, items: Sequence[Any]) -> frozenset[int]:
        """Indexes of values paired with a sensitive key in a list: a list of ``[key, value]``
        pairs, or a flat ``[key, value, key, value]`` header list."""
        n = len(items)
        if n < 2 or n > 512:
            return _NO_INDEXES
        first = items[0]
        if isinstance(first, (list, tuple)):
            return _NO_INDEXES  # pairs are handled one level down: each pair is such a list
        if n == 2 or (n % 2 == 0 and all(isinstance(items[i], str) and _HEADER_NAME.fullmatch(items[i])
                                         for i in range(0, n, 2))):
            found = [
                i + 1
                for i in range(0, n - 1, 2)
                if isinstance(items[i], str)
                and _HEADER_NAME.fullmatch(items[i])
                and self._sensitive_uncached(items[i])
                # a value that is itself a field name is a list of names, not a header list
                and not (isinstance(items[i + 1], str) and _FIELD_NAME.fullmatch(items[i + 1]))
            ]
            return frozenset(found) if found else _NO_INDEXES
        return _NO_INDEXES

    def _scalar_only(self, key: object) -> bool:
        return isinstance(key, str) and _norm_key(key).rpartition(".")[2] in _SCALAR_ONLY_KEYS

    def _is_sensitive(self, key: str) -> bool:
        """``key``, or its last dotted segment, is a sensitive key or ends in one as a word.

        ``password``, ``db_password``, ``x-dd-api-key``, ``ddApiKey`` and
        ``http.request.header.authorization`` are; ``passwords_changed``, ``tokens`` and
        ``keystore`` are not.
        """
        hit = self._sensitive_cache.get(key)
        if hit is None:
            hit = self._sensitive_uncached(key)
            if len(self._sensitive_cache) >= _PLAN_CACHE_MAX:
                self._sensitive_cache.clear()
            self._sensitive_cache[key] = hit
        return hit

    def _sensitive_uncached(self, key: str) -> bool:
        """`_is_sensitive` without the cache: for a string that is data, not a key (a list
        item, a "name" member), which must not be kept in the processor's memory."""
        norm = _norm_key(key)
        last = norm.rpartition(".")[2]
        camel = _norm_key(_CAMEL_HUMP.sub("_", key.rpartition(".")[2]))
        return (
            norm in self._sensitive
            or last in self._sensitive
            or self._sensitive_suffix.search(last) is not None
            or self._sensitive_suffix.search(camel) is not None
            or last.replace("_", "") in self._sensitive
            or (self._default_keys and _PASSWORD_IN_KEY.search(last) is not None)
        )

    def _resource(self, resource: Resource) -> tuple[Resource, tuple[str, ...]]:
        """``resource`` with its attributes redacted (a copy, once per resource), and the rules.

        Resource attributes are not signed, but every exporter sends them; a connection
        string in an environment variable that became a resource attribute must not.
        """
        cached = self._resources.get(id(resource))
        if cached is not None and cached[0] is resource:
            return cached[1], cached[2]
        found: list[str] = []
        attributes = dict(resource.attributes)
        new = {
            k: self._redact(v, found, self._is_sensitive(k)) for k, v in attributes.items()
        }
        redacted = Resource(new, resource.schema_url) if found else resource
        if len(self._resources) >= 64:
            self._resources.clear()
        self._resources[id(resource)] = (resource, redacted, tuple(found))
        return redacted, tuple(found)

    def _plan_for(self, key: str) -> int:
        if key in self._allow or key in _OWN_KEYS:
            plan = _SKIP
        elif key.startswith(_PROTECTED_PREFIXES):
            plan = _PROTECTED
        elif self._client_ip and key in self._ip_keys:
            plan = _CLIENT_IP
        elif self._is_sensitive(key):
            plan = _SENSITIVE
        else:
            plan = _SCAN
        # An attribute key can hold a secret too (a key named after a token): decided once per key.
        if plan != _SKIP and self._scan(key, []) is not key:
            plan |= _KEY_HOLDS_FINDING
        if len(self._plan) >= _PLAN_CACHE_MAX:
            self._plan.clear()
        self._plan[key] = plan
        return plan

    def _client_address(self, value: Any, fired: list[str]) -> Any:
        if isinstance(value, str):
            try:
                ipaddress.ip_address(value.strip("[]"))
            except ValueError:
                return self._scan(value, fired)  # a host name: scan it like any string
            fired.append("client_ip")
            return self._replace("client_ip", value)
        return self._redact(value, fired, False)

    # -- LogRecordProcessor ------------------------------------------------------------------

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        """Redact ``log_record`` in place."""
        record = log_record.log_record
        attributes = record.attributes
        # A record the signing processor already made or signed (a redaction processor placed
        # after signing): its integrity attributes are kept, and a checkpoint is left whole.
        # Any other record is redacted, whatever its event name or attribute names.
        signed = attributes is not None and _DIGEST_ATTRIBUTE in attributes
        if signed and record.event_name == CHECKPOINT_EVENT:
            return
        fired: list[str] = []
        try:
            resource = log_record.resource
            if resource is not None and resource.attributes:
                redacted, rules = self._resource(resource)
                if redacted is not resource:
                    log_record.resource = redacted
                    fired.extend(rules)
            body = record.body
            if body is not None:
                new_body = self._redact(body, fired, False)
                if new_body is not body:
                    record.body = new_body
            if attributes:
                # A plain-dict snapshot: iterating BoundedAttributes goes through a lock and
                # a Python-level __getitem__ per key.
                snapshot = attributes.copy() if hasattr(attributes, "copy") else dict(attributes)
                # the SDK's record holds a BoundedAttributes (or a dict), typed as a read-only Mapping
                mutable: MutableMapping[str, Any] = attributes  # type: ignore[assignment]
                plans = self._plan
                scan = self._scan
                for key, value in snapshot.items():
                    plan = plans.get(key)
                    if plan is None:
                        plan = self._plan_for(key)
                    new_key = key
                    if plan & _KEY_HOLDS_FINDING:
                        new_key = self._scan(key, fired)
                        plan &= ~_KEY_HOLDS_FINDING
                    if plan == _PROTECTED:
                        if signed:
                            continue
                        plan = _SENSITIVE if self._is_sensitive(key) else _SCAN
                    if plan == _SCAN:
                        new = scan(value, fired) if type(value) is str else self._redact(value, fired, False)
                    elif plan == _SKIP:
                        continue
                    elif plan == _SENSITIVE:
                        new = self._redact(value, fired, True)
                    else:
                        new = self._client_address(value, fired)
                    if new_key is not key:
                        del mutable[key]
                        mutable[new_key] = new
                    elif new is not value:
                        mutable[key] = new
        except Exception as exc:  # noqa: BLE001 - a redaction bug must neither leak nor drop
            self._fail_closed(record, exc)
            return
        if fired:
            self._annotate(record, fired)

    def _annotate(self, record: Any, fired: list[str]) -> None:
        attributes = record.attributes
        if attributes is None:
            attributes = record.attributes = {}
        rules = set(fired)
        count = len(fired)
        # A record redacted twice (two processors, or a re-run) keeps the union.
        previous = attributes.get(RULES_ATTRIBUTE)
        if isinstance(previous, (tuple, list)):
            rules.update(r for r in previous if isinstance(r, str))
            prev_count = attributes.get(COUNT_ATTRIBUTE)
            if isinstance(prev_count, int) and not isinstance(prev_count, bool):
                count += prev_count
        attributes[RULES_ATTRIBUTE] = tuple(sorted(rules))
        attributes[COUNT_ATTRIBUTE] = count
        if _logger.isEnabledFor(logging.DEBUG):
            _logger.debug("redacted %d value(s) by rule(s) %s", len(fired), sorted(set(fired)))
        if self._pii_logger is not None:
            pii = [r for r in fired if r in self._pii_names]
            if pii:
                self._emit_pii_event(pii)

    def _emit_pii_event(self, pii: list[str]) -> None:
        # The event goes through this same processor; a thread-local flag keeps a finding in
        # it (there should be none) from emitting another event, and so on forever.
        local = self._local
        if getattr(local, "emitting", False):
            return
        local.emitting = True
        try:
            assert self._pii_logger is not None
            self._pii_logger.emit(
                event_name=PII_EVENT_NAME,
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                attributes={
                    "audit.category": "data_access",
                    "audit.action": "pii.detected",
                    "audit.outcome": "success",
                    "audit.pii.types": tuple(sorted(set(pii))),
                    "audit.pii.count": len(pii),
                    "audit.pii.handling": self._mode,
                },
            )
        except Exception as exc:  # noqa: BLE001 - the record itself must still go on
            _logger.warning("could not emit %s event: %s", PII_EVENT_NAME, type(exc).__name__)
        finally:
            local.emitting = False

    def _fail_closed(self, record: Any, exc: Exception) -> None:
        # Neither let a possibly-unredacted value through nor drop the record: replace every
        # value that could hold data and say so on the record. The exception text is not
        # logged, as it might quote the value being redacted.
        _logger.error(
            "redaction failed (%s) on a record with event name %r; its values were replaced by %s",
            type(exc).__name__,
            record.event_name,
            _FAILED,
        )
        if record.body is not None:
            record.body = _FAILED
        attributes = record.attributes
        if attributes is None:
            attributes = record.attributes = {}
        for key in list(attributes):
            if key.startswith(_PROTECTED_PREFIXES) or key in _OWN_KEYS:
                continue
            if not isinstance(attributes[key], bool):
                attributes[key] = _FAILED
        attributes[ERROR_ATTRIBUTE] = type(exc).__name__

    def shutdown(self) -> None:
        """Nothing to release; redaction keeps working for records emitted during shutdown."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here."""
        return True


_NO_INDEXES: Final[frozenset[int]] = frozenset()
_HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_JSON_OPEN: Final = frozenset("{[")
_JSON_SPACE: Final = frozenset(" \t\r\n")
_JSON_CLOSE: Final = frozenset("}]")
# Deeper JSON is scanned as text (as a whole, by the patterns) rather than by structure.
_JSON_MAX_DEPTH: Final = 64
_PROBE_VALUE: Final = "x"


class _Unknown(enum.Enum):
    """A sentinel for a cache miss that mypy can tell apart from the cached values."""

    UNKNOWN = 0


_UNKNOWN: Final = _Unknown.UNKNOWN


class _TooDeep(Exception):
    """A JSON text nests deeper than _JSON_MAX_DEPTH."""


class _Pairs(list[tuple[str, Any]]):
    """A JSON object with a duplicate key, as its (key, value) pairs: each is redacted and kept."""


def _dump(value: Any) -> str:
    """``json.dumps(sort_keys=True)`` that also writes _Pairs (duplicates kept, in their order)."""
    if isinstance(value, _Pairs):
        items = sorted(value, key=lambda kv: kv[0])
    elif isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0])
    elif isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    else:
        return json.dumps(value, ensure_ascii=False)
    return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _dump(v) for k, v in items) + "}"


def _already_redacted(value: str) -> bool:
    return value.startswith((HMAC_PREFIX, "[REDACT")) and _ALREADY.fullmatch(value) is not None


def _around_tokens(stage: Callable[[str, list[str]], str], s: str, fired: list[str]) -> str:
    """Run ``stage`` on the parts of ``s`` between pseudonyms and masks, keeping those as they are."""
    parts: list[str] = []
    last = 0
    for m in _ALREADY.finditer(s):
        if m.start() > last:
            parts.append(stage(s[last : m.start()], fired))
        parts.append(m.group())
        last = m.end()
    if not parts:
        return stage(s, fired)
    if last < len(s):
        parts.append(stage(s[last:], fired))
    return "".join(parts)
