#!/bin/bash
# The whole pipeline end to end (issue 9): supervisord, the four nodes, `stream-tts bench` over the
# bus, on the models given; every tap event and node log kept beside the result.
#   bash bench/gpu/e2e.sh WORK GGUF COSYVOICE_DIR RESULTS [ROUNDS] [SENTENCES]
# Env: E2E_TAG names the variant in the result files (ttfa-e2e-TAG-round1.json ...);
# E2E_TRANSLATE / E2E_SYNTHESIZE are extra TOML lines for those sections (e.g. "max_tokens = 9").
# On the GPU machine GGUF is the scripted random 7B (bench/translate_gpu.py 7b-write,7b-quantize)
# and COSYVOICE_DIR the real-size random CosyVoice2; playback goes to whatever sound device the
# environment gives (bench/gpu/audio_up.sh: a private PulseAudio's null sink, paced in real time).
# The reading frontend is off: pyopenjtalk's 140 MB dictionary cannot travel to that machine
# (bench/kana.py times it on its own).
set -euo pipefail
W=$1 GGUF=$2 CV=$3 R=$4 ROUNDS=${5:-2} N=${6:-8}
D=$W/e2e
rm -rf "$D" && mkdir -p "$D" "$R"
cat > "$D/pipeline.toml" <<EOF
data_dir = "$D/var"
[translate]
model = "$GGUF"
n_gpu_layers = -1
${E2E_TRANSLATE:-}
[synthesize]
model_dir = "$CV"
frontend = "none"
${E2E_SYNTHESIZE:-}
EOF
T=${E2E_TAG:+$E2E_TAG-}
PY=${PYTHON:-python3}
# supervisord.conf runs the nodes with the repo's .venv/bin/python: on a machine without the
# venv, that is this python (its PYTHONPATH and LD_LIBRARY_PATH pass through supervisord).
if [ ! -x .venv/bin/python ]; then
  mkdir -p .venv/bin && printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v "$PY")" > .venv/bin/python
  chmod +x .venv/bin/python
fi
$PY -m stream_tts.cli tap --config "$D/pipeline.toml" --output "$D/tap.jsonl" & TAP=$!
trap 'kill $TAP 2>/dev/null || true; $PY -m stream_tts.cli down --config "$D/pipeline.toml" >/dev/null 2>&1 || true' EXIT
t0=$SECONDS
$PY -m stream_tts.cli up --config "$D/pipeline.toml" --timeout 600
echo "up in $((SECONDS - t0)) s"
$PY -m stream_tts.cli status --config "$D/pipeline.toml" || true
for r in $(seq 1 "$ROUNDS"); do
  $PY -m bench.ttfa --config "$D/pipeline.toml" --sentences "$N" --json "$R/ttfa-e2e-${T}round$r.json"
done
$PY -m stream_tts.cli down --config "$D/pipeline.toml"
kill $TAP 2>/dev/null || true
trap - EXIT
gzip -c "$D/tap.jsonl" > "$R/ttfa-e2e-${T}tap.jsonl.gz"
tar czf "$R/ttfa-e2e-${T}logs.tgz" -C "$D" pipeline.toml var/log var/played.jsonl
