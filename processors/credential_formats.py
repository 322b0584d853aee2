"""Credential formats detect-secrets does not have, as regexes in its style.

Each entry is ``(name, pattern)``: a compiled regex that matches the credential (a group of at
least 12 characters, if any, is the secret part; else the whole match), written from the
vendor's documented token format. ``processors/secret_rules.py`` reads them with
detect-secrets' own patterns and gives them the same gates (literal prefixes, anchors, run
lengths).

How the patterns are written, and why:

* Only formats with a distinctive literal (a vendor prefix such as ``dckr_pat_``, a fixed
  infix such as ``.atlasv1.`` or ``Q~``, a suffix such as ``NRAL``) or a rigid structure (a
  bare Azure storage key: exactly 86 base64 characters and ``==``). A bare random token
  (Cohere, Mistral, Algolia, Zendesk, Twitch client secrets ...) is no format: it is left to
  the ``key=value`` rules and sensitive attribute keys.
* Gates, as measured: a pattern with a literal prefix (and no run of 24 token characters)
  joins the processor's combined regex, and every prefix costs a substring search of every
  string over 128 characters (~1 us per 2 KB prompt, whatever it holds) and work at each of
  its first letters in short ones. A pattern whose matches hold a long run of token
  characters is instead gated by that run first (one C search; prose and a typical record's
  16-hex ids have none of 17+), then by its anchor, in its own case. So a format is written
  to expose its guaranteed run (``[A-Za-z0-9]{40}`` rather than a class with ``+``/``=``,
  where the format allows), and a pattern with a short run starts with a look-behind (a start
  boundary it needs anyway), which sends it to the run-and-anchor gate: only ``fm2_``,
  ``whsec_`` and ``whsk_`` (base64 from the first character) keep a prefix.
* A literal that could end a longer word (``key-``, ``pat``, ``r8_``) is followed by a
  look-behind that spans it (``_nb``): the character before the literal is no letter, digit
  or ``_``. (A look-behind before the literal would hide it from the prefix reader.)
* A format of fixed length ends with a boundary (``_END``), so that the tail of a longer
  identifier is not taken for it; an open-ended one (``{40,}``) needs none, as the replaced
  span is widened to the end of the token anyway.
* No look-aheads that require content (hypothesis cannot generate from them, and the gates
  cannot read them), and no nested unbounded repeats (the patterns run on 2 KB prompts).

Formats already covered elsewhere are not repeated: the processor's own rules
(``processors/redaction.py``: ``sk-`` keys of OpenAI, Anthropic incl. admin keys, OpenRouter,
DeepSeek, Langfuse; AWS key ids; GitHub; Google ``AIza``; Slack ``xox?-``; Stripe ``sk_``/
``rk_``; Hugging Face ``hf_``; npm; Shopify; Square; Datadog; PEM blocks; URL passwords) and
detect-secrets' plugins (GitLab, PyPI, SendGrid, Twilio, Mailchimp, Discord bot tokens,
Telegram, Artifactory, JWTs, which also take Mapbox's ``sk.eyJ...`` tokens, Slack webhooks ...).
"""

from __future__ import annotations

import base64
import re
from typing import Final

__all__ = ["FORMATS"]

_WORD: Final = "[A-Za-z0-9_]"
# After a fixed-length format: no more token characters.
_END: Final = "(?![A-Za-z0-9_-])"
_END_B64: Final = "(?![A-Za-z0-9+/=_-])"
_B64: Final = "[A-Za-z0-9+/]"
# Base64 of ASCII text holds "+" or "/" only where the text has ">", "?" or "~" (the last
# character of a 3-byte group), which token JSON, "tok:<uuid>" or a PEM block do not: such a
# base64 is a run of letters and digits, and the gates can require that run.
_ASCII_B64: Final = "[A-Za-z0-9]"
_UUID: Final = "[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}"


def _nb(width: int) -> str:
    """After ``width`` literal characters: they do not continue a word (see the docstring)."""
    return f"(?<!{_WORD}{'.' * width})"


def _b64_prefixes(texts: tuple[str, ...]) -> str:
    """An alternation of the base64 forms of the whole 3-byte groups of each of ``texts``:
    what the base64 of any text starting with one of them starts with."""
    forms = sorted({base64.b64encode(t.encode()[: len(t) // 3 * 3]).decode() for t in texts})
    return "(?:" + "|".join(forms) + ")"


# Base64 of a PEM private key (a Kubernetes secret's data, a kubeconfig's client-key-data).
_PEM_KEY_HEADS: Final = tuple(
    f"-----BEGIN {kind}PRIVATE KEY"
    for kind in ("", "RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED ", "PGP ")
)

_F: Final[tuple[tuple[str, str], ...]] = (
    # -- cloud providers ------------------------------------------------------------------
    # AWS session tokens (STS, instance and container roles): base64 of a binary blob that
    # starts with "origin" (most) or "er/aws" (GetSessionToken, federation); the first byte
    # varies (its last two bits are the second base64 letter).
    ("aws_session_token", f"(?<!{_B64})I[AQgw]oJb3JpZ2lu{_B64}{{100,}}={{0,2}}"),
    ("aws_sts_session_token", f"(?<!{_B64})F[AQgw]oGZXIvYXdz{_B64}{{100,}}={{0,2}}"),
    ("gcp_oauth_access_token", r"ya29\.[A-Za-z0-9_-]{30,}"),
    ("gcp_oauth_client_secret", r"GOCSPX-[A-Za-z0-9_-]{24,}"),
    ("gcp_oauth_refresh_token", r"1//0(?<![A-Za-z0-9_/].{4})[A-Za-z0-9_-]{40,}"),
    ("gcp_firebase_cloud_messaging_key", r"AAAA[A-Za-z0-9_-]{7}:APA91b[A-Za-z0-9_-]{120,}"),
    # Azure storage / Cosmos DB account key on its own (after AccountKey= detect-secrets has
    # it): 64 random bytes, so exactly 86 base64 characters, the last a letter or digit, and
    # "=="; standing alone, and not a SHA-512 digest labelled as one ("sha512-", "SHA-512=").
    ("azure_storage_account_key",
     f"(?<![A-Za-z0-9+/_-])(?<!512=)(?<!512:)(?<!512: ){_B64}{{85}}[A-Za-z0-9]=={_END_B64}"),
    # Azure AD (Entra ID) client secrets: 3 characters, a digit, "Q~", 31-34 characters.
    ("azure_ad_client_secret",
     r"(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])"),
    ("alibaba_access_key_id", r"(?<![A-Za-z0-9])LTAI[A-Za-z0-9]{12,20}(?![A-Za-z0-9])"),
    ("tencent_secret_id", r"AKID" + _nb(4) + r"[A-Za-z0-9]{32}(?![A-Za-z0-9])"),
    ("yandex_api_key", r"AQVN" + _nb(4) + r"[A-Za-z0-9_-]{35,38}" + _END),
    ("yandex_iam_token", r"t1\." + _nb(3) + r"[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]{86}"),
    ("yandex_static_key_secret", r"(?<![A-Za-z0-9_-])YC[A-Za-z0-9_-]{38}" + _END),
    ("digitalocean_token", r"do[opr]_v1_" + _nb(7) + r"[a-f0-9]{64}"),
    ("heroku_api_key", r"HRKU-[A-Za-z0-9_-]{40,}"),
    ("cloudflare_origin_ca_key", r"v1\.0-" + _nb(5) + r"[a-f0-9]{24}-[a-f0-9]{146}"),
    # Cloudflare tunnel tokens: base64 of {"a":"<account tag, 32 hex>","t":...,"s":...}; the
    # base64 of ASCII letters, digits and JSON punctuation has no "+" or "/" (see _ASCII_B64).
    ("cloudflare_tunnel_token", f"eyJhIjoi{_ASCII_B64}{{40}}{_B64}{{60,}}={{0,2}}"),
    ("fly_io_token", r"fo1_" + _nb(4) + r"[A-Za-z0-9_-]{40,}"),
    ("fly_io_macaroon", r"fm2_" + _nb(4) + f"{_B64}{{100,}}={{0,3}}"),
    ("supabase_access_token", r"sbp_" + _nb(4) + r"[a-f0-9]{40}" + _END),
    ("supabase_secret_key", r"sb_secret_[A-Za-z0-9_-]{20,}"),
    ("planetscale_token", r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_-]{32}[A-Za-z0-9_.=-]*"),
    ("databricks_token", r"d(?:api|ose)" + _nb(4) + r"[a-f0-9]{32}(?:-[0-9]+)?" + _END),
    ("netlify_token", r"nfp_" + _nb(4) + r"[A-Za-z0-9]{36}" + _END),
    ("tailscale_key", r"tskey-[a-z]+-[A-Za-z0-9]{6,}-[A-Za-z0-9]{20,}"),
    ("terraform_cloud_token", r"(?<![A-Za-z0-9])[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_-]{40}[A-Za-z0-9_=-]{20,}"),
    ("pulumi_token", r"pul-" + _nb(4) + r"[a-f0-9]{40}" + _END),
    ("doppler_token",
     r"dp\.(?:pt|st|sa|ct|scim|audit)\.(?:[A-Za-z0-9_-]{1,64}\.)?[A-Za-z0-9]{40,}"),
    ("vault_token", r"hv[sbr]\." + _nb(4) + r"[A-Za-z0-9_-]{24,}"),
    ("okta_api_token", r"(?<![A-Za-z0-9])SSWS[ \t]+([A-Za-z0-9_-]{20,})"),
    ("dynatrace_token", r"dt0[a-z][0-9]{2}\.[A-Z0-9]{24}\.[A-Z0-9]{64}"),
    ("salesforce_access_token", r"(?<![A-Za-z0-9])00D[A-Za-z0-9]{12,15}![A-Za-z0-9_.]{80,}"),
    # -- AI and LLM providers ---------------------------------------------------------------
    ("groq_api_key", r"gsk_" + _nb(4) + r"[A-Za-z0-9]{48,}"),
    ("huggingface_org_token", r"api_org_[A-Za-z]{34}" + _END),
    ("replicate_api_token", r"r8_" + _nb(3) + r"[A-Za-z0-9]{37}" + _END),
    ("together_api_key", r"tgp_v1_[A-Za-z0-9_-]{40,}"),
    ("xai_api_key", r"xai-" + _nb(4) + r"[A-Za-z0-9]{70,}"),
    ("perplexity_api_key", r"pplx-[A-Za-z0-9]{40,}"),
    ("langsmith_api_key", r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}" + _END),
    ("elevenlabs_api_key", r"sk_" + _nb(3) + r"[a-f0-9]{48}" + _END),
    ("pinecone_api_key", r"pcsk_[A-Za-z0-9_]{40,}"),
    ("tavily_api_key", r"tvly-(?:dev-|prod-)?[A-Za-z0-9]{32,}"),
    ("firecrawl_api_key", r"fc-" + _nb(3) + r"[a-f0-9]{32}" + _END),
    # -- developer platforms, CI, registries -----------------------------------------------
    ("atlassian_api_token", r"AT[AC]TT3[A-Za-z0-9_-]{150,}(?:=[A-Za-z0-9]{8})?"),
    ("bitbucket_app_password", r"ATBB" + _nb(4) + r"[A-Za-z0-9]{32}" + _END),
    ("docker_hub_token", r"dckr_(?:pat|oat)_[A-Za-z0-9_-]{27,}"),
    ("rubygems_api_key", r"rubygems_[a-f0-9]{48}" + _END),
    ("nuget_api_key", r"oy2" + _nb(3) + r"[a-z0-9]{43}" + _END),
    ("crates_io_token", r"cio" + _nb(3) + r"[A-Za-z0-9]{32}" + _END),
    ("clojars_token", r"CLOJARS_[a-z0-9]{60}" + _END),
    ("postman_api_key", r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}" + _END),
    ("linear_api_key", r"lin_api_[A-Za-z0-9]{40}" + _END),
    ("linear_oauth_token", r"lin_oauth_[a-f0-9]{64}" + _END),
    ("figma_token", r"figd_[A-Za-z0-9_-]{40,}"),
    ("sourcegraph_token", r"sgp_(?:[A-Za-z0-9]{1,16}_)?[a-f0-9]{40}" + _END),
    ("sonarqube_token", r"sq[pua]_" + _nb(4) + r"[a-f0-9]{40}" + _END),
    ("buildkite_token", r"bkua_[a-f0-9]{40}" + _END),
    ("circleci_token", r"CCIP(?:AT|RJ)_[A-Za-z0-9]{22}_[a-f0-9]{40}" + _END),
    ("harness_token", r"(?:pat|sat)\.[A-Za-z0-9_-]{22}\.[a-f0-9]{24}\.[A-Za-z0-9]{20}" + _END),
    ("jfrog_reference_token", f"cmVmdGtuOjAx{_ASCII_B64}{{40,}}={{0,2}}"),
    ("readme_api_key", r"rdme_[a-z0-9]{70}" + _END),
    ("scalingo_token", r"tk-us-[A-Za-z0-9_-]{48}" + _END),
    ("prefect_api_key", r"pn[ub]_" + _nb(4) + r"[A-Za-z0-9]{36}" + _END),
    ("infracost_api_key", r"ico-" + _nb(4) + r"[A-Za-z0-9]{32}" + _END),
    ("grafana_service_account_token", r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}" + _END),
    # Grafana Cloud tokens and legacy API keys: base64 of JSON ({"o":..., {"k":...)
    ("grafana_cloud_token", r"glc_" + _nb(4) + f"{_ASCII_B64}{{32}}{_B64}*={{0,2}}"),
    ("grafana_legacy_api_key", f"eyJrIjoi{_ASCII_B64}{{32}}{_B64}*={{0,2}}"),
    ("honeycomb_api_key", r"hc[ax][im]k_[A-Za-z0-9]{20,}"),
    ("sentry_user_token", r"sntryu_[a-f0-9]{64}" + _END),
    # base64 of JSON, "_", the secret
    ("sentry_org_token", f"sntrys_eyJ{_ASCII_B64}{{30}}[A-Za-z0-9+/=_-]*"),
    ("new_relic_user_api_key", r"NRAK-[A-Z0-9]{27}" + _END),
    ("new_relic_admin_key", r"NRAA-[a-f0-9]{27}" + _END),
    ("new_relic_insights_key", r"NRI[IQ]-[A-Za-z0-9_-]{32}" + _END),
    ("new_relic_license_key", r"(?<![A-Za-z0-9_-])[a-z0-9]{36}NRAL" + _END),
    # -- SaaS: productivity, messaging, commerce -------------------------------------------
    ("slack_app_token", r"xapp-[0-9]+-[A-Za-z0-9]+-[0-9]+-[A-Za-z0-9]{20,}"),
    ("slack_workflow_webhook",
     r"https://hooks\.slack\.com/(?:workflows|triggers)/T[A-Z0-9]+/A[A-Z0-9]+/[0-9]+/([A-Za-z0-9]{24,})"),
    ("discord_webhook",
     r"https://(?:discord|discordapp|ptb\.discord|canary\.discord)\.com/api/webhooks/[0-9]+/([A-Za-z0-9_-]{60,})"),
    ("microsoft_teams_webhook",
     r"(?<![A-Za-z0-9])https://[A-Za-z0-9-]+\.webhook\.office\.com/webhookb2/([a-f0-9-]{36}@[A-Za-z0-9@/_-]{40,})"),
    ("notion_token", r"secret_" + _nb(7) + r"[A-Za-z0-9]{43}" + _END),
    ("notion_ntn_token", r"ntn_" + _nb(4) + r"[A-Za-z0-9]{46}" + _END),
    ("airtable_token", r"pat" + _nb(3) + r"[A-Za-z0-9]{14}\.[a-f0-9]{64}" + _END),
    ("asana_token", r"(?<![A-Za-z0-9/])[12]/[0-9]{10,20}/[0-9]{10,20}:[a-f0-9]{32}" + _END),
    ("clickup_token", r"pk_" + _nb(3) + r"[0-9]{6,10}_[A-Z0-9]{32}" + _END),
    ("dropbox_token", r"sl\." + _nb(3) + r"(?:u\.)?[A-Za-z0-9_-]{130,}"),
    # base64 of "tok:" and a UUID
    ("intercom_token", f"dG9rO[jm]{_ASCII_B64}{{40,}}={{0,2}}"),
    ("twitch_oauth_token", r"oauth:" + _nb(6) + r"[a-z0-9]{30}" + _END),
    ("facebook_access_token", r"EAA" + _nb(3) + r"[A-Za-z0-9]{100,}"),
    ("instagram_access_token", r"IGQV[A-Za-z0-9_-]{100,}"),
    ("posthog_personal_key", r"phx_" + _nb(4) + r"[A-Za-z0-9]{43}" + _END),
    # Stripe's and Standard Webhooks' signing secrets (whsec_ + base64: the webhook exporter's
    # own), and Standard Webhooks' Ed25519 signing keys (whsk_ + base64 of the seed)
    ("webhook_signing_secret", r"wh(?:sec|sk)_" + f"{_B64}{{32,}}={{0,2}}"),
    ("mailgun_api_key", r"key-" + _nb(4) + r"[a-f0-9]{32}" + _END),
    ("brevo_api_key", r"x(?:keysib|smtpsib)-[a-f0-9]{64}-[A-Za-z0-9]{16}" + _END),
    ("resend_api_key", r"re_" + _nb(3) + r"[A-Za-z0-9]{8}_[A-Za-z0-9]{24}" + _END),
    ("braintree_access_token", r"access_token\$(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32}"),
    ("plaid_access_token", f"access-(?:sandbox|development|production)-{_UUID}" + _END),
    ("shippo_api_token", r"shippo_(?:live|test)_[a-f0-9]{40}" + _END),
    ("flutterwave_secret_key", r"FLWSECK(?:_TEST)?-[a-f0-9]{32}-X"),
    ("duffel_api_token", r"duffel_(?:live|test)_[A-Za-z0-9_-]{43}={0,2}"),
    ("easypost_api_key", r"EZ[AT]K[A-Za-z0-9]{54}" + _END),
    ("adobe_client_secret", r"p8e-" + _nb(4) + r"[A-Za-z0-9_-]{32}" + _END),
    ("contentful_token", r"CFPAT-[A-Za-z0-9_-]{43}" + _END),
    ("frameio_token", r"fio-u-[A-Za-z0-9_-]{60}[A-Za-z0-9_=-]{0,4}"),
    ("typeform_token", r"tfp_" + _nb(4) + r"[A-Za-z0-9_-]{40}[A-Za-z0-9_.=-]*"),
    # -- secret stores, key files ------------------------------------------------------------
    # ops_ and base64url of JSON
    ("onepassword_service_account_token", r"ops_eyJ" + _nb(7) + r"[A-Za-z0-9_-]{100,}={0,2}"),
    ("onepassword_secret_key",
     r"(?<![A-Za-z0-9-])A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})"
     r"-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}" + _END),
    ("bitwarden_access_token", f"(?<![A-Za-z0-9.])0\\.{_UUID}\\.[A-Za-z0-9]{{30}}:{_B64}{{22,}}={{0,2}}"),
    ("age_secret_key", r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    # The whole key file from its first line to the MAC (or to the end of a cut-off string,
    # like a PEM block): the private lines are in clear unless the file is encrypted.
    ("putty_private_key", r"(?<![A-Za-z0-9])PuTTY-User-Key-File-[0-9]+:[\s\S]*?(?:Private-MAC:[ \t]*[0-9A-Fa-f]+|\Z)"),
    ("wireguard_private_key", r"(?<![A-Za-z0-9_])PrivateKey[ \t]*=[ \t]*([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)"),
    ("base64_pem_private_key", _b64_prefixes(_PEM_KEY_HEADS) + f"{_ASCII_B64}{{40,}}={{0,2}}"),
)

FORMATS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple((name, re.compile(source)) for name, source in _F)
