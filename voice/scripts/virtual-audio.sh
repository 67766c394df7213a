#!/usr/bin/env bash
# Starts a private virtual sound card for the voice tests: a D-Bus session bus, PipeWire,
# WirePlumber and pipewire-pulse, with a 48 kHz stereo null sink `vsink` as the default sink
# and its monitor `vsink.monitor` as the default source. cpal reaches it through ALSA's
# `pulse` device (libasound2-plugins).
#
# Idempotent: if the sink already answers, nothing is started again. Prints `export ...`
# lines; use it as   eval "$(voice/scripts/virtual-audio.sh)"
# Stop everything it started with   voice/scripts/virtual-audio.sh stop
# Restart only its sound server (as when a device vanishes and comes back; the devices test
# does this) with   voice/scripts/virtual-audio.sh restart-pulse
#
# Needs: dbus pipewire pipewire-pulse wireplumber pulseaudio-utils libasound2-plugins.
set -euo pipefail

RUNTIME_DIR="${SOHBET_AUDIO_DIR:-/tmp/sohbet-audio}"
export XDG_RUNTIME_DIR="$RUNTIME_DIR"
export DBUS_SESSION_BUS_ADDRESS="unix:path=$RUNTIME_DIR/bus"
export PULSE_SERVER="unix:$RUNTIME_DIR/pulse/native"
PIDS="$RUNTIME_DIR/pids"

print_env() {
  echo "export XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR"
  echo "export DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS"
  echo "export PULSE_SERVER=$PULSE_SERVER"
}

start() { # name, command...
  local name="$1"; shift
  "$@" >>"$RUNTIME_DIR/$name.log" 2>&1 &
  echo $! >> "$PIDS"
  echo $! > "$RUNTIME_DIR/$name.pid"
}

# Starts pipewire-pulse and gives it the null sink (a sink lives and dies with it).
start_pulse() {
  start pipewire-pulse pipewire-pulse
  for _ in $(seq 1 50); do
    pactl info >/dev/null 2>&1 && break
    sleep 0.2
  done
  pactl info >/dev/null 2>&1 || { echo "virtual-audio: pipewire-pulse did not come up; see $RUNTIME_DIR/*.log" >&2; exit 1; }
  pactl list short sinks | grep -q vsink \
    || pactl load-module module-null-sink sink_name=vsink rate=48000 channels=2 >/dev/null
  pactl set-default-sink vsink
  pactl set-default-source vsink.monitor
}

case "${1:-}" in
  stop)
    if [[ -f "$PIDS" ]]; then
      while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$PIDS"
      rm -f "$PIDS"
    fi
    exit 0
    ;;
  restart-pulse)
    [[ -f "$RUNTIME_DIR/pipewire-pulse.pid" ]] || { echo "virtual-audio: not started" >&2; exit 1; }
    kill "$(cat "$RUNTIME_DIR/pipewire-pulse.pid")" 2>/dev/null || true
    sleep "${SOHBET_AUDIO_GAP:-1}"
    start_pulse
    print_env
    exit 0
    ;;
esac
for tool in dbus-daemon pipewire wireplumber pipewire-pulse pactl; do
  command -v "$tool" >/dev/null || { echo "virtual-audio: missing $tool (apt-get install dbus pipewire pipewire-pulse wireplumber pulseaudio-utils libasound2-plugins)" >&2; exit 1; }
done

if pactl list short sinks 2>/dev/null | grep -q vsink; then
  print_env
  exit 0
fi

mkdir -p "$RUNTIME_DIR"
chmod 700 "$RUNTIME_DIR"
: > "$PIDS"

dbus-daemon --session --fork --address="$DBUS_SESSION_BUS_ADDRESS" --print-pid > "$RUNTIME_DIR/dbus.pid"
cat "$RUNTIME_DIR/dbus.pid" >> "$PIDS"
start pipewire pipewire
sleep 0.5
start wireplumber wireplumber
start_pulse
print_env
