#!/bin/bash
# Grouped-query attention without copying keys and values per query head (src/model/mod.rs,
# Block::forward). Side by side, in turn, two rounds: "before" is flex with expf at opt-level 3
# (fe4704b's build, sha256 d457ffdd...), "after" the same with this change, then PyTorch 2.5.1 eager.
# Generation and a PPO step at pretrained-lora-top8. Run twice: first with the grouping in every
# forward (after: sha256 eaf860c2..., CSVs here), then only where a KV cache is in use (after:
# sha256 ba287729..., O=.../gqa/decode_only; the version committed).
O=${O:-results/bench/2026-12-05-flex-expf/gqa}; cd /work/main
A="--presets pretrained-lora-top8 --benchmarks generate,ppo --runs 3 --warmup 1"
for round in ${ROUNDS:-1 2}; do
  s=$(date +%s); RAYON_NUM_THREADS=2 ${OLD:-/tmp/s2rm-X} bench $A --output $O/before_$round.csv > $O/before_$round.log 2>&1; echo "before round $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); RAYON_NUM_THREADS=2 ${NEW:-target/debug/s2rm} bench $A --output $O/after_$round.csv > $O/after_$round.log 2>&1; echo "after round $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); .venv-bench/bin/python bench/torch_reference.py $A --threads 2 --output $O/torch25_$round.csv > $O/torch25_$round.log 2>&1; echo "torch 2.5 round $round: $(( $(date +%s) - s )) s"
done
