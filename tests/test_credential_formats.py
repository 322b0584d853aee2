"""The credential formats of ``processors/credential_formats.py``, through a real RedactionProcessor.

Every format has at least one real-shaped sample (its prefix, alphabet and length; the random
part generated here from a ``random.Random`` seeded by the sample's template, so none is a
real credential or a vendor's published example). Each sample is redacted in a sentence, in
JSON text and as a bare attribute of a record emitted through the OTel pipeline, in mask mode;
a corpus of ordinary values that share the formats' prefixes or shapes survives unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import string
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_audit.processors import secret_rules
from otel_audit.processors.credential_formats import FORMATS
from otel_audit.processors.redaction import RedactionProcessor
from otel_audit.processors.secret_rules import library_rules

MASK = RedactionProcessor(mode="mask")
HMAC = RedactionProcessor(mode="hmac", hmac_key="hex:" + "5a" * 32)
BY_NAME = dict(FORMATS)

_ALNUM = string.ascii_letters + string.digits
# The alphabets of the sample templates: {h:32} is 32 lower-case hex digits, and so on.
ALPHABETS = {
    "h": "0123456789abcdef",
    "H": "0123456789ABCDEF",
    "d": string.digits,
    "a": _ALNUM,
    "l": string.ascii_lowercase + string.digits,
    "U": string.ascii_uppercase + string.digits,
    "L": string.ascii_letters,
    "t": _ALNUM + "_-",
    "z": _ALNUM + "_-.~",  # Azure AD client secrets
    "b": _ALNUM + "+/",
    "B": "qpzry9x8gf2tvdw0s3jn54khce6mua7l".upper(),  # bech32
    "w": "AEIMQUYcgkosw048",  # the last base64 letter of a 32-byte value
}
_PLACEHOLDER = re.compile(r"\{([a-zA-Z]):(\d+)\}|\{uuid\}")


def fill(template: str) -> str:
    """``template`` with each ``{x:n}`` replaced by n random characters of alphabet x."""
    rnd = random.Random("otel-audit credential formats: " + template)

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "{uuid}":
            return str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        return "".join(rnd.choice(ALPHABETS[m.group(1)]) for _ in range(int(m.group(2))))

    return _PLACEHOLDER.sub(one, template)


def _b64_pem() -> str:
    body = fill("{b:64}\n{b:64}\n{b:40}")
    pem = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
    return base64.b64encode(pem.encode()).decode()


def _b64(text: str, urlsafe: bool = False) -> str:
    """Base64 of ``text`` (a JSON document, "tok:..."), as the vendors' tokens wrap theirs."""
    raw = text.encode()
    return (base64.urlsafe_b64encode(raw).decode().rstrip("=") if urlsafe else base64.b64encode(raw).decode())


PUTTY_PRIVATE = fill("{b:44}")
PUTTY = (
    "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: " + fill("build-{l:8}") + "\n"
    "Public-Lines: 2\n" + fill("AAAAC3NzaC1lZDI1NTE5AAAAI{b:39}\n{b:4}") + "\n"
    "Private-Lines: 1\n" + PUTTY_PRIVATE + "\nPrivate-MAC: " + fill("{h:64}")
)

# (format, sample): at least one per format, more where a format has several forms.
SAMPLES: list[tuple[str, str]] = [
    ("aws_session_token", fill("IQoJb3JpZ2luX2VjE{b:300}==")),
    ("aws_sts_session_token", fill("FwoGZXIvYXdzE{b:250}")),
    ("gcp_oauth_access_token", fill("ya29.a0{t:150}")),
    ("gcp_oauth_client_secret", fill("GOCSPX-{t:28}")),
    ("gcp_oauth_refresh_token", fill("1//0{t:99}")),
    ("gcp_firebase_cloud_messaging_key", fill("AAAA{t:7}:APA91b{t:134}")),
    ("azure_storage_account_key", fill("{b:85}{a:1}==")),
    ("azure_ad_client_secret", fill("{a:3}8Q~{z:34}")),
    ("alibaba_access_key_id", fill("LTAI{a:20}")),
    ("tencent_secret_id", fill("AKID{a:32}")),
    ("yandex_api_key", fill("AQVN{t:36}")),
    ("yandex_iam_token", fill("t1.{t:40}.{t:86}")),
    ("yandex_static_key_secret", fill("YC{t:38}")),
    ("digitalocean_token", fill("dop_v1_{h:64}")),
    ("digitalocean_token", fill("doo_v1_{h:64}")),
    ("digitalocean_token", fill("dor_v1_{h:64}")),
    ("heroku_api_key", fill("HRKU-AA{t:58}")),
    ("cloudflare_origin_ca_key", fill("v1.0-{h:24}-{h:146}")),
    ("cloudflare_tunnel_token", _b64(fill('{"a":"{h:32}","t":"{uuid}","s":"{b:43}="}'))),
    ("fly_io_token", fill("fo1_{t:43}")),
    ("fly_io_macaroon", fill("fm2_{b:200}")),
    ("supabase_access_token", fill("sbp_{h:40}")),
    ("supabase_secret_key", fill("sb_secret_{t:31}")),
    ("planetscale_token", fill("pscale_tkn_{t:43}")),
    ("planetscale_token", fill("pscale_pw_{t:43}")),
    ("databricks_token", fill("dapi{h:32}")),
    ("databricks_token", fill("dose{h:32}")),
    ("netlify_token", fill("nfp_{a:36}")),
    ("tailscale_key", fill("tskey-auth-{a:11}-{a:33}")),
    ("terraform_cloud_token", fill("{a:14}.atlasv1.{t:67}")),
    ("pulumi_token", fill("pul-{h:40}")),
    ("doppler_token", fill("dp.pt.{a:43}")),
    ("doppler_token", fill("dp.st.{a:43}")),
    ("doppler_token", fill("dp.sa.{a:43}")),
    ("vault_token", fill("hvs.{t:91}")),
    ("vault_token", fill("hvb.{t:138}")),
    ("vault_token", fill("hvr.{t:24}")),
    ("okta_api_token", fill("SSWS 00{t:40}")),
    ("dynatrace_token", fill("dt0c01.{U:24}.{U:64}")),
    ("salesforce_access_token", fill("00D{a:15}!AQ{a:94}")),
    ("groq_api_key", fill("gsk_{a:52}")),
    ("huggingface_org_token", fill("api_org_{L:34}")),
    ("replicate_api_token", fill("r8_{a:37}")),
    ("together_api_key", fill("tgp_v1_{t:43}")),
    ("xai_api_key", fill("xai-{a:80}")),
    ("perplexity_api_key", fill("pplx-{a:48}")),
    ("langsmith_api_key", fill("lsv2_pt_{h:32}_{h:10}")),
    ("langsmith_api_key", fill("lsv2_sk_{h:32}_{h:10}")),
    ("elevenlabs_api_key", fill("sk_{h:48}")),
    ("pinecone_api_key", fill("pcsk_{a:6}_{a:64}")),
    ("tavily_api_key", fill("tvly-dev-{a:32}")),
    ("firecrawl_api_key", fill("fc-{h:32}")),
    ("atlassian_api_token", fill("ATATT3xFfGF0{t:170}={H:8}")),
    ("bitbucket_app_password", fill("ATBB{a:32}")),
    ("docker_hub_token", fill("dckr_pat_{t:27}")),
    ("docker_hub_token", fill("dckr_oat_{t:32}")),
    ("rubygems_api_key", fill("rubygems_{h:48}")),
    ("nuget_api_key", fill("oy2{l:43}")),
    ("crates_io_token", fill("cio{a:32}")),
    ("clojars_token", fill("CLOJARS_{l:60}")),
    ("postman_api_key", fill("PMAK-{h:24}-{h:34}")),
    ("linear_api_key", fill("lin_api_{a:40}")),
    ("linear_oauth_token", fill("lin_oauth_{h:64}")),
    ("figma_token", fill("figd_{t:40}")),
    ("sourcegraph_token", fill("sgp_{h:16}_{h:40}")),
    ("sourcegraph_token", fill("sgp_{h:40}")),
    ("sonarqube_token", fill("squ_{h:40}")),
    ("sonarqube_token", fill("sqp_{h:40}")),
    ("buildkite_token", fill("bkua_{h:40}")),
    ("circleci_token", fill("CCIPAT_{a:22}_{h:40}")),
    ("circleci_token", fill("CCIPRJ_{a:22}_{h:40}")),
    ("harness_token", fill("pat.{t:22}.{h:24}.{a:20}")),
    ("jfrog_reference_token", _b64(fill("reftkn:01:17{d:8}:{a:20}:{a:32}"))),
    ("readme_api_key", fill("rdme_{l:70}")),
    ("scalingo_token", fill("tk-us-{t:48}")),
    ("prefect_api_key", fill("pnu_{a:36}")),
    ("infracost_api_key", fill("ico-{a:32}")),
    ("grafana_service_account_token", fill("glsa_{a:32}_{h:8}")),
    ("grafana_cloud_token",
     "glc_" + _b64(fill('{"o":"{d:6}","n":"stack-{d:6}-hm-read","k":"{a:24}","m":{"r":"prod-eu-west-0"}}'))),
    ("grafana_legacy_api_key", _b64(fill('{"k":"{a:32}","n":"ci","id":1}'))),
    ("honeycomb_api_key", fill("hcaik_{l:58}")),
    ("sentry_user_token", fill("sntryu_{h:64}")),
    ("sentry_org_token",
     "sntrys_"
     + _b64(fill('{"iat":17{d:8}.{d:6},"url":"https://sentry.io",'
                 '"region_url":"https://us.sentry.io","org":"acme"}'), True)
     + fill("_{t:43}")),
    ("new_relic_user_api_key", fill("NRAK-{U:27}")),
    ("new_relic_admin_key", fill("NRAA-{h:27}")),
    ("new_relic_insights_key", fill("NRII-{t:32}")),
    ("new_relic_insights_key", fill("NRIQ-{t:32}")),
    ("new_relic_license_key", fill("eu01xx{h:30}NRAL")),
    ("new_relic_license_key", fill("{h:36}NRAL")),
    ("slack_app_token", fill("xapp-1-A{U:10}-{d:13}-{h:64}")),
    ("slack_workflow_webhook", fill("https://hooks.slack.com/workflows/T{U:10}/A{U:10}/{d:18}/{a:24}")),
    ("discord_webhook", fill("https://discord.com/api/webhooks/{d:18}/{t:68}")),
    ("discord_webhook", fill("https://discordapp.com/api/webhooks/{d:18}/{t:68}")),
    ("microsoft_teams_webhook",
     fill("https://contoso.webhook.office.com/webhookb2/{uuid}@{uuid}/IncomingWebhook/{h:32}/{uuid}")),
    ("notion_token", fill("secret_{a:43}")),
    ("notion_ntn_token", fill("ntn_{d:11}{a:35}")),
    ("airtable_token", fill("pat{a:14}.{h:64}")),
    ("asana_token", fill("2/{d:16}/{d:16}:{h:32}")),
    ("clickup_token", fill("pk_{d:8}_{U:32}")),
    ("dropbox_token", fill("sl.u.{t:140}")),
    ("dropbox_token", fill("sl.B{t:140}")),
    ("intercom_token", _b64(fill("tok:{uuid}:1:0"))),
    ("twitch_oauth_token", fill("oauth:{l:30}")),
    ("facebook_access_token", fill("EAAG{a:180}")),
    ("instagram_access_token", fill("IGQV{t:160}")),
    ("posthog_personal_key", fill("phx_{a:43}")),
    ("webhook_signing_secret", fill("whsec_{a:32}")),
    ("webhook_signing_secret", "whsec_" + base64.b64encode(random.Random(1).randbytes(32)).decode()),
    ("webhook_signing_secret", "whsk_" + base64.b64encode(random.Random(2).randbytes(32)).decode()),
    ("mailgun_api_key", fill("key-{h:32}")),
    ("brevo_api_key", fill("xkeysib-{h:64}-{a:16}")),
    ("brevo_api_key", fill("xsmtpsib-{h:64}-{a:16}")),
    ("resend_api_key", fill("re_{a:8}_{a:24}")),
    ("braintree_access_token", fill("access_token$sandbox${l:16}${h:32}")),
    ("braintree_access_token", fill("access_token$production${l:16}${h:32}")),
    ("plaid_access_token", fill("access-production-{uuid}")),
    ("shippo_api_token", fill("shippo_live_{h:40}")),
    ("flutterwave_secret_key", fill("FLWSECK-{h:32}-X")),
    ("flutterwave_secret_key", fill("FLWSECK_TEST-{h:32}-X")),
    ("duffel_api_token", fill("duffel_test_{t:43}")),
    ("easypost_api_key", fill("EZAK{a:54}")),
    ("easypost_api_key", fill("EZTK{a:54}")),
    ("adobe_client_secret", fill("p8e-{t:32}")),
    ("contentful_token", fill("CFPAT-{t:43}")),
    ("frameio_token", fill("fio-u-{t:64}")),
    ("typeform_token", fill("tfp_{a:44}_{a:14}")),
    ("onepassword_service_account_token",
     "ops_" + _b64(fill('{"signInAddress":"my.1password.com","userAuth":{"method":"SRPg-4096","alg":"PBES2g-HS256",'
                      '"iterations":650000,"salt":"{t:22}"},"email":"{l:13}@1passwordserviceaccounts.com",'
                      '"srpX":"{h:64}","muk":{"alg":"A256GCM","ext":true,"k":"{t:43}","key_ops":["encrypt","decrypt"],'
                      '"kty":"oct","kid":"mp"},"secretKey":"A3-{U:6}-{U:6}-{U:5}-{U:5}-{U:5}-{U:5}",'
                      '"throttleSecret":{"seed":"{h:64}","uuid":"{U:26}"},"deviceUuid":"{l:26}"}'), True)),
    ("onepassword_secret_key", fill("A3-{U:6}-{U:6}-{U:5}-{U:5}-{U:5}-{U:5}")),
    ("onepassword_secret_key", fill("A3-{U:6}-{U:11}-{U:5}-{U:5}-{U:5}")),
    ("bitwarden_access_token", fill("0.{uuid}.{a:30}:{b:22}==")),
    ("age_secret_key", fill("AGE-SECRET-KEY-1{B:58}")),
    ("putty_private_key", PUTTY),
    ("wireguard_private_key", fill("PrivateKey = {b:42}{w:1}=")),
    ("base64_pem_private_key", _b64_pem()),
]


def _secret(name: str, sample: str) -> str:
    """What must not survive: the format's secret group (12+ characters) or its whole match."""
    m = BY_NAME[name].search(sample)
    assert m is not None, (name, sample)
    groups = [g for g in m.groups() if g and len(g) >= 12]
    return max(groups, key=len) if groups else m.group()


def _ids(pairs: list[tuple[str, str]]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name, _ in pairs:
        seen[name] = seen.get(name, 0) + 1
        out.append(f"{name}-{seen[name]}")
    return out


def _redact(p: RedactionProcessor, s: str) -> str:
    return p._redact(s, [], False)


@pytest.fixture(scope="module")
def pipeline() -> Iterator[tuple[LoggerProvider, InMemoryLogRecordExporter]]:
    provider = LoggerProvider()
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(RedactionProcessor(mode="mask"))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_every_format_has_a_sample_and_a_unique_name() -> None:
    names = [name for name, _ in FORMATS]
    assert len(names) == len(set(names))
    assert set(names) == {name for name, _ in SAMPLES}


@pytest.mark.parametrize(("name", "sample"), SAMPLES, ids=_ids(SAMPLES))
def test_sample_is_matched_by_its_format_alone_and_whole(name: str, sample: str) -> None:
    m = BY_NAME[name].search(sample)
    assert m is not None and m.group().rstrip("=") == sample.rstrip("=\n/"), (name, m)
    others = [other for other, regex in FORMATS if other != name and regex.search(sample)]
    assert others == []


@pytest.mark.parametrize(("name", "sample"), SAMPLES, ids=_ids(SAMPLES))
def test_sample_is_redacted_in_a_sentence_and_in_json_text(name: str, sample: str) -> None:
    secret = _secret(name, sample).rstrip("=")
    for text in (
        f"Hi, please call the API with {sample} thanks.",
        f"upstream call failed with {sample}",
        json.dumps({"note": "deploy", "detail": {"value": sample}}),
        json.dumps([sample]),
    ):
        out = _redact(MASK, text)
        assert secret not in out, (name, out)
        # a key=value rule of the processor may name it first ("PrivateKey = ..." is private_key)
        assert "[REDACTED:api_key]" in out or "[REDACTED:private_key]" in out
        assert BY_NAME[name].search(out) is None


@pytest.mark.parametrize(("name", "sample"), SAMPLES, ids=_ids(SAMPLES))
def test_sample_is_redacted_as_a_bare_attribute_and_body(
    pipeline: tuple[LoggerProvider, InMemoryLogRecordExporter], name: str, sample: str
) -> None:
    provider, exporter = pipeline
    exporter.clear()
    provider.get_logger("t").emit(
        event_name="gateway.upstream.called", body=sample, attributes={"gateway.upstream.credential_hint": sample}
    )
    (record,) = exporter.get_finished_logs()
    attrs = dict(record.log_record.attributes or {})
    secret = _secret(name, sample).rstrip("=")
    for value in (attrs["gateway.upstream.credential_hint"], record.log_record.body):
        assert isinstance(value, str) and secret not in value, (name, value)
    assert {"api_key", "private_key"} & set(attrs["audit.redaction.rules"])


def test_putty_private_lines_are_replaced_with_the_whole_key_file() -> None:
    out = _redact(MASK, f"key file:\n{PUTTY}\nend of paste")
    assert PUTTY_PRIVATE not in out and "Private-MAC" not in out
    assert out == "key file:\n[REDACTED:api_key]\nend of paste"
    # cut off before its MAC: still replaced, to the end of the string
    cut = PUTTY.split("Private-MAC")[0]
    assert PUTTY_PRIVATE not in _redact(MASK, "pasted: " + cut)


def test_pseudonyms_replace_the_samples_in_hmac_mode() -> None:
    for name, sample in SAMPLES:
        out = _redact(HMAC, f"the value {sample} was used")
        assert _secret(name, sample).rstrip("=") not in out, name
        assert "hmac-sha256:" in out


def test_the_gates_of_the_formats() -> None:
    """No format is searched on every string: each has a literal prefix of 3+ characters, or a
    run of token characters and an anchor (Asana's, whose ``/`` and ``:`` are single
    characters, has only its 32-character run). Nearly all are found by run and anchor: a
    literal prefix costs a substring search of every long string (see the module docstring),
    so only formats with no guaranteed run keep one."""
    rules = {r.plugin.removeprefix("otel-audit:"): r for r in library_rules() if r.plugin.startswith("otel-audit:")}
    assert set(rules) == set(BY_NAME)
    for name, r in rules.items():
        assert r.min_run >= 1 or r.prefixes is not None, name
        if r.prefixes is None:
            assert r.anchors is not None or name == "asana_token", name
        else:
            assert min(map(len, r.prefixes)) >= 3, name
    assert sorted(name for name, r in rules.items() if r.prefixes is not None) == [
        "fly_io_macaroon", "webhook_signing_secret"
    ]
    assert all(r.min_run >= 17 for name, r in rules.items() if name not in _SHORT_RUN), [
        (name, r.min_run) for name, r in rules.items() if r.min_run < 17
    ]
    assert rules["putty_private_key"].anchors == frozenset({"PuTTY-User-Key-File-"})
    assert rules["azure_storage_account_key"].anchors == frozenset({"=="})
    assert rules["azure_ad_client_secret"].anchors == frozenset({"Q~"})


# Formats without a guaranteed run of 17 token characters (a typical record's 16-hex ids
# have runs of 16): their anchors are checked on more strings.
_SHORT_RUN = frozenset({
    "aws_session_token", "aws_sts_session_token", "azure_storage_account_key", "azure_ad_client_secret",
    "alibaba_access_key_id", "salesforce_access_token", "wireguard_private_key", "fly_io_macaroon",
    "webhook_signing_secret",
})


def test_prefixes_after_two_character_classes_are_all_read() -> None:
    """secret_rules read a class after a class for one prefix only (a generator read once)."""
    rule = secret_rules._describe("x", re.compile(r"[AF][AQgw]oDYXdz[A-Za-z0-9+/]{10}"))
    assert rule.prefixes == frozenset(a + b + "oDYXdz" for a in "AF" for b in "AQgw")


def _sri(data: bytes) -> str:
    return base64.b64encode(hashlib.sha512(data).digest()).decode()


# Ordinary audit values: identifiers, hashes, and words that begin like a format's prefix.
BENIGN = [
    "keyboard-layout: en-US",
    "key-value store migrated",
    "monkey-9f4b05752123f6d49734375598d5b4e7",
    "secret_santa_2024",
    "secret_sauce_recipe_v2_final_draft_for_review",
    "patterns",
    "path=/var/lib/patroni/patterns",
    "pulumi up --stack prod --yes",
    "pul-request-template",
    "dope",
    "hvsomething",
    "hvs",
    "t1.micro",
    "v1.0-beta.3",
    "oauth: enabled",
    "access-production-logs",
    "access_token$ expired",
    "pat.example.com",
    "sl.example.org",
    "A3-B4-C5",
    "EAA is an abbreviation",
    "api_org_chart",
    "re_match_all_the_things_in_the_list",
    "gsk_model_config",
    "ya29",
    "1//0",
    "print(1//0)",
    "Q~A session",
    "dapi-gateway",
    "dose of reality",
    "sk_test",
    "pk_test_value",
    "fc-barcelona",
    "ico-32.png",
    "cio-report",
    "oy2 stand",
    "LTAI",
    "AKIDS",
    "YC batch W24",
    "ATBB",
    "ntn_local",
    "sbp_warn",
    "tfp_",
    "0.1.2",
    "1.0.0-rc.1",
    "2024-05-01T12:34:56.789Z",
    "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
    "c2c5f1d6-41a3-4b6e-8f2e-a3a1b2c3d4e5",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha512-" + _sri(b"lodash-4.17.21.tgz"),
    "SHA-512=" + _sri(b"request body"),
    "sha512:" + _sri(b"archive"),
    "/subscriptions/3f2504e0-4f89-41d3-9a0c-0305e82c3301/resourceGroups/rg-prod",
    "arn:aws:iam::123456789012:role/gateway",
    "https://discord.com/channels/123456789012345678/123456789012345678",
    "https://hooks.slack.com/",
    "PuTTY-User-Key-File-3 is the key file format PuTTY writes",
    "PrivateKey = (none)",
    "NRAL",
    "users/alice/documents/report.pdf",
    "the quick brown fox jumps over the lazy dog " * 8,
]


@pytest.mark.parametrize("value", BENIGN)
def test_ordinary_value_is_no_format(value: str) -> None:
    assert [name for name, regex in FORMATS if regex.search(value)] == []


@pytest.mark.parametrize("value", BENIGN)
def test_ordinary_value_survives_redaction(value: str) -> None:
    assert _redact(MASK, value) == value
    assert _redact(HMAC, value) == value
