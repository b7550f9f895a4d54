#!/bin/bash
# before (R: the build of the rerun) / after (F: the flex next-token op) / after + jemalloc / PyTorch eager, alternated, 2 rounds.
O=results/bench/2026-12-05-flex-logprobs; cd /work/main
JE=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
A="--presets pretrained-lora-top8 --benchmarks train,generate,ppo --runs 3 --warmup 1"
for round in 1 2; do
  s=$(date +%s); RAYON_NUM_THREADS=2 /tmp/s2rm-R bench $A --output $O/before_$round.csv > $O/before_$round.log 2>&1; echo "before $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); RAYON_NUM_THREADS=2 /tmp/s2rm-F bench $A --output $O/after_$round.csv > $O/after_$round.log 2>&1; echo "after $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); LD_PRELOAD=$JE RAYON_NUM_THREADS=2 /tmp/s2rm-F bench $A --output $O/after_jemalloc_$round.csv > $O/after_jemalloc_$round.log 2>&1; echo "after+jemalloc $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); .venv-bench/bin/python bench/torch_reference.py --presets pretrained-lora-top8 --benchmarks train,generate,ppo --runs 3 --warmup 1 --threads 2 --output $O/torch_$round.csv > $O/torch_$round.log 2>&1; echo "torch $round: $(( $(date +%s) - s )) s"
done
