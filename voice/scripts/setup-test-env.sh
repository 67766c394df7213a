#!/usr/bin/env bash
# Installs what the voice tests and benchmark need beyond Cargo: the Python packages for the
# aiortc interop peer and PESQ scoring, and playwright-core (npm) for the Chromium peer.
# Idempotent. System packages (apt) are listed in voice/README.md; this script only checks
# them.
set -euo pipefail
PYTHON="${SOHBET_PYTHON:-python3}"

if ! "$PYTHON" -c "import aiortc, pesq, numpy" 2>/dev/null; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check aiortc pesq numpy \
    || "$PYTHON" -m pip install --quiet --disable-pip-version-check --break-system-packages aiortc pesq numpy
fi
"$PYTHON" -c "import aiortc, pesq, numpy" || { echo "setup-test-env: python packages missing" >&2; exit 1; }

HERE="$(cd "$(dirname "$0")" && pwd)"
if ! (cd "$HERE" && node -e "require.resolve('playwright-core')" 2>/dev/null); then
  (cd "$HERE" && npm ci --no-audit --no-fund --silent)
fi

missing=()
for tool in dbus-daemon pipewire wireplumber pipewire-pulse pactl espeak-ng sox node npm; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[[ -e /usr/share/alsa/alsa.conf.d/50-pulseaudio.conf || -e /etc/alsa/conf.d/50-pulseaudio.conf ]] \
  || missing+=("libasound2-plugins")
if (( ${#missing[@]} )); then
  echo "setup-test-env: missing system tools: ${missing[*]}" >&2
  echo "  apt-get install -y dbus pipewire pipewire-pulse wireplumber pulseaudio-utils libasound2-plugins espeak-ng sox chromium nodejs npm" >&2
  exit 1
fi
[[ -x "${CHROMIUM:-/usr/bin/chromium}" ]] || { echo "setup-test-env: missing chromium (apt-get install chromium)" >&2; exit 1; }
echo "setup-test-env: ok"
