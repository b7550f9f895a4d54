//! Range checks of a parsed spec that serde cannot express: counts bounded before any work
//! starts, rates positive, fields that only make sense together. Each error names the field and
//! the fix.

use super::*;

fn positive(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 { Ok(()) } else { bail!("`{name}` must be > 0 (got {v})") }
}

fn non_negative(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 { Ok(()) } else { bail!("`{name}` must be a finite number >= 0 (got {v})") }
}

fn at_most(name: &str, v: usize, max: usize, why: &str) -> Result<()> {
    if v <= max { Ok(()) } else { bail!("`{name}` must be at most {max} (got {v}); {why}") }
}

/// Upper bounds that keep a typo (an extra zero or three) from turning into an allocation abort.
const MAX_BATCH: usize = 1 << 16;
const MAX_STEPS: usize = 1_000_000;
const MAX_TOKENS: usize = 1 << 16;
const MAX_PARAMS: usize = 1 << 34;

/// Range checks that serde cannot express.
pub fn validate(s: &Spec) -> Result<()> {
    let e = &s.experiment;
    if e.seeds.is_empty() {
        bail!("`experiment.seeds` must list at least one seed");
    }
    let mut seen = std::collections::BTreeSet::new();
    for seed in &e.seeds {
        if !seen.insert(seed) {
            bail!("`experiment.seeds` lists seed {seed} twice");
        }
    }
    if !crate::device::KINDS.contains(&e.device.as_str()) {
        bail!("`experiment.device` must be one of {} (got `{}`)", crate::device::KINDS.join(", "), e.device);
    }
    if e.name.is_empty() || !e.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        bail!("`experiment.name` must be a non-empty identifier (letters, digits, _ and -), got {:?}", e.name);
    }
    for (key, v) in [
        ("experiment.output_dir", &e.output_dir),
        ("experiment.data_dir", &e.data_dir),
        ("data.manifest", &s.data.manifest),
        ("data.refusal_patterns", &s.data.refusal_patterns),
    ] {
        if v.trim().is_empty() {
            bail!("`{key}` must be a non-empty path");
        }
    }
    s.model.validate().map_err(|m| anyhow!("`model`: {m}"))?;
    let m = &s.model;
    at_most("model.max_seq_len", m.max_seq_len, MAX_TOKENS, "positions are learned up to this length")?;
    let params = m
        .vocab_size
        .saturating_add(m.max_seq_len)
        .saturating_mul(m.d_model)
        .saturating_add(m.n_layers.saturating_mul(m.d_model.saturating_mul(4 * m.d_model).saturating_add(m.d_model.saturating_mul(m.d_ff).saturating_mul(2))));
    if params > MAX_PARAMS {
        bail!(
            "`model` has about {params} parameters (vocab_size {}, d_model {}, n_layers {}, d_ff {}), more than the {MAX_PARAMS} this harness allows; check for a typo",
            m.vocab_size, m.d_model, m.n_layers, m.d_ff
        );
    }
    let d = &s.data;
    if let Some(w) = &d.world {
        w.validate()?;
        for (key, empty) in [
            ("data.preference", d.preference.is_empty()),
            ("data.sft_extra", d.sft_extra.is_empty()),
            ("data.judge_extra", d.judge_extra.is_empty()),
            ("data.reference", d.reference.is_empty()),
            ("eval.extra_sets", s.eval.extra_sets.is_empty()),
        ] {
            if !empty {
                bail!("`{key}` must be empty when `data.world` is set: a world generates its own pairs, demonstrations and OOD prompts");
            }
        }
        if d.split.contains_key("judge") {
            bail!("`data.split.judge`: a world has no learned judge (its gold reward judges); remove the judge fraction");
        }
    } else if d.preference.is_empty() {
        bail!("`data.preference` must name at least one preference dataset");
    }
    for (key, ids) in [("data.preference", &d.preference), ("data.sft_extra", &d.sft_extra), ("data.judge_extra", &d.judge_extra)] {
        let mut seen = std::collections::BTreeSet::new();
        for id in ids {
            if id.trim().is_empty() {
                bail!("`{key}` lists an empty dataset id");
            }
            if !seen.insert(id) {
                bail!("`{key}` lists dataset `{id}` twice");
            }
        }
    }
    if !d.sft_from_chosen && d.sft_extra.is_empty() && d.world.is_none() {
        bail!("`data.sft_from_chosen` is false and `data.sft_extra` is empty: SFT would have no data; name an SFT dataset in `data.sft_extra`");
    }
    for (name, ids) in &s.eval.extra_sets {
        if !name.starts_with("ood_") || name.len() == 4 {
            bail!("`eval.extra_sets.{name}`: set names must start with `ood_` (the report keeps these out-of-distribution sets out of the in-distribution `all`), e.g. `ood_{name}`");
        }
        if ids.is_empty() {
            bail!("`eval.extra_sets.{name}` must list at least one prompt dataset");
        }
        if ids.iter().any(|id| id.trim().is_empty()) {
            bail!("`eval.extra_sets.{name}` lists an empty dataset id");
        }
    }
    let needed: &[&str] = if d.world.is_some() { &["rm", "policy", "eval"] } else { &["rm", "policy", "judge", "eval"] };
    for &need in needed {
        if !d.split.contains_key(need) {
            bail!("`data.split` must have a fraction for `{need}` (has: {})", d.split.keys().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    for (k, v) in &d.split {
        if !["rm", "policy", "judge", "eval"].contains(&k.as_str()) {
            bail!("`data.split.{k}`: unknown split; splits are rm, policy, judge, eval");
        }
        positive(&format!("data.split.{k}"), *v)?;
    }
    let total: f64 = d.split.values().sum();
    if (total - 1.0).abs() > 1e-6 {
        bail!("`data.split` fractions must sum to 1 (they sum to {total})");
    }
    if d.max_prompt_tokens == 0 || d.max_response_tokens == 0 {
        bail!("`data.max_prompt_tokens` and `data.max_response_tokens` must be > 0");
    }
    for (key, v) in [
        ("data.max_prompt_tokens", d.max_prompt_tokens),
        ("data.max_response_tokens", d.max_response_tokens),
        ("ppo.max_new_tokens", s.ppo.max_new_tokens),
        ("eval.max_new_tokens", s.eval.max_new_tokens),
    ] {
        at_most(key, v, MAX_TOKENS, "sequences must fit in model.max_seq_len")?;
    }
    // Longest row: the seq2seq RM's `<user> prompt <response> response <rewrite> target`.
    let longest = d.max_prompt_tokens + 2 * d.max_response_tokens.max(s.ppo.max_new_tokens).max(s.eval.max_new_tokens) + 3;
    if longest > s.model.max_seq_len {
        bail!(
            "`model.max_seq_len` ({}) is shorter than the longest sequence the pipeline builds ({longest} = max_prompt_tokens + 2 × max response/new tokens + 3); raise max_seq_len or lower the token limits",
            s.model.max_seq_len
        );
    }
    for (name, steps, bs, lr, clip) in [
        ("pretrain", s.pretrain.steps, s.pretrain.batch_size, s.pretrain.lr, s.pretrain.grad_clip),
        ("sft", s.sft.steps, s.sft.batch_size, s.sft.lr, s.sft.grad_clip),
        ("scalar_rm", s.scalar_rm.steps, s.scalar_rm.batch_size, s.scalar_rm.lr, s.scalar_rm.grad_clip),
        ("seq2seq_rm", s.seq2seq_rm.steps, s.seq2seq_rm.batch_size, s.seq2seq_rm.lr, s.seq2seq_rm.grad_clip),
        ("judge", s.judge.steps, s.judge.batch_size, s.judge.lr, s.judge.grad_clip),
        ("ppo", s.ppo.steps, s.ppo.batch_size, s.ppo.lr, s.ppo.grad_clip),
    ] {
        positive(&format!("{name}.steps"), steps as f64)?;
        positive(&format!("{name}.batch_size"), bs as f64)?;
        at_most(&format!("{name}.batch_size"), bs, MAX_BATCH, "a batch this large does not fit in memory")?;
        positive(&format!("{name}.lr"), lr)?;
        positive(&format!("{name}.grad_clip"), clip as f64)?;
    }
    // Every count bounded before any work: a typo'd count fails here, not after hours of training
    // (an eval.n_bootstrap of 10^12 used to train everything and then fail to allocate).
    let q = &s.seq2seq_rm;
    for (key, v, max, why) in [
        ("pretrain.steps", s.pretrain.steps, MAX_STEPS, "check for an extra zero"),
        ("sft.steps", s.sft.steps, MAX_STEPS, "check for an extra zero"),
        ("scalar_rm.steps", s.scalar_rm.steps, MAX_STEPS, "check for an extra zero"),
        ("seq2seq_rm.steps", q.steps, MAX_STEPS, "check for an extra zero"),
        ("judge.steps", s.judge.steps, MAX_STEPS, "check for an extra zero"),
        ("ppo.steps", s.ppo.steps, MAX_STEPS, "check for an extra zero"),
        ("pretrain.warmup_steps", s.pretrain.warmup_steps, MAX_STEPS, "check for an extra zero"),
        ("sft.warmup_steps", s.sft.warmup_steps, MAX_STEPS, "check for an extra zero"),
        ("scalar_rm.warmup_steps", s.scalar_rm.warmup_steps, MAX_STEPS, "check for an extra zero"),
        ("seq2seq_rm.warmup_steps", q.warmup_steps, MAX_STEPS, "check for an extra zero"),
        ("judge.warmup_steps", s.judge.warmup_steps, MAX_STEPS, "check for an extra zero"),
        ("seq2seq_rm.identity_warmup_steps", q.identity_warmup_steps, MAX_STEPS, "check for an extra zero"),
        ("ppo.ppo_epochs", s.ppo.ppo_epochs, 100, "each epoch re-reads the same rollouts"),
        ("ppo.checkpoint_every", s.ppo.checkpoint_every, MAX_STEPS, "check for an extra zero"),
        ("experiment.seeds", e.seeds.len(), 1000, "each seed trains two RMs and two policies"),
        ("data.max_pairs_per_split", d.max_pairs_per_split, 10_000_000, "0 means all pairs"),
        ("data.max_corpus_docs", d.max_corpus_docs, 10_000_000, "0 means all documents"),
        ("eval.max_prompts_per_set", s.eval.max_prompts_per_set, 100_000, "0 means all prompts"),
        ("eval.max_rm_pairs", s.eval.max_rm_pairs, 10_000_000, "0 means all pairs"),
        ("seq2seq_rm.curve_every", q.curve_every, MAX_STEPS, "0 means no curve"),
        ("judge.curve_every", s.judge.curve_every, MAX_STEPS, "0 means no curve"),
        ("seq2seq_rm.curve_pairs", q.curve_pairs, 100_000, "each point scores this many pairs twice"),
        ("scalar_rm.norm_pairs", s.scalar_rm.norm_pairs, 10_000_000, "512 pairs give a stable mean and std"),
        ("eval.n_bootstrap", s.eval.n_bootstrap, 100_000, "10,000 resamples already give stable 95% intervals"),
    ] {
        at_most(key, v, max, why)?;
    }
    if s.scalar_rm.normalize && s.scalar_rm.norm_pairs == 0 {
        bail!("`scalar_rm.norm_pairs` must be at least 1 when `scalar_rm.normalize` is true (default 512)");
    }
    non_negative("scalar_rm.score_l2", s.scalar_rm.score_l2)?;
    non_negative("judge.score_l2", s.judge.score_l2)?;
    if !["one_to_one", "identity_warmup", "identity_only", "correction_only", "fraction"].contains(&q.mixing.as_str()) {
        bail!("`seq2seq_rm.mixing` must be `one_to_one`, `identity_warmup`, `identity_only`, `correction_only` or `fraction` (got `{}`)", q.mixing);
    }
    if !(0.0..=1.0).contains(&q.correction_fraction) {
        bail!("`seq2seq_rm.correction_fraction` is the share of correction examples per batch: between 0 and 1 (got {})", q.correction_fraction);
    }
    if q.mixing != "fraction" && !is_half(&q.correction_fraction) {
        bail!("`seq2seq_rm.correction_fraction` applies only to `mixing = \"fraction\"` (mixing is `{}`); set mixing = \"fraction\" or remove the field", q.mixing);
    }
    let j = &s.judge;
    if let Some(layers) = j.lora_layers {
        if !s.model.lora.enabled() {
            bail!("`judge.lora_layers` chooses the judge's adapted blocks; it needs `model.lora.rank` > 0 (this profile trains every weight); remove it");
        }
        j.lora(&s.model.lora).validate().map_err(|e| anyhow::anyhow!("`judge.lora_layers` = {layers}: {e}"))?;
    }
    if !j.adapter.is_empty() {
        if !s.model.lora.enabled() {
            bail!("`judge.adapter` holds LoRA adapters; it needs `model.lora.rank` > 0 (the rank the adapter was trained with)");
        }
        if j.adapter_sha256.len() != 64 || !j.adapter_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("`judge.adapter_sha256` must be the 64 hex digits of {}'s sha256 (`sha256sum {}` prints it)", j.adapter, j.adapter);
        }
    } else if !j.adapter_sha256.is_empty() {
        bail!("`judge.adapter_sha256` is set but `judge.adapter` is not; name the adapter file or remove the hash");
    }
    if !["sum", "mean"].contains(&s.seq2seq_rm.reward_scaling.as_str()) {
        bail!("`seq2seq_rm.reward_scaling` must be `sum` or `mean` (got `{}`)", s.seq2seq_rm.reward_scaling);
    }
    let r = &s.seq2seq_rm.rule;
    if !(r.r_pos > 0.0 && r.r_pos.is_finite()) {
        bail!("`seq2seq_rm.rule.r_pos` (reward of a token before the first divergence) must be > 0 and finite (got {})", r.r_pos);
    }
    if !(r.r_neg < 0.0 && r.r_neg.is_finite()) {
        bail!("`seq2seq_rm.rule.r_neg` (reward of a diverging token) must be < 0 and finite (got {})", r.r_neg);
    }
    if !r.r_match_after.is_finite() {
        bail!("`seq2seq_rm.rule.r_match_after` must be finite");
    }
    let p = &s.ppo;
    if p.ppo_epochs == 0 {
        bail!("`ppo.ppo_epochs` must be > 0");
    }
    if p.minibatch_size == 0 || p.minibatch_size > p.batch_size {
        bail!("`ppo.minibatch_size` must be between 1 and `ppo.batch_size` ({}) (got {})", p.batch_size, p.minibatch_size);
    }
    positive("ppo.clip_ratio", p.clip_ratio)?;
    positive("ppo.value_clip", p.value_clip)?;
    positive("ppo.score_clip", p.score_clip as f64)?;
    non_negative("ppo.kl_coef", p.kl_coef as f64)?;
    non_negative("ppo.vf_coef", p.vf_coef)?;
    for (key, v) in [("ppo.gamma", p.gamma), ("ppo.lambda", p.lambda)] {
        if !(0.0..=1.0).contains(&v) {
            bail!("`{key}` must be in [0, 1] (got {v})");
        }
    }
    if p.max_new_tokens == 0 || s.eval.max_new_tokens == 0 {
        bail!("`ppo.max_new_tokens` and `eval.max_new_tokens` must be > 0");
    }
    if !(p.truncation_penalty <= 0.0 && p.truncation_penalty.is_finite()) {
        bail!("`ppo.truncation_penalty` must be a finite number <= 0 (it is added to a cut-off response's reward; got {})", p.truncation_penalty);
    }
    if s.eval.n_bootstrap < 100 {
        bail!("`eval.n_bootstrap` must be at least 100 (got {})", s.eval.n_bootstrap);
    }
    Ok(())
}
