# Run ON THE TARGET, sourced (it exports into your shell):
#   source bench/gpu/audio_up.sh .device/audio.tgz [/tmp/audio]     ...     audio_down
# Starts the bundle's PulseAudio with a float32/24 kHz/mono null sink `nullsink` and points ALSA's
# `default` (hence PortAudio/sounddevice) at it. Nothing of the target's audio setup is used:
# the compiled-in /usr/lib/pulse-*/modules, /usr/lib/*/alsa-lib and /usr/share/alsa may all be absent.
# AUDIO_BUNDLE_ALL=1 takes every library from the bundle (default: non-core ones from the target if present).
_audio_up() {
  local tgz=${1:-} W=${2:-/tmp/audio} i d
  [ -f "$tgz" ] || { echo "usage: source audio_up.sh AUDIO.tgz [WORKDIR]  (no file: '$tgz')" >&2; return 1; }
  case $tgz in /*) ;; *) tgz=$PWD/$tgz;; esac
  [ -n "${AUDIO_PA_PID:-}" ] && kill -0 "$AUDIO_PA_PID" 2>/dev/null && { echo "audio_up: already running (pid $AUDIO_PA_PID)"; return 0; }
  mkdir -p "$W" && tar -C "$W" --strip-components=1 -xzf "$tgz" || { echo "audio_up: FAILED to unpack $tgz" >&2; return 1; }
  mkdir -p "$W/home" "$W/run" "$W/ld" "$W/shim" && chmod 700 "$W/run"
  [ ${#W} -lt 80 ] || { echo "audio_up: workdir path too long for a unix socket" >&2; return 1; }

  # Client LD_LIBRARY_PATH = $W/ld: the core audio libs always, others only if the target lacks them, so
  # that old Debian 12 copies (libstdc++, libzstd, ...) do not shadow newer ones for every program in this shell.
  rm -f "$W"/ld/*
  for i in "$W"/lib/*.so*; do
    i=${i##*/}
    if [ -z "${AUDIO_BUNDLE_ALL:-}" ] && ! grep -qx "$i" "$W/CORE" && \
       for d in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64; do [ -e $d/$i ] && break; done; then continue; fi
    ln -s "../lib/$i" "$W/ld/$i"
  done
  # ...unless a target copy is too old for the bundle (ldd says "not found", incl. symbol versions).
  if command -v ldd >/dev/null && LD_LIBRARY_PATH=$W/ld ldd "$W"/lib/*.so* "$W"/lib/alsa-lib/*.so "$W"/bin/pactl 2>&1 | grep -q 'not found'; then
    echo "audio_up: target libs too old for the bundle, using all bundled libs" >&2
    for i in "$W"/lib/*.so*; do ln -sf "../lib/${i##*/}" "$W/ld/"; done
  fi

  # PULSE_COOKIE/CLIENTCONFIG keep clients off $HOME and stop them autospawning a system pulseaudio.
  printf 'autospawn = no\n' > "$W/client.conf"
  # Plugins by absolute path: alsa-lib's compiled-in plugin dir will not exist here.
  cat > "$W/alsa.conf" <<EOF
pcm_type.pulse { lib "$W/lib/alsa-lib/libasound_module_pcm_pulse.so" }
ctl_type.pulse { lib "$W/lib/alsa-lib/libasound_module_ctl_pulse.so" }
pcm.!default { type pulse hint { show on description "PulseAudio null sink (audio bundle)" } }
ctl.!default { type pulse }
pcm.pulse { type pulse }
ctl.pulse { type pulse }
EOF
  # sounddevice finds PortAudio only via ctypes.util.find_library, which (off ldconfig's cache) needs
  # `ld` (or gcc) and `objdump`. These stand-ins sit at the END of PATH, so real binutils win.
  cat > "$W/shim/ld" <<'EOF'
#!/bin/sh
# ld -t [-L DIR]... -o /dev/null -lNAME : print DIR/libNAME.so if present (all ctypes needs)
dirs=; name=
while [ $# -gt 0 ]; do case $1 in -L) dirs="$dirs $2"; shift;; -l*) name=${1#-l};; esac; shift; done
for d in $dirs; do [ -e "$d/lib$name.so" ] && { echo "$d/lib$name.so"; exit 0; }; done; exit 1
EOF
  cat > "$W/shim/objdump" <<'EOF'
#!/bin/sh
# objdump -p -j .dynamic FILE : report a SONAME (the symlink's target, e.g. libportaudio.so.2)
for f; do :; done; t=$(readlink "$f" || echo "$f"); echo "  SONAME               ${t##*/}"
EOF
  chmod +x "$W/shim/ld" "$W/shim/objdump"

  export AUDIO_DIR=$W PULSE_SERVER=unix:$W/run/pulse.sock PULSE_CLIENTCONFIG=$W/client.conf PULSE_COOKIE=$W/run/cookie
  export ALSA_CONFIG_PATH=$W/alsa.conf ALSA_PLUGIN_DIR=$W/lib/alsa-lib
  export LD_LIBRARY_PATH=$W/ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} PATH=$W/bin:$PATH:$W/shim
  [ -n "${XDG_RUNTIME_DIR:-}" ] || export XDG_RUNTIME_DIR=$W/run

  # The daemon gets the whole bundle (a known-good set) plus its modules dir (for libprotocol-native.so).
  : > "$W/pulse.log"
  HOME=$W/home XDG_RUNTIME_DIR=$W/run LD_LIBRARY_PATH=$W/lib:$W/lib/pulse-modules \
  nohup "$W/bin/pulseaudio" --daemonize=no --system=false -n --exit-idle-time=-1 --disallow-exit \
    --use-pid-file=no --disable-shm=yes --realtime=no --high-priority=no --dl-search-path="$W/lib/pulse-modules" \
    --load="module-native-protocol-unix auth-anonymous=1 socket=$W/run/pulse.sock" \
    --load="module-null-sink sink_name=nullsink format=float32le rate=24000 channels=1" \
    --log-target=file:"$W/pulse.log" </dev/null >>"$W/pulse.log" 2>&1 &
  export AUDIO_PA_PID=$!; echo $AUDIO_PA_PID > "$W/pulse.pid"
  for i in $(seq 200); do
    # a failed --load does not stop pulseaudio, so ready = answering AND the sink exists
    pactl info >/dev/null 2>&1 && pactl list short sinks 2>/dev/null | grep -qw nullsink && { echo "audio_up: READY pulseaudio pid $AUDIO_PA_PID, sink nullsink, PULSE_SERVER=$PULSE_SERVER"; return 0; }
    kill -0 $AUDIO_PA_PID 2>/dev/null || break; sleep 0.05
  done
  echo "audio_up: FAILED, no pulseaudio with sink nullsink at $PULSE_SERVER; log:" >&2; grep -E '^E:' "$W/pulse.log" >&2; tail -5 "$W/pulse.log" >&2
  audio_down; return 1
}
audio_down() {   # stop only the daemon this script started
  [ -n "${AUDIO_PA_PID:-}" ] || return 0
  kill "$AUDIO_PA_PID" 2>/dev/null && for _ in $(seq 50); do kill -0 "$AUDIO_PA_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$AUDIO_PA_PID" 2>/dev/null; unset AUDIO_PA_PID; echo "audio_down: stopped"
}
[ "${BASH_SOURCE[0]}" != "$0" ] || echo "audio_up.sh: source it (exports env into your shell)" >&2
_audio_up "$@"
