//! The stage table itself: which stages each spec and profile runs, what each reads, whether it
//! is shared or per seed, and which spec fields key its cache entry.

use super::cache::stems_for;
use super::*;
use std::path::Path;

fn spec(file: &str, profile: &str, sets: &[&str]) -> Spec {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments").join(file);
    crate::spec::load(&path, profile, &sets).unwrap().spec
}

/// From-scratch presets: a BPE tokenizer and a base LM trained here.
const FROM_SCRATCH: &str = "\
data         shared   reads -                                                key experiment.base_seed data file:data.manifest file:data.refusal_patterns
tokenizer    shared   reads data                                             key model.vocab_size
pretrain     shared   reads tokenizer                                        key model pretrain cached
sft          shared   reads tokenizer,pretrain                               key sft cached
judge        shared   reads tokenizer,pretrain                               key judge !judge.curve_every cached
seq2seq_rm   per-seed reads tokenizer,sft                                    key seq2seq_rm !seq2seq_rm.rule !seq2seq_rm.reward_scaling cached
scalar_rm    per-seed reads tokenizer,sft                                    key scalar_rm cached
ppo_scalar   per-seed reads tokenizer,sft,scalar_rm                          key ppo !ppo.checkpoint_every cached
ppo_seq2seq  per-seed reads tokenizer,sft,seq2seq_rm                         key ppo !ppo.checkpoint_every seq2seq_rm.rule seq2seq_rm.reward_scaling cached
eval         per-seed reads tokenizer,sft,judge,ppo_scalar,ppo_seq2seq       key eval
";

/// A pretrained checkpoint brings the tokenizer and the base LM: no pretraining.
const PRETRAINED: &str = "\
data         shared   reads -                                                key experiment.base_seed data file:data.manifest file:data.refusal_patterns
checkpoint   shared   reads -                                                key model file:model.checkpoint
tokenizer    shared   reads data,checkpoint                                  key 
base         shared   reads tokenizer,checkpoint                             key 
sft          shared   reads tokenizer,base                                   key sft cached
judge        shared   reads tokenizer,base                                   key judge !judge.curve_every cached
seq2seq_rm   per-seed reads tokenizer,sft                                    key seq2seq_rm !seq2seq_rm.rule !seq2seq_rm.reward_scaling cached
scalar_rm    per-seed reads tokenizer,sft                                    key scalar_rm cached
ppo_scalar   per-seed reads tokenizer,sft,scalar_rm                          key ppo !ppo.checkpoint_every cached
ppo_seq2seq  per-seed reads tokenizer,sft,seq2seq_rm                         key ppo !ppo.checkpoint_every seq2seq_rm.rule seq2seq_rm.reward_scaling cached
eval         per-seed reads tokenizer,sft,judge,ppo_scalar,ppo_seq2seq       key eval
";

/// A controlled world generates its data, and its gold reward judges: no judge stage; eval reads
/// the data stage (the world) in the judge's place.
const WORLD: &str = "\
data         shared   reads -                                                key experiment.base_seed data file:data.manifest file:data.refusal_patterns
tokenizer    shared   reads data                                             key model.vocab_size
pretrain     shared   reads tokenizer                                        key model pretrain cached
sft          shared   reads tokenizer,pretrain                               key sft cached
seq2seq_rm   per-seed reads tokenizer,sft                                    key seq2seq_rm !seq2seq_rm.rule !seq2seq_rm.reward_scaling cached
scalar_rm    per-seed reads tokenizer,sft                                    key scalar_rm cached
ppo_scalar   per-seed reads tokenizer,sft,scalar_rm                          key ppo !ppo.checkpoint_every cached
ppo_seq2seq  per-seed reads tokenizer,sft,seq2seq_rm                         key ppo !ppo.checkpoint_every seq2seq_rm.rule seq2seq_rm.reward_scaling cached
eval         per-seed reads tokenizer,sft,data,ppo_scalar,ppo_seq2seq        key eval
";

#[test]
fn every_spec_and_profile_has_the_expected_stage_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        for profile in crate::spec::defined_profiles(&path) {
            let s = spec(&file, &profile, &[]);
            let want = if s.data.world.is_some() {
                WORLD
            } else if s.model.is_pretrained() {
                PRETRAINED
            } else {
                FROM_SCRATCH
            };
            assert_eq!(describe(&table(&s)), want, "{file}, profile {profile}");
            // Every key field exists in the spec (the cache refuses a key it cannot resolve).
            stems_for(&s);
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} spec × profile pairs found");
}

/// Which (stage, seed) keys differ between the smoke spec and the smoke spec with `sets`.
fn changed(sets: &[&str]) -> Vec<String> {
    let (a, b) = (spec("safety.toml", "smoke", &[]), spec("safety.toml", "smoke", sets));
    let (ka, kb) = (stems_for(&a), stems_for(&b));
    let mut out = Vec::new();
    for s in table(&a) {
        let seeds = if s.scope == Scope::Shared { vec![a.experiment.base_seed] } else { a.experiment.seeds.clone() };
        for seed in seeds {
            if ka.stem(s.name, seed) != kb.stem(s.name, seed) {
                out.push(format!("{}/{seed}", s.name));
            }
        }
    }
    out
}

#[test]
fn a_stage_key_names_only_what_the_stage_and_its_inputs_read() {
    let after_seq2seq = ["seq2seq_rm/1", "ppo_seq2seq/1", "eval/1", "seq2seq_rm/2", "ppo_seq2seq/2", "eval/2"];
    let mut want: Vec<String> = after_seq2seq.iter().map(|s| s.to_string()).collect();
    want.sort();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // A seq2seq-RM training field retrains the seq2seq RM and what reads it; SFT, the judge, the
    // scalar RM and its PPO run are reused.
    assert_eq!(sorted(changed(&["seq2seq_rm.steps=5"])), want);
    // The reward rule and scaling change no trained weight: only the seq2seq PPO run and eval.
    assert_eq!(sorted(changed(&["seq2seq_rm.reward_scaling=\"mean\""])), ["eval/1", "eval/2", "ppo_seq2seq/1", "ppo_seq2seq/2"]);
    assert_eq!(sorted(changed(&["seq2seq_rm.rule.r_neg=-0.5"])), ["eval/1", "eval/2", "ppo_seq2seq/1", "ppo_seq2seq/2"]);
    // Evaluation settings retrain nothing; checkpointing changes nothing at all.
    assert_eq!(changed(&["eval.max_prompts_per_set=3", "eval.max_new_tokens=5"]), ["eval/1", "eval/2"]);
    assert!(changed(&["ppo.checkpoint_every=0"]).is_empty());
    assert!(changed(&["experiment.output_dir=\"elsewhere\"", "experiment.seeds=[1, 2, 3]"]).is_empty());
    // A PPO field: both PPO runs and eval, nothing before them.
    assert_eq!(sorted(changed(&["ppo.lr=1e-3"])), ["eval/1", "eval/2", "ppo_scalar/1", "ppo_scalar/2", "ppo_seq2seq/1", "ppo_seq2seq/2"]);
    // Pretraining: everything from the base LM on, not the data or the tokenizer.
    let all = changed(&["pretrain.steps=7"]);
    assert_eq!(all.len(), 3 + 5 * 2, "{all:?}");
    assert!(!all.iter().any(|s| s.starts_with("data/") || s.starts_with("tokenizer/")), "{all:?}");
    // The data table keys everything.
    assert_eq!(changed(&["data.max_pairs_per_split=40"]).len(), 5 + 5 * 2);
}

#[test]
fn measured_pairs_spread_over_every_source() {
    // 8 pairs of source a then 2 of source b: the first 5 would be a's alone
    let items: Vec<char> = "aaaaaaaabb".chars().collect();
    assert_eq!(super::spread(&items, 5).into_iter().collect::<String>(), "aaaab");
    assert_eq!(super::spread(&items, 0), items);
    assert_eq!(super::spread(&items, 99), items);
    assert_eq!(super::spread(&items, 1), vec!['a']);
}
