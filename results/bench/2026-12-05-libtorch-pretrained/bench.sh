#!/bin/bash
# Side by side, one go, idle machine, 2 threads, SmolLM2's shape (preset pretrained-lora-top8):
# burn on flex (the default build), burn on LibTorch 2.9.0 (`make build-libtorch`: the `libtorch`
# feature, tch 0.22), PyTorch 2.9.0 eager (.venv-tch: the same LibTorch) and PyTorch 2.5.1 eager
# (.venv-bench: the reference of the earlier flex measurements).
O=results/bench/2026-12-05-libtorch-pretrained; cd /work/main
A="--presets pretrained-lora-top8 --benchmarks train,generate,ppo --runs 3 --warmup 1"
TCH_LIB=$(.venv-tch/bin/python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
for round in ${ROUNDS:-1 2}; do
  s=$(date +%s); RAYON_NUM_THREADS=2 target/debug/s2rm bench $A --output $O/flex_$round.csv > $O/flex_$round.log 2>&1; echo "flex round $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); LD_LIBRARY_PATH=$TCH_LIB OMP_NUM_THREADS=2 target/libtorch/debug/s2rm bench --device libtorch $A --output $O/tch_$round.csv > $O/tch_$round.log 2>&1; echo "libtorch round $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); .venv-tch/bin/python bench/torch_reference.py $A --threads 2 --output $O/torch29_$round.csv > $O/torch29_$round.log 2>&1; echo "torch 2.9 round $round: $(( $(date +%s) - s )) s"
  s=$(date +%s); .venv-bench/bin/python bench/torch_reference.py $A --threads 2 --output $O/torch25_$round.csv > $O/torch25_$round.log 2>&1; echo "torch 2.5 round $round: $(( $(date +%s) - s )) s"
done
