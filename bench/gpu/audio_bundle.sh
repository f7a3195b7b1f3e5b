#!/bin/bash
# Run HERE (Debian 12 with pulseaudio, pulseaudio-utils, libportaudio2, libasound2-plugins installed).
# Packs a relocatable PulseAudio(null sink) + ALSA pulse plugin + PortAudio into .device/audio.tgz, for
# a target where nothing can be installed (bench/gpu/audio_up.sh unpacks and starts it). The Python
# side (sounddevice, cffi) comes with bench/gpu/prepare.sh's wheels.
set -euo pipefail
cd "$(dirname "$0")/../.."
S=$(mktemp -d); B=$S/audio; mkdir -p $B/bin $B/lib/pulse-modules $B/lib/alsa-lib
A=/usr/lib/x86_64-linux-gnu
MOD=$(dirname "$(dpkg -L pulseaudio | grep '/modules/module-null-sink.so$')")   # /usr/lib/pulse-16.1+dfsg1/modules

cp -L /usr/bin/pulseaudio /usr/bin/pacat /usr/bin/pactl $B/bin/
ln -s pacat $B/bin/parec
# libprotocol-native is what module-native-protocol-unix NEEDs; found via LD_LIBRARY_PATH on the target
# because the modules' RUNPATH ($MOD) will not exist there.
cp -L $MOD/module-null-sink.so $MOD/module-native-protocol-unix.so $MOD/libprotocol-native.so $B/lib/pulse-modules/
cp -L $A/alsa-lib/libasound_module_pcm_pulse.so $A/alsa-lib/libasound_module_ctl_pulse.so $B/lib/alsa-lib/
cp -L $A/libportaudio.so.2 $A/libasound.so.2 $B/lib/
# ctypes.util.find_library('portaudio') (how sounddevice finds it) looks for the unversioned name.
ln -s libportaudio.so.2 $B/lib/libportaudio.so

# Shared-library closure. glibc (and ld.so) must be the target's own: a foreign libc would not match
# the target's ld.so/kernel setup, and glibc is backward compatible (needs >= 2.36, Debian 12's).
GLIBC='^(libc|libm|libpthread|libdl|librt|libresolv|libutil|libanl|ld-linux-x86-64)\.so'
for f in $B/bin/pulseaudio $B/bin/pacat $B/bin/pactl $B/lib/*.so.* $B/lib/pulse-modules/*.so $B/lib/alsa-lib/*.so; do
  ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $GLIBC || $name == libprotocol-native.so ]] && continue
  [ -e $B/lib/$name ] || cp -L "$path" $B/lib/$name     # stored under its NEEDED name (the soname)
done
# Which libs audio_up.sh must always take from the bundle; any other may come from the target if it has it.
printf '%s\n' libportaudio.so.2 libportaudio.so libasound.so.2 libpulse.so.0 libpulsecommon-16.1.so libpulsecore-16.1.so > $B/CORE
dpkg-query -W -f '${Package} ${Version}\n' pulseaudio pulseaudio-utils libportaudio2 libasound2 libasound2-plugins > $B/VERSIONS

mkdir -p .device
tar -C $S -czf .device/audio.tgz audio
echo "bundle: .device/audio.tgz $(du -h .device/audio.tgz | cut -f1) ($(ls $B/lib | wc -l) libs, $(du -sh $B | cut -f1) unpacked)"
rm -rf $S
