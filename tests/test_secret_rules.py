"""detect-secrets' formats in redaction: every regex plugin is used, and the cheap gates that
decide which patterns run on a string (prefixes, anchors, run lengths, widths read from each
pattern's parse tree) never skip a string the pattern matches: hypothesis generates strings
from each pattern itself and redaction must leave no match behind."""

from __future__ import annotations

import re

import pytest
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import RegexBasedDetector
from hypothesis import HealthCheck, Phase, example, find, given, settings
from hypothesis import strategies as st

from otel_audit.processors.redaction import RedactionProcessor
from otel_audit.processors.secret_rules import BASE64_TABLE, TOKEN_TABLE, has_run, library_rules

RULES = library_rules()
MASK = RedactionProcessor(mode="mask")
HMAC = RedactionProcessor(mode="hmac", hmac_key="hex:" + "5a" * 32)


def _redact(p: RedactionProcessor, s: str) -> str:
    return p._redact(s, [], False)


def test_every_regex_plugin_of_detect_secrets_is_used() -> None:
    plugins = {
        cls.__name__
        for cls in get_mapping_from_secret_type_to_class().values()
        if issubclass(cls, RegexBasedDetector)
    }
    used = {r.plugin for r in RULES}
    # IP addresses are personal data under the processor's own opt-in rule; the private-key
    # plugin matches the BEGIN line only, where the processor replaces the whole block.
    assert plugins - used == {"IPPublicDetector", "PrivateKeyDetector"}
    assert len(used) >= 20


def test_gates_are_read_from_the_patterns() -> None:
    by = {r.regex.pattern: r for r in RULES}
    stripe = next(r for p, r in by.items() if "k_live_" in p)
    assert stripe.min_run >= 24 and stripe.min_width >= 32
    aws = next(r for p, r in by.items() if p.startswith("(?:A3T"))
    assert aws.prefixes == frozenset({"A3T", "ABIA", "ACCA", "AKIA", "ASIA"})
    mailchimp = next(r for r in RULES if r.plugin == "MailchimpDetector")
    assert mailchimp.prefixes is None and mailchimp.anchors == frozenset({"-us"})


@pytest.mark.parametrize(("text", "length", "table", "expected"), [
    ("abc " * 10, 4, TOKEN_TABLE, False),
    ("abc " * 10, 3, TOKEN_TABLE, True),
    ("x" * 39 + "/", 40, BASE64_TABLE, True),
    ("x" * 39 + "/", 40, TOKEN_TABLE, False),
    ("é" * 50 + "a" * 5, 5, TOKEN_TABLE, True),  # non-ASCII bytes are no token characters
    ("é" * 50, 1, TOKEN_TABLE, False),
    ("\ud800abc", 3, TOKEN_TABLE, True),  # a lone surrogate does not break the gate
])
def test_has_run(text: str, length: int, table: bytes, expected: bool) -> None:
    assert has_run(text, length, table) is expected


def _strategy(regex: re.Pattern[str]) -> st.SearchStrategy[str]:
    # Printable ASCII around and inside the match: the formats are ASCII, and the text around
    # a credential in a log line is too, mostly.
    return st.from_regex(regex, fullmatch=True, alphabet=st.characters(min_codepoint=32, max_codepoint=126))


#: One generated string is proof enough, found without shrinking: this runs at collection, in
#: every xdist worker, where `.example()` (ten draws per pattern) took 7 s for the 147 patterns.
_ONE_DRAW = settings(max_examples=1, database=None, derandomize=True, phases=[Phase.generate], deadline=None)


def _generatable(regex: re.Pattern[str]) -> bool:
    try:
        find(_strategy(regex), lambda _s: True, settings=_ONE_DRAW)
    except Exception:  # noqa: BLE001 - a construct hypothesis cannot generate from
        return False
    return True


GENERATED = [r for r in RULES if _generatable(r.regex)]


def test_nearly_every_pattern_is_generated_from() -> None:
    assert len(GENERATED) >= len(RULES) - 2, sorted({r.plugin for r in RULES} - {r.plugin for r in GENERATED})


@pytest.mark.parametrize("rule", GENERATED, ids=lambda r: f"{r.plugin}:{r.regex.pattern[:24]}")
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_redaction_leaves_no_match_of_any_library_pattern(rule, data) -> None:  # type: ignore[no-untyped-def]
    secret = data.draw(_strategy(rule.regex), label="secret")
    for text in (secret, f"the value {secret} was used", f'{{"k": "{secret}"}}'):
        if rule.regex.search(text) is None:  # the pattern needs a delimiter the wrapping removed
            continue
        for p in (MASK, HMAC):
            out = _redact(p, text)
            assert rule.regex.search(out) is None, (rule.plugin, text, out)


@example("AKIA" + "Q" * 16)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16))
@settings(max_examples=100, deadline=None, derandomize=True)
def test_aws_key_ids_in_any_case_context(tail: str) -> None:
    for text in (f"AKIA{tail}", f"key=AKIA{tail};", f"x AKIA{tail}."):
        assert f"AKIA{tail}" not in _redact(MASK, text)
