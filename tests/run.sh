#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs them:
#   - a virtualenv with the package and its test extras,
#   - the stock OpenTelemetry Collector built from its official modules (collector-config/build.sh,
#     cached outside the repo by manifest hash; the first build takes a few minutes),
#   - a ruff lint of the whole repo (fails the run on any error),
#   - a strict mypy check of the otel_audit package, processors and exporters included (tests/typecheck.sh),
# Used by the README's test command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${OTEL_AUDIT_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"

# Lint before the (long) test run: the rules are [tool.ruff] in pyproject.toml.
echo "tests/run.sh: ruff check (lint)" >&2
if ! "$VENV/bin/python" -m ruff check .; then
  echo "tests/run.sh: lint failed: fix the ruff errors above (run: $VENV/bin/python -m ruff check .)" >&2
  exit 1
fi

# Types: [tool.mypy] in pyproject.toml (strict); the cache lives outside the repo (~/.cache/otel-audit/mypy/).
echo "tests/run.sh: mypy (type check)" >&2
if ! OTEL_AUDIT_VENV="$VENV" bash tests/typecheck.sh; then
  echo "tests/run.sh: type check failed: fix the mypy errors above (run: OTEL_AUDIT_VENV=$VENV bash tests/typecheck.sh)" >&2
  exit 1
fi

echo "tests/run.sh: building the stock OpenTelemetry Collector (cached after the first build)" >&2
bash collector-config/build.sh collector-config/builder-config.yaml >/dev/null
bash collector-config/build.sh collector-config/builder-config-datadog.yaml >/dev/null

exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
