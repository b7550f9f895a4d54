#!/bin/bash
# The generate row alone (4 prompts, 32 new tokens: about 3 s a run, so noisy), in short turns:
# 8 turns of before / exp64 / after / PyTorch 2.5.1, each 1 warm-up and 5 timed runs, 2 threads.
# The binaries are bench.sh's (one directory up).
O=${O:-results/bench/2026-12-05-decode-head/alternating}; cd /work/main
G="--presets pretrained-lora-top8 --benchmarks generate --runs 5 --warmup 1"
for t in ${TURNS:-1 2 3 4 5 6 7 8}; do
  for b in base exp64 head; do RAYON_NUM_THREADS=2 /tmp/s2rm-$b bench $G --output $O/${b}_$t.csv > /dev/null 2>&1; done
  .venv-bench/bin/python bench/torch_reference.py $G --threads 2 --output $O/torch25_$t.csv > /dev/null 2>&1
  echo "turn $t: $(for b in base exp64 head torch25; do printf '%s %s  ' $b $(tail -1 $O/${b}_$t.csv | cut -d, -f7); done)"
done
