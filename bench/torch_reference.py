#!/usr/bin/env python3
"""PyTorch CPU reference for `s2rm bench`: the same work, in eager fp32, with the same CSV schema.

Run (torch 2.x with CPU support is needed: `pip install torch`):

    python3 bench/torch_reference.py --threads 2
    python3 bench/compare.py results/bench/burn.csv results/bench/torch.csv

The numbers are meant to be compared row by row with the burn side's CSV (see bench/compare.py).

Model, "gpt" family (presets tiny, small, issue; mirrors src/model/mod.rs)
---------------------------------------------------------------------------
* token embedding `Embedding(V, d)` + learned position embedding `Embedding(128, d)`; the
  position of a token is the number of real (non-pad) tokens before it in its row.
* `n_layers` pre-LN blocks: `x = x + proj(attn(ln1(x)))`, `x = x + fc2(gelu(fc1(ln2(x))))`;
  LayerNorm eps 1e-5 with affine, every Linear has a bias, `qkv` is one fused `Linear(d, 3d)`,
  GELU is exact (erf).
* attention (default, the one compared against burn) is written out:
  `softmax(q @ k^T / sqrt(d_head) + bias, -1) @ v`, where `bias [B, 1, T, Tk]` is an additive
  float mask (0 allowed, -1e9 masked: causal + key padding) built for every forward, as the Rust
  side does. `--sdpa` uses `F.scaled_dot_product_attention(q, k, v, attn_mask=bias)` instead
  (for information only; its rows are NOT what burn should be compared against).
* final LayerNorm, then `lm_head = Linear(d, V, bias=False)` (not tied), `value_head = Linear(d, 1)`,
  `score_head = Linear(d, 1)`. Init normal(0, 0.02), zero biases.
* optimiser: `torch.optim.Adam(betas=(0.9, 0.999), eps=1e-8)`, no weight decay, default (foreach)
  implementation; before every step each parameter's gradient is clipped to norm 1.0 on its own
  (burn's per-parameter norm clipping).
* `torch.set_num_threads(--threads)` (default 2, the Rust side's thread count),
  `torch.set_num_interop_threads(1)`, fp32, no autocast, mkldnn left at its default.

Model, "llama" family (presets pretrained*: SmolLM2-135M's shape, random weights)
---------------------------------------------------------------------------------
* token embedding `Embedding(V, d)`, no position embedding: rotary positions (theta 100000) on
  queries and keys, Hugging Face's `rotate_half` convention (frequency i = theta^(-2i/d_head)
  drives dims i and i + d_head/2; `x * cos + cat(-x2, x1) * sin`), at the same positions as above
  (real tokens before it); the cos/sin tables are built once per forward, as `rope_tables` does.
* `n_layers` pre-norm blocks: `x = x + proj(attn(rms1(x)))`, `x = x + down(silu(g) * u)` with
  `[g, u] = gate_up(rms2(x))` (gate and up fused into one `d -> 2 d_ff` product); RMSNorm
  `x / sqrt(mean(x^2) + 1e-5) * weight` (burn's formula); no Linear has a bias; `qkv` is one fused
  `d -> d + 2 n_kv_heads d_head` product; grouped-query attention: the cache holds the `n_kv_heads`
  rotated keys/values, and query head j reads key/value head j // (n_heads / n_kv_heads)
  (repeated before the products); attention as in the gpt family. Every linear takes its
  `[B, T, D]` input as one `[B*T, D]` matrix (src/model/lora.rs `adapted`).
* final RMSNorm; the LM head is tied to the token embedding: `logits = h @ tok_emb.weight.T`;
  `score_head`, `value_head` = `Linear(d, 1)` (with bias) initialised to zero, as the Rust side
  does; other weights normal(0, 0.02), RMSNorm weights 1.
* LoRA (`pretrained-lora*`, src/model/lora.rs): rank 16, alpha 32 on `qkv`, `proj`, `gate_up`,
  `down` of every block (`pretrained-lora-top<K>`: of the last K blocks alone) as a side path
  `y = x @ W.T + (alpha / r) * ((x @ A) @ B)`, `A [d_in, r] ~ N(0, std 1/r)`, `B [r, d_out] = 0`.
  Only the adapters and the score/value heads have requires_grad (embedding, norms and every base
  weight are frozen), so no gradient reaches the base, and the backward pass stops at the lowest
  adapted block; Adam and the per-parameter clipping see those tensors alone. The generation
  model, the PPO policy and the PPO reference carry adapters (the Rust reference is the SFT model
  itself, adapters included); the PPO reward model does not.

Background load: torch's OpenMP threads spin-wait at every parallel region. If other processes
keep the cores busy (even at nice 19 when the kernel's autogroup scheduling is on), a 2-thread run
can be several times slower than a 1-thread run. Seen here: 64-token generation went from 0.27 s
to 1.8 s. Benchmark on an idle machine, or run with `OMP_WAIT_POLICY=PASSIVE python3 ...` (it must
be set before torch starts; the banner on stderr shows it). On an idle machine the default
(spinning) is the fair setting.

Presets (`--presets`, default `tiny,small`; max_seq_len 128 for all)
---------------------------------------------------------------------
    tiny : gpt, V=2048, d=128, n_layers=2, n_heads=4, d_ff=512
    small: gpt, V=2048, d=192, n_layers=3, n_heads=6, d_ff=768
    issue: gpt, V=4096, d=128, n_layers=2, n_heads=4, d_ff=512   (only when asked)
    pretrained: llama, V=49152, d=576, n_layers=30, n_heads=9, n_kv_heads=3, d_ff=1536,
        trained in full (only when asked, as are the two below)
    pretrained-lora: the same, LoRA on every block, base frozen
    pretrained-lora-top<K>: the same, LoRA on the last K blocks only (e.g. pretrained-lora-top8)

Shapes per preset (`shapes`, as `shapes()` in src/bench.rs). The text below gives the gpt
presets' numbers; the pretrained presets use a quarter of the rows:
                      gpt presets            pretrained*
    train           : 5 steps of 16 x 128    2 steps of 4 x 128
    generate        : 16 x (32 + 64 new)     4 x (32 + 32 new)
    ppo             : 16 rows, minibatch 8,  8 rows, minibatch 4,
                      32 + 40 new tokens     32 + 32 new tokens

Benchmarks (`--benchmarks`, default `train,generate,ppo`)
-----------------------------------------------------------
Each benchmark runs `--warmup` (default 1) untimed repetitions, then `--runs` (default 5) timed
repetitions (time.perf_counter); the CSV gives the median, min and max over the timed runs.

* `train` (tokens/s): one repetition = 5 optimiser steps of next-token LM training on a batch of
  16 rows x 128 uniform random tokens, full causal mask (no padding); loss = mean cross-entropy of
  the 127 next-token predictions per row (log_softmax + gather); backward, per-parameter clip 1.0,
  Adam step (lr 1e-4). Value = 5 * 16 * 128 / seconds.
* `generate` (tokens/s): 16 prompts of 32 random tokens (no padding), KV-cache decoding of 64 new
  tokens per row under no_grad: one prefill forward over the 32 prompt tokens (lm_head on the last
  position only), then 63 single-token decode steps (the 64th token needs no forward), k/v appended
  to a per-layer cache with torch.cat. Each step: last position's logits -> fp32 log_softmax ->
  `torch.multinomial(probs, 1)` (temperature 1, no top-k/p) with a torch.Generator seeded per
  repetition; the sampled token's log-prob is kept (as the Rust side does); no end token.
  Value = 16 * 64 / seconds.
* PPO step (s, seconds per step): one repetition = one PPO step; each phase is its own row:
    - `ppo_rollout`       : generation as above, 16 prompts x 32 tokens, 40 new tokens, policy.
    - `ppo_policy_forward`: no_grad policy forward on the 16 x 72 batch: next-token log-probs
                            (log_softmax + gather), value head, entropy of each next-token
                            distribution (one log_softmax shared by log-probs and entropy).
    - `ppo_reference`     : no_grad forward of a separate reference model (same preset, other
                            weights): next-token log-probs.
    - `ppo_reward`        : no_grad forward of a separate reward model; `score_head` read at the
                            last token of each row (clamped to +-5 like the Rust scalar reward,
                            whitening mean 0 / std 1); then, with torch on the host: the score
                            on the last response token, minus 0.02 * (logp - ref_logp) per token,
                            GAE (gamma 1, lambda 0.95) and advantages whitened over all response
                            tokens.
    - `ppo_update`        : 2 epochs x 2 shuffled minibatches of 8 rows: policy forward with grad,
                            clipped policy loss (clip 0.2, ratio exp(new - old), masked mean over
                            response tokens), clipped value loss (clip 5.0 around the old values,
                            0.5 * max of squared errors, masked mean), loss = pg + 0.1 * vl,
                            backward, per-parameter clip 1.0, Adam step (lr 5e-5).
    - `ppo_step`          : the sum of the five phases of the same repetition.
  The PPO batch is causal with no padding (every row is 32 + 40 tokens).
* `matmul` (s): the matrix products of one `train` step alone (forward and both backward products
  of every QKV, attention, projection, MLP and LM-head product; see `train_matmuls`), on random
  contiguous fp32 tensors, `torch.matmul`; seconds for the whole list. Only with
  `--benchmarks matmul` (it is a diagnostic: how much of a training step is matrix-product time).
  The list is that of full training at the preset's train shape, LoRA presets included (no
  adapter products, every backward product kept).

CSV (`--output`, default results/bench/torch.csv; also printed as an aligned table)
-------------------------------------------------------------------------------------
    framework,device,threads,preset,benchmark,unit,median,min,max,runs
framework = `pytorch-<torch.__version__>`, device = `cpu`, numbers with 6 significant digits,
runs = number of timed runs. For tokens/s rows larger is faster; for `s` rows smaller is faster.
"""

import argparse
import collections
import csv
import math
import os
import re
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_SEQ_LEN = 128
MASKED = -1e9
HEADER = ["framework", "device", "threads", "preset", "benchmark", "unit", "median", "min", "max", "runs"]

# SmolLM2-135M's shape (`LmConfig::apply_preset`, preset `smollm2-135m`).
SMOLLM2_135M = dict(arch="llama", vocab=49152, d=576, n_layers=30, n_heads=9, n_kv_heads=3, d_ff=1536, rope_theta=100_000.0, norm_eps=1e-5)
# LoRA of the `pretrained-lora*` presets (`bench_lora` in src/bench.rs); layers 0 = every block.
BENCH_LORA = dict(rank=16, alpha=32.0, layers=0)

PRESETS = {
    "tiny": dict(arch="gpt", vocab=2048, d=128, n_layers=2, n_heads=4, d_ff=512),
    "small": dict(arch="gpt", vocab=2048, d=192, n_layers=3, n_heads=6, d_ff=768),
    "issue": dict(arch="gpt", vocab=4096, d=128, n_layers=2, n_heads=4, d_ff=512),
    "pretrained": dict(SMOLLM2_135M, lora=None),
    "pretrained-lora": dict(SMOLLM2_135M, lora=BENCH_LORA),
}


def preset_config(name):
    """The model of a preset, or None for an unknown name. `pretrained-lora-top<K>` (K > 0) is
    `pretrained-lora` with adapters on the last K blocks only, as `bench_lora` parses it."""
    if name in PRESETS:
        return PRESETS[name]
    m = re.fullmatch(r"pretrained-lora-top([0-9]+)", name)
    if m and int(m.group(1)) > 0:
        return dict(SMOLLM2_135M, lora=dict(BENCH_LORA, layers=int(m.group(1))))
    return None


# Benchmark shapes (must match `s2rm bench`): those of the gpt presets; `shapes` gives each
# preset's.
TRAIN_STEPS, TRAIN_B, TRAIN_T, TRAIN_LR = 5, 16, 128, 1e-4
GEN_B, GEN_PROMPT, GEN_NEW = 16, 32, 64
PPO_B, PPO_PROMPT, PPO_NEW = 16, 32, 40
PPO_EPOCHS, PPO_MINIBATCH, PPO_LR = 2, 8, 5e-5
KL_COEF, GAMMA, LAMBDA = 0.02, 1.0, 0.95
CLIP_RATIO, VALUE_CLIP, VF_COEF, SCORE_CLIP = 0.2, 5.0, 0.1, 5.0
GRAD_CLIP = 1.0

Shapes = collections.namedtuple(
    "Shapes", "train_batch train_seq train_steps gen_batch gen_prompt gen_new ppo_batch ppo_minibatch ppo_new"
)


def shapes(preset):
    """Rows, lengths and steps of a preset's benchmarks (`shapes()` in src/bench.rs): the constants
    above, or for the SmolLM2-shaped presets a quarter of the rows and the PPO step of the
    `pretrained` profile (8 prompts, minibatches of 4, 32 new tokens)."""
    if preset.startswith("pretrained"):
        return Shapes(4, TRAIN_T, 2, 4, GEN_PROMPT, 32, 8, 4, 32)
    return Shapes(TRAIN_B, TRAIN_T, TRAIN_STEPS, GEN_B, GEN_PROMPT, GEN_NEW, PPO_B, PPO_MINIBATCH, PPO_NEW)


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------


def extend_cache(cache, layer, k, v):
    """Keys and values of every position so far: the layer's cached ones (if any) followed by the
    new chunk's, stored back in `cache` (a list with one slot per layer; None: no cache)."""
    if cache is None:
        return k, v
    if cache[layer] is not None:
        pk, pv = cache[layer]
        k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
    cache[layer] = (k, v)
    return k, v


def attend(q, k, v, bias, sdpa):
    """Scaled dot-product attention over `[B, H, T, dh]` with an additive mask `bias`: PyTorch's
    fused kernel (`--sdpa`) or the explicit product, softmax and product that s2rm computes."""
    if sdpa:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
    return torch.softmax(scores, dim=-1) @ v


class Block(nn.Module):
    def __init__(self, d, n_heads, d_ff, sdpa):
        super().__init__()
        self.n_heads, self.sdpa = n_heads, sdpa
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, d_ff)
        self.fc2 = nn.Linear(d_ff, d)

    def forward(self, x, bias, cache=None, layer=0):
        """`x [B, T, d]`, `bias [B, 1, T, T_past + T]`; `cache`: list of per-layer (k, v) or None
        entries, extended in place."""
        b, t, d = x.shape
        h = self.n_heads
        dh = d // h
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q = q.reshape(b, t, h, dh).transpose(1, 2)
        k = k.reshape(b, t, h, dh).transpose(1, 2)
        v = v.reshape(b, t, h, dh).transpose(1, 2)
        k, v = extend_cache(cache, layer, k, v)
        ctx = attend(q, k, v, bias, self.sdpa).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(ctx)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Lm(nn.Module):
    def __init__(self, vocab, d, n_layers, n_heads, d_ff, sdpa=False):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d)
        self.pos_emb = nn.Embedding(MAX_SEQ_LEN, d)
        self.blocks = nn.ModuleList(Block(d, n_heads, d_ff, sdpa) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.value_head = nn.Linear(d, 1)
        self.score_head = nn.Linear(d, 1)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def hidden(self, tokens, positions, bias, cache=None):
        x = self.tok_emb(tokens) + self.pos_emb(positions)
        for i, block in enumerate(self.blocks):
            x = block(x, bias, cache, i)
        return self.ln_f(x)

    def logits(self, hidden):
        return self.lm_head(hidden)

    def values(self, hidden):
        return self.value_head(hidden).squeeze(-1)

    def scores(self, hidden):
        return self.score_head(hidden).squeeze(-1)


# --- llama family (SmolLM2-135M's shape), src/model/mod.rs and src/model/lora.rs ---


class RMSNorm(nn.Module):
    """burn's RmsNorm: `x / sqrt(mean(x^2) + eps) * weight`, weight initialised to 1."""

    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x / (x.square().mean(-1, keepdim=True) + self.eps).sqrt() * self.weight


class LoraLinear(nn.Module):
    """A bias-free linear layer over `[B, T, D]` taken as one `[B*T, D]` matrix, plus, once
    `add_adapter` has run, LoRA's side path: `y = x @ W.T + scale * ((x @ A) @ B)` (`adapted` in
    src/model/lora.rs)."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.base = nn.Linear(d_in, d_out, bias=False)
        self.register_parameter("lora_a", None)
        self.register_parameter("lora_b", None)
        self.scale = 0.0

    def add_adapter(self, rank, alpha):
        """`A [d_in, r] ~ N(0, std 1/r)` (burn's `Distribution::Normal(0, 1/r)`), `B [r, d_out] = 0`."""
        d_out, d_in = self.base.weight.shape
        self.lora_a = nn.Parameter(torch.empty(d_in, rank).normal_(0.0, 1.0 / rank))
        self.lora_b = nn.Parameter(torch.zeros(rank, d_out))
        self.scale = alpha / rank

    def forward(self, x):
        b, t, d = x.shape
        x = x.reshape(b * t, d)
        y = self.base(x)
        if self.lora_a is not None:
            y = y + x @ self.lora_a @ self.lora_b * self.scale
        return y.reshape(b, t, -1)


def rope_tables(positions, d_head, theta):
    """`(cos, sin)`, each `[B, 1, T, d_head]`, for `positions [B, T]`: frequency i drives dims i and
    i + d_head/2 (Hugging Face's `rotate_half` convention, as `rope_tables` in src/model/mod.rs)."""
    b, t = positions.shape
    half = d_head // 2
    inv = torch.tensor([1.0 / theta ** (2 * i / d_head) for i in range(half)], dtype=torch.float32)
    angles = positions.float().reshape(b, t, 1) * inv.reshape(1, 1, half)
    angles = torch.cat([angles, angles], dim=2).unsqueeze(1)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class LlamaBlock(nn.Module):
    def __init__(self, d, n_heads, n_kv_heads, d_ff, norm_eps, sdpa):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.d_ff, self.sdpa = n_heads, n_kv_heads, d_ff, sdpa
        kv = n_kv_heads * (d // n_heads)
        self.ln1 = RMSNorm(d, norm_eps)
        self.qkv = LoraLinear(d, d + 2 * kv)
        self.proj = LoraLinear(d, d)
        self.ln2 = RMSNorm(d, norm_eps)
        self.gate_up = LoraLinear(d, 2 * d_ff)
        self.down = LoraLinear(d_ff, d)

    def forward(self, x, bias, rope, cache=None, layer=0):
        """As `Block.forward`; `rope` = (cos, sin) of this chunk's positions. The cache holds the
        rotated keys and the values with `n_kv_heads` heads."""
        b, t, d = x.shape
        h, hkv = self.n_heads, self.n_kv_heads
        dh = d // h
        kvd = hkv * dh
        q, k, v = self.qkv(self.ln1(x)).split([d, kvd, kvd], dim=2)
        q = q.reshape(b, t, h, dh).transpose(1, 2)
        k = k.reshape(b, t, hkv, dh).transpose(1, 2)
        v = v.reshape(b, t, hkv, dh).transpose(1, 2)
        cos, sin = rope
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        k, v = extend_cache(cache, layer, k, v)
        if hkv != h:
            # Grouped-query attention: query head j reads key/value head j // (h / hkv).
            def repeat(z):
                tk = z.shape[2]
                return z.unsqueeze(2).expand(b, hkv, h // hkv, tk, dh).reshape(b, h, tk, dh)

            k, v = repeat(k), repeat(v)
        ctx = attend(q, k, v, bias, self.sdpa).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(ctx)
        gate, up = self.gate_up(self.ln2(x)).split(self.d_ff, dim=2)
        return x + self.down(F.silu(gate) * up)


# What a LoRA model trains (`trainable()` in src/model/lora.rs): adapter factors and the two heads.
LORA_TRAINABLE = re.compile(r"(lora_[ab]$)|(^(score_head|value_head)\.)")


class LlamaLm(nn.Module):
    """The llama-family LM with the same interface as `Lm` (hidden / logits / values / scores)."""

    def __init__(self, vocab, d, n_layers, n_heads, n_kv_heads, d_ff, rope_theta, norm_eps, sdpa=False):
        super().__init__()
        self.rope_theta, self.d_head = rope_theta, d // n_heads
        self.tok_emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(LlamaBlock(d, n_heads, n_kv_heads, d_ff, norm_eps, sdpa) for _ in range(n_layers))
        self.ln_f = RMSNorm(d, norm_eps)
        self.value_head = nn.Linear(d, 1)
        self.score_head = nn.Linear(d, 1)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
        for head in (self.value_head, self.score_head):  # zero-initialised, as on the Rust side
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def with_lora(self, rank, alpha, layers):
        """Adapters on qkv, proj, gate_up and down of the last `layers` blocks (0 = every block);
        every other parameter but the two heads frozen (`Lm::with_lora`)."""
        first = 0 if layers == 0 else max(0, len(self.blocks) - layers)
        for block in self.blocks[first:]:
            for linear in (block.qkv, block.proj, block.gate_up, block.down):
                linear.add_adapter(rank, alpha)
        for name, p in self.named_parameters():
            p.requires_grad_(LORA_TRAINABLE.search(name) is not None)
        return self

    def hidden(self, tokens, positions, bias, cache=None):
        x = self.tok_emb(tokens)
        rope = rope_tables(positions, self.d_head, self.rope_theta)
        for i, block in enumerate(self.blocks):
            x = block(x, bias, rope, cache, i)
        return self.ln_f(x)

    def logits(self, hidden):
        """Tied LM head: `h @ tok_emb.weight.T` over `[B*T, d]`."""
        b, t, d = hidden.shape
        return (hidden.reshape(b * t, d) @ self.tok_emb.weight.t()).reshape(b, t, -1)

    def values(self, hidden):
        return self.value_head(hidden).squeeze(-1)

    def scores(self, hidden):
        return self.score_head(hidden).squeeze(-1)


def build_model(cfg, sdpa, lora=True):
    """A preset's model (random weights from torch's global RNG); with `lora` (and a preset that
    has it) the adapters are attached and the base frozen."""
    if cfg["arch"] == "gpt":
        return Lm(cfg["vocab"], cfg["d"], cfg["n_layers"], cfg["n_heads"], cfg["d_ff"], sdpa=sdpa)
    model = LlamaLm(
        cfg["vocab"], cfg["d"], cfg["n_layers"], cfg["n_heads"], cfg["n_kv_heads"], cfg["d_ff"],
        cfg["rope_theta"], cfg["norm_eps"], sdpa=sdpa,
    )
    if lora and cfg.get("lora"):
        model.with_lora(**cfg["lora"])
    return model


def trainable(model):
    """The parameters an optimiser updates: all of them, or with LoRA the adapters and heads."""
    return [p for p in model.parameters() if p.requires_grad]


def positions_from_attn(attn):
    """`attn [B, T]` bool (True = real token) -> positions: number of real tokens before each."""
    return (attn.long().cumsum(dim=1) - 1).clamp_min(0) * attn.long()


def causal_bias(attn):
    """Causal + key-padding additive bias `[B, 1, T, T]` from `attn [B, T]`."""
    b, t = attn.shape
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    allowed = causal.unsqueeze(0) & attn.unsqueeze(1)  # [B, T(query), T(key)]
    zero = torch.zeros((), dtype=torch.float32)
    masked = torch.full((), MASKED, dtype=torch.float32)
    return torch.where(allowed, zero, masked).unsqueeze(1)


def forward_full(model, tokens):
    """Forward of a batch without padding: hidden `[B, T, d]`."""
    attn = torch.ones(tokens.shape, dtype=torch.bool)
    return model.hidden(tokens, positions_from_attn(attn), causal_bias(attn))


def next_token_logprobs(logits, tokens):
    """`logits [B, T, V]`, `tokens [B, T]` -> (log_softmax `[B, T-1, V]`, log p(token_{i+1}) `[B, T-1]`)."""
    lp_all = torch.log_softmax(logits[:, :-1], dim=-1)
    return lp_all, lp_all.gather(2, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)


def clip_and_step(params, optim):
    for p in params:
        torch.nn.utils.clip_grad_norm_([p], GRAD_CLIP)
    optim.step()
    optim.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def generate(model, prompts, max_new, gen):
    """KV-cache sampling from `prompts [B, P]` (no padding, no end token). Returns (tokens
    `[B, max_new]`, log-probs `[B, max_new]`)."""
    b, p = prompts.shape
    attn = torch.ones(b, p, dtype=torch.bool)
    cache = [None] * len(model.blocks)
    hidden = model.hidden(prompts, positions_from_attn(attn), causal_bias(attn), cache)
    last_logits = model.logits(hidden[:, p - 1 : p]).squeeze(1)  # lm_head on the last position only
    out_tokens, out_lp = [], []
    n_real = torch.full((b, 1), p, dtype=torch.long)
    for step in range(max_new):
        lp = torch.log_softmax(last_logits.float(), dim=-1)
        tok = torch.multinomial(lp.exp(), 1, generator=gen)  # [B, 1]
        out_tokens.append(tok)
        out_lp.append(lp.gather(1, tok))
        if step + 1 == max_new:
            break
        k = p + step + 1
        bias = torch.zeros(b, 1, 1, k)  # every cached position is a real token (no padding)
        hidden = model.hidden(tok, n_real, bias, cache)
        n_real = n_real + 1
        last_logits = model.logits(hidden).squeeze(1)
    return torch.cat(out_tokens, dim=1), torch.cat(out_lp, dim=1)


# ----------------------------------------------------------------------------------------------
# Benchmarks
# ----------------------------------------------------------------------------------------------


def repeat(fn, warmup, runs):
    """Runs `fn(rep)` warmup + runs times; `fn` returns a dict {name: seconds}. Returns the timed ones."""
    for i in range(warmup):
        fn(i)
    return [fn(warmup + i) for i in range(runs)]


def note_trainable(model, params):
    """With LoRA, says on stderr what trains (the adapters and heads) out of the whole model."""
    n_all = sum(p.numel() for p in model.parameters())
    if len(params) < len(list(model.parameters())):
        n = sum(p.numel() for p in params)
        print(f"#   LoRA: {len(params)} trainable tensors, {n} of {n_all} parameters", file=sys.stderr)


def bench_train(cfg, sh, seed, warmup, runs, sdpa):
    torch.manual_seed(seed)
    model = build_model(cfg, sdpa)
    model.train()
    params = trainable(model)
    note_trainable(model, params)
    optim = torch.optim.Adam(params, lr=TRAIN_LR, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(seed + 1)

    def rep(_):
        batches = [torch.randint(0, cfg["vocab"], (sh.train_batch, sh.train_seq), generator=gen) for _ in range(sh.train_steps)]
        t0 = time.perf_counter()
        for tokens in batches:
            hidden = forward_full(model, tokens)
            _, lp = next_token_logprobs(model.logits(hidden), tokens)
            loss = -lp.mean()
            loss.backward()
            clip_and_step(params, optim)
            lv = loss.item()
            assert math.isfinite(lv), f"loss is {lv}"
        return {"train": time.perf_counter() - t0}

    secs = [r["train"] for r in repeat(rep, warmup, runs)]
    return {"train": ("tokens/s", [sh.train_steps * sh.train_batch * sh.train_seq / s for s in secs])}


def bench_generate(cfg, sh, seed, warmup, runs, sdpa):
    torch.manual_seed(seed)
    model = build_model(cfg, sdpa)
    model.eval()
    data_gen = torch.Generator().manual_seed(seed + 1)

    def rep(i):
        prompts = torch.randint(0, cfg["vocab"], (sh.gen_batch, sh.gen_prompt), generator=data_gen)
        gen = torch.Generator().manual_seed(seed + 100 + i)
        t0 = time.perf_counter()
        tokens, _ = generate(model, prompts, sh.gen_new, gen)
        assert tokens.shape == (sh.gen_batch, sh.gen_new)
        return {"generate": time.perf_counter() - t0}

    secs = [r["generate"] for r in repeat(rep, warmup, runs)]
    return {"generate": ("tokens/s", [sh.gen_batch * sh.gen_new / s for s in secs])}


def gae(rewards, values, gamma, lam):
    """Batched GAE over `[B, N]` response tokens; the value after the last token is 0."""
    n = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0])
    for t in reversed(range(n)):
        next_v = values[:, t + 1] if t + 1 < n else torch.zeros(rewards.shape[0])
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = delta + gamma * lam * last
        adv[:, t] = last
    return adv, adv + values


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


PPO_PHASES = ["ppo_rollout", "ppo_policy_forward", "ppo_reference", "ppo_reward", "ppo_update"]


def bench_ppo(cfg, sh, seed, warmup, runs, sdpa):
    torch.manual_seed(seed)
    # With LoRA the policy and the reference carry adapters (the Rust reference is the SFT model
    # itself); the reward model is a plain model of the preset.
    policy = build_model(cfg, sdpa)
    reference = build_model(cfg, sdpa)
    reward_model = build_model(cfg, sdpa, lora=False)
    for m in (policy, reference, reward_model):
        m.eval()  # no dropout anywhere; train/eval changes nothing
    params = trainable(policy)
    optim = torch.optim.Adam(params, lr=PPO_LR, betas=(0.9, 0.999), eps=1e-8)
    data_gen = torch.Generator().manual_seed(seed + 1)
    mb_gen = torch.Generator().manual_seed(seed + 2)
    b_rows, p, n = sh.ppo_batch, PPO_PROMPT, sh.ppo_new
    t_len = p + n
    tm = t_len - 1
    # Response targets: next-token index i (predicting token i+1) counts when i+1 >= p.
    mask = torch.zeros(b_rows, tm)
    mask[:, p - 1 :] = 1.0
    resp = slice(p - 1, tm)  # positions in [B, T-1] of the response tokens' log-probs

    def rep(i):
        times = {}
        prompts = torch.randint(0, cfg["vocab"], (b_rows, p), generator=data_gen)
        gen = torch.Generator().manual_seed(seed + 100 + i)

        # --- rollout ---
        t0 = time.perf_counter()
        response, _ = generate(policy, prompts, n, gen)
        tokens = torch.cat([prompts, response], dim=1)  # [B, p + n]
        times["ppo_rollout"] = time.perf_counter() - t0

        # --- policy forward ---
        t0 = time.perf_counter()
        with torch.no_grad():
            hidden = forward_full(policy, tokens)
            old_values = policy.values(hidden)[:, :tm]
            lp_all, old_lp = next_token_logprobs(policy.logits(hidden), tokens)
            entropy = -(lp_all.exp() * lp_all).sum(-1)
        times["ppo_policy_forward"] = time.perf_counter() - t0

        # --- reference forward ---
        t0 = time.perf_counter()
        with torch.no_grad():
            _, ref_lp = next_token_logprobs(reference.logits(forward_full(reference, tokens)), tokens)
        times["ppo_reference"] = time.perf_counter() - t0

        # --- reward model, KL shaping, GAE, whitening ---
        t0 = time.perf_counter()
        with torch.no_grad():
            scores = reward_model.scores(forward_full(reward_model, tokens))[:, t_len - 1]
            scores = scores.clamp(-SCORE_CLIP, SCORE_CLIP)  # (s - mean 0) / std 1, clipped
            lp_r, rlp_r, v_r = old_lp[:, resp], ref_lp[:, resp], old_values[:, resp]
            rewards = -KL_COEF * (lp_r - rlp_r)
            rewards[:, -1] += scores
            adv_r, ret_r = gae(rewards, v_r, GAMMA, LAMBDA)
            adv_r = (adv_r - adv_r.mean()) / adv_r.std(unbiased=False).clamp_min(1e-8)
            advantages = torch.zeros(b_rows, tm)
            returns = torch.zeros(b_rows, tm)
            advantages[:, resp] = adv_r
            returns[:, resp] = ret_r
            stats = (scores.sum().item(), (lp_r - rlp_r).sum().item(), (entropy[:, resp]).sum().item())
        assert all(math.isfinite(s) for s in stats)
        times["ppo_reward"] = time.perf_counter() - t0

        # --- PPO update ---
        t0 = time.perf_counter()
        for _epoch in range(PPO_EPOCHS):
            order = torch.randperm(b_rows, generator=mb_gen)
            for mb in order.split(sh.ppo_minibatch):
                sub = tokens[mb]
                hidden = forward_full(policy, sub)
                new_v = policy.values(hidden)[:, :tm]
                _, new_lp = next_token_logprobs(policy.logits(hidden), sub)
                m = mask[mb]
                adv = advantages[mb]
                ratio = (new_lp - old_lp[mb]).exp()
                unclipped = -adv * ratio
                clipped = -adv * ratio.clamp(1.0 - CLIP_RATIO, 1.0 + CLIP_RATIO)
                pg = masked_mean(torch.maximum(unclipped, clipped), m)
                clip_frac = masked_mean((clipped > unclipped).float(), m)
                ov, ret = old_values[mb], returns[mb]
                v_clipped = ov + (new_v - ov).clamp(-VALUE_CLIP, VALUE_CLIP)
                vl = 0.5 * masked_mean(torch.maximum((new_v - ret).square(), (v_clipped - ret).square()), m)
                loss = pg + VF_COEF * vl
                lv = loss.item()
                assert math.isfinite(lv), f"loss is {lv}"
                loss.backward()
                clip_and_step(params, optim)
                pg.item(), vl.item(), clip_frac.item()
        times["ppo_update"] = time.perf_counter() - t0
        return times

    reps = repeat(rep, warmup, runs)
    out = {name: ("s", [r[name] for r in reps]) for name in PPO_PHASES}
    out["ppo_step"] = ("s", [sum(r[name] for name in PPO_PHASES) for r in reps])
    return out


def train_matmuls(cfg, sh):
    """The matrix products of one `train` step (at shapes `sh`) as (batch, m, k, n): per layer the
    fused QKV projection (d + 2 * kv outputs; kv = n_kv_heads * d_head), attention scores and
    context (batch * heads matrices), output projection and MLP (llama: the fused gate/up
    d -> 2 d_ff and the down projection), then the LM head over every position; after the whole
    forward list, each forward product (A @ B)'s two backward products dA = dY @ B^T and
    dB = A^T @ dY. Must match `train_matmuls` in src/bench.rs."""
    n, t, bh = sh.train_batch * sh.train_seq, sh.train_seq, sh.train_batch * cfg["n_heads"]
    d, ff, v = cfg["d"], cfg["d_ff"], cfg["vocab"]
    dh = d // cfg["n_heads"]
    kv = cfg.get("n_kv_heads", cfg["n_heads"]) * dh
    mlp_out = 2 * ff if cfg["arch"] == "llama" else ff
    fwd = []
    for _ in range(cfg["n_layers"]):
        fwd += [(1, n, d, d + 2 * kv), (bh, t, dh, t), (bh, t, t, dh), (1, n, d, d), (1, n, d, mlp_out), (1, n, ff, d)]
    fwd.append((1, n, d, v))
    out = list(fwd)
    for b, m, k, nn_ in fwd:
        out += [(b, m, nn_, k), (b, k, m, nn_)]
    return out


def bench_matmul(cfg, sh, seed, warmup, runs, sdpa):
    torch.manual_seed(seed)
    pairs = [(torch.rand(b, m, k), torch.rand(b, k, n)) for b, m, k, n in train_matmuls(cfg, sh)]

    def rep(_):
        t0 = time.perf_counter()
        outs = [torch.matmul(a, w) for a, w in pairs]
        secs = time.perf_counter() - t0
        del outs
        return {"matmul": secs}

    return {"matmul": ("s", [r["matmul"] for r in repeat(rep, warmup, runs)])}


BENCHMARKS = {"train": bench_train, "generate": bench_generate, "ppo": bench_ppo, "matmul": bench_matmul}


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def fmt(x):
    return f"{x:.6g}"


def print_table(rows):
    widths = [max(len(str(r[i])) for r in [HEADER] + rows) for i in range(len(HEADER))]
    numeric = {"threads", "median", "min", "max", "runs"}
    for r in [HEADER] + rows:
        cells = []
        for i, c in enumerate(r):
            c = str(c)
            cells.append(c.rjust(widths[i]) if HEADER[i] in numeric else c.ljust(widths[i]))
        print("  ".join(cells).rstrip())
    sys.stdout.flush()


def parse_presets(s):
    items = [x.strip() for x in s.split(",") if x.strip()]
    bad = [x for x in items if preset_config(x) is None]
    if bad or not items:
        sys.exit(f"unknown preset: {','.join(bad) or '(none)'}; choose from {','.join(PRESETS)} or pretrained-lora-top<K>")
    return items


def parse_list(s, allowed, what):
    items = [x.strip() for x in s.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        sys.exit(f"unknown {what}: {','.join(bad) or '(none)'}; choose from {','.join(allowed)}")
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--presets", default="tiny,small", help="comma list of tiny,small,issue,pretrained,pretrained-lora,pretrained-lora-top<K> (default tiny,small)")
    ap.add_argument("--benchmarks", default="train,generate,ppo", help="comma list of train,generate,ppo,matmul (default train,generate,ppo)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed repetitions (default 1)")
    ap.add_argument("--runs", type=int, default=5, help="timed repetitions (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sdpa", action="store_true", help="F.scaled_dot_product_attention instead of explicit attention (information only)")
    ap.add_argument("--output", default="results/bench/torch.csv", help="CSV path (default results/bench/torch.csv)")
    args = ap.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        sys.exit("--runs and --threads must be >= 1, --warmup >= 0")
    presets = parse_presets(args.presets)
    benches = parse_list(args.benchmarks, list(BENCHMARKS), "benchmark")

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    framework = f"pytorch-{torch.__version__}"
    print(
        f"# {framework}, cpu, {torch.get_num_threads()} threads, attention: "
        f"{'sdpa' if args.sdpa else 'explicit'}, warmup {args.warmup}, runs {args.runs}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}",
        file=sys.stderr,
    )

    rows = []
    for preset in presets:
        for bench in benches:
            t0 = time.perf_counter()
            results = BENCHMARKS[bench](preset_config(preset), shapes(preset), args.seed, args.warmup, args.runs, args.sdpa)
            print(f"# {preset} {bench}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            for name, (unit, values) in results.items():
                rows.append([
                    framework, "cpu", args.threads, preset, name, unit,
                    fmt(statistics.median(values)), fmt(min(values)), fmt(max(values)), len(values),
                ])

    out_dir = os.path.dirname(args.output)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    with open(args.output, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(rows)
    print_table(rows)
    print(f"# wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
