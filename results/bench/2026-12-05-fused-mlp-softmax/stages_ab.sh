#!/bin/bash
# Real-shape A/B: the pretrained profile's own batches and lengths, 12 steps per trained stage.
cd /work/main
S="--profile pretrained --seeds 1 --sequential --set sft.steps=12 --set scalar_rm.steps=12 --set seq2seq_rm.steps=12 --set seq2seq_rm.curve_every=12 --set seq2seq_rm.curve_pairs=4 --set ppo.steps=2 --set eval.max_prompts_per_set=2 --set eval.max_new_tokens=6 --set eval.max_rm_pairs=8"
for round in 1 2; do
  for B in I N; do
    rm -rf /tmp/ab/$B$round
    s=$(date +%s); RAYON_NUM_THREADS=2 /tmp/s2rm-$B run experiments/safety.toml $S --output /tmp/ab/$B$round > /tmp/ab/$B$round.log 2>&1; echo "$B round $round: rc=$? $(( $(date +%s) - s )) s"
  done
done
