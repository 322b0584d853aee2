#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs them:
#   - a virtualenv with the package and its test extras,
#   - the stock OpenTelemetry Collector built from its official modules (collector-config/build.sh,
#     cached outside the repo by manifest hash; the first build takes a few minutes),
#   - a ruff lint of the whole repo (fails the run on any error),
#   - a strict mypy check of the otel_audit package, processors and exporters included (tests/typecheck.sh),
#   - the native integrity core (native/, needs Rust and cargo), installed into the virtualenv,
#   - the PostgreSQL server from Debian's packages when it is missing (apt-get install -y postgresql),
#   - pytest, in parallel workers when run without arguments (see below), twice: on the native core, then
#     on the pure-Python path (OTEL_AUDIT_TEST_PATHS chooses).
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

# The optional native integrity core (native/, Rust + PyO3, built by maturin; cargo's output is cached
# outside the repo). The suite runs on both paths: with the native core required, then in pure Python.
echo "tests/run.sh: building the native integrity core (native/; cached after the first build)" >&2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/otel-audit/native-target}
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check ./native; then
  echo "tests/run.sh: the native core did not build: it needs Rust and cargo (https://rustup.rs); see native/README.md" >&2
  exit 1
fi

# The PostgreSQL store's tests start a real server from Debian's packages (tests/pg_support.py): a fresh
# machine gets them here, so no test ever skips for want of PostgreSQL.
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  echo "tests/run.sh: installing the PostgreSQL server (apt-get install -y postgresql)" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
  if ! { ${SUDO[@]+"${SUDO[@]}"} apt-get update -q && \
         DEBIAN_FRONTEND=noninteractive ${SUDO[@]+"${SUDO[@]}"} apt-get install -y -q postgresql; } >&2; then
    echo "tests/run.sh: could not install PostgreSQL (apt-get install -y postgresql); its tests need the server" >&2
    exit 1
  fi
fi

echo "tests/run.sh: building the stock OpenTelemetry Collector (cached after the first build)" >&2
bash collector-config/build.sh collector-config/builder-config.yaml >/dev/null
bash collector-config/build.sh collector-config/builder-config-datadog.yaml >/dev/null

# Tests in parallel (pytest-xdist): many of them wait (30 s outages, processes starting, retries), so
# twice as many workers as cores, at most 8. tests/conftest.py queues the slow ones first and keeps a
# module with a costly module fixture on one worker. When an argument names a test file, folder or node
# (tests/test_x.py, tests/test_x.py::test_y) the run is serial, where starting workers costs more than
# it saves; options alone (-k, -x, --durations) keep the workers. OTEL_AUDIT_TEST_WORKERS sets the
# number either way (0: serial); a -n among the arguments wins over both.
workers=${OTEL_AUDIT_TEST_WORKERS:-}
if [ -z "$workers" ]; then
  cores=$(nproc 2>/dev/null || echo 2)
  workers=$(( cores * 2 > 8 ? 8 : cores * 2 ))
  for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then
      workers=0
      break
    fi
  done
fi
case $workers in
  ''|*[!0-9]*)
    echo "tests/run.sh: OTEL_AUDIT_TEST_WORKERS=$workers: expected a number of workers (0: no parallelism)" >&2
    exit 2 ;;
esac
xdist=()
if [ "$workers" -gt 0 ]; then
  xdist=(-n "$workers" --dist loadgroup --no-loadscope-reorder)
fi
# OTEL_AUDIT_TEST_PATHS: which integrity core paths to run the tests on, in order (default: both).
paths=${OTEL_AUDIT_TEST_PATHS:-native python}
for path in $paths; do
  case $path in
    native) mode=required ;;
    python) mode=off ;;
    *) echo "tests/run.sh: OTEL_AUDIT_TEST_PATHS=$paths: expected native and/or python" >&2; exit 2 ;;
  esac
  echo "tests/run.sh: pytest with ${workers} worker(s) (OTEL_AUDIT_TEST_WORKERS), integrity core: $path (OTEL_AUDIT_NATIVE=$mode)" >&2
  OTEL_AUDIT_NATIVE=$mode "$VENV/bin/python" -m pytest -q -p no:cacheprovider ${xdist[@]+"${xdist[@]}"} "$@"
done
