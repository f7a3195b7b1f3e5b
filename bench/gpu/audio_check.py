"""Check the real-time audio path (after `source bench/gpu/audio_up.sh ...`): plays a 440 Hz float32
mono sine through sounddevice.OutputStream (callback) on ALSA `default`, prints device, latency, wall
time, where the audio libraries were loaded from, and (with parec) how well nullsink.monitor's
recording matches. Exits 1 if there is no device, the play is not paced, the libraries do not come
from $AUDIO_DIR (--expect-bundle) or the recording does not match. Needs only numpy + sounddevice."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=2.0)
ap.add_argument("--rate", type=int, default=24000)
ap.add_argument("--device", default=None, help="default: ALSA default")
ap.add_argument("--expect-bundle", action="store_true", help="fail unless the libs are under $AUDIO_DIR")
ap.add_argument("--no-record", action="store_true")
a = ap.parse_args()
fail: list[str] = []

try:
    import sounddevice as sd

    dev = sd.query_devices(a.device, kind="output")
except Exception as e:  # OSError: no PortAudio; sd.PortAudioError: no device
    print(f"NO DEVICE: {type(e).__name__}: {e}")
    sys.exit(1)
print(f"portaudio: {sd._libname} ({sd.get_portaudio_version()[1]})")
print(f"device: {dev['name']!r} hostapi={sd.query_hostapis(dev['hostapi'])['name']}")

# 200 ms of silence on both sides: PulseAudio drops the first/last tens of ms (notes/audio-path.md).
n = int(a.seconds * a.rate)
t = np.arange(n) / a.rate
tone = (np.linspace(0.1, 0.6, n) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
pad = np.zeros(int(0.2 * a.rate), np.float32)
sig = np.concatenate([pad, tone, pad])

rec_chunks: list[bytes] = []
rec = None
if not a.no_record and shutil.which("parec"):
    rec = subprocess.Popen(
        [
            "parec",
            "-d",
            "nullsink.monitor",
            "--format=float32le",
            f"--rate={a.rate}",
            "--channels=1",
            "--latency-msec=20",
        ],
        stdout=subprocess.PIPE,
    )
    if rec.stdout is None:
        raise SystemExit("parec gave no stdout")
    pipe: IO[bytes] = rec.stdout

    def drain() -> None:
        rec_chunks.extend(iter(lambda: pipe.read(4096), b""))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    time.sleep(0.3)

pos = 0
done = threading.Event()
cb_times: list[float] = []


def cb(out, frames, _time, status):
    global pos
    cb_times.append(time.perf_counter())
    chunk = sig[pos : pos + frames]
    out[: len(chunk), 0] = chunk
    out[len(chunk) :, 0] = 0
    pos += frames
    if pos >= len(sig):
        raise sd.CallbackStop


stream = sd.OutputStream(
    samplerate=a.rate, channels=1, dtype="float32", device=a.device, callback=cb, finished_callback=done.set
)
t0 = time.perf_counter()
with stream:
    done.wait(a.seconds + 10)
    wall = time.perf_counter() - t0
    latency = stream.latency
dur = len(sig) / a.rate
span = cb_times[-1] - cb_times[0] if cb_times else 0.0
# the ALSA pulse path stalls ~1.3-1.9 s after PortAudio's first few (prefill) callbacks, system stack too
stall = float(np.max(np.diff(cb_times))) if len(cb_times) > 1 else 0.0
print(
    f"played {dur:.2f} s ({a.seconds:.2f} s tone + 0.4 s silence) in {wall:.3f} s wall"
    f" (callbacks spanned {span:.3f} s,"
    f" {len(cb_times)} calls, largest gap {stall:.3f} s); output latency {latency:.4f} s"
)
# paced = the callbacks are pulled at playback speed (an unpaced sink drains them in milliseconds)
if not (dur - 0.25 <= span and wall <= dur + 2.0):
    fail.append(f"not paced: callbacks spanned {span:.3f} s, wall {wall:.3f} s for {dur:.2f} s")


def mapped(pid: str, pattern: str) -> list[str]:
    """The shared libraries process `pid` has mapped whose path matches `pattern`."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({p for p in re.findall(r"\s(/\S+\.so[.\d]*)$", maps, re.M) if re.search(pattern, p)})


libs = mapped("self", "portaudio|asound|pulse")
pa_pid = os.environ.get("AUDIO_PA_PID")
if pa_pid and os.path.exists(f"/proc/{pa_pid}/maps"):
    libs += mapped(pa_pid, "module|protocol|pulsecore")
print("loaded:\n  " + "\n  ".join(libs))
bundle = os.environ.get("AUDIO_DIR", "")
if a.expect_bundle and (
    not bundle or any(not os.path.realpath(p).startswith(os.path.realpath(bundle)) for p in libs)
):
    fail.append(f"libraries not all from AUDIO_DIR={bundle!r}")

if rec is not None:
    time.sleep(0.5)
    rec.send_signal(signal.SIGINT)
    rec.wait(5)
    reader.join(5)
    raw = b"".join(rec_chunks)
    got = np.frombuffer(raw[: len(raw) // 4 * 4], "<f4")
    corr, exact = 0.0, 0.0
    if len(got) >= n:
        # lag from an FFT cross-correlation, then Pearson correlation and exact-sample share at that lag
        m = 1 << int(np.ceil(np.log2(len(got) + n)))
        xc = np.fft.irfft(np.fft.rfft(got, m) * np.conj(np.fft.rfft(tone, m)), m)
        lag = int(np.argmax(xc[: len(got) - n + 1]))
        seg = got[lag : lag + n]
        corr = float(np.corrcoef(seg, tone)[0, 1])
        exact = float(np.mean(seg == tone))
        print(
            f"recorded {len(got) / a.rate:.2f} s from nullsink.monitor; tone at +{lag / a.rate:.3f} s,"
            f" correlation {corr:.6f}, bit-exact samples {exact:.1%}"
        )
    else:
        print(f"recorded only {len(got)} samples")
    if corr < 0.99:
        fail.append(f"recording does not match (correlation {corr:.4f})")

print("AUDIO CHECK " + ("OK" if not fail else "FAILED: " + "; ".join(fail)))
sys.exit(1 if fail else 0)
