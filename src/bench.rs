//! `s2rm bench`: training tokens/s, generation tokens/s and a PPO-step breakdown per model preset,
//! through the harness's own code paths (the pretraining loop, KV-cache generation, [`ppo_step`]).
//! `bench/torch_reference.py` does the same work in PyTorch and writes the same CSV columns, so
//! `make bench` can print burn/PyTorch ratios. Shapes (both sides):
//! - `train`: 5 Adam steps (per-parameter norm clipping at 1.0) of next-token loss on 16 rows of
//!   128 random tokens (127 targets each, causal mask, no padding); tokens/s = 5 · 16 · 128 / s.
//! - `generate`: 16 prompts of 32 random tokens, 64 new tokens each (one prefill and 63 cached decode
//!   steps, sampling from the full softmax, no end token); tokens/s = 16 · 64 / s.
//! - `ppo_*`: one PPO step with the safety spec's `ppo` table (16 prompts of 32 tokens, 40 new tokens,
//!   2 epochs of 2 minibatches of 8) and a scalar RM of the same preset: seconds per phase.
//! - `matmul` (only when asked): the matrix products of one `train` step alone ([`train_matmuls`]),
//!   seconds; a diagnostic of how much of a step is matrix-product time.
//!
//! Each benchmark runs `warmup` untimed repetitions, then `runs` timed ones; the CSV holds the median,
//! min and max. Weights are random (speed does not depend on them); every draw is seeded.

use crate::device;
use crate::model::generate::{GenConfig, generate};
use crate::model::{Lm, LmConfig};
use crate::reward::ScalarReward;
use crate::text::Template;
use crate::train::ppo::{PhaseTimes, StepBatch, StepCtx, ppo_step};
use crate::train::{LoopCfg, adam, pretrain};
use crate::util::SplitMix64;
use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::Distribution;
use std::path::Path;
use std::time::Instant;

/// Benchmark shapes of the `train` and `generate` rows (see the module docs).
pub const TRAIN_BATCH: usize = 16;
pub const TRAIN_SEQ: usize = 128;
pub const TRAIN_STEPS: usize = 5;
pub const GEN_BATCH: usize = 16;
pub const GEN_PROMPT: usize = 32;
pub const GEN_NEW: usize = 64;
pub const PPO_PROMPT: usize = 32;

/// Rows, lengths and steps of one preset's benchmarks: the constants above for the from-scratch
/// presets; a quarter of the rows (and the PPO step of the `pretrained` profile: 8 prompts, 32
/// new tokens) at the SmolLM2 shape, whose training step costs 60 times a `small` one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shapes {
    pub train_batch: usize,
    pub train_seq: usize,
    pub train_steps: usize,
    pub gen_batch: usize,
    pub gen_prompt: usize,
    pub gen_new: usize,
    /// `(batch_size, minibatch_size, max_new_tokens)` of the PPO step, when not the spec's.
    pub ppo: Option<(usize, usize, usize)>,
}

pub fn shapes(preset: &str) -> Shapes {
    if preset.starts_with("pretrained") {
        Shapes { train_batch: 4, train_seq: TRAIN_SEQ, train_steps: 2, gen_batch: 4, gen_prompt: GEN_PROMPT, gen_new: 32, ppo: Some((8, 4, 32)) }
    } else {
        Shapes { train_batch: TRAIN_BATCH, train_seq: TRAIN_SEQ, train_steps: TRAIN_STEPS, gen_batch: GEN_BATCH, gen_prompt: GEN_PROMPT, gen_new: GEN_NEW, ppo: None }
    }
}

/// LoRA of the `pretrained-lora` preset: rank 16, alpha 32, every linear layer of the trunk;
/// `pretrained-lora-top<K>` the same on the last K blocks only (`lora.layers = K`).
pub fn bench_lora(preset: &str) -> crate::model::lora::LoraConfig {
    let layers = match preset.strip_prefix("pretrained-lora") {
        Some("") => 0,
        Some(top) => match top.strip_prefix("-top").and_then(|k| k.parse::<usize>().ok()) {
            Some(k) if k > 0 => k,
            _ => return Default::default(),
        },
        None => return Default::default(),
    };
    crate::model::lora::LoraConfig { rank: 16, alpha: 32.0, targets: vec![], layers }
}

/// The bench's model presets: `tiny` and `small` are the `default` and `small` profiles of
/// experiments/*.toml (a unit test keeps them equal); `issue` is the shape the performance issue
/// measured PyTorch at; `pretrained` is SmolLM2-135M's shape (random weights: speed does not
/// depend on them), trained in full, and `pretrained-lora` the same with LoRA adapters.
/// Position tables hold `TRAIN_SEQ` positions.
pub fn preset(name: &str) -> Result<LmConfig> {
    if name == "pretrained" || bench_lora(name).enabled() {
        let mut c = LmConfig { preset: "smollm2-135m".into(), max_seq_len: TRAIN_SEQ, ..Default::default() };
        c.apply_preset();
        c.checkpoint.clear();
        c.lora = bench_lora(name);
        return Ok(c);
    }
    let (vocab_size, d_model, n_layers, n_heads, d_ff) = match name {
        "tiny" => (2048, 128, 2, 4, 512),
        "small" => (2048, 192, 3, 6, 768),
        "issue" => (4096, 128, 2, 4, 512),
        other => bail!("unknown bench preset `{other}`: expected tiny, small, issue, pretrained, pretrained-lora or pretrained-lora-top<K>"),
    };
    Ok(LmConfig { preset: name.into(), vocab_size, d_model, n_layers, n_heads, d_ff, max_seq_len: TRAIN_SEQ, ..Default::default() })
}

pub const BENCHMARKS: [&str; 4] = ["train", "generate", "ppo", "matmul"];

/// The matrix products of one `train` step as `[batch, m, k, n]`: per layer the fused QKV
/// projection, attention scores and context (batch · heads matrices), output projection and MLP
/// (llama: the fused gate/up and the down projection), then the LM head over every position; each
/// forward product `A·B` followed by its two backward products `dA = dY·Bᵀ` and `dB = Aᵀ·dY`. The
/// `matmul` benchmark times them alone, to tell how much of a training step is matrix-product
/// time and how fast the products run at the model's shapes (`bench/torch_reference.py` has the
/// same list).
pub fn train_matmuls(cfg: &LmConfig, sh: &Shapes) -> Vec<[usize; 4]> {
    let (n, t, bh) = (sh.train_batch * sh.train_seq, sh.train_seq, sh.train_batch * cfg.n_heads);
    let (d, dh, ff, v) = (cfg.d_model, cfg.d_model / cfg.n_heads, cfg.d_ff, cfg.vocab_size);
    let kv = cfg.kv_heads() * dh;
    let mlp_in = if cfg.arch == crate::model::Arch::Llama { 2 * ff } else { ff };
    let mut fwd = Vec::new();
    for _ in 0..cfg.n_layers {
        fwd.extend([[1, n, d, d + 2 * kv], [bh, t, dh, t], [bh, t, t, dh], [1, n, d, d], [1, n, d, mlp_in], [1, n, ff, d]]);
    }
    fwd.push([1, n, d, v]);
    let mut all = fwd.clone();
    for &[b, m, k, nn] in &fwd {
        all.extend([[b, m, nn, k], [b, k, m, nn]]);
    }
    all
}

pub struct BenchOptions {
    pub presets: Vec<String>,
    pub benchmarks: Vec<String>,
    pub runs: usize,
    pub warmup: usize,
    pub device: String,
    pub output: std::path::PathBuf,
    /// The spec whose `ppo` table the PPO rows use.
    pub ppo_spec: std::path::PathBuf,
}

/// One CSV row: median, min and max of `values` (a rate or seconds).
#[derive(serde::Serialize)]
struct Row {
    framework: String,
    device: String,
    threads: usize,
    preset: String,
    benchmark: String,
    unit: &'static str,
    median: f64,
    min: f64,
    max: f64,
    runs: usize,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

/// Six significant digits, as the PyTorch script writes them.
fn sig6(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(5 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// Random token rows; ids from 8 up, clear of the special tokens.
fn random_rows(rng: &mut SplitMix64, rows: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..rows).map(|_| (0..len).map(|_| 8 + rng.below(vocab - 8) as u32).collect()).collect()
}

/// Runs `rep` `warmup + runs` times; returns the timed repetitions' values.
fn repeat(warmup: usize, runs: usize, mut rep: impl FnMut() -> Result<Vec<f64>>) -> Result<Vec<Vec<f64>>> {
    for _ in 0..warmup {
        rep()?;
    }
    (0..runs).map(|_| rep()).collect()
}

pub fn run(opts: &BenchOptions) -> Result<()> {
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    for b in &opts.benchmarks {
        if !BENCHMARKS.contains(&b.as_str()) {
            bail!("unknown benchmark `{b}`: expected {}", BENCHMARKS.join(", "));
        }
    }
    let sel = device::select(&opts.device)?;
    let threads = sel.threads;
    let framework = if sel.backend == device::Backend::LibTorch { "burn-0.22.1+libtorch" } else { "burn-0.22.1" };
    let kind = if sel.backend == device::Backend::Wgpu { "wgpu" } else { "cpu" };
    eprintln!("device: {} — {}; {} timed runs after {} warm-up", sel.name, sel.reason, opts.runs, opts.warmup);
    let ppo_cfg = crate::spec::load(&opts.ppo_spec, "default", &[])?.spec.ppo;
    let dev = sel.device.clone();
    let ad = dev.clone().autodiff();
    let mut rows = Vec::new();
    for name in &opts.presets {
        let cfg = preset(name)?;
        let sh = shapes(name);
        let v = cfg.vocab_size;
        let mut ppo_cfg = ppo_cfg.clone();
        if let Some((bs, mb, new)) = sh.ppo {
            (ppo_cfg.batch_size, ppo_cfg.minibatch_size, ppo_cfg.max_new_tokens) = (bs, mb, new);
        }
        let mut push = |benchmark: &str, unit: &'static str, values: Vec<f64>| {
            let row = Row {
                framework: framework.into(),
                device: kind.into(),
                threads,
                preset: name.clone(),
                benchmark: benchmark.into(),
                unit,
                median: sig6(median(&values)),
                min: sig6(values.iter().copied().fold(f64::INFINITY, f64::min)),
                max: sig6(values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                runs: values.len(),
            };
            eprintln!("{:>6} {:<20} {:>12.4} {unit} (min {:.4}, max {:.4})", row.preset, row.benchmark, row.median, row.min, row.max);
            rows.push(row);
        };
        let mut rng = SplitMix64::new(0xBE7C);
        if opts.benchmarks.iter().any(|b| b == "train") {
            // Through the pretraining loop: `<bos>` + 127 tokens = 128 positions, 127 targets.
            let docs = random_rows(&mut rng, 64 * sh.train_batch, sh.train_seq - 1, v);
            let loop_cfg = LoopCfg { steps: sh.train_steps, lr: 1e-4, warmup_steps: 0, grad_clip: 1.0, cosine: false };
            let mut model = cfg.init_seeded(&ad, 1).with_lora(&cfg.lora, &ad, 1);
            let mut seed = 0;
            let t = repeat(opts.warmup, opts.runs, || {
                seed += 1;
                let start = Instant::now();
                let (m, _) = pretrain(model.clone(), &docs, sh.train_seq - 1, sh.train_batch, &loop_cfg, seed, &ad)?;
                let s = start.elapsed().as_secs_f64();
                model = m;
                Ok(vec![(sh.train_steps * sh.train_batch * sh.train_seq) as f64 / s])
            })?;
            push("train", "tokens/s", t.iter().map(|r| r[0]).collect());
        }
        if opts.benchmarks.iter().any(|b| b == "generate") {
            let model: Lm = cfg.init_seeded(&dev, 2).with_lora(&cfg.lora, &dev, 2);
            let prompts = random_rows(&mut rng, sh.gen_batch, sh.gen_prompt, v);
            // An end token outside the vocabulary: every row generates all `gen_new` tokens.
            let gen_cfg = GenConfig { max_new_tokens: sh.gen_new, eos: v as u32, pad: crate::text::PAD, greedy: false };
            let mut k = 0u64;
            let t = repeat(opts.warmup, opts.runs, || {
                k += 1;
                let seeds: Vec<u64> = (0..sh.gen_batch as u64).map(|i| k * 1000 + i).collect();
                let start = Instant::now();
                let g = generate(&model, &prompts, &seeds, &gen_cfg, &dev);
                let s = start.elapsed().as_secs_f64();
                let n: usize = g.tokens.iter().map(Vec::len).sum();
                Ok(vec![n as f64 / s])
            })?;
            push("generate", "tokens/s", t.iter().map(|r| r[0]).collect());
        }
        if opts.benchmarks.iter().any(|b| b == "ppo") {
            let tpl = Template::builtin();
            let raw_len = PPO_PROMPT - tpl.overhead().0;
            let sft = cfg.init_seeded(&ad, 3).with_lora(&cfg.lora, &ad, 3);
            let reference = sft.valid();
            let rm = ScalarReward { model: cfg.init_seeded(&dev, 4), tpl: tpl.clone(), device: dev.clone(), max_prompt: raw_len, mean: 0.0, std: 1.0, clip: ppo_cfg.score_clip };
            let gen_cfg = GenConfig { max_new_tokens: ppo_cfg.max_new_tokens, eos: v as u32, pad: crate::text::PAD, greedy: false };
            let ctx = StepCtx { reference: &reference, reward: &rm, gen_cfg: &gen_cfg, cfg: &ppo_cfg, label: "bench", device: &dev };
            let mut policy = sft.valid().train();
            let mut optim = adam(ppo_cfg.grad_clip);
            let mut mb_rng = SplitMix64::new(5);
            let mut step = 0;
            let t = repeat(opts.warmup, opts.runs, || {
                let raw = random_rows(&mut rng, ppo_cfg.batch_size, raw_len, v);
                let prefixes: Vec<Vec<u32>> = raw.iter().map(|p| tpl.policy_prefix(p, raw_len)).collect();
                let seeds: Vec<u64> = (0..raw.len() as u64).map(|i| step as u64 * 1000 + i).collect();
                let batch = StepBatch { raw: &raw, prefixes: &prefixes, seeds: &seeds };
                let mut times = PhaseTimes::default();
                let (p, _) = ppo_step(policy.clone(), &mut optim, &ctx, &batch, step, ppo_cfg.lr, &mut mb_rng, &mut times)?;
                policy = p;
                step += 1;
                Ok(vec![times.rollout, times.policy_forward, times.reference, times.reward, times.update, times.total()])
            })?;
            let names = ["ppo_rollout", "ppo_policy_forward", "ppo_reference", "ppo_reward", "ppo_update", "ppo_step"];
            for (i, n) in names.iter().enumerate() {
                push(n, "s", t.iter().map(|r| r[i]).collect());
            }
        }
        if opts.benchmarks.iter().any(|b| b == "matmul") {
            let list = train_matmuls(&cfg, &sh);
            let flops: f64 = list.iter().map(|&[b, m, k, n]| 2.0 * (b * m * k * n) as f64).sum();
            let pairs: Vec<(Tensor<3>, Tensor<3>)> = list
                .into_iter()
                .map(|[b, m, k, n]| (Tensor::random([b, m, k], Distribution::Default, &dev), Tensor::random([b, k, n], Distribution::Default, &dev)))
                .collect();
            let t = repeat(opts.warmup, opts.runs, || {
                let start = Instant::now();
                // Outputs stay alive until the device has finished (a lazy backend must run them).
                let outs: Vec<Tensor<3>> = pairs.iter().map(|(a, w)| a.clone().matmul(w.clone())).collect();
                dev.sync().map_err(|e| anyhow::anyhow!("device sync: {e:?}"))?;
                let s = start.elapsed().as_secs_f64();
                drop(outs);
                Ok(vec![s])
            })?;
            push("matmul", "s", t.iter().map(|r| r[0]).collect());
            push("matmul_gflops", "GFLOP/s", t.iter().map(|r| flops / r[0] / 1e9).collect());
        }
    }
    write_csv(&opts.output, &rows)?;
    println!("{:<8} {:<20} {:>10} {:>12} {:>12} {:>12}", "preset", "benchmark", "unit", "median", "min", "max");
    for r in &rows {
        println!("{:<8} {:<20} {:>10} {:>12} {:>12} {:>12}", r.preset, r.benchmark, r.unit, r.median, r.min, r.max);
    }
    println!("wrote {}", opts.output.display());
    Ok(())
}

fn write_csv(path: &Path, rows: &[Row]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut w = csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench's `tiny` and `small` are the shapes the experiments run (profiles `default` and
    /// `small` of every spec), so its numbers speak for `make reproduce-*`.
    #[test]
    fn bench_presets_are_the_experiment_presets() {
        for file in ["experiments/safety.toml", "experiments/summarization.toml", "experiments/helpfulness.toml"] {
            for (profile, name) in [("default", "tiny"), ("small", "small")] {
                let m = crate::spec::load(Path::new(file), profile, &[]).unwrap().spec.model;
                let b = preset(name).unwrap();
                assert_eq!((m.preset.as_str(), m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.d_ff), (name, b.vocab_size, b.d_model, b.n_layers, b.n_heads, b.d_ff), "{file} {profile}");
            }
        }
    }

    /// The `matmul` list does a training step's matrix-product work: 2·N·(per-token weight
    /// products) + the attention products forward, three times that with the backward.
    #[test]
    fn train_matmuls_count_a_training_steps_products() {
        let c = preset("tiny").unwrap();
        let flops = |l: &[[usize; 4]]| l.iter().map(|&[b, m, k, n]| 2 * b * m * k * n).sum::<usize>();
        let (n, d, ff) = (TRAIN_BATCH * TRAIN_SEQ, c.d_model, c.d_ff);
        let weights = c.n_layers * (3 * d * d + d * d + 2 * d * ff) + d * c.vocab_size;
        let attention = c.n_layers * 2 * 2 * TRAIN_BATCH * TRAIN_SEQ * TRAIN_SEQ * d;
        let all = train_matmuls(&c, &shapes("tiny"));
        assert_eq!(all.len(), 3 * (6 * c.n_layers + 1));
        let fwd = &all[..6 * c.n_layers + 1];
        assert_eq!(flops(fwd), 2 * n * weights + attention);
        assert_eq!(flops(&all), 3 * flops(fwd));
        // SmolLM2 (llama): grouped key/value heads and the fused gate/up projection; a quarter of
        // the rows. Its weight products are the model's trunk parameters plus the tied LM head.
        let p = preset("pretrained").unwrap();
        let sh = shapes("pretrained");
        let (n, t, dh) = (sh.train_batch * sh.train_seq, sh.train_seq, p.d_model / p.n_heads);
        let fwd = &train_matmuls(&p, &sh)[..6 * p.n_layers + 1];
        let attention = p.n_layers * 2 * 2 * sh.train_batch * p.n_heads * t * t * dh;
        let block = 576 * 960 + 576 * 576 + 576 * 3072 + 1536 * 576;
        assert_eq!(flops(fwd), 2 * n * (30 * block + 576 * 49152) + attention);
    }

    #[test]
    fn median_and_rounding() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(sig6(1234.5678), 1234.57);
        assert_eq!(sig6(0.000123456789), 0.000123457);
    }
}
