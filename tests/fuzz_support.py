"""What the fuzz tests (tests/test_fuzz_*.py) share: their hypothesis settings, the secrets they
plant, and the check that none of those secrets shows in an output.

Settings: every fuzz test is derandomized (the same examples on every run, so a CI failure
reproduces locally) and has no deadline (a loaded 2-core runner must not fail on time); its
``max_examples`` is sized so that the three files together take well under a minute in CI.
``OTEL_AUDIT_FUZZ_EXAMPLES`` makes a longer run: ``10x`` multiplies every test's example count
by 10, a plain number (``5000``) gives every test that many examples.

Secrets: a few real-shaped credentials of tests/secret_corpus.py (a classic GitHub PAT, an AWS
access key id, ``password=...``, a Stripe secret key). `leaks` looks for each secret part in
every spelling an output may hold (as is, JSON-escaped once or twice, percent-encoded).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from secret_corpus import Sample, forms, sample

ENV_EXAMPLES = "OTEL_AUDIT_FUZZ_EXAMPLES"
SECRET_KINDS = ("github_pat_classic", "aws_access_key_id", "password_kv", "stripe_secret")
#: Two samples of each kind (distinct secret parts), so that a test can tell placements apart.
SECRETS: tuple[Sample, ...] = tuple(sample(kind, v) for kind in SECRET_KINDS for v in (0, 1))
#: Every secret part of every planted sample, with the spellings an output may hold.
SECRET_FORMS: tuple[str, ...] = tuple(dict.fromkeys(f for s in SECRETS for p in s.parts for f in forms(p)))


def examples(ci: int) -> int:
    """The example count of a test that runs `ci` examples in CI (see the module docstring)."""
    raw = os.environ.get(ENV_EXAMPLES, "").strip().lower()
    if not raw:
        return ci
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)x|([0-9]+)", raw)
    if m is None:
        raise ValueError(f"{ENV_EXAMPLES}={raw!r}: expected a factor such as 10x, or a number of examples")
    return max(1, round(ci * float(m.group(1)))) if m.group(1) else int(m.group(2))


def fuzz_settings(ci: int, **kw: Any) -> settings:
    """Hypothesis settings of a fuzz test that runs `ci` examples in CI: derandomized, no deadline,
    no example database (nothing carried between runs but the explicit @example cases)."""
    return settings(
        max_examples=examples(ci),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture],
        **kw,
    )


def leaks(text: str) -> list[str]:
    """The planted secret parts (in any spelling) that `text` holds."""
    return [f for f in SECRET_FORMS if f in text]


def assert_no_secret(where: str, texts: Iterable[str]) -> None:
    for text in texts:
        found = leaks(text)
        assert not found, f"{where}: a planted secret shows: {found[0][:12]}... in {text[:500]!r}"


# -- strategies --------------------------------------------------------------------------------

secrets = st.sampled_from(SECRETS)
secret_texts = secrets.map(lambda s: s.text)
#: Characters a secret is set off by in real text (a secret glued to letters is another token).
_SEPARATORS = st.sampled_from([" ", "\n", "\t", ", ", "; ", "=", ": ", '"', "'", "(", ")", "[", "]", "<", ">", "/"])
_words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def embedded_secret(draw: st.DrawFn) -> str:
    """A string holding one planted secret, maybe with text around it."""
    s = draw(secret_texts)
    if draw(st.booleans()):
        return s
    before = draw(_words) + draw(_SEPARATORS) if draw(st.booleans()) else ""
    after = draw(_SEPARATORS) + draw(_words) if draw(st.booleans()) else ""
    return before + s + after


# -- captured log lines ------------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
        except Exception as exc:  # noqa: BLE001 - a bad format string is a finding of its own
            line = f"<unformattable log record {record.msg!r}: {exc!r}>"
        if record.exc_info and record.exc_info[1] is not None:
            line += f"\n{record.exc_info[0].__name__}: {record.exc_info[1]}"  # type: ignore[union-attr]
        self.lines.append(line)


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every log line (DEBUG and up, any logger) written inside the block, formatted."""
    handler = _Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
