#!/bin/bash
O=results/bench/2026-12-05-flex-logprobs; cd /work/main
A="--presets pretrained-lora-top8 --benchmarks train,ppo --runs 3 --warmup 1"
for B in R F G; do
  s=$(date +%s); RAYON_NUM_THREADS=2 /tmp/s2rm-$B bench $A --output $O/r3_$B.csv > $O/r3_$B.log 2>&1; echo "$B round 3: $(( $(date +%s) - s )) s"
done
