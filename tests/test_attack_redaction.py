"""Adversarial review of redaction (attack1): secrets that reach the signed archive in clear,
and ordinary audit values that redaction destroys. Every test here failed when written; each
break was then fixed (or, where said, kept on purpose).

Each test builds the README pipeline: RedactionProcessor -> SigningProcessor -> file exporter
(SimpleLogRecordProcessor, so the archive is complete at shutdown), emits through AuditLogger
(or the plain OTel logger where said), and reads the archive file back. A leak test asserts the
raw secret is nowhere in the archive (bytesValue decoded); a false-positive test asserts the
benign value survives unchanged.
"""
# ruff: noqa: E501 - the samples are long lines
from __future__ import annotations

import base64
import json
import urllib.parse

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

import otel_audit
import otel_audit.keys
from otel_audit.exporters import FileLogRecordExporter
from otel_audit.processors import RedactionProcessor, SigningProcessor

HMAC_KEY = "attack1-hmac-key-0123456789abcdef0123456789"
EVENT = "security.prompt_injection.detected"
PW = "rebqfLTdt7tGGi"
VAL = "plumtree-Orchid-42"  # a password no text pattern could know: only its key tells it is one


def run(tmp_path, emit, mode="mask", resource=None):
    keys = tmp_path / "keys"
    otel_audit.keys.generate(keys)
    provider = LoggerProvider(resource=resource) if resource is not None else LoggerProvider()
    kw = {"hmac_key": HMAC_KEY} if mode == "hmac" else {}
    provider.add_log_record_processor(RedactionProcessor(mode=mode, **kw))
    path = tmp_path / "archive" / "audit.jsonl"
    provider.add_log_record_processor(SigningProcessor(
        keys, state_dir=tmp_path / "state", handle_signals=False,
        downstream=SimpleLogRecordProcessor(FileLogRecordExporter(path=path))))
    emit(otel_audit.AuditLogger(provider), provider.get_logger("gateway"))
    provider.shutdown()
    return path.read_text()


def _decoded(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "bytesValue" and isinstance(v, str):
                out.append(base64.b64decode(v).decode("utf-8", "replace"))
            else:
                _decoded(v, out)
    elif isinstance(node, list):
        for v in node:
            _decoded(v, out)
    elif isinstance(node, str):
        out.append(node)
    return out


def archive_blob(text):
    """The archive's text plus every string in it decoded (JSON escapes, bytesValue base64)."""
    out = [text]
    for line in text.splitlines():
        _decoded(json.loads(line), out)
    return "\n".join(out)


def emit_attrs(attrs, body=None, mode="mask", tmp_path=None):
    def go(audit, _raw):
        audit.emit(EVENT, {"audit.risk.score": 0.5, **attrs}, body=body)
    return archive_blob(run(tmp_path, go, mode))


def attr_values(text, key):
    vals = []
    for line in text.splitlines():
        for rl in json.loads(line)["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                for lr in sl["logRecords"]:
                    for kv in lr.get("attributes", []):
                        if kv["key"] == key:
                            vals.append(kv["value"].get("stringValue"))
    return vals


# ---------------------------------------------------------------------------------------------
# 1. Credential formats with a distinctive vendor prefix/shape that no rule catches, as a bare
#    attribute value, in prose (a prompt), in a body string: all leak in both modes.

PREFIXED = [
    pytest.param('FwoGZXIvYXdzEoBDy30mecrDbT+gziPqRIO6Gn4KofezJJkqDtvmrUIjvI0G2d3yJ/NHWpGxOQ/6q3J4qKVgO+jIsNMvIWxQESPbV5DQ90DqDTGAsM9ZgGLPdvOpPgtlA/yV0vDBFcSx+QoNoKYe6J91OMCq8M2c5R0WS8i/Hm8RSgC51nmkpB8Y5PFPKlO9CdaqmTzITHZswHbD2Ncl/3FS0QDPzjxDPom0lquOezF0BXoFCCOUME8Plei04kdoUv560JbaBODRd9rCGksMs3H0/TdlqCbFWeDuHvFJ/BgIO98dZ4OmHKjjK', 'FwoGZXIvYXdzEoBDy30mecrDbT+gziPqRIO6Gn4KofezJJkqDtvmrUIjvI0G2d3yJ/NHWpGxOQ/6q3J4qKVgO+jIsNMvIWxQESPbV5DQ90DqDTGAsM9ZgGLPdvOpPgtlA/yV0vDBFcSx+QoNoKYe6J91OMCq8M2c5R0WS8i/Hm8RSgC51nmkpB8Y5PFPKlO9CdaqmTzITHZswHbD2Ncl/3FS0QDPzjxDPom0lquOezF0BXoFCCOUME8Plei04kdoUv560JbaBODRd9rCGksMs3H0/TdlqCbFWeDuHvFJ/BgIO98dZ4OmHKjjK', id='aws_session_token'),
    pytest.param('ya29.XC2PHGOy7fwsP4CejpewrWRSoD532NWxERsVIBMzRrO63iEAJxZJBUCq0B1i3A4u6hac4I3qIExRqOLK_VTHdISJ-rBXsriEnEOQ2TvANbMTH8eTCixGKtEGLBlkNgy3nYfXq6ewfETuBd5Lqu0IQo', 'ya29.XC2PHGOy7fwsP4CejpewrWRSoD532NWxERsVIBMzRrO63iEAJxZJBUCq0B1i3A4u6hac4I3qIExRqOLK_VTHdISJ-rBXsriEnEOQ2TvANbMTH8eTCixGKtEGLBlkNgy3nYfXq6ewfETuBd5Lqu0IQo', id='gcp_oauth_access_token'),
    pytest.param('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', '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', id='gcp_oauth_client_secret'),
    pytest.param('1//0ZCif9awfGqyfa_KRysxrcnEun-lDFu1iWXzysOaxUyJXu11ZndJLmq91MPqmdjXzmlhLA_JymdFqVim4c_bSHQHqvWfj4uGMuxoL', '1//0ZCif9awfGqyfa_KRysxrcnEun-lDFu1iWXzysOaxUyJXu11ZndJLmq91MPqmdjXzmlhLA_JymdFqVim4c_bSHQHqvWfj4uGMuxoL', id='gcp_refresh_token'),
    pytest.param('lNvHCV87bELBPpIPacfmTKT5+QTGNtDsjooTbP+S7IEg3/MgoOWXrNfsFYzED7St+jWWBfTKA2vMJdxbVMfEWB==', 'lNvHCV87bELBPpIPacfmTKT5+QTGNtDsjooTbP+S7IEg3/MgoOWXrNfsFYzED7St+jWWBfTKA2vMJdxbVMfEWB==', id='azure_storage_account_key'),
    pytest.param('Cow8Q~ad73ONbpCeX3X9Ol.JP9lvycmpIHGT8JgH', 'Cow8Q~ad73ONbpCeX3X9Ol.JP9lvycmpIHGT8JgH', id='azure_ad_client_secret'),
    pytest.param('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', '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', id='groq'),
    pytest.param('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', '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', id='huggingface_org'),
    pytest.param('r8_TaHZRXF09I6yvGV2ufQ9SuxM15lEUrHHIVpEK', 'r8_TaHZRXF09I6yvGV2ufQ9SuxM15lEUrHHIVpEK', id='replicate'),
    pytest.param('tgp_v1_O4tXD_xN5lTG6nqjIgncG3VoXV00iR4UhtzWi14xife', 'tgp_v1_O4tXD_xN5lTG6nqjIgncG3VoXV00iR4UhtzWi14xife', id='together_tgp'),
    pytest.param('xai-O1um5WUV42tpJDicL4vTWVjoCuVP6totUrgZcDAYaMLde8G1QVux2za1W82BZuskILzCUDB1dkiecxZw', 'xai-O1um5WUV42tpJDicL4vTWVjoCuVP6totUrgZcDAYaMLde8G1QVux2za1W82BZuskILzCUDB1dkiecxZw', id='xai'),
    pytest.param('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', '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', id='perplexity'),
    pytest.param('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', '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', id='langsmith'),
    pytest.param('xapp-1-AS3MCRE3WV9-8047303083750-cf4ab443fb6b906a8864878b44c3a1c8e84e566c2c7d02359a278baeacf6814e', 'xapp-1-AS3MCRE3WV9-8047303083750-cf4ab443fb6b906a8864878b44c3a1c8e84e566c2c7d02359a278baeacf6814e', id='slack_app'),
    pytest.param('whsec_5Ik9xosc7B8XhzD40j7OUwwXqD7qkDQ8', 'whsec_5Ik9xosc7B8XhzD40j7OUwwXqD7qkDQ8', id='stripe_webhook'),
    pytest.param('key-9f4b05752123f6d49734375598d5b4e7', 'key-9f4b05752123f6d49734375598d5b4e7', id='mailgun'),
    pytest.param('NRAK-O1X25IMGFM55OGQKSY8QY4G2NFW', 'NRAK-O1X25IMGFM55OGQKSY8QY4G2NFW', id='newrelic_user'),
    pytest.param('9bf4c7ce4938c32a016efb6a09279878ec25NRAL', '9bf4c7ce4938c32a016efb6a09279878ec25NRAL', id='newrelic_license'),
    pytest.param('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', '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', id='sentry_auth_user'),
    pytest.param('sntrys_eyJpYXQiOiAxLCAidXJsIjogImh0dHBzOi8vc2VudHJ5LmlvIiwgIm9yZyI6ICJhY21lIn0_9j40IpTozEOyC4T9TCW31UevyCk_jV49w53WGHNmEo8', 'sntrys_eyJpYXQiOiAxLCAidXJsIjogImh0dHBzOi8vc2VudHJ5LmlvIiwgIm9yZyI6ICJhY21lIn0_9j40IpTozEOyC4T9TCW31UevyCk_jV49w53WGHNmEo8', id='sentry_org'),
    pytest.param('https://discord.com/api/webhooks/326935124790739497/PgD08N-xNZs64Av99CRM-9Jz5l5OX_vcH5gk-tSj3irONnPOoJEb9vYLFErQGnRR1Ei8', 'https://discord.com/api/webhooks/326935124790739497/PgD08N-xNZs64Av99CRM-9Jz5l5OX_vcH5gk-tSj3irONnPOoJEb9vYLFErQGnRR1Ei8', id='discord_webhook'),
    pytest.param('ATATT3xFfGF0S6jjbqNS3RfjvAS3mg8TGAafPkB__sM9XJIwtPol2soQaDmu2FFlnMVr8L4Mt3tXWUOiFVnO-fU---yVc4SQQFQp_XLAtxLzEz8JaHuLiHvQTbtAV9K2WtwAdcNBxsveOzBy4G-LFSMrHyctVzR82aWqHvQLdKDp2SSaN6YRH5bXeGR3Tlhc=CN623UQY', 'ATATT3xFfGF0S6jjbqNS3RfjvAS3mg8TGAafPkB__sM9XJIwtPol2soQaDmu2FFlnMVr8L4Mt3tXWUOiFVnO-fU---yVc4SQQFQp_XLAtxLzEz8JaHuLiHvQTbtAV9K2WtwAdcNBxsveOzBy4G-LFSMrHyctVzR82aWqHvQLdKDp2SSaN6YRH5bXeGR3Tlhc=CN623UQY', id='atlassian_api'),
    pytest.param('secret_f7wwdPe7Es5zU7QNg1eMuiImuPmCmZufV5UaOLlYOei', 'secret_f7wwdPe7Es5zU7QNg1eMuiImuPmCmZufV5UaOLlYOei', id='notion'),
    pytest.param('ntn_063cOBeK9jmsBqXbjlRsTiecRrMLtlDNfiaY7uyO3zmg4d', 'ntn_063cOBeK9jmsBqXbjlRsTiecRrMLtlDNfiaY7uyO3zmg4d', id='notion_ntn'),
    pytest.param('patwPRYngPn4hnYVR.35a026475be44027e236b54e94e93867faebc0ddbfa47ff08216704dcd7e1bd7', 'patwPRYngPn4hnYVR.35a026475be44027e236b54e94e93867faebc0ddbfa47ff08216704dcd7e1bd7', id='airtable_pat'),
    pytest.param('PMAK-0a9d45f853c7f0d2c23f7e78-3d5a7ba0ce85787ce9d2b357d369961fe4', 'PMAK-0a9d45f853c7f0d2c23f7e78-3d5a7ba0ce85787ce9d2b357d369961fe4', id='postman'),
    pytest.param('dp.st.wVsO37GWkB2UC3pxxfQxnLdcx0KfowP370LIedBggPt', 'dp.st.wVsO37GWkB2UC3pxxfQxnLdcx0KfowP370LIedBggPt', id='doppler'),
    pytest.param('pul-4fd28c2f9b0a81ad0d472d86a682cc0390620cbf', 'pul-4fd28c2f9b0a81ad0d472d86a682cc0390620cbf', id='pulumi'),
    pytest.param('replBwaPm3zPD0.atlasv1.JAFhQ1JmJUFCKJU0B242pIHZ1CoOeT14cFO7scKpkz20kZeqTDLNHfHTdQd4kJVz0Sk', 'replBwaPm3zPD0.atlasv1.JAFhQ1JmJUFCKJU0B242pIHZ1CoOeT14cFO7scKpkz20kZeqTDLNHfHTdQd4kJVz0Sk', id='terraform_cloud'),
    pytest.param('dop_v1_fa9191520efb83270bc2f088992d0363f346ba77d25bac3c08b82864c3883037', 'dop_v1_fa9191520efb83270bc2f088992d0363f346ba77d25bac3c08b82864c3883037', id='digitalocean'),
    pytest.param('HRKU-AALRaSm4gZijcp3e69WqG_bVPXPfr3IE6whVRMxf1NTzWgTRrUfvgrtnN5Lj', 'HRKU-AALRaSm4gZijcp3e69WqG_bVPXPfr3IE6whVRMxf1NTzWgTRrUfvgrtnN5Lj', id='heroku_new'),
    pytest.param('access_token$production$0f6493b81699cf9d$0edd6d9d2ed72c7bc360b887a4e1b224', 'access_token$production$0f6493b81699cf9d$0edd6d9d2ed72c7bc360b887a4e1b224', id='paypal_braintree'),
    pytest.param('ATBBit4MmGjq1GipsSoI5MTYivj7ajYBc3d0', 'ATBBit4MmGjq1GipsSoI5MTYivj7ajYBc3d0', id='bitbucket_app_pw'),
    pytest.param('dckr_pat_AByG6aNRTiaRz114okU0mUR-VyY', 'dckr_pat_AByG6aNRTiaRz114okU0mUR-VyY', id='docker_pat'),
    pytest.param('rubygems_f30c6c90fdeb608129e84da3c2152da5cee60ef1f618fadc', 'rubygems_f30c6c90fdeb608129e84da3c2152da5cee60ef1f618fadc', id='rubygems'),
    pytest.param('hvs.cYPcCSPKDrq4GlGXjiprpfvAbknXCiXFVO2hKXFemQS0TcXhuCZccZvkrDFqN4-b01V0hqQH47Ezz_M-4AE-hVrl7b', 'hvs.cYPcCSPKDrq4GlGXjiprpfvAbknXCiXFVO2hKXFemQS0TcXhuCZccZvkrDFqN4-b01V0hqQH47Ezz_M-4AE-hVrl7b', id='vault_service'),
    pytest.param('hvb.CUqUApKz8jBfyv5SO943I99m9ynu7l1u8gt0zippBR8P9OjYzI4EvXQanhQEA2Iu7P7204KFIyhLP_HpCIkLU6Dn1FoCCru4doWlljb0HrUZj8mQGHLmokZdlDzJL7zHM4OGuRSyT5', 'hvb.CUqUApKz8jBfyv5SO943I99m9ynu7l1u8gt0zippBR8P9OjYzI4EvXQanhQEA2Iu7P7204KFIyhLP_HpCIkLU6Dn1FoCCru4doWlljb0HrUZj8mQGHLmokZdlDzJL7zHM4OGuRSyT5', id='vault_batch'),
    pytest.param('ops_eyJ04peHMvEctzbrn-cSsY1cmCYYUB1PeB0hF1aFXc0ygTSjIpUwob1z-0CVInA0bXfgg7vFCUxkl76p7xAMF--54T5NwUwEX3TOjipzs0b0knWIKvLtulm8lk5c-ELZaykdf294kCHbx_oFcmxRjgO5I0chRK7zL3OQiH7F2Q9hSpeUx-3FqpwxIvLAb25RkEk4T03xpMhLOxET73F_1Za3Kt1EbQ04_9RFr4vurZDJt01NLUAWoaeskUgUFpU_vxe7G8bwYC_oY4FW_PWZpU-MDiCTVPEZSWpLVsCJY1Wy3FX', 'ops_eyJ04peHMvEctzbrn-cSsY1cmCYYUB1PeB0hF1aFXc0ygTSjIpUwob1z-0CVInA0bXfgg7vFCUxkl76p7xAMF--54T5NwUwEX3TOjipzs0b0knWIKvLtulm8lk5c-ELZaykdf294kCHbx_oFcmxRjgO5I0chRK7zL3OQiH7F2Q9hSpeUx-3FqpwxIvLAb25RkEk4T03xpMhLOxET73F_1Za3Kt1EbQ04_9RFr4vurZDJt01NLUAWoaeskUgUFpU_vxe7G8bwYC_oY4FW_PWZpU-MDiCTVPEZSWpLVsCJY1Wy3FX', id='onepassword_sa'),
    pytest.param('A3-MJ5LX2-VCIHOF-18P0C-1616I-ROODO-M0ZOY', 'A3-MJ5LX2-VCIHOF-18P0C-1616I-ROODO-M0ZOY', id='onepassword_secret_key'),
    pytest.param('AGE-SECRET-KEY-1VZ97GDK0334MJ8T5SMVVRJ4UK9TQG64XFJ7VERV2D57QDUPHYQR5Q45F7S', 'AGE-SECRET-KEY-1VZ97GDK0334MJ8T5SMVVRJ4UK9TQG64XFJ7VERV2D57QDUPHYQR5Q45F7S', id='age_secret'),
    pytest.param('PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: eddsa-key-20240101\nPublic-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAI39jrwEspQ27lUH0SvuKUzqSQe67P27zRvehkFscN\nPrivate-Lines: 1\nAAAAI/qc18dqFdRPr5I8Jtg6Ouo7HBXC4zGzKNXc3qP\nPrivate-MAC: 997c08cbdb18291b6d3ac8a0ca8fcb758c550f6e0880e98fb38b0a14366e4ad1', 'AAAAI/qc18dqFdRPr5I8Jtg6Ouo7HBXC4zGzKNXc3qP', id='putty_private_key'),
]


@pytest.mark.parametrize("mode", ["mask", "hmac"])
@pytest.mark.parametrize("value,secret", PREFIXED)
def test_prefixed_credential_format_is_redacted(tmp_path, value, secret, mode):
    blob = emit_attrs({"gateway.upstream.credential_hint": value,
                       "audit.prompt.snippet": f"Hi, please call the API with {value} thanks."},
                      body=f"upstream call failed with {value}", mode=mode, tmp_path=tmp_path)
    assert secret not in blob


# ---------------------------------------------------------------------------------------------
# 2. Credentials recognisable only by their context (connection strings, CLI flags, headers).

CONTEXT = [
    pytest.param(f"redis://:{PW}@cache:6379/0", PW, id="redis_url_password_only"),
    pytest.param(f"jdbc:oracle:thin:scott/{PW}@db:1521/ORCL", PW, id="jdbc_oracle_thin_user_slash_pw"),
    pytest.param("https://acme.blob.core.windows.net/c/f.txt?sv=2022-11-02&ss=b&sp=r"
                 "&se=2025-01-01T00:00:00Z&sig=Lk4f7Qy2%2BXbNw9Vr8sTz1mPq6HdJc3oAeKiGuY0nWl5%3D",
                 "Lk4f7Qy2%2BXbNw9Vr8sTz1mPq6HdJc3oAeKiGuY0nWl5%3D", id="azure_sas_url_sig"),
    pytest.param("Cookie: sessionid=s3cr3tSessi0nValue9Xq; theme=dark", "s3cr3tSessi0nValue9Xq",
                 id="cookie_header_text"),
    pytest.param("Set-Cookie: sid=s3cr3tSessi0nValue9Xq; Path=/; HttpOnly", "s3cr3tSessi0nValue9Xq",
                 id="set_cookie_header_text"),
    pytest.param("Authorization: ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
                 "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
                 id="authorization_apikey_elastic"),
    pytest.param("Authorization: Splunk 4f3c2a1b-9d8e-4c7b-a6f5-e4d3c2b1a098",
                 "4f3c2a1b-9d8e-4c7b-a6f5-e4d3c2b1a098", id="authorization_splunk_hec"),
    pytest.param("Authorization: SSWS 00Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k",
                 "00Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k", id="authorization_ssws_okta"),
    pytest.param("Authorization: Token Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k",
                 "Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k", id="authorization_token_scheme"),
    pytest.param("Authorization: Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k",
                 "Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k", id="authorization_raw_key"),
    pytest.param("Ocp-Apim-Subscription-Key: Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k",
                 "Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k", id="azure_apim_subscription_key_header"),
    pytest.param("DD-APPLICATION-KEY: Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k",
                 "Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k", id="datadog_application_key_header"),
    pytest.param("https://generativelanguage.googleapis.com/v1/models?key=Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k",
                 "Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k", id="url_query_key"),
    pytest.param("https://x.example/?auth=Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k",
                 "Zq8XkPp2LmN4rT7vW9yB3cD6fG1hJ5k", id="url_query_auth"),
    pytest.param(f"DB_PASS={PW}", PW, id="env_DB_PASS"),
    pytest.param(f"pass={PW}", PW, id="kv_pass"),
    pytest.param(f"pass_word={PW}", PW, id="kv_pass_word"),
    pytest.param(f"accessKey={PW}", PW, id="kv_accessKey"),
    pytest.param(f"credentials={PW}", PW, id="kv_credentials"),
    pytest.param(f"mysql -u root -p{PW} -h db", PW, id="mysql_cli_p_flag"),
    pytest.param(f"curl -u admin:{PW} https://api.example.com", PW, id="curl_u_user_pw"),
    pytest.param(f"sshpass -p '{PW}' ssh root@host", PW, id="sshpass_p"),
    pytest.param("my password is Tr0ub4dor&3xyz", "Tr0ub4dor&3xyz", id="prose_my_password_is"),
    pytest.param('{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpyZWJxZkxUZHQ3dEdHaQ=="}}}',
                 "dXNlcjpyZWJxZkxUZHQ3dEdHaQ==", id="docker_config_json_auth"),
    pytest.param("<password>" + VAL + "</password>", VAL, id="xml_password_element"),
    pytest.param(urllib.parse.quote("Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789ABCD"),
                 "abcdefghijklmnopqrstuvwxyz0123456789ABCD", id="url_encoded_bearer_header"),
    pytest.param("q=" + urllib.parse.quote("password=" + VAL), VAL, id="url_encoded_password_kv"),
    pytest.param(urllib.parse.quote(f"postgres://app:{PW}@db/prod", safe=""), PW,
                 id="url_encoded_postgres_url"),
]


@pytest.mark.parametrize("value,secret", CONTEXT)
def test_contextual_credential_is_redacted(tmp_path, value, secret):
    blob = emit_attrs({"gateway.note": value}, tmp_path=tmp_path)
    assert secret not in blob


# ---------------------------------------------------------------------------------------------
# 3. Sensitive key names the key rules miss. "everywhere": as attribute key, nested mapping key,
#    JSON member and key=value text all leak. "attr_only": a JSON member / text of that name is
#    redacted, but the same name as an OTel attribute key (top level or nested) is not.

KEYS_EVERYWHERE = ["pass", "pass_word", "db_pass", "DB_PASS", "dbPass", "admin_pass", "SMTP_PASS",
                   "PGPASSWORD", "password1", "password_confirmation", "passcode", "credentials",
                   "creds", "auth", "auth_key", "access_key", "accessKey", "signing_key",
                   "encryption_key", "master_key", "hmac_key", "client_key", "dd-application-key",
                   "ocp-apim-subscription-key", "bearer", "otp", "ssh_key", "license_key",
                   "secret_value"]
KEYS_ATTR_ONLY = ["pwd", "PWD", "MYSQL_PWD", "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY",
                  "SecretAccessKey", "DD_APP_KEY", "app_key", "APIToken"]


@pytest.mark.parametrize("key", KEYS_EVERYWHERE + KEYS_ATTR_ONLY)
def test_sensitive_key_as_attribute(tmp_path, key):
    blob = emit_attrs({key: VAL, "gateway.req": {"headers": {key: VAL + "-nested"}}}, tmp_path=tmp_path)
    assert VAL not in blob


@pytest.mark.parametrize("key", KEYS_EVERYWHERE)
def test_sensitive_key_in_config_changed(tmp_path, key):
    def go(audit, _raw):
        audit.config_changed("configuration.team.updated", "team-1", {"cfg": [{key: "old-" + VAL}]},
                             {"cfg": [{key: VAL}]}, actor="admin")
    assert VAL not in archive_blob(run(tmp_path, go))


@pytest.mark.parametrize("key", ["private_key", "authorization", "cookie", "provider_key"])
def test_default_sensitive_key_in_key_value_text(tmp_path, key):
    """Names in DEFAULT_SENSITIVE_KEYS are redacted as attributes but not as `key: value` text."""
    blob = emit_attrs({"gateway.note": f"{key}: {VAL}"}, tmp_path=tmp_path)
    assert VAL not in blob


# ---------------------------------------------------------------------------------------------
# 4. Structured text that is not parsed as JSON, or structures whose key is a sibling value.

STRUCTURED = [
    pytest.param(json.dumps({"provider_key": VAL}, indent=2) + "\n", id="json_trailing_newline_provider_key"),
    pytest.param(json.dumps({"authorization": VAL}) + "\n", id="json_trailing_newline_authorization"),
    pytest.param(json.dumps({"cookie": VAL}) + "\n", id="json_trailing_newline_cookie"),
    pytest.param(" " + json.dumps({"private_key": VAL}), id="json_leading_space_private_key"),
    pytest.param(str({"provider": "mistral", "provider_key": VAL}), id="python_repr_provider_key"),
    pytest.param(str({"headers": {"Authorization": VAL}}), id="python_repr_authorization"),
    pytest.param("provider: mistral\nprovider_key: " + VAL, id="yaml_provider_key"),
    pytest.param(json.dumps([["password", VAL]]), id="json_header_pairs"),
    pytest.param(json.dumps({"headers": [{"name": "Authorization", "value": VAL}]}), id="json_har_headers"),
]


@pytest.mark.parametrize("value", STRUCTURED)
def test_structured_text_secret_is_redacted(tmp_path, value):
    assert VAL not in emit_attrs({"gateway.payload": value}, tmp_path=tmp_path)


def test_json_deeper_than_64_falls_back_to_text_and_leaks_provider_key(tmp_path):
    deep = {"provider_key": VAL}
    for _ in range(70):
        deep = {"l": deep}
    assert VAL not in emit_attrs({"gateway.payload": json.dumps(deep)}, tmp_path=tmp_path)


@pytest.mark.parametrize("value", [
    pytest.param([{"name": "x-api-key", "value": VAL}], id="otel_list_of_name_value_maps"),
    pytest.param(["Authorization", VAL], id="otel_flat_header_list"),
])
def test_header_list_attribute_is_redacted(tmp_path, value):
    assert VAL not in emit_attrs({"gateway.headers": value}, tmp_path=tmp_path)


# ---------------------------------------------------------------------------------------------
# 5. Placements that skip redaction entirely.

GH = "ghp_99m0o9MeAzdmKifxaR9nC32RKgSHIuzZbaEq"  # caught as a str everywhere
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
       "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----")


@pytest.mark.parametrize("where", ["attribute", "list", "body"])
def test_bytes_values_are_scanned(tmp_path, where):
    if where == "attribute":
        blob = emit_attrs({"gateway.blob": GH.encode(), "gateway.key": PEM.encode()}, tmp_path=tmp_path)
    elif where == "list":
        blob = emit_attrs({"gateway.blobs": [GH.encode(), PEM.encode()]}, tmp_path=tmp_path)
    else:
        blob = emit_attrs({}, body=(f"token {GH}\n{PEM}").encode(), tmp_path=tmp_path)
    assert GH not in blob
    assert "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun" not in blob


def test_top_level_attribute_key_is_scanned(tmp_path):
    """Nested mapping keys are scanned; a top-level attribute key holding a token is not."""
    assert GH not in emit_attrs({f"gateway.token.{GH}": "seen"}, tmp_path=tmp_path)


def test_record_named_audit_checkpoint_is_not_exempt(tmp_path):
    """A plain-OTel record with event_name 'audit.checkpoint' skips redaction (signing then
    renames it 'audit.checkpoint.foreign' and signs the secret in clear)."""
    def go(_audit, raw):
        raw.emit(body="debug " + GH, event_name="audit.checkpoint", attributes={"gateway.note": GH})
    assert GH not in archive_blob(run(tmp_path, go))


@pytest.mark.parametrize("key", ["audit.stream.note", "audit.integrity.note"])
def test_caller_attribute_in_integrity_namespace_is_not_exempt(tmp_path, key):
    """The signing processor's own attributes are exempt; a caller's attribute that merely shares
    the prefix is exempt too and is signed as given."""
    def go(_audit, raw):
        raw.emit(body="x", attributes={key: GH})
    assert GH not in archive_blob(run(tmp_path, go))


def test_resource_attributes_are_redacted(tmp_path):
    res = Resource.create({"service.name": "gw",
                           "db.connection_string": f"postgres://app:{PW}@db/prod",
                           "deployment.token": GH})
    def go(audit, _raw):
        audit.emit(EVENT, {"audit.risk.score": 0.5})
    blob = archive_blob(run(tmp_path, go, resource=res))
    assert PW not in blob and GH not in blob


# ---------------------------------------------------------------------------------------------
# 6. False positives: ordinary audit values that redaction destroys.

BENIGN = [
    pytest.param("git@github.com:acme/gateway.git", id="git_ssh_remote_as_email"),
    pytest.param("postgres://app@db.internal:5432/prod", id="db_url_without_password_as_email"),
    pytest.param("DB_PASSWORD=${env:DB_PASSWORD}", id="env_reference_not_a_secret"),
    pytest.param("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
                 id="secrets_manager_arn"),
    pytest.param(base64.b64encode(b"The quick brown fox jumps over").decode(), id="base64_of_30_byte_text"),
    pytest.param(base64.b64encode(b"audit-event:login:succeeded:01").decode(), id="base64_of_event_name"),
    pytest.param("dXNlcnMvYWxpY2UvZG9jdW1lbnRzL3JlcG9ydC5w", id="base64_of_file_path"),
    pytest.param("ThisIsAVeryLongCamelCaseIdentifierName40", id="camelcase_identifier_40"),
    pytest.param("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", id="pkce_code_challenge_public"),
    pytest.param("password: expired after 90 days", id="reason_password_expired"),
    pytest.param("Password: must be rotated", id="reason_password_must_be_rotated"),
    pytest.param("secret: none configured", id="reason_secret_none"),
    pytest.param("token=<redacted>", id="already_redacted_placeholder"),
    pytest.param("def check(password: str) -> bool:", id="code_type_annotation"),
]


@pytest.mark.parametrize("mode", ["mask", "hmac"])
@pytest.mark.parametrize("value", BENIGN)
def test_benign_value_survives(tmp_path, value, mode):
    def go(audit, _raw):
        audit.emit(EVENT, {"audit.risk.score": 0.5, "gateway.note": value})
    assert attr_values(run(tmp_path, go, mode), "gateway.note") == [value]


def test_digits_after_a_key_word_are_taken_for_a_secret(tmp_path):
    """Kept on purpose: "token: 1532" may be a count, but digits after a key word are what an
    OTP or a PIN looks like, so they are replaced (a false positive rather than a leak)."""
    def go(audit, _raw):
        audit.emit(EVENT, {"audit.risk.score": 0.5, "gateway.note": "token: 1532 used"})
    assert attr_values(run(tmp_path, go), "gateway.note") == ["token: [REDACTED:bearer_token] used"]
