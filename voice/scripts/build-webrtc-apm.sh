#!/usr/bin/env bash
# Builds WebRTC's audio processing module 2.1 (AEC3; the PulseAudio-maintained copy that the
# crates.io crate `webrtc-audio-processing-sys` 2.1.0 bundles) as a shared library for the
# voice crate's optional `webrtc-apm` feature, which only the benchmark's `apm` section uses
# (a comparison with our SpeexDSP canceller; see voice/README.md "Echo cancellation").
#
# Why not the crate's `bundled` feature: its meson build wants abseil >= 20240722 and, failing
# that, downloads it (a meson wrap); Debian 12 has 20220623 and this machine has no GitHub.
# The source builds against Debian's abseil with two small headers that abseil 2022 lacks
# (scripts/webrtc-apm/absl: nullability annotations, HasAbslStringify) and the version check
# relaxed. Release build (-O3, NDEBUG: no DCHECKs), like a shipped library.
#
# Needs: apt-get install meson ninja-build libabsl-dev libclang-dev (libclang for the
# crate's bindgen). Usage, from the repository root:
#   bash voice/scripts/build-webrtc-apm.sh            # builds into $PREFIX (below)
#   eval "$(bash voice/scripts/build-webrtc-apm.sh env)"   # the variables cargo needs
set -euo pipefail

PREFIX=${WEBRTC_APM_PREFIX:-/var/cache/sohbet/webrtc-apm}
HERE=$(cd "$(dirname "$0")" && pwd)
LIBDIR="$PREFIX/lib/$(gcc -print-multiarch 2>/dev/null || echo)"

if [[ "${1:-}" == env ]]; then
    echo "export PKG_CONFIG_PATH=$LIBDIR/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
    echo "export LD_LIBRARY_PATH=$LIBDIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
    exit 0
fi

for pkg in meson ninja-build libabsl-dev libclang-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || {
        echo "missing $pkg: apt-get install meson ninja-build libabsl-dev libclang-dev" >&2
        exit 1
    }
done

# The source the crate ships, from cargo's registry (cargo fetch puts it there).
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
find_source() {
    ls -d "$CARGO_HOME"/registry/src/*/webrtc-audio-processing-sys-2.1.0/webrtc-audio-processing \
        2>/dev/null | head -1
}
SRC=$(find_source)
if [[ -z "$SRC" ]]; then
    cargo fetch --manifest-path "$HERE/../../Cargo.toml" >/dev/null
    SRC=$(find_source)
fi
[[ -n "$SRC" ]] || { echo "webrtc-audio-processing-sys 2.1.0 not in $CARGO_HOME/registry" >&2; exit 1; }

WORK=$(mktemp -d /tmp/webrtc-apm-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cp -a "$SRC" "$WORK/src"
sed -i "s/version: '>=20240722'/version: '>=20220623'/" "$WORK/src/meson.build"
CXXFLAGS="-I$HERE/webrtc-apm" meson setup --prefix "$PREFIX" --buildtype=release \
    -Db_ndebug=true -Ddefault_library=shared "$WORK/build" "$WORK/src" >/dev/null
nice ninja -C "$WORK/build" -j"${JOBS:-2}"
ninja -C "$WORK/build" install >/dev/null
# The installed headers include the two abseil headers too: put the shims beside them so
# that whatever compiles against this library (the crate's C++ wrapper, bindgen) finds them.
cp -r "$HERE/webrtc-apm/absl" "$PREFIX/include/webrtc-audio-processing-2/"
echo "installed in $PREFIX; now: eval \"\$(bash $0 env)\"" >&2
