//! Tests on tiny synthetic checkpoints: HF directory round trip, GGUF fixtures written with
//! llama.cpp's conventions (permuted Q/K, reversed dims, quantized payloads), the rebuilt
//! tokenizer, and properties of the reference forward.

use super::gguf::{gguf_name, permute_checkpoint_qk, permute_qk};
use super::quant::{GgmlType, dequantize, encode};
use super::reference::{self, logits, matmul_t};
use super::*;
use gguf_rs_lib::format::metadata::{MetadataArray, MetadataValue};
use gguf_rs_lib::format::types::GGUFValueType;
use gguf_rs_lib::prelude::GGUFBuilder;
use gguf_rs_lib::tensor::TensorType;
use std::collections::BTreeMap;
use std::path::Path;

/// SplitMix64: a tiny deterministic generator for weights.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0 // uniform in [-1, 1)
    }
}

fn tiny_config(hidden: usize, intermediate: usize, tied: bool) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 64,
        hidden_size: hidden,
        intermediate_size: intermediate,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 128,
        tie_word_embeddings: tied,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
    }
}

fn random_checkpoint(config: LlamaConfig, seed: u64) -> Checkpoint {
    let mut rng = Rng(seed);
    let mut tensors = BTreeMap::new();
    for name in hf_tensor_names(&config) {
        let shape = hf_tensor_shape(&config, &name).unwrap();
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if shape.len() == 1 {
            (0..n).map(|_| 1.0 + 0.2 * rng.next_f32()).collect()
        } else {
            let s = 1.0 / (shape[1] as f32).sqrt();
            (0..n).map(|_| rng.next_f32() * s * if name.contains("embed") { 4.0 } else { 1.5 }).collect()
        };
        tensors.insert(name, HostTensor::new(shape, data).unwrap());
    }
    let ckpt = Checkpoint { config, tensors, tokenizer: None };
    ckpt.validate().unwrap();
    ckpt
}

const TOKENS: [u32; 12] = [1, 5, 9, 33, 2, 0, 63, 17, 17, 40, 8, 12];

// ---------------------------------------------------------------------------------------------
// A 64-token byte-level BPE vocabulary in GGUF form.

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const MERGES: [&str; 23] = [
    "t h", "th e", "Ġ the", "i n", "Ġ a", "a n", "an d", "Ġ and", "e r", "o n", "r e", "Ġ t",
    "Ġ s", "e s", "o r", "a t", "e n", "i s", "Ġ is", "Ġ o", "Ġo n", "Ġ c", "a l",
];

fn tiny_vocab() -> Vec<String> {
    let mut v: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    v.extend(('a'..='z').map(String::from));
    v.extend(["Ġ".to_string(), "Ċ".to_string()]);
    v.extend(('0'..='9').map(String::from));
    v.extend(MERGES.iter().map(|m| m.replace(' ', "")));
    assert_eq!(v.len(), 64);
    v
}

fn string_array(items: impl IntoIterator<Item = String>) -> MetadataValue {
    let values = items.into_iter().map(MetadataValue::String).collect();
    MetadataValue::Array(Box::new(MetadataArray::new(GGUFValueType::String, values).unwrap()))
}

/// Writes `ckpt` as llama.cpp would: llama.cpp names, dims reversed, Q/K rows permuted, each
/// tensor in the type `ty_of` picks, plus `llama.*` and `tokenizer.ggml.*` metadata.
fn write_gguf(ckpt: &Checkpoint, path: &Path, ty_of: impl Fn(&str) -> GgmlType) {
    let c = &ckpt.config;
    let types: Vec<MetadataValue> = (0..c.vocab_size)
        .map(|i| MetadataValue::I32(if i < SPECIALS.len() { 3 } else { 1 }))
        .collect();
    let mut b = GGUFBuilder::new()
        .add_metadata("general.architecture", MetadataValue::String("llama".into()))
        .add_metadata("llama.block_count", MetadataValue::U32(c.num_hidden_layers as u32))
        .add_metadata("llama.context_length", MetadataValue::U32(c.max_position_embeddings as u32))
        .add_metadata("llama.embedding_length", MetadataValue::U32(c.hidden_size as u32))
        .add_metadata("llama.feed_forward_length", MetadataValue::U32(c.intermediate_size as u32))
        .add_metadata("llama.attention.head_count", MetadataValue::U32(c.num_attention_heads as u32))
        .add_metadata("llama.attention.head_count_kv", MetadataValue::U32(c.num_key_value_heads as u32))
        .add_metadata("llama.attention.layer_norm_rms_epsilon", MetadataValue::F32(c.rms_norm_eps as f32))
        .add_metadata("llama.rope.freq_base", MetadataValue::F32(c.rope_theta as f32))
        .add_metadata("llama.rope.dimension_count", MetadataValue::U32(c.head_dim() as u32))
        .add_metadata("tokenizer.ggml.model", MetadataValue::String("gpt2".into()))
        .add_metadata("tokenizer.ggml.pre", MetadataValue::String("smollm".into()))
        .add_metadata("tokenizer.ggml.tokens", string_array(tiny_vocab()))
        .add_metadata("tokenizer.ggml.merges", string_array(MERGES.iter().map(|m| m.to_string())))
        .add_metadata(
            "tokenizer.ggml.token_type",
            MetadataValue::Array(Box::new(MetadataArray::new(GGUFValueType::I32, types).unwrap())),
        )
        .add_metadata("tokenizer.ggml.bos_token_id", MetadataValue::U32(1))
        .add_metadata("tokenizer.ggml.eos_token_id", MetadataValue::U32(2));
    for (name, t) in &ckpt.tensors {
        let mut data = t.data.clone();
        if name.ends_with("q_proj.weight") {
            data = permute_qk(&data, t.shape[0], t.shape[1], c.num_attention_heads).unwrap();
        } else if name.ends_with("k_proj.weight") {
            data = permute_qk(&data, t.shape[0], t.shape[1], c.num_key_value_heads).unwrap();
        }
        let ty = ty_of(name);
        let (bytes, tt) = match ty {
            GgmlType::F32 => (data.iter().flat_map(|v| v.to_le_bytes()).collect(), TensorType::F32),
            GgmlType::F16 => (
                data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
                TensorType::F16,
            ),
            GgmlType::BF16 => (
                data.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
                TensorType::BF16,
            ),
            GgmlType::Q4_0 => (encode::q4_0(&data), TensorType::Q4_0),
            GgmlType::Q4_1 => (encode::q4_1(&data), TensorType::Q4_1),
            GgmlType::Q8_0 => (encode::q8_0(&data), TensorType::Q8_0),
        };
        let dims: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
        b = b.add_tensor(gguf_name(name).unwrap(), dims, tt, bytes).unwrap();
    }
    b.build_to_file(path).unwrap();
}

/// What a tensor looks like after `write_gguf` with type `ty` and `load_gguf`.
fn expected_after_round_trip(ckpt: &Checkpoint, name: &str, ty: GgmlType) -> Vec<f32> {
    let c = &ckpt.config;
    let t = &ckpt.tensors[name];
    let heads = if name.ends_with("q_proj.weight") {
        Some(c.num_attention_heads)
    } else if name.ends_with("k_proj.weight") {
        Some(c.num_key_value_heads)
    } else {
        None
    };
    let mut data = t.data.clone();
    if let Some(h) = heads {
        data = permute_qk(&data, t.shape[0], t.shape[1], h).unwrap();
    }
    let bytes = match ty {
        GgmlType::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        GgmlType::BF16 => data.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
        GgmlType::Q4_0 => encode::q4_0(&data),
        GgmlType::Q4_1 => encode::q4_1(&data),
        GgmlType::Q8_0 => encode::q8_0(&data),
    };
    let mut out = dequantize(ty, &bytes, data.len()).unwrap();
    if let Some(h) = heads {
        out = gguf::unpermute_qk(&out, t.shape[0], t.shape[1], h).unwrap();
    }
    out
}

// ---------------------------------------------------------------------------------------------

#[test]
fn matmul_t_matches_naive() {
    let mut rng = Rng(7);
    for (n, k, m) in [(1, 1, 1), (3, 13, 5), (4, 64, 33), (2, 576, 7)] {
        let x: Vec<f32> = (0..n * k).map(|_| rng.next_f32()).collect();
        let w: Vec<f32> = (0..m * k).map(|_| rng.next_f32()).collect();
        let y = matmul_t(&x, n, k, &w, m);
        for t in 0..n {
            for o in 0..m {
                let want: f64 = (0..k).map(|i| x[t * k + i] as f64 * w[o * k + i] as f64).sum();
                assert!((y[t * m + o] as f64 - want).abs() < 1e-4 * (k as f64).sqrt(), "{n} {k} {m}");
            }
        }
    }
}

#[test]
fn rope_rotate_half_pairs_i_with_i_plus_half() {
    let mut x = [1.0f32, 0.0, 0.0, 0.0];
    // Position 0 is the identity.
    reference::rope_rotate_half(&mut x, 0, 10_000.0);
    assert_eq!(x, [1.0, 0.0, 0.0, 0.0]);
    // Position 1, i = 0 has frequency 1: (x0, x2) rotates by 1 radian; x1, x3 stay 0.
    reference::rope_rotate_half(&mut x, 1, 10_000.0);
    assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6, "{x:?}");
    assert_eq!((x[1], x[3]), (0.0, 0.0));
}

#[test]
fn hf_dir_round_trip_keeps_tensors_and_logits() {
    for tied in [true, false] {
        let ckpt = random_checkpoint(tiny_config(16, 40, tied), 42);
        let dir = tempfile::tempdir().unwrap();
        save_hf_dir(&ckpt, dir.path()).unwrap();
        assert!(dir.path().join("config.json").exists());
        assert!(dir.path().join("model.safetensors").exists());
        assert!(!dir.path().join("tokenizer.json").exists());
        let back = load_hf_dir(dir.path()).unwrap();
        assert_eq!(back.config, ckpt.config);
        assert_eq!(back.tensors, ckpt.tensors);
        assert_eq!(back.tensors.contains_key("lm_head.weight"), !tied);
        let (a, b) = (logits(&ckpt, &TOKENS), logits(&back, &TOKENS));
        assert_eq!(a, b);
        assert_eq!(a.len(), TOKENS.len());
        assert!(a.iter().all(|r| r.len() == 64 && r.iter().all(|v| v.is_finite())));
        // load() dispatches directories to load_hf_dir.
        assert_eq!(load(dir.path()).unwrap().tensors, ckpt.tensors);
    }
}

#[test]
fn hf_config_json_reads_transformers_style_fields() {
    let text = r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152,
        "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "rms_norm_eps": 1e-05,
        "rope_theta": 100000, "max_position_embeddings": 8192, "tie_word_embeddings": true,
        "bos_token_id": 1, "eos_token_id": [2, 0], "rope_scaling": null, "hidden_act": "silu",
        "torch_dtype": "bfloat16"}"#;
    let c = hf::parse_config(text).unwrap();
    assert_eq!((c.hidden_size, c.num_hidden_layers, c.num_key_value_heads), (576, 30, 3));
    assert_eq!((c.rms_norm_eps, c.rope_theta), (1e-5, 100_000.0));
    assert_eq!((c.bos_token_id, c.eos_token_id, c.tie_word_embeddings), (Some(1), Some(2), true));
    assert_eq!(hf::parse_config(&hf::config_json(&c)).unwrap(), c);
    assert!(hf::parse_config(&text.replace("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\"}")).is_err());
    assert!(hf::parse_config(&text.replace("\"llama\"", "\"gpt2\"")).is_err());
}

#[test]
fn hf_dir_reads_bf16_and_drops_tied_lm_head() {
    let ckpt = random_checkpoint(tiny_config(16, 40, true), 3);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), hf::config_json(&ckpt.config)).unwrap();
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = ckpt
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.data.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect()))
        .collect();
    let emb = &ckpt.tensors["model.embed_tokens.weight"];
    named.push(("lm_head.weight".into(), emb.shape.clone(), vec![0u8; emb.numel() * 2]));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = named
        .iter()
        .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    let back = load_hf_dir(dir.path()).unwrap();
    assert!(!back.tensors.contains_key("lm_head.weight"));
    for (n, t) in &ckpt.tensors {
        let want: Vec<f32> = t.data.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
        assert_eq!(back.tensors[n].data, want, "{n}");
    }
}

#[test]
fn gguf_f32_fixture_loads_to_the_same_checkpoint() {
    for tied in [true, false] {
        let ckpt = random_checkpoint(tiny_config(16, 40, tied), 11);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_gguf(&ckpt, &path, |_| GgmlType::F32);
        let back = load(&path).unwrap();
        assert_eq!(back.config, ckpt.config);
        assert_eq!(back.tensors, ckpt.tensors, "tied = {tied}");
        assert_eq!(logits(&back, &TOKENS), logits(&ckpt, &TOKENS));
        assert!(back.tokenizer.is_some());
    }
}

#[test]
fn gguf_quantized_fixture_dequantizes_and_unpermutes() {
    // hidden 32 so that every row is a whole number of 32-element blocks.
    let ckpt = random_checkpoint(tiny_config(32, 64, true), 5);
    let ty_of = |name: &str| {
        if name.contains("embed_tokens") {
            GgmlType::Q8_0
        } else if name.contains("q_proj") || name.contains("gate_proj") {
            GgmlType::Q4_1
        } else if name.contains("k_proj") || name.contains("up_proj") {
            GgmlType::Q4_0
        } else if name.contains("down_proj") {
            GgmlType::F16
        } else if name.contains("o_proj") {
            GgmlType::BF16
        } else {
            GgmlType::F32
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-q.gguf");
    write_gguf(&ckpt, &path, ty_of);
    let back = load_gguf(&path).unwrap();
    assert_eq!(back.config, ckpt.config);
    for (name, t) in &ckpt.tensors {
        let got = &back.tensors[name];
        assert_eq!(got.shape, t.shape, "{name}");
        assert_eq!(got.data, expected_after_round_trip(&ckpt, name, ty_of(name)), "{name}");
        // And close to the original: the un-permutation put every row back where it was.
        let amax = t.data.iter().fold(0f32, |a, v| a.max(v.abs()));
        let err = got.data.iter().zip(&t.data).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(err <= amax / 7.0, "{name}: max error {err}, amax {amax}");
    }
    // Quantization moves the logits a little, a wrong Q/K layout much more.
    let (a, b) = (logits(&ckpt, &TOKENS), logits(&back, &TOKENS));
    let diff = a.iter().flatten().zip(b.iter().flatten()).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff < 1.0, "quantized logits differ by {diff}");
}

#[test]
fn wrong_qk_layout_changes_the_logits() {
    let ckpt = random_checkpoint(tiny_config(16, 40, true), 9);
    let mut wrong = ckpt.clone();
    permute_checkpoint_qk(&mut wrong).unwrap();
    let (a, b) = (logits(&ckpt, &TOKENS), logits(&wrong, &TOKENS));
    // Position 0 has no rotation and attends only to itself: identical there.
    assert_eq!(a[0], b[0]);
    let diff = a[1..].iter().flatten().zip(b[1..].iter().flatten()).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff > 1e-3, "permuted Q/K rows gave the same logits");
}

#[test]
fn forward_is_causal() {
    let ckpt = random_checkpoint(tiny_config(16, 40, false), 21);
    let full = logits(&ckpt, &TOKENS);
    let prefix = logits(&ckpt, &TOKENS[..5]);
    for t in 0..5 {
        for (x, y) in full[t].iter().zip(&prefix[t]) {
            assert!((x - y).abs() < 1e-5);
        }
    }
    let last = reference::last_logits(&ckpt, &TOKENS[..5]).unwrap();
    assert_eq!(last, prefix[4]);
    let ppl = reference::perplexity(&ckpt, &TOKENS).unwrap();
    assert!(ppl.is_finite() && ppl > 1.0);
    assert!(reference::try_logits(&ckpt, &[64]).is_err());
}

#[test]
fn tokenizer_rebuilt_from_gguf_metadata() {
    let ckpt = random_checkpoint(tiny_config(16, 40, true), 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_gguf(&ckpt, &path, |_| GgmlType::F32);
    let tok = load_gguf(&path).unwrap().tokenizer.unwrap();
    let text = "<|im_start|>the cat is on 42 and then<|im_end|>\n";
    let enc = tok.encode(text, false).unwrap();
    let vocab = tiny_vocab();
    let pieces: Vec<&str> = enc.get_ids().iter().map(|&i| vocab[i as usize].as_str()).collect();
    assert_eq!(
        pieces,
        // BPE applies the lowest-ranked merge first: "a t" (15) beats "Ġ c" (21), "o n" (9) beats
        // "Ġ o" (19), "Ġ a" (4) beats "a n" (5); digits are split one by one.
        [
            "<|im_start|>", "the", "Ġc", "at", "Ġis", "Ġ", "on", "Ġ", "4", "2", "Ġa", "n", "d", "Ġthe",
            "n", "<|im_end|>", "Ċ",
        ]
    );
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
    assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "the cat is on 42 and then\n");
    // The same JSON is what write_tokenizer_json puts next to the model.
    let out = dir.path().join("tokenizer.json");
    tokenizer::write_tokenizer_json(&path, &out).unwrap();
    let again = tokenizers::Tokenizer::from_file(&out).unwrap();
    assert_eq!(again.encode(text, false).unwrap().get_ids(), enc.get_ids());
    // save_hf_dir carries the tokenizer along.
    let with_tok = load_gguf(&path).unwrap();
    let hf_dir = dir.path().join("hf");
    save_hf_dir(&with_tok, &hf_dir).unwrap();
    let back = load_hf_dir(&hf_dir).unwrap();
    assert_eq!(back.tokenizer.unwrap().encode(text, false).unwrap().get_ids(), enc.get_ids());
}

#[test]
fn load_rejects_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.bin");
    std::fs::write(&p, b"nope").unwrap();
    assert!(load(&p).is_err());
    assert!(load(&dir.path().join("missing.gguf")).is_err());
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    assert!(load(&bad).is_err());
}
