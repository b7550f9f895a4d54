//! The invariants every comparison rests on: KV-cache decoding equals the full forward pass,
//! log-probs recorded while sampling equal those of the training forward pass (batched and padded),
//! a row's numbers do not depend on its batch mates, and the scalar score is read at the last real
//! response token, never on padding. Each invariant is checked for both transformer families:
//! `gpt` (learned positions) and `llama` (rotary positions, grouped-query attention, tied head).

use burn::prelude::*;
use s2rm::model::generate::{GenConfig, Sampler, choose_on_device, generate, generate_with};
use s2rm::model::{Arch, Lm, LmConfig, i64_tensor, next_token_logprobs, pack, to_vec_f32};

const TOL: f32 = 1e-4;

fn config(arch: Arch) -> LmConfig {
    let gpt = LmConfig {
        preset: "test".into(),
        vocab_size: 64,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        d_ff: 64,
        max_seq_len: 48,
        ..Default::default()
    };
    match arch {
        Arch::Gpt => gpt,
        Arch::Llama => LmConfig {
            arch,
            n_kv_heads: 2,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
            tie_embeddings: true,
            ..gpt
        },
    }
}

/// The same test model in both families.
fn tiny_models(device: &Device, seed: u64) -> Vec<(Arch, Lm)> {
    [Arch::Gpt, Arch::Llama]
        .into_iter()
        .map(|a| (a, config(a).init_seeded(device, seed)))
        .collect()
}

/// Full-forward log-prob of each continuation token.
fn forward_logprobs(model: &Lm, prefixes: &[Vec<u32>], conts: &[Vec<u32>], device: &Device) -> Vec<Vec<f32>> {
    let packed = pack(prefixes, conts, 0);
    let (targets, _) = packed.continuation_targets();
    let tm = packed.t - 1;
    let hidden = model.hidden_packed(&packed, device);
    let lp = to_vec_f32(next_token_logprobs(
        model.logits(hidden),
        i64_tensor(targets, [packed.b, tm], device),
    ));
    conts
        .iter()
        .enumerate()
        .map(|(row, c)| (0..c.len()).map(|j| lp[row * tm + packed.p + j - 1]).collect())
        .collect()
}

/// Every CPU backend in this build: flex, and LibTorch when built with `--features libtorch`
/// (`CARGO_TARGET_DIR=target/libtorch LIBTORCH_USE_PYTORCH=1 cargo test --features libtorch`).
/// Each device's name goes to stderr first, which a failing test prints.
fn for_each_device(test: fn(Device)) {
    eprintln!("device: flex");
    test(Device::flex());
    #[cfg(feature = "libtorch")]
    #[allow(deprecated)]
    {
        eprintln!("device: libtorch");
        test(Device::libtorch());
    }
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![3, 10, 11, 12, 13, 14, 4], vec![3, 20, 4], vec![3, 30, 31, 32, 4]]
}

#[test]
fn sampled_logprobs_equal_training_forward_logprobs() {
    for_each_device(sampled_logprobs_equal_training_forward_logprobs_on);
}

fn sampled_logprobs_equal_training_forward_logprobs_on(device: Device) {
    for (arch, model) in tiny_models(&device, 7) {
        let cfg = GenConfig {
            max_new_tokens: 12,
            eos: 1,
            pad: 0,
            greedy: false,
        };
        let out = generate(&model, &prompts(), &[11, 12, 13], &cfg, &device);
        let full = forward_logprobs(&model, &prompts(), &out.tokens, &device);
        let mut max_gap = 0f32;
        for (rec, fwd) in out.logprobs.iter().zip(&full) {
            assert_eq!(rec.len(), fwd.len());
            for (a, b) in rec.iter().zip(fwd) {
                max_gap = max_gap.max((a - b).abs());
            }
        }
        assert!(max_gap < TOL, "{arch:?}: generation vs training log-prob gap {max_gap}");
        assert!(
            out.tokens.iter().any(|t| t.len() > 1),
            "{arch:?}: nothing was generated"
        );
    }
}

#[test]
fn kv_cache_greedy_decoding_equals_full_forward_argmax() {
    for_each_device(kv_cache_greedy_decoding_equals_full_forward_argmax_on);
}

fn kv_cache_greedy_decoding_equals_full_forward_argmax_on(device: Device) {
    for (arch, model) in tiny_models(&device, 3) {
        let cfg = GenConfig {
            max_new_tokens: 10,
            eos: 1,
            pad: 0,
            greedy: true,
        };
        let out = generate(&model, &prompts(), &[0, 0, 0], &cfg, &device);
        // Re-derive each greedy token with a full forward over the prefix + tokens so far (no cache).
        for (row, toks) in out.tokens.iter().enumerate() {
            let prefix = prompts()[row].clone();
            for j in 0..toks.len() {
                let mut seq = prefix.clone();
                seq.extend_from_slice(&toks[..j]);
                let packed = pack(&[seq], &[vec![]], 0);
                let hidden = model.hidden_packed(&packed, &device);
                let logits = to_vec_f32(model.logits(hidden).narrow(1, packed.t - 1, 1));
                let best = (0..logits.len())
                    .max_by(|&a, &b| logits[a].partial_cmp(&logits[b]).unwrap())
                    .unwrap();
                assert_eq!(
                    best as u32, toks[j],
                    "{arch:?} row {row} token {j}: cache and full forward disagree"
                );
            }
        }
    }
}

#[test]
fn device_sampling_chooses_the_host_samplers_tokens() {
    for_each_device(device_sampling_chooses_the_host_samplers_tokens_on);
}

/// The device sampler draws the same uniform from each row's stream as the host sampler, so away
/// from rounding at a boundary of the cumulative distribution it picks the same token; over these
/// 6 rows × 16 tokens × 2 families no draw falls that close.
fn device_sampling_chooses_the_host_samplers_tokens_on(device: Device) {
    let rows: Vec<Vec<u32>> = prompts().into_iter().cycle().take(6).collect();
    let seeds: Vec<u64> = (40..46).collect();
    for (arch, model) in tiny_models(&device, 9) {
        for greedy in [false, true] {
            let cfg = GenConfig { max_new_tokens: 16, eos: 1, pad: 0, greedy };
            let host = generate_with(&model, &rows, &seeds, &cfg, &device, Sampler::Host);
            let on_device = generate_with(&model, &rows, &seeds, &cfg, &device, Sampler::Device);
            assert_eq!(host.tokens, on_device.tokens, "{arch:?} greedy={greedy}: host and device samplers chose differently");
            assert_eq!(host.finished, on_device.finished);
            for (h, d) in host.logprobs.iter().flatten().zip(on_device.logprobs.iter().flatten()) {
                assert!((h - d).abs() < TOL, "{arch:?} greedy={greedy}: log-prob {h} (host) vs {d} (device)");
            }
            assert!(host.tokens.iter().map(Vec::len).sum::<usize>() > 12, "{arch:?}: nothing was generated");
        }
    }
}

#[test]
fn cpu_backends_sample_on_the_host() {
    // CPU runs keep the host sampler, which every committed CPU result used.
    assert_eq!(Sampler::for_device(&Device::flex()), Sampler::Host);
    assert_eq!(Sampler::for_device(&Device::flex().autodiff()), Sampler::Host);
}

#[test]
fn device_sampling_inverts_the_cumulative_distribution() {
    let device = Device::flex();
    // Probabilities 0.1, 0.2, 0, 0.7 in row 0 and 0.5, 0.5, 0, 0 in row 1 (`-1e30`: probability 0).
    let (z, l) = (-1e30f32, |p: f32| p.ln());
    let logits = Tensor::<2>::from_data(TensorData::new(vec![l(0.1), l(0.2), z, l(0.7), l(0.5), l(0.5), z, z], [2, 4]), &device);
    let pick = |u0: f32, u1: f32| -> Vec<usize> { choose_on_device(logits.clone(), &[u0, u1], false).iter().map(|c| c.0).collect() };
    assert_eq!(pick(0.05, 0.2), [0, 0]);
    assert_eq!(pick(0.15, 0.6), [1, 1]);
    // Past 0.3 the next token with probability is 3, not the zero-probability 2.
    assert_eq!(pick(0.31, 0.75), [3, 1]);
    // The largest uniform never falls past the last token that has probability.
    let top = 1.0 - f32::EPSILON / 2.0;
    assert_eq!(pick(top, top), [3, 1]);
    let chosen = choose_on_device(logits.clone(), &[0.05, 0.6], false);
    assert!((chosen[0].1 - 0.1f32.ln()).abs() < 1e-6 && (chosen[1].1 - 0.5f32.ln()).abs() < 1e-6, "log-probs {chosen:?}");
    // Greedy: the argmax, the first of tied maxima.
    let greedy: Vec<usize> = choose_on_device(logits, &[], true).iter().map(|c| c.0).collect();
    assert_eq!(greedy, [3, 0]);
}

#[test]
fn a_row_does_not_depend_on_its_batch_mates() {
    for_each_device(a_row_does_not_depend_on_its_batch_mates_on);
}

fn a_row_does_not_depend_on_its_batch_mates_on(device: Device) {
    for (arch, model) in tiny_models(&device, 5) {
        let cfg = GenConfig {
            max_new_tokens: 8,
            eos: 1,
            pad: 0,
            greedy: false,
        };
        let batch = generate(&model, &prompts(), &[21, 22, 23], &cfg, &device);
        for row in 0..3 {
            let alone = generate(&model, &prompts()[row..row + 1], &[21 + row as u64], &cfg, &device);
            assert_eq!(
                alone.tokens[0], batch.tokens[row],
                "{arch:?} row {row} tokens differ alone vs batched"
            );
            for (a, b) in alone.logprobs[0].iter().zip(&batch.logprobs[row]) {
                assert!((a - b).abs() < TOL, "{arch:?} row {row}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn scalar_score_is_read_at_the_last_real_token_not_padding() {
    for_each_device(scalar_score_is_read_at_the_last_real_token_not_padding_on);
}

fn scalar_score_is_read_at_the_last_real_token_not_padding_on(device: Device) {
    // Give the score head weights so scores vary by position (it starts at zero): one
    // Bradley–Terry step on an autodiff copy moves it off zero.
    for arch in [Arch::Gpt, Arch::Llama] {
        let model = {
            let ad = device.clone().autodiff();
            let m = config(arch).init_seeded(&ad, 9);
            let mut optim = s2rm::train::adam(1.0);
            let s = m.scores_at_last(&[vec![3, 10, 4], vec![3, 11, 4]], &[vec![12, 13, 1], vec![14, 1]], &ad);
            let loss = s2rm::train::losses::bradley_terry_loss(s.clone().narrow(0, 0, 1), s.narrow(0, 1, 1), 0.0);
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &m);
            optim.step(0.5, m, grads).valid()
        };
        let prefixes = vec![vec![3, 10, 11, 4], vec![3, 20, 4]];
        let conts = vec![vec![12, 13, 14, 15, 16, 1], vec![17, 1]];
        let batched = to_vec_f32(model.scores_at_last(&prefixes, &conts, &device));
        // Each row alone (no padding at all) must give the same score.
        for row in 0..2 {
            let alone = to_vec_f32(model.scores_at_last(&prefixes[row..row + 1], &conts[row..row + 1], &device));
            assert!(
                (alone[0] - batched[row]).abs() < TOL,
                "row {row}: {} vs {}",
                alone[0],
                batched[row]
            );
        }
        // And it is the score at the last real token: reading one position later (padding) differs.
        let packed = pack(&prefixes, &conts, 0);
        let hidden = model.hidden_packed(&packed, &device);
        let all = to_vec_f32(model.scores(hidden));
        let last = packed.last_real_index()[1];
        assert_eq!(last, packed.p + 1);
        assert!((all[packed.t + last] - batched[1]).abs() < TOL);
        assert!(
            (all[packed.t + last + 1] - batched[1]).abs() > 1e-6,
            "{arch:?}: score on padding equals the real score"
        );
    }
}

#[test]
fn seq2seq_teacher_forcing_in_row_chunks_equals_one_pass() {
    for_each_device(seq2seq_teacher_forcing_in_row_chunks_equals_one_pass_on);
}

fn seq2seq_teacher_forcing_in_row_chunks_equals_one_pass_on(device: Device) {
    use s2rm::reward::seq2seq_teacher_forced_chunked;
    let tpl = s2rm::text::Template::builtin();
    let prompts = vec![vec![10, 11, 12], vec![20], vec![30, 31]];
    let responses = vec![vec![40, 41, 1], vec![42, 43, 44, 45, 1], vec![46]];
    for (arch, model) in tiny_models(&device, 13) {
        let (am1, lp1) = seq2seq_teacher_forced_chunked(&model, &tpl, &prompts, &responses, 8, 8, 3, &device);
        let (am2, lp2) = seq2seq_teacher_forced_chunked(&model, &tpl, &prompts, &responses, 8, 8, 1, &device);
        assert_eq!(am1, am2, "{arch:?}: argmax differs in chunks");
        for (a, b) in lp1.iter().flatten().zip(lp2.iter().flatten()) {
            assert!((a - b).abs() < TOL, "{arch:?}: {a} vs {b}");
        }
    }
}

/// `s2rm::fused`'s log-softmax, softmax and LayerNorm give burn's values and gradients (on
/// LibTorch they are LibTorch's fused kernels, with a hand-written backward; elsewhere burn's op).
#[test]
fn fused_ops_match_burns_composition() {
    for_each_device(fused_ops_match_burns_composition_on);
}

fn fused_ops_match_burns_composition_on(device: Device) {
    use burn::module::Param;
    use burn::nn::LayerNormConfig;
    use burn::tensor::activation;
    use s2rm::fused;
    use s2rm::model::{LAYER_NORM_EPS, f32_tensor};

    let ad = device.clone().autodiff();
    let shape = [2, 3, 7];
    let n = shape.iter().product::<usize>();
    let data = |seed: f32| (0..n).map(|i| (i as f32 * 0.37 + seed).sin() * 3.0).collect::<Vec<_>>();
    // A loss whose gradient differs at every entry.
    let weights = f32_tensor(data(1.0), shape, &ad);
    let value_and_grad = |f: &dyn Fn(Tensor<3>) -> Tensor<3>| {
        let x = f32_tensor(data(0.0), shape, &ad).require_grad();
        let y = f(x.clone());
        let grads = (y.clone() * weights.clone()).sum().backward();
        (to_vec_f32(y), to_vec_f32(x.grad(&grads).expect("x has a gradient")))
    };
    let close = |name: &str, a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-5 * (1.0 + y.abs()), "{name}[{i}]: {x} vs {y}");
        }
    };
    let probe = f32_tensor(data(0.0), shape, &ad).require_grad();
    let on_libtorch = format!("{device:?}").to_lowercase().contains("torch");
    assert_eq!(fused::is_fused(&probe), on_libtorch, "the fused path is taken exactly on LibTorch ({device:?})");

    for dim in [1, 2] {
        let (y, g) = value_and_grad(&|x| fused::log_softmax(x, dim));
        let (y0, g0) = value_and_grad(&|x| activation::log_softmax(x, dim));
        close("log_softmax", &y, &y0);
        close("log_softmax grad", &g, &g0);
        let (y, g) = value_and_grad(&|x| fused::softmax(x, dim));
        let (y0, g0) = value_and_grad(&|x| activation::softmax(x, dim));
        close("softmax", &y, &y0);
        close("softmax grad", &g, &g0);
    }

    // Next-token log-probs (one op on LibTorch) against burn's slice, log-softmax and gather.
    let targets = || i64_tensor(vec![3, 0, 6, 2], [2, 2], &ad);
    let lp_weights = f32_tensor(vec![0.5, -1.5, 2.0, 1.0], [2, 2], &ad);
    let token_lp = |f: &dyn Fn(Tensor<3>) -> Tensor<2>| {
        let x = f32_tensor(data(0.0), shape, &ad).require_grad();
        let y = f(x.clone());
        let grads = (y.clone() * lp_weights.clone()).sum().backward();
        (to_vec_f32(y), to_vec_f32(x.grad(&grads).expect("x has a gradient")))
    };
    let (y, g) = token_lp(&|x| next_token_logprobs(x, targets()));
    let (y0, g0) = token_lp(&|x| activation::log_softmax(x.narrow(1, 0, 2), 2).gather(2, targets().unsqueeze_dim::<3>(2)).reshape([2, 2]));
    close("next_token_logprobs", &y, &y0);
    close("next_token_logprobs grad", &g, &g0);

    // LayerNorm with a non-trivial scale and shift, gradients of input, scale and shift.
    let mut ln = LayerNormConfig::new(7).with_epsilon(LAYER_NORM_EPS).init(&ad);
    ln.gamma = Param::from_tensor(f32_tensor((0..7).map(|i| 0.5 + i as f32 * 0.25).collect(), [7], &ad));
    ln.beta = Some(Param::from_tensor(f32_tensor((0..7).map(|i| i as f32 * 0.1 - 0.3).collect(), [7], &ad)));
    let run = |fused_op: bool| {
        let x = f32_tensor(data(0.0), shape, &ad).require_grad();
        let y = if fused_op { fused::layer_norm(&ln, x.clone(), LAYER_NORM_EPS) } else { ln.forward(x.clone()) };
        let grads = (y.clone() * weights.clone()).sum().backward();
        let gamma = ln.gamma.val().grad(&grads).expect("gamma has a gradient");
        let beta = ln.beta.as_ref().unwrap().val().grad(&grads).expect("beta has a gradient");
        [to_vec_f32(y), to_vec_f32(x.grad(&grads).expect("x has a gradient")), to_vec_f32(gamma), to_vec_f32(beta)]
    };
    let (fused_out, burn_out) = (run(true), run(false));
    for (name, (a, b)) in ["layer_norm", "layer_norm dx", "layer_norm dgamma", "layer_norm dbeta"].iter().zip(fused_out.iter().zip(&burn_out)) {
        close(name, a, b);
    }
}

/// On flex, next-token log-probs are one op (`s2rm::fused::flex`) whose values and gradients are
/// burn's composition (slice, log-softmax, gather) bit for bit: plain and tracked tensors, more
/// rows than one parallel task takes (64), a ragged last task, non-contiguous logits, a gradient
/// with a zero and negative entries, and rows whose maximum is tied.
#[test]
fn flex_next_token_logprobs_equal_burns_composition_bit_for_bit() {
    use s2rm::fused::flex;
    use s2rm::model::f32_tensor;

    let device = Device::flex();
    let ad = device.clone().autodiff();
    let (b, t, v) = (3, 70, 301);
    // Stored as [B, V, T] and viewed as [B, T, V]: the op must read non-contiguous logits.
    let data: Vec<f32> = (0..b * v * t).map(|i| ((i as f32 * 0.731).sin() * 8.0).round() / 2.0 + (i % 7) as f32 * 0.013).collect();
    let logits = |dev: &Device| f32_tensor(data.clone(), [b, v, t], dev).swap_dims(1, 2);
    let targets = |dev: &Device| i64_tensor((0..b * (t - 1)).map(|i| ((i * 37 + 11) % v) as i64).collect(), [b, t - 1], dev);
    let composed = |x: Tensor<3>, dev: &Device| {
        burn::tensor::activation::log_softmax(x.narrow(1, 0, t - 1), 2).gather(2, targets(dev).unsqueeze_dim::<3>(2)).reshape([b, t - 1])
    };
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();

    let fused = flex::next_token_logprobs(logits(&device), &targets(&device)).unwrap_or_else(|_| panic!("flex logits take the flex op"));
    assert_eq!(bits(to_vec_f32(fused)), bits(to_vec_f32(composed(logits(&device), &device))), "plain values");

    let w: Vec<f32> = (0..b * (t - 1)).map(|i| if i == 5 { 0.0 } else { (i as f32 * 1.3).cos() * 2.0 }).collect();
    let value_and_grad = |op: &dyn Fn(Tensor<3>) -> Tensor<2>| {
        let x = logits(&ad).require_grad();
        let y = op(x.clone());
        let grads = (y.clone() * f32_tensor(w.clone(), [b, t - 1], &ad)).sum().backward();
        (bits(to_vec_f32(y)), bits(to_vec_f32(x.grad(&grads).expect("x has a gradient"))))
    };
    let (y, g) = value_and_grad(&|x| flex::next_token_logprobs(x, &targets(&ad)).unwrap_or_else(|_| panic!("tracked flex logits take the flex op")));
    let (y0, g0) = value_and_grad(&|x| composed(x, &ad));
    assert_eq!(y, y0, "tracked values");
    assert_eq!(g, g0, "gradients");
    // Log-probs at every position (no shift) and entropies, for PPO's rollout: burn's log-softmax
    // gathered at the targets and `entropy_of` of it, bit for bit.
    let all: Vec<i64> = (0..b * t).map(|i| ((i * 53 + 7) % v) as i64).collect();
    let (lp, ent) = flex::logprobs_and_entropies(&logits(&device), &all, true).expect("flex logits");
    let log_p = burn::tensor::activation::log_softmax(logits(&device), 2);
    let lp0 = to_vec_f32(log_p.clone().gather(2, i64_tensor(all.clone(), [b, t, 1], &device)));
    assert_eq!(bits(lp), bits(lp0), "log-probs at every position");
    assert_eq!(bits(ent), bits(to_vec_f32(s2rm::model::entropy_of(log_p))), "entropies");
    // The public entry point takes it too.
    let (y1, g1) = value_and_grad(&|x| next_token_logprobs(x, targets(&ad)));
    assert_eq!((y1, g1), (y0, g0), "s2rm::model::next_token_logprobs");
}

#[test]
fn flex_swiglu_equals_burns_composition_bit_for_bit() {
    use s2rm::model::f32_tensor;

    let device = Device::flex();
    let ad = device.clone().autodiff();
    let (b, t, f) = (2, 37, 1000);
    // gate and up are the two halves of one [B, T, 2F] tensor, as in the model: non-contiguous views.
    // Values span both branches of the sigmoid, large magnitudes and exact zeros.
    let data: Vec<f32> = (0..b * t * 2 * f).map(|i| if i % 97 == 0 { 0.0 } else { (i as f32 * 0.377).sin() * 12.0 + (i % 5) as f32 * 0.01 }).collect();
    let halves = |x: Tensor<3>| (x.clone().narrow(2, 0, f), x.narrow(2, f, f));
    let composed = |gate: Tensor<3>, up: Tensor<3>| burn::tensor::activation::silu(gate) * up;
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();

    let (gate, up) = halves(f32_tensor(data.clone(), [b, t, 2 * f], &device));
    let fused = s2rm::fused::swiglu::swiglu(gate.clone(), up.clone()).unwrap_or_else(|_| panic!("flex tensors take the flex op"));
    assert_eq!(bits(to_vec_f32(fused)), bits(to_vec_f32(composed(gate, up))), "plain values");

    let w: Vec<f32> = (0..b * t * f).map(|i| if i == 3 { 0.0 } else { (i as f32 * 0.91).cos() * 3.0 }).collect();
    let value_and_grad = |op: &dyn Fn(Tensor<3>, Tensor<3>) -> Tensor<3>| {
        let x = f32_tensor(data.clone(), [b, t, 2 * f], &ad).require_grad();
        let (gate, up) = halves(x.clone());
        let y = op(gate, up);
        let grads = (y.clone() * f32_tensor(w.clone(), [b, t, f], &ad)).sum().backward();
        (bits(to_vec_f32(y)), bits(to_vec_f32(x.grad(&grads).expect("x has a gradient"))))
    };
    let (y, g) = value_and_grad(&|gate, up| s2rm::fused::swiglu::swiglu(gate, up).unwrap_or_else(|_| panic!("tracked flex tensors take the flex op")));
    let (y0, g0) = value_and_grad(&|gate, up| composed(gate, up));
    assert_eq!(y, y0, "tracked values");
    assert_eq!(g, g0, "gradients of gate and up");
    // Only up tracked (gate a constant), and the public entry point.
    let x = f32_tensor(data.clone(), [b, t, 2 * f], &ad);
    let (gate, _) = halves(x);
    let up = f32_tensor(data[..b * t * f].to_vec(), [b, t, f], &ad).require_grad();
    let grad_of_up = |y: Tensor<3>| bits(to_vec_f32(up.grad(&(y * f32_tensor(w.clone(), [b, t, f], &ad)).sum().backward()).expect("up has a gradient")));
    assert_eq!(grad_of_up(s2rm::fused::swiglu(gate.clone(), up.clone())), grad_of_up(composed(gate, up.clone())), "gradient of up alone");
}

#[test]
fn flex_autodiff_softmax_equals_burns_composition_bit_for_bit() {
    use s2rm::model::{MASKED, f32_tensor};

    let ad = Device::flex().autodiff();
    // Attention-shaped scores [B, H, T, T] over 3 row chunks (ragged last), stored as [B, H, T, T]
    // transposed: non-contiguous. A causal mask of MASKED entries, tied maxima and exact zeros.
    let (b, h, t) = (2, 3, 29);
    let n = b * h * t * t;
    let data: Vec<f32> = (0..n)
        .map(|i| {
            let (q, k) = ((i / t) % t, i % t);
            if k > q { MASKED } else if i % 13 == 0 { 2.5 } else { ((i as f32 * 0.613).sin() * 6.0).round() / 4.0 }
        })
        .collect();
    let scores = |dev: &Device| f32_tensor(data.clone(), [b, h, t, t], dev).swap_dims(2, 3);
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let w: Vec<f32> = (0..n).map(|i| if i % 17 == 0 { 0.0 } else { (i as f32 * 1.7).cos() * 2.0 }).collect();
    let value_and_grad = |op: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        let x = scores(&ad).require_grad();
        let y = op(x.clone());
        let grads = (y.clone() * f32_tensor(w.clone(), [b, h, t, t], &ad)).sum().backward();
        (bits(to_vec_f32(y)), bits(to_vec_f32(x.grad(&grads).expect("x has a gradient"))))
    };
    let (y, g) = value_and_grad(&|x| s2rm::fused::softmax::softmax_last(x).unwrap_or_else(|_| panic!("autodiff flex tensors take the op")));
    let (y0, g0) = value_and_grad(&|x| burn::tensor::activation::softmax(x, 3));
    assert_eq!(y, y0, "values");
    assert_eq!(g, g0, "gradients");
    // Untracked under autodiff (a frozen block), and the public entry point.
    let plain = |y: Tensor<4>| bits(to_vec_f32(y));
    assert_eq!(plain(s2rm::fused::softmax(scores(&ad), 3)), plain(burn::tensor::activation::softmax(scores(&ad), 3)), "untracked values");
    assert_eq!(value_and_grad(&|x| s2rm::fused::softmax(x, 3)), (y0, g0), "s2rm::fused::softmax");
    // Outside autodiff flex keeps its own fused softmax: the op declines.
    assert!(s2rm::fused::softmax::softmax_last(scores(&Device::flex())).is_err());
}
