//! Can the seq2seq RM learn the identity mapping at all? A mechanism check, separate from scale: on
//! random token strings (so nothing but copying predicts the target), a small model trained by the
//! harness's own `train::seq2seq_rm` loop must reproduce most target tokens under teacher forcing,
//! as `reward::seq2seq_teacher_forced` reads them for the divergence rule. If this fails, the RM's
//! input is not visible to its output (a masking or layout bug), whatever the model size.

use burn::prelude::*;
use s2rm::model::LmConfig;
use s2rm::reward::seq2seq_teacher_forced;
use s2rm::text::Template;
use s2rm::train::{LoopCfg, Mixing, PairIds, seq2seq_rm};
use s2rm::util::SplitMix64;

fn random_pairs(n: usize, vocab: u32, seed: u64) -> Vec<PairIds> {
    let mut rng = SplitMix64::new(seed);
    let mut tok = |len: usize| (0..len).map(|_| 7 + (rng.next_u64() % (vocab as u64 - 7)) as u32).collect::<Vec<u32>>();
    (0..n).map(|_| PairIds { prompt: tok(4), chosen: tok(8), rejected: tok(8), ..Default::default() }).collect()
}

fn token_copy_rate(steps: usize, d_model: usize, n_layers: usize) -> f64 {
    let ad = Device::flex().autodiff();
    let vocab = 40;
    let cfg = LmConfig { preset: "test".into(), vocab_size: vocab as usize, d_model, n_layers, n_heads: 4, d_ff: 2 * d_model, max_seq_len: 40, ..Default::default() };
    let tpl = Template::builtin();
    let train = random_pairs(512, vocab, 1);
    let loop_cfg = LoopCfg { steps, lr: 1e-3, warmup_steps: 10, grad_clip: 1.0, cosine: false };
    let (rm, _, _) = seq2seq_rm(cfg.init_seeded(&ad, 5), &tpl, &train, &Mixing { kind: "identity_warmup", identity_warmup: steps, correction_fraction: 0.5 }, 4, 9, 16, &loop_cfg, 7, &ad, None).unwrap();
    let rm = rm.valid();
    let test = random_pairs(64, vocab, 2);
    let prompts: Vec<Vec<u32>> = test.iter().map(|p| p.prompt.clone()).collect();
    let responses: Vec<Vec<u32>> = test.iter().map(|p| tpl.response_target(&p.chosen, 9)).collect();
    let (argmax, _) = seq2seq_teacher_forced(&rm, &tpl, &prompts, &responses, 4, 9, &Device::flex());
    let (mut hit, mut n) = (0usize, 0usize);
    for (r, a) in responses.iter().zip(&argmax) {
        hit += r.iter().zip(a).filter(|(x, y)| x == y).count();
        n += r.len();
    }
    hit as f64 / n as f64
}

#[test]
fn the_seq2seq_rm_learns_to_copy_random_strings() {
    // Measured: 1.000 after 300 steps at d_model 64 and 128 (2 layers); an RM that cannot see its
    // input stays near 1/33 (chance over the 33 content tokens). Also measured (not run here, 70 s
    // each): 40-token strings over a 2048 vocabulary, d_model 128, 300 steps: identity only 1.000,
    // but `one_to_one` mixing (half the targets unrelated to the input) 0.024 — at this scale the
    // correction half of the batch keeps the model from discovering copying at all.
    let rate = token_copy_rate(200, 64, 2);
    assert!(rate > 0.9, "token copy rate {rate:.3}: the seq2seq RM does not learn the identity mapping");
}
