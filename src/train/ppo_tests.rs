//! PPO tests: rollout scores against the full forward, and resuming from a (damaged) checkpoint.

use super::*;
use super::super::ppo_checkpoint::{model_path, optim_path};
use std::path::Path;
use crate::model::LmConfig;
use burn::module::{ModuleVisitor, Param};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fixed function of the tokens that counts its calls (one per PPO step).
struct TokenParity(AtomicUsize);

impl TokenReward for TokenParity {
    fn token_rewards(&self, _prompts: &[Vec<u32>], responses: &[Vec<u32>]) -> Vec<Vec<f32>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        responses.iter().map(|r| r.iter().map(|&t| ((t % 7) as f32 - 3.0) * 0.1).collect()).collect()
    }
    fn kind(&self) -> &'static str {
        "seq2seq"
    }
}

struct Fixture {
    ad: Device,
    text: Text,
    prompts: Vec<Vec<u32>>,
    refusal: RefusalDetector,
    sft: Lm,
}

fn fixture() -> Fixture {
    let ad = Device::flex().autodiff();
    let texts: Vec<String> = (0..50).map(|i| format!("how do I bake bread number {i}? mix flour and water, then wait")).collect();
    let text = Text::train(&texts, 300).expect("tokenizer");
    let cfg = LmConfig { preset: "test".into(), vocab_size: text.vocab_size(), d_model: 16, n_layers: 1, n_heads: 2, d_ff: 32, max_seq_len: 48, ..Default::default() };
    let sft = cfg.init_seeded(&ad, 3);
    let prompts = texts.iter().take(5).map(|t| text.encode(t)).collect();
    Fixture { ad, text, prompts, refusal: RefusalDetector::from_patterns(vec!["sorry".into()]), sft }
}

/// The rollout side's narrowed pass gives exactly the full pass's numbers where they are read
/// (ragged prompts and responses, so left and right padding both occur).
#[test]
fn rollout_scores_equal_the_full_forward_bit_for_bit() {
    let f = fixture();
    let dev = Device::flex();
    let model = f.sft.valid();
    let prefixes: Vec<Vec<u32>> = f.prompts.iter().map(|p| f.text.tpl.policy_prefix(p, 12)).collect();
    let conts: Vec<Vec<u32>> = (0..prefixes.len()).map(|i| (0..(3 + 4 * i) as u32).map(|k| 5 + (k * 7 + i as u32) % 200).collect()).collect();
    let packed = pack(&prefixes, &conts, PAD);
    let (targets, mask) = packed.continuation_targets();
    let (lp, v, ent) = rollout_scores(&model, &packed, &targets, true, &dev);
    let (flp, fv) = forward_policy(&model, &packed, &targets, &dev);
    let (flp, fv) = (to_vec_f32(flp), to_vec_f32(fv));
    let hidden = model.hidden_packed(&packed, &dev);
    let fent = to_vec_f32(crate::model::next_token_entropy(model.logits(hidden)));
    let mut read = 0;
    for (i, &m) in mask.iter().enumerate() {
        if m > 0.0 {
            assert_eq!((lp[i].to_bits(), v[i].to_bits(), ent[i].to_bits()), (flp[i].to_bits(), fv[i].to_bits(), fent[i].to_bits()), "position {i}");
            read += 1;
        }
    }
    assert_eq!(read, conts.iter().map(Vec::len).sum::<usize>());
}

fn spec(checkpoint_every: usize) -> PpoSpec {
    PpoSpec {
        steps: 4,
        batch_size: 3,
        ppo_epochs: 2,
        minibatch_size: 2,
        lr: 3e-3,
        grad_clip: 1.0,
        kl_coef: 0.02,
        clip_ratio: 0.2,
        value_clip: 5.0,
        vf_coef: 0.1,
        gamma: 1.0,
        lambda: 0.95,
        score_clip: 5.0,
        max_new_tokens: 6,
        truncation_penalty: -1.0,
        whiten_advantages: true,
        checkpoint_every,
    }
}

/// Runs PPO; returns the log, every parameter's bits and how many steps actually ran.
fn run(f: &Fixture, cfg: &PpoSpec, checkpoint: Option<&Path>) -> (Vec<String>, Vec<Vec<u32>>, usize) {
    let reward = TokenParity(AtomicUsize::new(0));
    let (policy, log) = train_ppo(PpoInputs {
        sft: &f.sft,
        reward: &reward,
        prompts: &f.prompts,
        cfg,
        max_prompt: 16,
        seed: 7,
        text: &f.text,
        refusal: &f.refusal,
        device: &f.ad,
        checkpoint: checkpoint.map(Path::to_path_buf),
    })
    .expect("PPO");
    struct Bits(Vec<Vec<u32>>);
    impl ModuleVisitor for Bits {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.val().into_data().try_to_vec::<f32>().unwrap().iter().map(|x| x.to_bits()).collect());
        }
    }
    let mut bits = Bits(Vec::new());
    policy.visit(&mut bits);
    // Debug prints each f32 in its shortest round-trip form: equal strings, equal bits.
    (log.iter().map(|l| format!("{l:?}")).collect(), bits.0, reward.0.load(Ordering::Relaxed))
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn resuming_from_a_checkpoint_is_bit_identical_to_an_uninterrupted_run() {
    let f = fixture();
    let (log, params, ran) = run(&f, &spec(0), None);
    assert_eq!((log.len(), ran), (4, 4));
    let dir = tempfile::tempdir().unwrap();

    // checkpoint_every = 2: one checkpoint, after step 2 (none after the last step). The run
    // goes on to the end, so the files on disk are what a run killed after step 2 leaves.
    let prefix = dir.path().join("ppo_seq2seq-7-key");
    let with = run(&f, &spec(2), Some(&prefix));
    assert_eq!((&with.0, &with.1, with.2), (&log, &params, 4), "writing checkpoints changed the run");
    assert_eq!(files(dir.path()), ["ppo_seq2seq-7-key.partial.json", "ppo_seq2seq-7-key.step2.bpk", "ppo_seq2seq-7-key.step2.optim.bpk"]);
    // A fresh call resumes at step 2: two steps run, and the log and the parameters are those
    // of the uninterrupted run, bit for bit.
    let resumed = run(&f, &spec(2), Some(&prefix));
    assert_eq!(resumed.2, 2, "the second call did not resume at step 2");
    assert_eq!(resumed.0, log, "PPO log after resuming");
    assert!(resumed.1 == params, "parameters after resuming differ");
    // Resuming does not depend on checkpoint_every (it is not part of the stage-cache key).
    let resumed = run(&f, &spec(0), Some(&prefix));
    assert_eq!((&resumed.0, &resumed.1, resumed.2), (&log, &params, 2));

    // checkpoint_every = 1: checkpoints after steps 1, 2 and 3; each replaces the one before.
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("p");
    let with = run(&f, &spec(1), Some(&prefix));
    assert_eq!((&with.0, &with.1), (&log, &params));
    assert_eq!(files(dir.path()), ["p.partial.json", "p.step3.bpk", "p.step3.optim.bpk"]);
    let resumed = run(&f, &spec(1), Some(&prefix));
    assert_eq!((&resumed.0, &resumed.1, resumed.2), (&log, &params, 1));
}

#[test]
fn a_damaged_checkpoint_is_ignored_and_the_run_starts_over() {
    let f = fixture();
    let (log, params, _) = run(&f, &spec(0), None);
    type Spoil = fn(&Path);
    let damage: [(&str, Spoil); 5] = [
        ("truncated model", |p| {
            let m = model_path(p, 2);
            let b = std::fs::read(&m).unwrap();
            std::fs::write(&m, &b[..b.len() / 2]).unwrap();
        }),
        ("missing optimizer", |p| std::fs::remove_file(optim_path(p, 2)).unwrap()),
        ("garbage optimizer", |p| std::fs::write(optim_path(p, 2), b"not a burnpack file").unwrap()),
        ("garbage JSON", |p| std::fs::write(partial_path(p), b"{\"step\": 2, \"log\": [").unwrap()),
        ("JSON past the end", |p| {
            let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(partial_path(p)).unwrap()).unwrap();
            v["step"] = 9.into();
            std::fs::write(partial_path(p), serde_json::to_vec(&v).unwrap()).unwrap();
        }),
    ];
    for (what, spoil) in damage {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("p");
        run(&f, &spec(2), Some(&prefix));
        spoil(&prefix);
        let again = run(&f, &spec(2), Some(&prefix));
        assert_eq!(again.2, 4, "{what}: the run did not start over");
        assert!(again.0 == log && again.1 == params, "{what}: the run that started over differs");
    }
}
