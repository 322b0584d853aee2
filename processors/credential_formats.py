"""Credential formats detect-secrets does not have, as regexes in its style.

Each entry is ``(name, pattern)``: a compiled regex that matches the credential (a group of at
least 12 characters, if any, is the secret part; else the whole match), written from the
vendor's documented token format. ``processors/secret_rules.py`` reads them with
detect-secrets' own patterns and gives them the same gates (literal prefixes, anchors, run
lengths), so a pattern that starts with a literal prefix of three or more characters costs
nearly nothing on a string without that prefix.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["FORMATS"]

FORMATS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = ()
