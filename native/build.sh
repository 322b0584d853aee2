#!/usr/bin/env bash
# Build abi3 wheels of otel-audit-native (one wheel per target serves CPython 3.10 and later).
#
#   bash native/build.sh [OUT_DIR] [--target aarch64-unknown-linux-gnu]
#
# OUT_DIR defaults to dist/ (relative to where you run it). Release mode, for the host (x86_64);
# with --target TRIPLE also for that target, if `rustup target list --installed` has it (and a
# linker for it is configured), otherwise it says it skipped it. Needs maturin (pip install maturin)
# and a Rust toolchain. Build output goes to $CARGO_TARGET_DIR (default ~/.cache/otel-audit/native-target),
# never into the repository.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="dist"
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --target) targets+=("${2:?--target needs a target triple}"); shift 2 ;;
        --target=*) targets+=("${1#--target=}"); shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "build.sh: unknown option $1" >&2; exit 2 ;;
        *) out="$1"; shift ;;
    esac
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/otel-audit/native-target}"

maturin="${MATURIN:-$(command -v maturin || true)}"
if [ -z "$maturin" ]; then
    echo "build.sh: maturin not found (pip install maturin, or set MATURIN=/path/to/maturin)" >&2
    exit 1
fi

# With zig (pip install ziglang, next to maturin) maturin links for manylinux2014 (glibc 2.17, so the wheel
# installs on older systems than this one) and cross-links other targets without a cross toolchain.
zig=()
if "$(dirname "$maturin")/python" -c "import ziglang" 2>/dev/null || command -v zig >/dev/null 2>&1; then
    zig=(--zig --compatibility manylinux2014)
    export PATH="$(dirname "$maturin"):$PATH"
else
    echo "== zig not found (pip install ziglang): the host wheel is tagged for this machine's glibc; other targets need a cross linker"
fi

cd "$here"
echo "== host wheel ($(rustc -vV | sed -n 's/^host: //p')) -> $out"
"$maturin" build --release ${zig[@]+"${zig[@]}"} --out "$out"

installed="$(rustup target list --installed 2>/dev/null || true)"
status=0
for t in "${targets[@]+"${targets[@]}"}"; do
    if ! grep -qx "$t" <<<"$installed"; then
        echo "== $t: SKIPPED: the Rust target is not installed (rustup target add $t, plus a linker for it)"
        continue
    fi
    echo "== $t wheel -> $out"
    if ! "$maturin" build --release --target "$t" ${zig[@]+"${zig[@]}"} --out "$out"; then
        echo "== $t: FAILED (is a cross linker configured? e.g. CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER)" >&2
        status=1
    fi
done
ls -l "$out"/otel_audit_native-*.whl
exit $status
