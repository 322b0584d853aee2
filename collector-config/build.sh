#!/usr/bin/env bash
# Builds the stock OpenTelemetry Collector described by a builder manifest (default:
# builder-config.yaml next to this script) with the OpenTelemetry Collector Builder (ocb),
# into a cache OUTSIDE the repository, and prints the binary's path on its last stdout line.
#
#   collector-config/build.sh [MANIFEST]
#
# Idempotent: the build lives in <cache>/<sha256 of the manifest>/ and is reused until the
# manifest changes. Progress and the builder's output go to stderr and to build.log there.
#
# Environment:
#   OTEL_AUDIT_COLLECTOR_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/otel-audit/collector)
#   OTEL_AUDIT_SUMDB_GAPS       warn (default) or fail: what to do about a module the checksum
#                               database has no record of (see below and README.md)
#   GOMODCACHE, GOCACHE, GOPROXY, GOFLAGS, GONOSUMDB  passed to Go unchanged; Go's default
#                               caches ($HOME/go/pkg/mod, ~/.cache/go-build) persist between
#                               runs, so only the first build downloads and compiles everything.
#
# Only stock modules are fetched: ocb itself (go.opentelemetry.io/collector/cmd/builder) and
# the components the manifest lists, all at one collector release.
set -euo pipefail
# Anything that fails without its own message still says where and what.
trap 'printf "build.sh: error: line %s: command failed (status %s): %s\n" "$LINENO" "$?" "$BASH_COMMAND" >&2' ERR

die() {
  printf 'build.sh: error: %s\n' "$1" >&2
  shift
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}
say() { printf 'build.sh: %s\n' "$*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifest=${1:-$here/builder-config.yaml}
[ -f "$manifest" ] || die "builder manifest not found: $manifest" \
  "Pass the path of an ocb manifest, or run without arguments for collector-config/builder-config.yaml."
manifest=$(cd "$(dirname "$manifest")" && pwd)/$(basename "$manifest")

command -v go >/dev/null 2>&1 || die "the Go toolchain ('go') is not on PATH" \
  "The collector is built from source with ocb, which needs Go 1.25 or newer." \
  "Install it, make sure 'go version' works, and run this again."

# One collector release for every module: every 'gomod:' line names the same v0.x.y (and the
# modules already stable the same v1.x.y of that release); ocb is installed at the v0.x.y.
versions=$(sed -n 's/^[[:space:]]*-[[:space:]]*gomod:[[:space:]]*[^[:space:]]*[[:space:]]\{1,\}\(v[0-9][^[:space:]#]*\).*/\1/p' "$manifest" | sort -u)
[ -n "$versions" ] || die "no 'gomod: <module> <version>' lines in $manifest"
v0s=$(printf '%s\n' "$versions" | grep '^v0\.' || true)
v1s=$(printf '%s\n' "$versions" | grep -v '^v0\.' || true)
if [ "$(printf '%s' "$v0s" | grep -c .)" -ne 1 ] || [ "$(printf '%s' "$v1s" | grep -c .)" -gt 1 ]; then
  die "$manifest mixes collector releases: $(printf '%s ' $versions)" \
    "Pin every component to the same release (core and contrib share the v0.x.0 scheme)."
fi
release=$v0s
binary_name=$(sed -n 's/^[[:space:]]*name:[[:space:]]*\([A-Za-z0-9._-]*\).*/\1/p' "$manifest" | head -n 1)
[ -n "$binary_name" ] || die "$manifest has no 'dist: name:' (the binary's name)"

if command -v sha256sum >/dev/null 2>&1; then
  digest=$(sha256sum "$manifest" | cut -d' ' -f1)
else
  digest=$(shasum -a 256 "$manifest" | cut -d' ' -f1)
fi
root=${OTEL_AUDIT_COLLECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-audit/collector}
dest=$root/$digest
binary=$dest/$binary_name

if [ -x "$binary" ] && [ -f "$dest/.complete" ]; then
  printf '%s\n' "$binary"
  exit 0
fi

mkdir -p "$root"
# Two test sessions may start at once: one builds, the other waits for it.
exec 9>"$root/.lock"
if command -v flock >/dev/null 2>&1; then
  say "taking the build lock $root/.lock (another build may be running)"
  flock 9
fi
if [ -x "$binary" ] && [ -f "$dest/.complete" ]; then
  printf '%s\n' "$binary"
  exit 0
fi

ocb_dir=$root/ocb-$release
ocb=$ocb_dir/builder
if [ ! -x "$ocb" ]; then
  say "installing ocb $release into $ocb_dir"
  say "  GOBIN=$ocb_dir go install go.opentelemetry.io/collector/cmd/builder@$release"
  if ! GOBIN=$ocb_dir go install "go.opentelemetry.io/collector/cmd/builder@$release" >&2; then
    die "could not install the OpenTelemetry Collector Builder $release" \
      "Command: GOBIN=$ocb_dir go install go.opentelemetry.io/collector/cmd/builder@$release" \
      "Check that the Go module proxy is reachable (go env GOPROXY: $(go env GOPROXY))."
  fi
fi

# Build in a scratch directory and move it into place only when complete, so an interrupted
# build is never mistaken for a finished one.
work=$(mktemp -d "$root/.build-$digest.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$manifest" "$work/builder-config.yaml"
log=$work/build.log
: >"$log"
fail() {
  tail -n 40 "$log" >&2 || true
  kept=$root/failed-build-$digest.log
  cp "$log" "$kept"
  die "$1 (last lines above; full log: $kept)" "${@:2}"
}
say "building $binary_name (collector $release) from $manifest"
say "  into $dest; Go module cache: $(go env GOMODCACHE); this takes minutes the first time"
start=$(date +%s)

# ocb's own three steps, with the middle one done here (see README.md, "How build.sh builds"):
#  1. ocb generates the sources (main.go, components.go, go.mod) of the distribution;
#  2. 'go mod tidy -e' resolves the module graph. ocb runs it without -e, which fails when the
#     proxy lacks a module that only a dependency's *tests* import; -e tolerates exactly
#     that, and step 3 still fails loudly if a module the binary needs is missing;
#  3. ocb compiles (go build -trimpath -ldflags='-s -w', as ocb always does).
(cd "$work" && "$ocb" --config=builder-config.yaml --skip-compilation --skip-get-modules) >>"$log" 2>&1 \
  || fail "ocb could not generate the collector's sources from $manifest"
src=$work/_build
# 'go mod tidy -e' drops a requirement it could not load; every attempt below starts again
# from the go.mod ocb generated, so a checksum-database gap never costs a component.
cp "$src/go.mod" "$work/go.mod.generated"
compat=$(sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$src/go.mod" | head -n 1 | cut -d. -f1,2)

# The checksum database vouches for every module Go downloads. A module it has no record of
# (a partial mirror answers 403/404 to the lookup) stops the build, unless
# OTEL_AUDIT_SUMDB_GAPS=warn (the default): then that module alone is added to GONOSUMDB, its
# hash comes from the proxy over TLS, and it is named in the log and in <cache>/.../.complete.
# A checksum MISMATCH always stops the build.
gaps_mode=${OTEL_AUDIT_SUMDB_GAPS:-warn}
case $gaps_mode in warn | fail) ;; *) die "OTEL_AUDIT_SUMDB_GAPS must be 'warn' or 'fail', not '$gaps_mode'" ;; esac
nosumdb=${GONOSUMDB:-}
unverified=""
for attempt in $(seq 1 100); do
  cp "$work/go.mod.generated" "$src/go.mod"
  rm -f "$src/go.sum"
  tidy_out=$(cd "$src" && GONOSUMDB=$nosumdb go mod tidy -e ${compat:+-compat=$compat} 2>&1) || true
  printf '%s\n' "$tidy_out" >>"$log"
  if printf '%s\n' "$tidy_out" | grep -q 'SECURITY ERROR\|checksum mismatch'; then
    fail "a module's checksum does not match the checksum database: refusing to build" \
      "This is what the checksum database exists to catch; do not work around it."
  fi
  gaps=$(printf '%s\n' "$tidy_out" \
    | sed -n 's#.*/sumdb/[^ ]*/lookup/\([^@ ]*\)@[^ :]*: \(403\|404\|410\).*#\1#p' \
    | sed 's/!\([a-z]\)/\U\1/g' | sort -u)  # undo the case-encoding: !data!dog -> DataDog
  [ -z "$gaps" ] && break
  if [ "$gaps_mode" = fail ]; then
    fail "the checksum database has no record of: $(printf '%s ' $gaps)" \
      "OTEL_AUDIT_SUMDB_GAPS=fail is set; unset it (or set 'warn') to trust the proxy for these modules."
  fi
  for g in $gaps; do
    case ",$nosumdb," in *",$g,"*) fail "module $g still fails its checksum lookup although it is in GONOSUMDB" ;; esac
    nosumdb=${nosumdb:+$nosumdb,}$g
    unverified="$unverified $g"
    say "warning: the checksum database has no record of $g; trusting the proxy for it"
  done
done
[ -f "$src/go.sum" ] || fail "'go mod tidy' produced no go.sum"

# One release throughout: the resolved version of every component is the manifest's.
while read -r mod ver; do
  got=$(cd "$src" && GONOSUMDB=$nosumdb go list -m -f '{{.Version}}' "$mod" 2>>"$log") \
    || fail "component $mod is not in the resolved module graph"
  [ "$got" = "$ver" ] || fail "component $mod resolved to $got, not the manifest's $ver" \
    "A dependency requires a newer release; move every component to one release."
done < <(sed -n 's/^[[:space:]]*-[[:space:]]*gomod:[[:space:]]*\([^[:space:]]*\)[[:space:]]\{1,\}\(v[^[:space:]#]*\).*/\1 \2/p' "$manifest")

(cd "$work" && GONOSUMDB=$nosumdb "$ocb" --config=builder-config.yaml --skip-generate --skip-get-modules) >>"$log" 2>&1 \
  || fail "the collector did not compile (a module the binary imports may be missing from the proxy)" \
    "Command: (cd <scratch> && $ocb --config=builder-config.yaml --skip-generate --skip-get-modules)"
elapsed=$(( $(date +%s) - start ))
built=$src/$binary_name
[ -x "$built" ] || fail "ocb finished but $built does not exist"

mkdir -p "$work/out"
mv "$built" "$work/out/$binary_name"
cp "$manifest" "$work/out/builder-config.yaml"
cp "$log" "$work/out/build.log"
# The resolved dependency graph, for the record (what exactly went into this binary).
cp "$src/go.mod" "$src/go.sum" "$work/out/"
size=$(wc -c <"$work/out/$binary_name" | tr -d ' ')
printf 'release=%s\nbuild_seconds=%s\nbinary_bytes=%s\ngo=%s\nunverified_by_sumdb=%s\n' \
  "$release" "$elapsed" "$size" "$(go env GOVERSION)" "${unverified# }" >"$work/out/.complete"
rm -rf "$dest"
mv "$work/out" "$dest"
say "built $binary in ${elapsed}s ($size bytes)"
[ -z "$unverified" ] || say "warning: not verified by the checksum database:$unverified"
printf '%s\n' "$binary"
