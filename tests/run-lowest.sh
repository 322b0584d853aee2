#!/usr/bin/env bash
# The lowest allowed OpenTelemetry versions: builds a virtualenv with every opentelemetry-* requirement of
# pyproject.toml (dependencies and the test extra) at its lower bound, installs this checkout into it and
# runs the tests that cover otel_audit/_sdk_compat.py and its callers. The highest allowed versions are what
# the main run (tests/run.sh) resolves. docs/compatibility.md has the pin policy.
#
# The venv is cached outside the repo by a hash of the pins, the test extra and the Python version:
#   ${XDG_CACHE_HOME:-~/.cache}/otel-audit/venv-lowest-<hash>   (first build ~40 s, then ~5 s to reinstall
# this checkout without dependencies). Extra arguments go to pytest. Run by .ci/run after tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
start=$(date +%s)

# "opentelemetry-sdk>=1.40,<1.46" -> "opentelemetry-sdk==1.40", for every opentelemetry-* requirement.
mapfile -t PINS < <("$PY" - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = project["dependencies"] + project["optional-dependencies"]["test"]
for req in reqs:
    m = re.fullmatch(r"(opentelemetry-[a-z-]+)\s*>=\s*([0-9][^,;\s]*)(?:\s*,.*)?", req)
    if req.startswith("opentelemetry-"):
        if m is None:
            raise SystemExit(f"tests/run-lowest.sh: pyproject.toml: {req!r} has no '>=' lower bound to test")
        print(f"{m.group(1)}=={m.group(2)}")
EOF
)
if [ "${#PINS[@]}" -eq 0 ]; then
  echo "tests/run-lowest.sh: no opentelemetry-* requirements found in pyproject.toml" >&2
  exit 2
fi
key=$( { printf '%s\n' "${PINS[@]}"; "$PY" -c 'import tomllib,sys; p=tomllib.load(open("pyproject.toml","rb"))["project"]; print(p["dependencies"], p["optional-dependencies"]["test"], sys.version)'; } | sha256sum | cut -c1-16)
VENV=${OTEL_AUDIT_LOWEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-audit/venv-lowest-$key}

if [ ! -f "$VENV/.complete" ]; then
  echo "tests/run-lowest.sh: building $VENV with ${PINS[*]}" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" -e ".[test]"
  touch "$VENV/.complete"
else
  # the cached venv may hold another checkout's editable install: point it at this one
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
fi

# Each pin must be what is installed (a resolver that quietly picked another version would test nothing).
"$VENV/bin/python" - "${PINS[@]}" <<'EOF'
import sys
from importlib import metadata
from packaging.version import Version
bad = [p for p in sys.argv[1:] if Version(metadata.version(p.split("==")[0])) != Version(p.split("==")[1])]
if bad:
    sys.exit(f"tests/run-lowest.sh: the lowest-pins venv does not hold {', '.join(bad)}; delete it and rerun")
EOF

echo "tests/run-lowest.sh: lowest allowed OpenTelemetry: ${PINS[*]}" >&2
# The modules that reach the SDK's internals (through otel_audit._sdk_compat) and their callers.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_sdk_compat.py tests/test_signing.py tests/test_logger.py tests/test_instrument.py \
  tests/test_spool.py tests/test_sdk_conventions.py tests/test_log_bridges.py tests/test_otlp_exporter.py \
  "$@"
echo "tests/run-lowest.sh: passed on the lowest allowed versions in $(( $(date +%s) - start )) s" >&2
