//! The burn [`Lm`] in its `llama` form against the plain-Rust reference forward of
//! `s2rm::pretrained::reference` (the test oracle): on a tiny random checkpoint written to a
//! Hugging Face folder and read back (always runs), and on the real SmolLM2-135M-Instruct GGUF
//! (skipped with a message when `make model-smollm2` has not fetched it).

use burn::prelude::*;
use s2rm::model::generate::{GenConfig, generate};
use s2rm::model::{Lm, LmConfig, pack, to_vec_f32};
use s2rm::pretrained::{self, Checkpoint, HostTensor, LlamaConfig, hf_tensor_names, hf_tensor_shape, reference};
use s2rm::text::{PAD, Text};
use s2rm::util::SplitMix64;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Logits `[T][V]` of one unpadded sequence.
fn burn_logits(model: &Lm, tokens: &[u32], device: &Device) -> Vec<Vec<f32>> {
    let packed = pack(&[tokens.to_vec()], &[vec![]], PAD);
    let logits = to_vec_f32(model.logits(model.hidden_packed(&packed, device)));
    let v = logits.len() / tokens.len();
    logits.chunks(v).map(<[f32]>::to_vec).collect()
}

fn random_checkpoint(config: LlamaConfig, seed: u64) -> Checkpoint {
    let mut rng = SplitMix64::new(seed);
    let mut tensors = BTreeMap::new();
    for name in hf_tensor_names(&config) {
        let shape = hf_tensor_shape(&config, &name).unwrap();
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with("norm.weight") {
            (0..n).map(|_| 1.0 + 0.2 * (rng.next_f64() as f32 - 0.5)).collect()
        } else {
            (0..n).map(|_| 0.3 * (rng.next_f64() as f32 - 0.5)).collect()
        };
        tensors.insert(name, HostTensor::new(shape, data).unwrap());
    }
    Checkpoint { config, tensors, tokenizer: None }
}

#[test]
fn burn_llama_equals_the_reference_forward_after_a_hugging_face_round_trip() {
    let device = Device::flex();
    // (tied, hidden, heads, kv heads): grouped-query attention with 2 and 3 query heads per
    // key/value head (SmolLM2 has 9 and 3), and plain multi-head attention.
    for (tied, hidden, heads, kv) in [(true, 32, 4, 2), (false, 32, 4, 2), (true, 36, 9, 3), (true, 24, 6, 6)] {
        let config = LlamaConfig {
            vocab_size: 64,
            hidden_size: hidden,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 64,
            tie_word_embeddings: tied,
            bos_token_id: None,
            eos_token_id: None,
        };
        let original = random_checkpoint(config, 17);
        let dir = tempfile::tempdir().unwrap();
        pretrained::save_hf_dir(&original, dir.path()).unwrap();
        let ckpt = pretrained::load_hf_dir(dir.path()).unwrap();
        assert_eq!(ckpt.tensors, original.tensors, "safetensors round trip changed a tensor");
        let cfg = LmConfig::from_checkpoint("tiny-llama", &dir.path().display().to_string(), &ckpt);
        let model = cfg.load_pretrained(&ckpt, &device).unwrap();
        let tokens: Vec<u32> = vec![5, 17, 3, 60, 22, 22, 9, 41, 0, 33, 12];
        let ours = burn_logits(&model, &tokens, &device);
        let want = reference::logits(&original, &tokens);
        let gap = ours.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(gap < 1e-4, "tied = {tied}, heads {heads}/{kv}: burn vs reference logits differ by {gap}");
    }
}

fn smollm2() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} not found (run `make model-smollm2`)", path.display());
        None
    }
}

#[test]
fn smollm2_in_burn_matches_the_reference_and_answers_in_english() {
    let Some(path) = smollm2() else { return };
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/smollm2_reference.json")).unwrap())
            .unwrap();
    let ids = |k: &str| -> Vec<u32> { reference[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect() };
    let device = Device::flex();
    let ckpt = pretrained::load(&path).unwrap();
    let cfg = LmConfig::from_checkpoint("smollm2-135m", &path.display().to_string(), &ckpt);
    let model = cfg.load_pretrained(&ckpt, &device).unwrap();
    let text = Text::from_checkpoint(&ckpt).unwrap();

    // Logits of the chat prompt, every position and every vocabulary entry, against the oracle.
    let chat = ids("chat_prompt_ids");
    let ours = burn_logits(&model, &chat, &device);
    let want = reference::logits(&ckpt, &chat);
    let gap = ours.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(gap < 2e-3, "burn vs reference logits differ by {gap}");

    // The harness's ChatML template builds exactly the chat prompt the model was tuned on.
    assert_eq!(text.tpl.policy_prefix(&text.encode("What is the capital of France?"), usize::MAX), chat);

    // Perplexity of a fixed English sentence: scrambled or mis-permuted weights are far above.
    let ppl = s2rm::sample::perplexity(&model, &ids("sentence_ids"), &device);
    let want = reference["perplexity"].as_f64().unwrap();
    assert!((ppl / want - 1.0).abs() < 0.01, "perplexity {ppl} vs reference {want}");

    // Greedy decoding with the KV cache gives the reference's answer, token for token.
    let cfg = GenConfig { max_new_tokens: 12, eos: text.tpl.eos, pad: PAD, greedy: true };
    let out = generate(&model, &[chat], &[0], &cfg, &device);
    assert_eq!(out.tokens[0], ids("greedy_ids"));
    assert_eq!(text.decode(&out.tokens[0]), "The capital of France is Paris.");
}
