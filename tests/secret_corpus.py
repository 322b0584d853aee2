"""A corpus of real-shaped credentials, one per kind, for tests proving that none reaches an output.

Every sample is generated here, deterministically (a `random.Random` seeded per kind and variant),
with the kind's real prefix, alphabet, length and, where the format has one, its checksum (GitHub
and npm tokens end in a base62 CRC-32 of their random part; a JWT's signature is a real
HMAC-SHA256 over its header and payload; PEM blocks are real keys made with `cryptography`). None
is a real credential and none is a vendor's published example string. A sample stands alone as
the credential text; a kind that is only recognisable in context (an HTTP header, a connection
string, ``password=``) carries that context in the sample.

``KINDS[kind]`` is the sample; ``SECRET_PARTS[kind]`` the parts of it that must never appear in
anything the product writes (for ``Authorization: Basic ...`` the base64 and the decoded password,
for a connection string its password); ``SECRET_PART[kind]`` the first of them.
``sample(kind, variant)`` makes further samples of a kind, each with its own secret parts, so a
test can place one per location and tell from a finding where it was placed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["KINDS", "SECRET_PART", "SECRET_PARTS", "Sample", "forms", "sample"]

_SEED: Final = "otel-audit secret corpus v1"

DIGITS: Final = string.digits
UPPER: Final = string.ascii_uppercase
LETTERS: Final = string.ascii_letters
ALNUM: Final = string.ascii_letters + string.digits
HEX: Final = "0123456789abcdef"
B64: Final = ALNUM + "+/"
B64URL: Final = ALNUM + "-_"
BASE32: Final = UPPER + "234567"
_BASE62: Final = string.digits + string.ascii_uppercase + string.ascii_lowercase
# Password alphabets: no quote or backslash (so the text is the same JSON-escaped), and for each
# context only characters that context allows unencoded.
_PW_SYMBOLS: Final = "#!%^*~+-@"
_URL_PW_SYMBOLS: Final = "!$*~-"  # RFC 3986 userinfo: unreserved and sub-delims, no ':' '@' '/'
# P-256's group order: a private scalar is in [1, n).
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class Sample:
    """One credential: the text as it would be written, and the parts of it that are secret."""

    text: str
    parts: tuple[str, ...]


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _password(rng: random.Random, symbols: str = _PW_SYMBOLS, n: int = 14) -> str:
    """A password of letters, digits and symbols, one of each class at least: no dictionary word."""
    while True:
        pw = rng.choice(UPPER) + _pick(rng, ALNUM + symbols, n - 1)
        if any(c.isdigit() for c in pw) and any(c.islower() for c in pw) and any(c in symbols for c in pw):
            return pw


def _base62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _BASE62[r] + out
    return out.rjust(width, "0")


def _crc_token(rng: random.Random, prefix: str) -> str:
    """GitHub's (and npm's) token shape: 30 random base62 characters and a 6-character base62 CRC-32."""
    body = _pick(rng, ALNUM, 30)
    return prefix + body + _base62(zlib.crc32(body.encode()), 6)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem_lines(pem: str) -> tuple[str, ...]:
    return tuple(ln for ln in pem.splitlines() if ln and not ln.startswith("-----"))


def _ec_key(rng: random.Random) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(rng.randrange(1, _P256_ORDER), ec.SECP256R1())


# -- one generator per kind -------------------------------------------------------------------------


def _openai(rng: random.Random) -> Sample:
    tok = "sk-proj-" + _pick(rng, B64URL, 74) + "T3BlbkFJ" + _pick(rng, B64URL, 74)
    return Sample(tok, (tok[8:],))


def _openai_legacy(rng: random.Random) -> Sample:
    tok = "sk-" + _pick(rng, ALNUM, 20) + "T3BlbkFJ" + _pick(rng, ALNUM, 20)
    return Sample(tok, (tok[3:],))


def _anthropic(rng: random.Random) -> Sample:
    tok = "sk-ant-api03-" + _pick(rng, B64URL, 93) + "AA"
    return Sample(tok, (tok[13:],))


def _aws_access_key_id(rng: random.Random) -> Sample:
    tok = "AKIA" + _pick(rng, BASE32, 16)
    return Sample(tok, (tok,))


def _aws_secret_access_key(rng: random.Random) -> Sample:
    while True:
        tok = _pick(rng, B64, 40)
        if "/" in tok and "+" in tok:
            return Sample(tok, (tok,))


def _github_pat_classic(rng: random.Random) -> Sample:
    tok = _crc_token(rng, "ghp_")
    return Sample(tok, (tok[4:],))


def _github_fine_grained(rng: random.Random) -> Sample:
    tok = "github_pat_" + _pick(rng, ALNUM, 22) + "_" + _pick(rng, ALNUM, 59)
    return Sample(tok, (tok[11:],))


def _gitlab_pat(rng: random.Random) -> Sample:
    tok = "glpat-" + _pick(rng, B64URL, 20)
    return Sample(tok, (tok[6:],))


def _slack_bot(rng: random.Random) -> Sample:
    tok = f"xoxb-{_pick(rng, DIGITS, 13)}-{_pick(rng, DIGITS, 13)}-{_pick(rng, ALNUM, 24)}"
    return Sample(tok, (tok[5:],))


def _slack_webhook_url(rng: random.Random) -> Sample:
    secret = _pick(rng, ALNUM, 24)
    team, channel = _pick(rng, UPPER + DIGITS, 8), _pick(rng, UPPER + DIGITS, 10)
    url = f"https://hooks.slack.com/services/T{team}/B{channel}/{secret}"
    return Sample(url, (secret,))


def _google_api_key(rng: random.Random) -> Sample:
    tok = "AIza" + _pick(rng, B64URL, 35)
    return Sample(tok, (tok[4:],))


def _stripe_secret(rng: random.Random) -> Sample:
    tok = "sk_live_51" + _pick(rng, ALNUM, 97)
    return Sample(tok, (tok[8:],))


def _stripe_restricted(rng: random.Random) -> Sample:
    tok = "rk_live_51" + _pick(rng, ALNUM, 97)
    return Sample(tok, (tok[8:],))


def _huggingface(rng: random.Random) -> Sample:
    tok = "hf_" + _pick(rng, LETTERS, 34)
    return Sample(tok, (tok[3:],))


def _sendgrid(rng: random.Random) -> Sample:
    tok = f"SG.{_pick(rng, B64URL, 22)}.{_pick(rng, B64URL, 43)}"
    return Sample(tok, (tok[3:],))


def _npm(rng: random.Random) -> Sample:
    tok = _crc_token(rng, "npm_")
    return Sample(tok, (tok[4:],))


def _datadog_api_key(rng: random.Random) -> Sample:
    key = _pick(rng, HEX, 32)
    return Sample(f"DD-API-KEY: {key}", (key,))


def _datadog_api_key_env(rng: random.Random) -> Sample:
    key = _pick(rng, HEX, 32)
    return Sample(f"DD_API_KEY={key}", (key,))


def _jwt(rng: random.Random) -> Sample:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": f"u-{_pick(rng, DIGITS, 8)}", "iat": 1_760_000_000 + rng.randrange(10**6),
              "scope": "audit:read", "jti": _pick(rng, HEX, 16)}
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    key = rng.randbytes(32)
    sig = _b64url(hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return Sample(f"{header}.{payload}.{sig}", (sig, payload))


def _bearer_opaque(rng: random.Random) -> Sample:
    tok = _pick(rng, ALNUM, 40)
    return Sample(f"Authorization: Bearer {tok}", (tok,))


def _basic_auth(rng: random.Random) -> Sample:
    pw = _password(rng)
    cred = base64.b64encode(f"svc-backup:{pw}".encode()).decode()
    return Sample(f"Authorization: Basic {cred}", (cred, pw))


def _digest_auth(rng: random.Random) -> Sample:
    response = _pick(rng, HEX, 32)
    text = (f'Authorization: Digest username="u", realm="api@example.net", nonce="{_pick(rng, HEX, 32)}", '
            f'uri="/v1/export", qop=auth, nc=00000001, cnonce="{_pick(rng, HEX, 16)}", response="{response}"')
    return Sample(text, (response,))


def _url_password(rng: random.Random) -> Sample:
    pw = _password(rng, _URL_PW_SYMBOLS)
    return Sample(f"postgres://app:{pw}@db:5432/prod", (pw,))


def _ado_connection_string(rng: random.Random) -> Sample:
    pw = _password(rng)
    return Sample(f"Server=db;Database=x;User Id=sa;Password={pw};", (pw,))


def _azure_storage(rng: random.Random) -> Sample:
    key = base64.b64encode(rng.randbytes(64)).decode()  # 88 characters, "==" at the end
    text = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};EndpointSuffix=core.windows.net"
    return Sample(text, (key,))


def _pem_private_key(rng: random.Random) -> Sample:
    pem = _ec_key(rng).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()).decode()
    return Sample(pem, _pem_lines(pem))


def _twilio_api_key(rng: random.Random) -> Sample:
    tok = "SK" + _pick(rng, HEX, 32)
    return Sample(tok, (tok[2:],))


def _pypi_token(rng: random.Random) -> Sample:
    tok = "pypi-AgEIcHlwaS5vcmc" + "CJ" + _b64url(rng.randbytes(120))
    return Sample(tok, (tok[22:],))


def _telegram_bot(rng: random.Random) -> Sample:
    secret = "AA" + _pick(rng, B64URL, 33)
    return Sample(f"{rng.randrange(10**8, 10**9)}:{secret}", (secret,))


def _mailchimp(rng: random.Random) -> Sample:
    key = _pick(rng, HEX, 32)
    return Sample(f"{key}-us12", (key,))


def _square(rng: random.Random) -> Sample:
    tok = "sq0atp-" + _pick(rng, B64URL, 22)
    return Sample(tok, (tok[7:],))


def _shopify(rng: random.Random) -> Sample:
    tok = "shpat_" + _pick(rng, HEX, 32)
    return Sample(tok, (tok[6:],))


def _password_kv(rng: random.Random) -> Sample:
    pw = _password(rng)
    return Sample(f"password={pw}", (pw,))


def _private_key_json(rng: random.Random) -> Sample:
    pem = _ec_key(rng).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
    # As in a GCP service-account key file: the PEM is a JSON string, its newlines written "\n".
    return Sample(f'"private_key": {json.dumps(pem)}', _pem_lines(pem))


_GENERATORS: Final[dict[str, Callable[[random.Random], Sample]]] = {
    "openai": _openai,
    "openai_legacy": _openai_legacy,
    "anthropic": _anthropic,
    "aws_access_key_id": _aws_access_key_id,
    "aws_secret_access_key": _aws_secret_access_key,
    "github_pat_classic": _github_pat_classic,
    "github_fine_grained": _github_fine_grained,
    "gitlab_pat": _gitlab_pat,
    "slack_bot": _slack_bot,
    "slack_webhook_url": _slack_webhook_url,
    "google_api_key": _google_api_key,
    "stripe_secret": _stripe_secret,
    "stripe_restricted": _stripe_restricted,
    "huggingface": _huggingface,
    "sendgrid": _sendgrid,
    "npm": _npm,
    "datadog_api_key": _datadog_api_key,
    "datadog_api_key_env": _datadog_api_key_env,
    "jwt": _jwt,
    "bearer_opaque": _bearer_opaque,
    "basic_auth": _basic_auth,
    "digest_auth": _digest_auth,
    "url_password": _url_password,
    "ado_connection_string": _ado_connection_string,
    "azure_storage": _azure_storage,
    "pem_private_key": _pem_private_key,
    "twilio_api_key": _twilio_api_key,
    "pypi_token": _pypi_token,
    "telegram_bot": _telegram_bot,
    "mailchimp": _mailchimp,
    "square": _square,
    "shopify": _shopify,
    "password_kv": _password_kv,
    "private_key_json": _private_key_json,
}


def sample(kind: str, variant: str | int = 0) -> Sample:
    """The sample of `kind` for `variant` (the same arguments give the same sample, in every process)."""
    return _GENERATORS[kind](random.Random(f"{_SEED}:{kind}:{variant}"))


def forms(part: str) -> tuple[str, ...]:
    """The spellings of a secret part an output may hold: as is, JSON-escaped (once, and twice, as in
    ``audit.otlp`` inside a JSON event), and percent-encoded (in a URL)."""
    once = json.dumps(part, ensure_ascii=False)[1:-1]
    twice = json.dumps(once, ensure_ascii=False)[1:-1]
    return tuple(dict.fromkeys((part, once, twice, quote(part, safe=""))))


_SAMPLES: Final = {kind: sample(kind) for kind in _GENERATORS}
KINDS: Final[dict[str, str]] = {kind: s.text for kind, s in _SAMPLES.items()}
SECRET_PARTS: Final[dict[str, tuple[str, ...]]] = {kind: s.parts for kind, s in _SAMPLES.items()}
SECRET_PART: Final[dict[str, str]] = {kind: s.parts[0] for kind, s in _SAMPLES.items()}
