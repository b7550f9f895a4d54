#!/bin/bash
# Side by side, one go, idle machine, 2 threads, SmolLM2's shape (preset pretrained-lora-top8):
# flex before (HEAD e63f835: libm's expf element by element in the fused ops, our crate at
# opt-level 1) and after (`src/fused/expf.rs`: glibc's expf sixteen at a time; our crate at opt-level 3),
# and PyTorch 2.5.1 eager (.venv-bench, the reference of every earlier flex measurement), in turn.
# Rounds 1 and 2, then 3 and 4 (ROUNDS="3 4"), one after the other.
O=results/bench/2026-12-05-flex-expf; cd /work/main
A="--presets pretrained-lora-top8 --benchmarks train,generate,ppo --runs 3 --warmup 1"
for round in ${ROUNDS:-1 2}; do
  s=$(date +%s); RAYON_NUM_THREADS=2 ${OLD:-/tmp/s2rm_old} bench $A --output $O/before_$round.csv > $O/before_$round.log 2>&1; echo "before round $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); RAYON_NUM_THREADS=2 ${NEW:-target/debug/s2rm} bench $A --output $O/after_$round.csv > $O/after_$round.log 2>&1; echo "after round $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); .venv-bench/bin/python bench/torch_reference.py $A --threads 2 --output $O/torch25_$round.csv > $O/torch25_$round.log 2>&1; echo "torch 2.5 round $round: $(( $(date +%s) - s )) s"
done
