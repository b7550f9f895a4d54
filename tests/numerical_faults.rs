//! Numerical faults: a NaN or Inf in a loss, a reward or an advantage stops the stage with an error
//! naming the stage and the step (never a panic, never a silent NaN in the logs).

use burn::prelude::*;
use s2rm::data::RefusalDetector;
use s2rm::model::{Lm, LmConfig, f32_tensor};
use s2rm::reward::TokenReward;
use s2rm::spec::PpoSpec;
use s2rm::text::Text;
use s2rm::train::ppo::{PpoInputs, train_ppo};
use s2rm::train::{LoopCfg, continuation_nll, pretrain, run_loop};

fn tiny(device: &Device) -> Lm {
    LmConfig { preset: "test".into(), vocab_size: 300, d_model: 16, n_layers: 1, n_heads: 2, d_ff: 32, max_seq_len: 48, ..Default::default() }
        .init_seeded(device, 1)
}

fn cfg(steps: usize, lr: f64) -> LoopCfg {
    LoopCfg { steps, lr, warmup_steps: 0, grad_clip: 1.0, cosine: false }
}

#[test]
fn nan_loss_stops_the_stage_naming_stage_and_step() {
    let ad = Device::flex().autodiff();
    let model = tiny(&ad);
    // A real loss (so that the healthy steps can back-propagate), poisoned at step 3.
    let e = run_loop(model, "sft", &cfg(10, 1e-3), |m, step| {
        let loss = continuation_nll(m, &[vec![2]], &[vec![10, 11, 1]], &ad);
        loss.add_scalar(if step == 3 { f32::NAN } else { 0.0 })
    })
    .err()
    .expect("a NaN loss must fail the stage");
    let e = format!("{e:#}");
    assert!(e.contains("stage `sft`") && e.contains("step 3") && e.contains("NaN"), "{e}");

    let e = run_loop(tiny(&ad), "judge", &cfg(5, 1e-3), |_, _| f32_tensor(vec![f32::INFINITY], [1], &ad))
        .err()
        .expect("an infinite loss must fail the stage");
    let e = format!("{e:#}");
    assert!(e.contains("stage `judge`") && e.contains("step 0") && e.contains("inf"), "{e}");
}

#[test]
fn a_diverging_learning_rate_stops_pretraining() {
    let ad = Device::flex().autodiff();
    let docs: Vec<Vec<u32>> = (0..8).map(|i| (0..20).map(|j| 7 + ((i * 13 + j * 5) % 250) as u32).collect()).collect();
    let r = pretrain(tiny(&ad), &docs, 16, 4, &cfg(40, 1e30), 0, &ad);
    let e = format!("{:#}", r.err().expect("lr = 1e30 must diverge"));
    assert!(e.contains("stage `pretrain`") && e.contains("at step"), "{e}");
}

/// A reward model that returns NaN (or Inf) for every token.
struct BadReward(f32);

impl TokenReward for BadReward {
    fn token_rewards(&self, _prompts: &[Vec<u32>], responses: &[Vec<u32>]) -> Vec<Vec<f32>> {
        responses.iter().map(|r| vec![self.0; r.len()]).collect()
    }
    fn kind(&self) -> &'static str {
        "scalar"
    }
}

fn ppo_spec() -> PpoSpec {
    PpoSpec {
        steps: 3,
        batch_size: 2,
        ppo_epochs: 1,
        minibatch_size: 2,
        lr: 1e-4,
        grad_clip: 1.0,
        kl_coef: 0.02,
        clip_ratio: 0.2,
        value_clip: 5.0,
        vf_coef: 0.1,
        gamma: 1.0,
        lambda: 0.95,
        score_clip: 5.0,
        max_new_tokens: 4,
        truncation_penalty: -1.0,
        whiten_advantages: true,
        checkpoint_every: 0,
    }
}

#[test]
fn non_finite_reward_stops_ppo_naming_stage_and_step() {
    let ad = Device::flex().autodiff();
    let texts: Vec<String> = (0..50).map(|i| format!("how do I bake bread number {i}? mix flour and water")).collect();
    let text = Text::train(&texts, 300).expect("tokenizer");
    let sft = tiny(&ad);
    let prompts: Vec<Vec<u32>> = texts.iter().take(4).map(|t| text.encode(t)).collect();
    let refusal = RefusalDetector::from_patterns(vec!["sorry".into()]);
    let cfg = ppo_spec();
    for bad in [f32::NAN, f32::NEG_INFINITY] {
        let reward = BadReward(bad);
        let r = train_ppo(PpoInputs {
            sft: &sft,
            reward: &reward,
            prompts: &prompts,
            cfg: &cfg,
            max_prompt: 16,
            seed: 1,
            text: &text,
            refusal: &refusal,
            device: &ad,
            checkpoint: None,
        });
        let e = format!("{:#}", r.err().expect("a non-finite reward must fail PPO"));
        assert!(e.contains("stage `ppo-scalar`") && e.contains("reward is") && e.contains("step 0"), "{e}");
    }
}
