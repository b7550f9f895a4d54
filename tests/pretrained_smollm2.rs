//! SmolLM2-135M-Instruct through `s2rm::pretrained`: the real GGUF file, its rebuilt tokenizer and
//! the reference forward. Every test is skipped (with a message) when the model is not in the
//! cache: run `make model-smollm2` first, or point `S2RM_SMOLLM2_GGUF` at the file.
//!
//! `tests/data/smollm2_reference.json` holds what these tests measure, for the burn model's tests;
//! regenerate it with `cargo test --test pretrained_smollm2 -- --ignored write_reference_json`.

use s2rm::pretrained::{self, Checkpoint, LlamaConfig, gguf, reference};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

const GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const CHAT: &str = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
/// Its ids; llama.cpp's own tokenizer (`llama-tokenize --no-bos`) gives the same on this file.
const CHAT_IDS: [u32; 16] = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198];
const SENTENCE: &str = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park, \
and the children were playing happily on the grass.";
/// The measured reference perplexity of SENTENCE, 16.275 (see the reference JSON; an independent
/// numpy forward gives 16.275 too), × 1.2.
/// Q/K rows left in llama.cpp's order (the un-permutation skipped) give 34.0: RoPE then pairs
/// the wrong dimensions, which garbles positions but not token content, so the model degrades
/// rather than collapsing (perplexity doubles; it does not reach the hundreds).
const PERPLEXITY_BOUND: f64 = 19.6;

fn gguf_path() -> PathBuf {
    match std::env::var_os("S2RM_SMOLLM2_GGUF") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m").join(GGUF_NAME),
    }
}

fn reference_json_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2_reference.json")
}

/// The checkpoint, loaded once for all tests of this binary; `None` (and a message) without it.
fn model() -> Option<&'static Checkpoint> {
    static MODEL: OnceLock<Option<Checkpoint>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = gguf_path();
            if !path.exists() {
                return None;
            }
            let start = Instant::now();
            let ckpt = pretrained::load(&path).expect("loading SmolLM2 GGUF");
            eprintln!("loaded {} in {:.2} s", path.display(), start.elapsed().as_secs_f64());
            Some(ckpt)
        })
        .as_ref()
        .or_else(|| {
            eprintln!("skipped: {} not found (run `make model-smollm2`)", gguf_path().display());
            None
        })
}

fn encode(ckpt: &Checkpoint, text: &str) -> Vec<u32> {
    let tok = ckpt.tokenizer.as_ref().expect("GGUF carries a tokenizer");
    tok.encode(text, false).unwrap().get_ids().to_vec()
}

fn decode(ckpt: &Checkpoint, ids: &[u32], skip_special: bool) -> String {
    ckpt.tokenizer.as_ref().unwrap().decode(ids, skip_special).unwrap()
}

#[test]
fn smollm2_config_and_tensors() {
    let Some(ckpt) = model() else { return };
    let want = LlamaConfig {
        vocab_size: 49152,
        hidden_size: 576,
        intermediate_size: 1536,
        num_hidden_layers: 30,
        num_attention_heads: 9,
        num_key_value_heads: 3,
        rms_norm_eps: 1e-5,
        rope_theta: 100_000.0,
        max_position_embeddings: 8192,
        tie_word_embeddings: true,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
    };
    assert_eq!(ckpt.config, want);
    assert_eq!(ckpt.tensors.len(), 1 + 30 * 9 + 1);
    assert!(!ckpt.tensors.contains_key("lm_head.weight"));
    assert_eq!(ckpt.tensors["model.layers.0.self_attn.k_proj.weight"].shape, [192, 576]);
    assert_eq!(ckpt.tensors["model.layers.29.mlp.down_proj.weight"].shape, [576, 1536]);
    let params: usize = ckpt.tensors.values().map(|t| t.numel()).sum();
    assert_eq!(params, 134_515_008);
    ckpt.validate().unwrap();
}

#[test]
fn smollm2_tokenizer_round_trips_a_chat_prompt() {
    let Some(ckpt) = model() else { return };
    let ids = encode(ckpt, CHAT);
    assert_eq!(ids, CHAT_IDS);
    // The specials are single ids: <|im_start|> = 1, <|im_end|> = 2.
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 2);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 1);
    assert_eq!(decode(ckpt, &ids, false), CHAT);
    assert_eq!(decode(ckpt, &ids, true), "user\nWhat is the capital of France?\nassistant\n");
    let tok = ckpt.tokenizer.as_ref().unwrap();
    for (s, id) in [("<|endoftext|>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2), ("<empty_output>", 16)] {
        assert_eq!(tok.token_to_id(s), Some(id));
        assert_eq!(encode(ckpt, s), [id]);
    }
}

/// `tests/data/smollm2_llama_cpp_tokens.json`: 305 texts and the ids llama.cpp's own tokenizer
/// (`llama-tokenize --no-bos`) gives them on the same GGUF file.
#[test]
fn smollm2_tokenizer_agrees_with_llama_cpp() {
    let Some(ckpt) = model() else { return };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2_llama_cpp_tokens.json");
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 300);
    for case in cases {
        let text = case[0].as_str().unwrap();
        let want: Vec<u32> = case[1].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(encode(ckpt, text), want, "{text:?}");
        assert_eq!(decode(ckpt, &want, false), text);
    }
    assert_eq!(encode(ckpt, SENTENCE), SENTENCE_IDS);
}

/// SENTENCE's ids (llama.cpp's `llama-tokenize` gives the same).
const SENTENCE_IDS: [u32; 29] = [
    504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 657, 436, 253, 12926, 1194, 281, 260,
    5949, 28, 284, 260, 1122, 592, 4464, 22698, 335, 260, 5372, 30,
];

#[test]
fn smollm2_reference_perplexity_is_low() {
    let Some(ckpt) = model() else { return };
    let ids = encode(ckpt, SENTENCE);
    let start = Instant::now();
    let ppl = reference::perplexity(ckpt, &ids).unwrap();
    eprintln!("perplexity {ppl:.4} ({} tokens, {:.2} s)", ids.len(), start.elapsed().as_secs_f64());
    assert!(ppl < PERPLEXITY_BOUND, "perplexity {ppl} >= {PERPLEXITY_BOUND}");
    assert!(ppl > 2.0, "perplexity {ppl} is implausibly low");
}

/// An independent numpy implementation (gguf-py's dequantization, llama.cpp's interleaved RoPE on
/// the *permuted* Q/K rows, float32) gave these logits for SENTENCE: positions 0 and 28, ids
/// 0..5. Agreement checks dequantization, un-permutation and the rotate_half RoPE together.
#[test]
fn smollm2_reference_matches_independent_numpy_forward() {
    let Some(ckpt) = model() else { return };
    let lg = reference::logits(ckpt, &SENTENCE_IDS);
    let numpy: [(usize, [f32; 5]); 2] = [
        (0, [15.655280, 6.824465, 10.591203, 5.109440, 6.594436]),
        (28, [1.874341, 4.028452, 11.169151, 0.755261, 0.799376]),
    ];
    for (pos, want) in numpy {
        for (i, w) in want.iter().enumerate() {
            assert!((lg[pos][i] - w).abs() < 2e-3, "position {pos} id {i}: {} vs numpy {w}", lg[pos][i]);
        }
    }
}

#[test]
fn smollm2_without_unpermuting_qk_fails_the_bound() {
    let Some(ckpt) = model() else { return };
    // Put Q/K back into llama.cpp's order, as a loader that forgot to un-permute would leave them.
    let mut wrong = ckpt.clone();
    gguf::permute_checkpoint_qk(&mut wrong).unwrap();
    let ppl = reference::perplexity(&wrong, &SENTENCE_IDS).unwrap();
    eprintln!("perplexity with Q/K left in llama.cpp order: {ppl:.1}");
    assert!(ppl > 1.5 * PERPLEXITY_BOUND, "mis-permuted perplexity {ppl} is not well above the bound");
}

#[test]
fn smollm2_greedy_answer_mentions_paris() {
    let Some(ckpt) = model() else { return };
    let start = Instant::now();
    let new = reference::greedy(ckpt, &CHAT_IDS, 12, ckpt.config.eos_token_id).unwrap();
    let text = decode(ckpt, &new, true);
    eprintln!("greedy ({:.1} s): {text:?}", start.elapsed().as_secs_f64());
    assert!(text.contains("Paris"), "greedy answer {text:?}");
}

/// What the reference JSON records, recomputed.
fn reference_record(ckpt: &Checkpoint) -> Value {
    let ids = encode(ckpt, SENTENCE);
    let lg = reference::logits(ckpt, &ids);
    let lp = reference::token_log_probs(ckpt, &ids).unwrap();
    let ppl = (-lp.iter().sum::<f64>() / lp.len() as f64).exp();
    let positions: Vec<Value> = [0, ids.len() / 2, ids.len() - 1]
        .iter()
        .map(|&t| {
            let row = &lg[t];
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            json!({
                "position": t,
                "first8": &row[..8],
                "top5": order[..5].iter().map(|&i| json!([i, row[i]])).collect::<Vec<_>>(),
            })
        })
        .collect();
    let greedy = reference::greedy(ckpt, &CHAT_IDS, 12, ckpt.config.eos_token_id).unwrap();
    json!({
        "model": GGUF_NAME,
        "gguf_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "note": "s2rm::pretrained::reference (f32, HF rotate_half RoPE) on the GGUF loaded by \
                 s2rm::pretrained::load_gguf. Tokens are encoded without BOS.",
        "sentence": SENTENCE,
        "sentence_ids": ids,
        "perplexity": ppl,
        "next_token_log_probs": lp,
        "logits": positions,
        "chat_prompt": CHAT,
        "chat_prompt_ids": CHAT_IDS,
        "greedy_ids": greedy,
        "greedy_text": decode(ckpt, &greedy, false),
    })
}

#[test]
fn smollm2_reference_json_is_current() {
    let Some(ckpt) = model() else { return };
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(reference_json_path()).unwrap()).unwrap();
    let now = reference_record(ckpt);
    for key in ["sentence", "sentence_ids", "chat_prompt_ids", "greedy_ids", "greedy_text"] {
        assert_eq!(stored[key], now[key], "{key}");
    }
    let close = |a: &Value, b: &Value, what: &str| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{what}: stored {a}, now {b}");
    };
    close(&stored["perplexity"], &now["perplexity"], "perplexity");
    assert!(stored["perplexity"].as_f64().unwrap() * 1.2 <= PERPLEXITY_BOUND + 0.05);
    for (a, b) in stored["next_token_log_probs"].as_array().unwrap().iter().zip(now["next_token_log_probs"].as_array().unwrap()) {
        close(a, b, "next_token_log_probs");
    }
    for (a, b) in stored["logits"].as_array().unwrap().iter().zip(now["logits"].as_array().unwrap()) {
        for (x, y) in a["first8"].as_array().unwrap().iter().zip(b["first8"].as_array().unwrap()) {
            close(x, y, "first8");
        }
        assert_eq!(a["top5"].as_array().unwrap().iter().map(|p| p[0].clone()).collect::<Vec<_>>(),
                   b["top5"].as_array().unwrap().iter().map(|p| p[0].clone()).collect::<Vec<_>>());
    }
}

#[test]
#[ignore = "rewrites tests/data/smollm2_reference.json; run by hand"]
fn write_reference_json() {
    let ckpt = model().expect("the model file is needed to write the reference");
    let text = serde_json::to_string_pretty(&reference_record(ckpt)).unwrap();
    std::fs::create_dir_all(reference_json_path().parent().unwrap()).unwrap();
    std::fs::write(reference_json_path(), text + "\n").unwrap();
}
