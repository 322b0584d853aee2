#!/usr/bin/env bash
# Type-checks the otel_audit package with mypy, strict ([tool.mypy] in pyproject.toml).
#   bash tests/typecheck.sh [mypy options]
# processors/ and exporters/ are installed as otel_audit.processors and otel_audit.exporters
# ([tool.setuptools.package-dir]); mypy cannot follow that mapping, so it checks a tree of symlinks
# that puts them in place, kept with mypy's cache outside the repo:
#   OTEL_AUDIT_MYPY_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/otel-audit/mypy), one folder
#                          per checkout (<sha256 of its path>)
#   OTEL_AUDIT_VENV        the virtualenv with mypy (default .venv, as tests/run.sh)
# Paths in the messages are the repo's own (processors/signing.py, not otel_audit/processors/...).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${OTEL_AUDIT_VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
MYPY=("$VENV/bin/python" -m mypy)
HASH=$(printf %s "$ROOT" | sha256sum | cut -c1-16)
WORK=${OTEL_AUDIT_MYPY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-audit/mypy}/$HASH
TREE=$WORK/tree
# Rebuilt on every run (symlinks only, a few ms) so added and removed modules are seen.
rm -rf "$TREE"
mkdir -p "$TREE/otel_audit"
for entry in "$ROOT"/otel_audit/*; do
  case "$(basename "$entry")" in __pycache__|processors|exporters) continue ;; esac
  ln -s "$entry" "$TREE/otel_audit/"
done
ln -s "$ROOT/processors" "$TREE/otel_audit/processors"
ln -s "$ROOT/exporters" "$TREE/otel_audit/exporters"
cd "$TREE"
set +e
"${MYPY[@]}" --config-file "$ROOT/pyproject.toml" --cache-dir "$WORK/cache" "$@" -p otel_audit 2>&1 \
  | sed -e 's#^otel_audit/processors/#processors/#' -e 's#^otel_audit/exporters/#exporters/#'
rc=${PIPESTATUS[0]}
exit "$rc"
