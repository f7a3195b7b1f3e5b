#!/bin/bash
# Build llama-cpp-python 0.3.36 with CUDA for sm_90 on the GPU machine, from the trimmed sdist
# carried as .device/llama-src.tgz (no mtmd: LLAVA_BUILD=OFF). The wheel lands in /tmp/llama-wheel.
set -euo pipefail
cd /tmp
rm -rf /tmp/llama-src /tmp/llama-wheel && mkdir -p /tmp/llama-wheel
tar xzf "$1" -C /tmp
# LLAMA_CMAKE_EXTRA, e.g. "-DGGML_CUDA_FA=OFF": the engine leaves flash attention off, and its
# kernels are a large share of the 5-minute build
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF ${LLAMA_CMAKE_EXTRA:-}"
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
echo "nvcc: $(command -v nvcc) $(nvcc --version | tail -1)"
ls /usr/local/cuda/lib64/libcublas* 2>/dev/null | head -3 || true
time python3 -m pip wheel -v --no-build-isolation --no-deps --no-index --no-cache-dir \
  --config-settings=build-dir=/tmp/llama-build -w /tmp/llama-wheel /tmp/llama-src
ls -la /tmp/llama-wheel
