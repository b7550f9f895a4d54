#!/bin/bash
# Generation with three layouts of grouped-query attention in decode steps, in turn, 2 threads each,
# at pretrained-lora-top8 (4 prompts of 32 tokens, 32 new tokens: caches up to 64 positions).
# Three builds of HEAD 464185c, differing only in the attention:
#   copy = the cache copied per query head (the batched forwards' path, used everywhere)
#   fold = 464185c: group axis beside the rows (burn folds a step's 3 one-row products into one)
#   fix  = group axis before the key/value heads (no fold, the copy's bits; not committed: no faster)
# sha256: copy be8f5da5b9fdddb8, fold 55ff4291ab24434e, fix 40a1d248c187035a
O=${O:-results/bench/2026-12-06-gqa-bits}; cd /work/main
G="--presets pretrained-lora-top8 --benchmarks generate --runs 5 --warmup 1"
for round in ${ROUNDS:-1 2 3}; do
  for b in copy fold fix; do
    s=$(date +%s); RAYON_NUM_THREADS=2 /tmp/s2rm-$b bench $G --output $O/${b}_$round.csv > $O/${b}_$round.log 2>&1; echo "$b round $round: $(( $(date +%s) - s )) s"
  done
done
