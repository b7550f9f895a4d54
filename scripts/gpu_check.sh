#!/usr/bin/env bash
# GPU check: the same s2rm binary on wgpu (Vulkan) and on the CPU — SmolLM2-135M-Instruct load
# time, generation speed and perplexity, the smoke profile end to end on wgpu, then the safety
# experiment's `gpu` profile (SmolLM2) shortened to fit a few minutes. Everything it measures lands
# in $OUT (one text log per step and a tarball per results folder).
#
#   OUT=/tmp/gpu-check scripts/gpu_check.sh
#
# Linux + NVIDIA needs the Vulkan loader and glvnd (Debian/Ubuntu: libvulkan1 libglvnd0 libglx0
# libegl1); see README.md, section "GPU".
set -u
OUT=${OUT:-/tmp/gpu-check}
BIN=${BIN:-target/debug/s2rm}
GGUF=${GGUF:-models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}
DATA=${DATA:-../shared/datasets}
SAFETY_TIMEOUT=${SAFETY_TIMEOUT:-300}
mkdir -p "$OUT"
step() { echo "== $(date +%T) $*"; }

step "adapter"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"

if [ -z "${SKIP_SAMPLES:-}" ]; then
step "sample on wgpu"
timeout 150 "$BIN" sample "$GGUF" --device wgpu --batch 32 --max-new-tokens 48 2>&1 | tee "$OUT/sample_wgpu.txt"

step "sample on cpu"
timeout 120 "$BIN" sample "$GGUF" --device cpu --batch 32 --max-new-tokens 48 2>&1 | tee "$OUT/sample_cpu.txt"

step "smoke profile on wgpu"
timeout 150 "$BIN" run experiments/safety.toml --profile smoke --device wgpu --data-dir "$DATA" --output /tmp/smoke_wgpu \
  > "$OUT/smoke_wgpu.log" 2>&1
echo "exit $?"; tail -4 "$OUT/smoke_wgpu.log"
tar czf "$OUT/smoke_wgpu.tgz" -C /tmp smoke_wgpu 2>/dev/null
fi

step "safety, gpu profile (SmolLM2-135M), one seed, shortened"
timeout "$SAFETY_TIMEOUT" "$BIN" run experiments/safety.toml --profile gpu --device wgpu --data-dir "$DATA" \
  --output /tmp/safety_smollm2 --seeds 1 \
  --set sft.steps=${SFT_STEPS:-60} --set judge.steps=${JUDGE_STEPS:-100} --set scalar_rm.steps=${RM_STEPS:-60} \
  --set seq2seq_rm.steps=${RM_STEPS:-60} --set ppo.steps=${PPO_STEPS:-20} --set ppo.batch_size=16 \
  --set ppo.minibatch_size=8 --set ppo.max_new_tokens=${NEW_TOKENS:-48} \
  --set eval.max_prompts_per_set=${EVAL_PROMPTS:-60} --set eval.max_new_tokens=${NEW_TOKENS:-48} \
  > "$OUT/safety_smollm2.log" 2>&1
echo "exit $?"; grep -E "^stage|done in|error" "$OUT/safety_smollm2.log" | tail -30
tar czf "$OUT/safety_smollm2.tgz" -C /tmp safety_smollm2 2>/dev/null
step "end"
