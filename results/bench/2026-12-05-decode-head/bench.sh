#!/bin/bash
# Generation after two changes that keep every bit (src/model/generate.rs, src/fused/exp.rs):
# the tied output head made contiguous once per generate call (DecodeHead), and the host sampler's
# f64 exps a register at a time. Side by side, in turn, three rounds, 2 threads each:
#   before = HEAD 57ef34c (sha256 3dddfd2a...), exp64 = + the f64 exps only (generate only),
#   after = both, then PyTorch 2.5.1 eager (bench/torch_reference.py), at pretrained-lora-top8.
O=${O:-results/bench/2026-12-05-decode-head}; cd /work/main
A="--presets pretrained-lora-top8 --benchmarks generate,ppo --runs 3 --warmup 1"
G="--presets pretrained-lora-top8 --benchmarks generate --runs 3 --warmup 1"
for round in ${ROUNDS:-1 2 3}; do
  s=$(date +%s); RAYON_NUM_THREADS=2 /tmp/s2rm-base bench $A --output $O/before_$round.csv > $O/before_$round.log 2>&1; echo "before round $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); RAYON_NUM_THREADS=2 /tmp/s2rm-exp64 bench $G --output $O/exp64_$round.csv > $O/exp64_$round.log 2>&1; echo "exp64 round $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); RAYON_NUM_THREADS=2 /tmp/s2rm-head bench $A --output $O/after_$round.csv > $O/after_$round.log 2>&1; echo "after round $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); .venv-bench/bin/python bench/torch_reference.py $A --threads 2 --output $O/torch25_$round.csv > $O/torch25_$round.log 2>&1; echo "torch 2.5 round $round: $(( $(date +%s) - s )) s"
done
