#!/bin/bash
# Side by side, one go, idle machine, 2 threads, SmolLM2's shape: I = the build before these ops
# (4306027), N = SwiGLU and autodiff softmax as flex ops (commit after 2b93f56); PyTorch eager on the same shapes.
O=results/bench/2026-12-05-fused-mlp-softmax; cd /work/main
A="--presets pretrained-lora-top8 --benchmarks train,generate,ppo --runs 3 --warmup 1"
for round in 1 2; do
  for B in I N; do
    s=$(date +%s); RAYON_NUM_THREADS=2 /tmp/s2rm-$B bench $A --output $O/${B}_$round.csv > $O/${B}_$round.log 2>&1; echo "$B round $round: $(( $(date +%s) - s )) s"
  done
  s=$(date +%s); .venv-bench/bin/python bench/torch_reference.py $A --threads 2 --output $O/torch_$round.csv > $O/torch_$round.log 2>&1; echo "torch round $round: $(( $(date +%s) - s )) s"
done
# Round 3 (train and PPO only, 5 runs): run after rounds 1-2 disagreed on training.
# for B in I N; do RAYON_NUM_THREADS=2 /tmp/s2rm-$B bench --presets pretrained-lora-top8 --benchmarks train,ppo --runs 5 --warmup 1 --output $O/${B}_3.csv; done
