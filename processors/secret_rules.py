"""Credential formats from detect-secrets, the redaction processor's second secret stage.

`detect-secrets <https://github.com/Yelp/detect-secrets>`_ (Yelp, Apache-2.0) keeps one plugin
per credential format (AWS, Artifactory, Azure storage, Cloudant, Discord, GitHub, GitLab, IBM,
Mailchimp, npm, OpenAI, PyPI, SendGrid, Slack, SoftLayer, Square, Stripe, Telegram, Twilio ...).
Its regex plugins' ``denylist`` patterns are read here at import, so a detect-secrets upgrade
that adds a format adds it to redaction; nothing of them is copied into this package. The
processor's own rules (``processors/redaction.py``) run first and cover what detect-secrets
does not (Anthropic, Google, Hugging Face, Datadog, Shopify, bare AWS secret keys, Basic and
Digest credentials, ``key=value`` secrets, URL passwords, whole PEM blocks).

Speed: each pattern gets the lower-case literals one of which every match must contain (read
from the pattern's parse tree); one combined search for all of them on the lower-cased string
skips a string that holds none, which is nearly every string in an audit record. A pattern
whose literals cannot be read (a future construct) is searched always: slower, never blind.

What is replaced: the pattern's widest group of at least 12 characters if it has one (the
secret after a key word), else the whole match; delimiters the pattern took along (quotes,
``=``, ``:``, blanks) are left out, and the span is widened to the end of the token (a
Stripe key longer than the pattern's 24 characters is replaced whole).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

__all__ = [
    "BASE64_TABLE", "TOKEN_TABLE", "LibraryRule", "WeakScanner", "default_rules", "has_run", "library_rules", "span_at",
]

# detect-secrets plugins that are not used: personal data the processor handles itself under
# its own opt-in rule (IP addresses), and a private-key plugin that matches the BEGIN line
# only (the processor replaces the whole block).
_EXCLUDED: Final = frozenset({"IPPublicDetector", "PrivateKeyDetector"})
_MIN_GROUP: Final = 12
_TRIM: Final = " \t\r\n\"'`=:,;()[]{}"
_TOKEN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class LibraryRule(NamedTuple):
    """One detect-secrets pattern, and what makes it cheap to look for.

    ``prefixes``: the literal prefixes one of which every match starts with (as written in the
    pattern), if searching by them is cheap (see _MIN_PREFIX); else None, and the pattern is
    looked for only in a string at least ``min_width`` long whose longest run of token
    characters (letters, digits, ``_``, ``-``) is at least ``min_run``.
    """

    plugin: str
    regex: re.Pattern[str]
    prefixes: frozenset[str] | None
    min_width: int
    min_run: int
    # Literals of at least two characters one of which every match holds anywhere
    # (Artifactory's "AKC" after a delimiter), or None if there are none such; in the case
    # the pattern matches them in (lower case for a case-insensitive pattern).
    anchors: frozenset[str] | None = None
    ignore_case: bool = False
    # False if every match holds a character other than a letter or digit (a "." or "-").
    alnum_possible: bool = True


def _parser() -> Any:
    if sys.version_info >= (3, 11):
        import re._parser as parser  # type: ignore[import-not-found]  # private; typeshed has no stub
    else:  # pragma: no cover - Python 3.10
        import sre_parse as parser
    return parser


_MAX_PREFIXES: Final = 32
# A pattern is searched by its prefixes if they are at least this long (a two-letter prefix
# such as Twilio's "AC" starts a word of ordinary text every few words) and its matches hold
# no run of token characters this long; else by run length, which rejects ordinary text.
_MIN_PREFIX: Final = 3
_LONG_RUN: Final = 24
# A weak pattern's anchors are checked with `in`, a few tens of nanoseconds each, and in the
# pattern's own case: two characters ("AP", "SK") already reject nearly every string.
_MIN_ANCHOR: Final = 2


def _literal_prefixes(items: Iterable[tuple[Any, Any]], c: Any) -> tuple[set[str], bool]:
    """The literal prefixes of a parsed sequence, and whether the whole sequence was literal."""
    out = {""}

    def cross(tails: Iterable[str]) -> set[str]:
        return {p + t for p in out for t in tails}

    for op, av in items:
        if op is c.LITERAL:
            out = cross((chr(av),))
        elif op is c.IN and 0 < len(av) <= 8 and all(o is c.LITERAL for o, _ in av):
            out = cross([chr(v) for _, v in av])  # a list: cross reads it once per prefix
        elif op is c.SUBPATTERN:
            inner, complete = _literal_prefixes(av[-1], c)
            out = cross(inner)
            if not complete:
                return out, False
        elif op is c.BRANCH:
            results = [_literal_prefixes(alt, c) for alt in av[1]]
            out = cross(set().union(*(r[0] for r in results)))
            if not all(r[1] for r in results):
                return out, False
        else:
            return out, False
        if len(out) > _MAX_PREFIXES:
            return out, False
    return out, True


def _anchors(items: Iterable[tuple[Any, Any]], c: Any, fold: bool) -> frozenset[str] | None:
    """Literals one of which every match of the parsed sequence holds, or None."""
    best: frozenset[str] | None = None
    run: list[str] = []

    def better(cand: frozenset[str] | None) -> None:
        nonlocal best
        if cand and min(map(len, cand)) >= _MIN_ANCHOR and (
            best is None or min(map(len, cand)) > min(map(len, best))
        ):
            best = cand

    for op, av in [*items, (None, None)]:
        if op is c.LITERAL:
            run.append(chr(av).lower() if fold else chr(av))
            continue
        if run:
            better(frozenset({"".join(run)}))
            run = []
        if op is c.SUBPATTERN:
            better(_anchors(av[-1], c, fold))
        elif op is c.BRANCH:
            alternatives = [_anchors(alt, c, fold) for alt in av[1]]
            found = [a for a in alternatives if a]
            if len(found) == len(alternatives):  # every alternative has anchors
                better(frozenset().union(*found))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1:
            better(_anchors(av[2], c, fold))
    return best


def _needs_other(items: Iterable[tuple[Any, Any]], c: Any) -> bool:
    """Every match of the parsed sequence holds a character that is no ASCII letter or digit."""
    for op, av in items:
        if op is c.LITERAL and not chr(av).isalnum():
            return True
        if op is c.IN and av and all(o is c.LITERAL and not chr(v).isalnum() for o, v in av):
            return True
        if op is c.SUBPATTERN and _needs_other(av[-1], c):
            return True
        if op is c.BRANCH and all(_needs_other(alt, c) for alt in av[1]):
            return True
        if op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1 and _needs_other(av[2], c):
            return True
    return False


def _min_run(items: Iterable[tuple[Any, Any]], c: Any) -> int:
    """The longest run of token characters every match holds, as far as the sequence shows it."""
    best = run = 0
    for op, av in items:
        width = 0
        if op is c.LITERAL and chr(av) in _TOKEN_CHARS or op is c.IN and _token_class(av, c):
            width = 1
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and len(av[2]) == 1:
            inner_op, inner_av = av[2][0]
            if (inner_op is c.IN and _token_class(inner_av, c)) or (
                inner_op is c.LITERAL and chr(inner_av) in _TOKEN_CHARS
            ):
                width = av[0]
        if op is c.SUBPATTERN:
            best = max(best, _min_run(av[-1], c))
        if width:
            run += width
            best = max(best, run)
        else:
            run = 0
    return best


def _token_class(av: Any, c: Any) -> bool:
    """A character class whose members are all token characters."""
    for o, v in av:
        if o is c.LITERAL:
            if chr(v) not in _TOKEN_CHARS:
                return False
        elif o is c.RANGE:
            lo, hi = v
            if not all(chr(x) in _TOKEN_CHARS for x in range(lo, hi + 1)):
                return False
        elif o is c.CATEGORY:
            if v is not c.CATEGORY_DIGIT:
                return False
        else:
            return False
    return True


def _describe(plugin: str, regex: re.Pattern[str]) -> LibraryRule:
    try:
        parser = _parser()
        parsed = parser.parse(regex.pattern, regex.flags)
        prefixes, _ = _literal_prefixes(parsed, parser)
        min_width = parsed.getwidth()[0]
        min_run = _min_run(parsed, parser)
        alnum = not _needs_other(parsed, parser)
    except Exception:  # noqa: BLE001 - a construct this reader does not know: always search it
        return LibraryRule(plugin, regex, None, 0, 0)
    if not prefixes or min(map(len, prefixes)) < _MIN_PREFIX or min_run >= _LONG_RUN:
        fold = bool(regex.flags & re.IGNORECASE)
        anchors = _anchors(parsed, parser, fold)
        return LibraryRule(plugin, regex, None, min_width, min_run, anchors, fold, alnum)
    return LibraryRule(plugin, regex, frozenset(prefixes), min_width, min_run, None, False, alnum)


def library_rules() -> tuple[LibraryRule, ...]:
    """Every pattern of detect-secrets' regex plugins (but those in _EXCLUDED), then those of
    ``credential_formats.FORMATS`` (plugin ``otel-audit:<name>``), described."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector

    rules: list[LibraryRule] = []
    # (the library annotates the mapping's values with an unbound TypeVar)
    classes: list[type[BasePlugin]] = sorted(get_mapping_from_secret_type_to_class().values(), key=lambda c: c.__name__)
    for cls in classes:
        if not issubclass(cls, RegexBasedDetector) or cls.__name__ in _EXCLUDED:
            continue
        for regex in getattr(cls, "denylist", ()):
            if isinstance(regex, re.Pattern) and isinstance(regex.pattern, str):
                rules.append(_describe(cls.__name__, regex))
    from otel_audit.processors.credential_formats import FORMATS

    rules.extend(_describe(f"otel-audit:{name}", regex) for name, regex in FORMATS)
    return tuple(rules)


def span_at(regex: re.Pattern[str]) -> Callable[[str, int], tuple[int, int] | None]:
    """``(s, i) ->`` the span to replace if ``regex`` matches ``s`` at ``i``, else None."""
    match = regex.match

    def find(s: str, i: int) -> tuple[int, int] | None:
        m = match(s, i)
        if m is None:
            return None
        start, end = _span(m, s)
        return (start, end) if start < end else None

    return find


def _span(m: re.Match[str], s: str) -> tuple[int, int]:
    """The part of match ``m`` of ``s`` that is the secret (see the module docstring)."""
    start, end = m.span()
    widest = 0
    for g in range(1, (m.re.groups or 0) + 1):
        gs, ge = m.span(g)
        if gs >= 0 and ge - gs >= _MIN_GROUP and ge - gs > widest:
            widest = ge - gs
            start, end = gs, ge
    while start < end and s[start] in _TRIM:
        start += 1
    while end > start and s[end - 1] in _TRIM:
        end -= 1
    if start < end and s[end - 1] in _TOKEN_CHARS:
        n = len(s)
        while end < n and s[end] in _TOKEN_CHARS:
            end += 1
    return start, end


def _table(alphabet: str) -> bytes:
    """A bytes.translate table: the ASCII characters of ``alphabet`` to ``a``, every other byte to a blank."""
    return bytes(0x61 if chr(i) in alphabet else 0x20 for i in range(256))


#: Token characters (letters, digits, ``_``, ``-``) and base64's alphabet, for RunGate.
TOKEN_TABLE: Final = _table("".join(sorted(_TOKEN_CHARS)))
BASE64_TABLE: Final = _table("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_RUNS: dict[int, bytes] = {}
_SPLIT_BELOW: Final = 256
_LOW_RUN: Final = 10


def has_run(s: str, length: int, table: bytes = TOKEN_TABLE, mapped: list[bytes] | None = None) -> bool:
    """``s`` holds ``length`` consecutive characters of ``table``'s alphabet.

    One encode, one bytes.translate and one substring search, all in C: ~3 us for 2 KB where
    a regex takes ~40 us. ``mapped``, if given, caches the translated bytes across calls.
    """
    if mapped:
        t = mapped[0]
    else:
        t = s.encode("utf-8", "surrogatepass").translate(table)
        if mapped is not None:
            mapped.append(t)
    needle = _RUNS.get(length)
    if needle is None:
        needle = _RUNS.setdefault(length, b"a" * length)
    return needle in t


class WeakScanner:
    """Looks for the patterns without a literal prefix, in the strings that could hold them."""

    __slots__ = ("_anchor_gate", "_anchored", "_first_needle", "_min_width", "_plain", "_rules", "rule")

    def __init__(self, rules: Iterable[LibraryRule], rule: str = "api_key") -> None:
        self.rule = rule
        self._rules = tuple(sorted((r for r in rules if r.prefixes is None), key=lambda r: r.min_run))
        self._min_width = min((r.min_width for r in self._rules), default=1 << 30)
        # A pattern whose matches hold only a short run (Azure's "...Q~...") is looked for by
        # its anchors alone, so that it does not keep every string from the run gate below.
        low = [r for r in self._rules if r.min_run < _LOW_RUN and r.anchors is not None]
        self._anchored = tuple((r.min_width, r.anchors, r.ignore_case, r.regex.finditer)
                               for r in low if r.anchors is not None)  # (the test narrows the type)
        # One search for all their anchors: most strings hold none, and skip the loop.
        sources = [
            f"(?i:{re.escape(a)})" if r.ignore_case else re.escape(a) for r in low for a in sorted(r.anchors or ())
        ]
        self._anchor_gate = re.compile("|".join(sources)) if sources else None
        # The others by run length: the first run a string lacks ends the search.
        rest = [r for r in self._rules if r not in low]
        self._plain = tuple(
            (r.min_run, b"a" * r.min_run, r.min_width, r.anchors, r.ignore_case, r.regex.finditer) for r in rest
        )
        self._first_needle = b"a" * min((r.min_run for r in rest), default=1 << 20)

    def __len__(self) -> int:
        return len(self._rules)

    def sub(self, s: str, replace: Callable[[str, str], str], fired: list[str]) -> str:
        """Return ``s`` with every finding replaced, appending the rule to ``fired`` for each."""
        n = len(s)
        if n < self._min_width:
            return s
        spans: list[tuple[int, int]] = []
        folded: str | None = None
        gate = self._anchor_gate
        anchored = self._anchored if gate is not None and gate.search(s) is not None else ()
        for min_width, required, ignore_case, finditer in anchored:
            if min_width > n:
                continue
            if ignore_case:
                if folded is None:
                    folded = s.lower()
                target = folded
            else:
                target = s
            for anchor in required:
                if anchor in target:
                    for m in finditer(s):
                        start, end = _span(m, s)
                        if start < end:
                            spans.append((start, end))
                    break
        runs = s.encode("utf-8", "surrogatepass").translate(TOKEN_TABLE)
        if self._first_needle not in runs:
            return self._replace_spans(s, spans, replace, fired)
        # The longest run, exactly, for a short string (one C split); for a long one each
        # rule's run is looked for in turn (a split of 2 KB of prose costs more).
        longest = max(map(len, runs.split())) if n <= _SPLIT_BELOW else -1
        present = 0
        # Plain tuples, by run length: the first run the string lacks ends the loop.
        for min_run, needle, min_width, anchors, ignore_case, finditer in self._plain:
            if longest >= 0:
                if min_run > longest:
                    break
            elif min_run > present:
                if needle not in runs:
                    break
                present = min_run
            if min_width > n:
                continue
            if anchors is not None:
                if ignore_case:
                    if folded is None:
                        folded = s.lower()
                    target = folded
                else:
                    target = s
                for anchor in anchors:
                    if anchor in target:
                        break
                else:
                    continue
            for m in finditer(s):
                start, end = _span(m, s)
                if start < end:
                    spans.append((start, end))
        return self._replace_spans(s, spans, replace, fired)

    def _replace_spans(
        self, s: str, spans: list[tuple[int, int]], replace: Callable[[str, str], str], fired: list[str]
    ) -> str:
        if not spans:
            return s
        spans.sort()
        merged = [spans[0]]
        for start, end in spans[1:]:
            if start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        out: list[str] = []
        last = 0
        for start, end in merged:
            out.append(s[last:start])
            out.append(replace(self.rule, s[start:end]))
            fired.append(self.rule)
            last = end
        out.append(s[last:])
        return "".join(out)

    def sub_stage(self, replace: Callable[[str, str], str]) -> Callable[[str, list[str]], str]:
        """A redaction stage ``(string, fired) -> string`` replacing findings with ``replace``."""
        return lambda s, fired: self.sub(s, replace, fired)


_DEFAULT: list[tuple[LibraryRule, ...]] = []


def default_rules() -> tuple[LibraryRule, ...]:
    """detect-secrets' patterns, read once per process.

    Raises ImportError if detect-secrets cannot be loaded: redaction does not run with fewer
    formats than it was installed with.
    """
    if not _DEFAULT:
        _DEFAULT.append(library_rules())
    return _DEFAULT[0]
