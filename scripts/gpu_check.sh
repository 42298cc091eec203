#!/usr/bin/env bash
# The GPU check, for the day a GPU is lent: every model family's tiny random model through every stage
# (prepare, synthesize, align, evaluate, export --merge) on CUDA in bf16, then evaluation of a pretrained
# model spread with --device-map auto, then a 2-process run under accelerate. One line per check:
#   PASS|FAIL|SKIP <check> (<seconds> s)[: why]
# and a last line with the counts; the exit status is the number of failures (0: all passed). Without a GPU it
# says so and exits 0. A few minutes on one GPU (each command starts a Python process).
#   bash scripts/gpu_check.sh            # SEA_GPU_CHECK_DEVICE=cpu runs the same checks on the CPU (float32)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
DEVICE=${SEA_GPU_CHECK_DEVICE:-cuda}
if [ "$DEVICE" = cuda ]; then
  n=$($PY -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null || echo 0)
  if [ "$n" = 0 ]; then
    echo "gpu_check: no CUDA GPU on this machine (torch sees none): nothing to check"
    exit 0
  fi
  DTYPE=bfloat16
else
  n=0
  DTYPE=float32
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
SEA="$PY -m sea_align.cli"
pass=0 fail=0 skip=0

check() {  # check NAME COMMAND...: runs it, prints one line
  local name=$1 t0 t
  shift
  t0=$(date +%s.%N)
  if "$@" >"$W/log" 2>&1; then
    t=$(awk -v a="$t0" -v b="$(date +%s.%N)" "BEGIN{print b - a}")
    printf 'PASS %s (%.1f s)\n' "$name" "$t"
    pass=$((pass + 1))
  else
    t=$(awk -v a="$t0" -v b="$(date +%s.%N)" "BEGIN{print b - a}")
    printf 'FAIL %s (%.1f s): %s\n' "$name" "$t" "$(grep -v '^\s*$' "$W/log" | tail -1)"
    fail=$((fail + 1))
  fi
}

skipped() {
  echo "SKIP $1: $2"
  skip=$((skip + 1))
}

on=(--device "$DEVICE" --dtype "$DTYPE")
check "prepare" $SEA prepare --data src/sea_align/data/tiny_safety.jsonl --out "$W/p.jsonl"
check "bench image" $SEA bench-data benign-typo --limit 1 --out "$W/b-image"
check "bench video" $SEA bench-data benign-video --limit 1 --types TYPO --out "$W/b-video"
check "bench audio" $SEA bench-data benign-audio --limit 1 --types KPT --out "$W/b-audio"
for fm in llava:image llava_next_video:video qwen2_vl:image qwen2_vl:video qwen2_5_vl:image qwen2_audio:audio; do
  fam=${fm%%:*} mod=${fm##*:} d="$W/$fam-$mod" m="tiny-random-${fm%%:*}"
  check "$fam $mod synthesize" $SEA synthesize --model "$m" --modality "$mod" --data "$W/p.jsonl" --out "$d/emb" \
    --max-steps 3 "${on[@]}"
  check "$fam $mod align" $SEA align --model "$m" --data "$W/p.jsonl" --embeddings "$d/emb" --out "$d/adapter" \
    --epochs 1 "${on[@]}"
  check "$fam $mod evaluate" $SEA evaluate --model "$m" --adapter "$d/adapter" --bench "$W/b-$mod/bench.jsonl" \
    --out "$d/eval" --max-new-tokens 8 "${on[@]}"
  check "$fam $mod export --merge" $SEA export --adapter "$d/adapter" --model "$m" --out "$d/merged" --merge "${on[@]}"
done
if [ "$DEVICE" = cuda ]; then
  check "device-map auto evaluate" $SEA evaluate --model "$W/llava-image/merged" --bench "$W/b-image/bench.jsonl" \
    --out "$W/spread" --max-new-tokens 8 --dtype "$DTYPE" --device-map auto
else
  skipped "device-map auto evaluate" "needs CUDA"
fi
if [ "${n:-0}" -ge 2 ]; then
  L=(accelerate launch --config_file src/sea_align/configs/accelerate/ddp.yaml --num_processes 2 -m sea_align.cli)
  check "2 processes synthesize" "${L[@]}" synthesize --model tiny-random-llava --modality image \
    --data "$W/p.jsonl" --out "$W/ddp-emb" --max-steps 3 --dtype "$DTYPE"
  check "2 processes align" "${L[@]}" align --model tiny-random-llava --data "$W/p.jsonl" --embeddings "$W/ddp-emb" \
    --out "$W/ddp-adapter" --epochs 1 --dtype "$DTYPE"
  check "2 processes evaluate" "${L[@]}" evaluate --model tiny-random-llava --bench "$W/b-image/bench.jsonl" \
    --out "$W/ddp-eval" --max-new-tokens 8 --dtype "$DTYPE"
else
  skipped "2 processes" "needs 2 GPUs, this machine has ${n:-0}"
fi
echo "gpu_check: $pass passed, $fail failed, $skip skipped on $DEVICE ($DTYPE)"
exit "$fail"
