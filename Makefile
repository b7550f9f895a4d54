SHELL := /bin/bash
# s2rm — reproduction harness for "Sequence to Sequence Reward Modeling" (AAAI 2025).
CARGO ?= cargo
BIN := target/release/s2rm
EXPERIMENTS := safety

.PHONY: all build test reproduce-safety figures validate clean-results help

help:
	@echo "make reproduce-safety   run the safety experiment (default profile) -> results/safety/"
	@echo "make test               the whole test suite (CPU only)"
	@echo "make figures            re-render tables, figures and REPORT.md from results/*/ CSVs"
	@echo "make validate           check every spec in experiments/"

build: $(BIN)

$(BIN): Cargo.toml $(shell find src -name '*.rs')
	$(CARGO) build --release

reproduce-safety: $(BIN)
	$(BIN) run experiments/safety.toml --profile default

figures: $(BIN)
	@for e in $(EXPERIMENTS); do \
		if [ -f results/$$e/generations.csv ]; then $(BIN) report results/$$e; fi; \
	done

validate: $(BIN)
	$(BIN) validate experiments/*.toml

test:
	$(CARGO) test --no-fail-fast
