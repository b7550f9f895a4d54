//! `exp` over a slice of `f32`, sixteen (AVX-512) or eight (AVX2) at a time, bit for bit equal to the
//! libm `expf` that `f32::exp` calls.
//!
//! The fused flex ops reproduce burn's compositions exactly, so they must use the same `exp`:
//! glibc's (2.27 and later: `sysdeps/ieee754/flt-32/e_expf.c`), which on a CPU with FMA resolves
//! to `__expf_fma`. Called once per element, it was 6–7 % of a SmolLM2 LoRA training step on flex
//! (over 50 million calls a step in the log-softmax over a vocabulary of 49,152, forward and
//! backward). Here the same algorithm runs in AVX-512 registers, eight doubles to a register (or
//! AVX2, four):
//! `x·32/ln2 = k + r`, `2^(k/32)` from glibc's 32-entry table, a cubic in `r`, and the same fused
//! multiply-adds in the same places as glibc's FMA build (read from its machine code), so the same
//! bits. Inputs outside glibc's fast path (|x| ≥ 85.2, inf, NaN) take `f32::exp` itself.
//!
//! Only on x86-64 Linux with glibc, on a CPU with AVX-512F or AVX2, and FMA; anywhere else `f32::exp`
//! element by element, as before (another libm, or glibc without FMA, rounds differently). The
//! unit test compares the two on every 97th `f32` bit pattern; an ignored test on all of them.

/// `exp` of every element of `xs`, in place.
pub fn exp_in_place(xs: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("fma") {
            // SAFETY: the CPU has the features the function is compiled for (checked just above).
            unsafe { simd::exp_in_place_avx512(xs) };
            return;
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: as above.
            unsafe { simd::exp_in_place_avx2(xs) };
            return;
        }
    }
    for x in xs {
        *x = x.exp();
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
mod simd {
    use std::arch::x86_64::*;

    /// glibc's `__exp2f_data`: `tab[i] = bits(2^(i/32)) - (i << 47)`.
    static TAB: [u64; 32] = [
        0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d, 0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
        0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13, 0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
        0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
    ];
    /// 32/ln 2, the rounding shift 1.5·2^52, and the cubic's coefficients scaled by 32^-3, 32^-2, 32^-1.
    const INV_LN2_N: f64 = f64::from_bits(0x40471547652b82fe);
    const SHIFT: f64 = f64::from_bits(0x4338000000000000);
    const C0: f64 = f64::from_bits(0x3ebc6af84b912394);
    const C1: f64 = f64::from_bits(0x3f2ebfce50fac4f3);
    const C2: f64 = f64::from_bits(0x3f962e42ff0c52d6);
    /// glibc leaves its fast path when the top 12 bits of |x| pass this (|x| ≥ 2^6.33 ≈ 85.2).
    const TOP12_LIMIT: i32 = 0x42a;

    /// `fn $name` computes a register of `expf`s in double precision as glibc computes one:
    /// `kd = fma(x, 32/ln2, shift)`, `r = fma(x, 32/ln2, -(kd - shift))`, `s = 2^(k/32)`,
    /// `((C0·r + C1)·r² + (C2·r + 1))·s` with each `a·b + c` one fused multiply-add. One body for
    /// both widths; the arguments name each width's intrinsics, and `$gather(idx)` reads `TAB`.
    macro_rules! glibc_expf {
        ($doc:literal, $features:literal, fn $name:ident($f:ty) -> $g:ty, $cvt:ident, $set1:ident, $fmadd:ident, $fmsub:ident,
         $sub:ident, $mul:ident, $bits:ident, $and:ident, $set1_i64:ident, $gather:expr, $from_bits:ident, $add_i64:ident, $shl:ident, $narrow:ident) => {
            #[doc = $doc]
            #[target_feature(enable = $features)]
            fn $name(x: $f) -> $g {
                let xd = $cvt(x);
                let (inv, shift) = ($set1(INV_LN2_N), $set1(SHIFT));
                let kd = $fmadd(inv, xd, shift);
                let ki = $bits(kd);
                let r = $fmsub(inv, xd, $sub(kd, shift));
                let z = $fmadd(r, $set1(C0), $set1(C1));
                let r2 = $mul(r, r);
                let y = $fmadd(r, $set1(C2), $set1(1.0));
                let y = $fmadd(z, r2, y);
                // SAFETY: every index is in 0..32, inside `TAB`.
                let t = unsafe { $gather($and(ki, $set1_i64(31))) };
                let s = $from_bits($add_i64(t, $shl::<47>(ki)));
                $narrow($mul(y, s))
            }
        };
    }
    glibc_expf!("Eight at once (AVX-512).", "avx512f,fma", fn exp8(__m256) -> __m256, _mm512_cvtps_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_fmsub_pd,
        _mm512_sub_pd, _mm512_mul_pd, _mm512_castpd_si512, _mm512_and_si512, _mm512_set1_epi64, |i| _mm512_i64gather_epi64::<8>(i, TAB.as_ptr() as *const i64),
        _mm512_castsi512_pd, _mm512_add_epi64, _mm512_slli_epi64, _mm512_cvtpd_ps);
    glibc_expf!("Four at once (AVX2).", "avx2,fma", fn exp4(__m128) -> __m128, _mm256_cvtps_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_fmsub_pd,
        _mm256_sub_pd, _mm256_mul_pd, _mm256_castpd_si256, _mm256_and_si256, _mm256_set1_epi64x, |i| _mm256_i64gather_epi64::<8>(TAB.as_ptr() as *const i64, i),
        _mm256_castsi256_pd, _mm256_add_epi64, _mm256_slli_epi64, _mm256_cvtpd_ps);

    /// `W` floats at a time: `block` writes a block's exps in place and returns the mask of lanes
    /// (bit `i` for lane `i`) outside glibc's fast path, which, like the last `len % W`, take
    /// `f32::exp` itself. Inlined into each width's `target_feature` function below.
    #[inline(always)]
    fn in_blocks<const W: usize>(xs: &mut [f32], mut block: impl FnMut(&mut [f32]) -> u32) {
        let mut chunks = xs.chunks_exact_mut(W);
        for c in &mut chunks {
            let x: [f32; W] = c.try_into().expect("a whole block");
            let special = block(c);
            if special != 0 {
                for (i, o) in c.iter_mut().enumerate().filter(|(i, _)| special >> i & 1 == 1) {
                    *o = x[i].exp();
                }
            }
        }
        for x in chunks.into_remainder() {
            *x = x.exp();
        }
    }

    /// Sixteen at a time (AVX-512).
    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn exp_in_place_avx512(xs: &mut [f32]) {
        in_blocks::<16>(xs, |c| {
            // SAFETY: `c` holds 16 floats; unaligned loads and stores.
            let x = unsafe { _mm512_loadu_ps(c.as_ptr()) };
            let top = _mm512_and_si512(_mm512_srli_epi32::<20>(_mm512_castps_si512(x)), _mm512_set1_epi32(0x7ff));
            let lo = exp8(_mm512_castps512_ps256(x));
            let hi = exp8(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x))));
            let y = _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi)));
            unsafe { _mm512_storeu_ps(c.as_mut_ptr(), y) };
            _mm512_cmpgt_epi32_mask(top, _mm512_set1_epi32(TOP12_LIMIT)) as u32
        });
    }

    /// Eight at a time (AVX2).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp_in_place_avx2(xs: &mut [f32]) {
        in_blocks::<8>(xs, |c| {
            // SAFETY: `c` holds 8 floats; unaligned loads and stores.
            let x = unsafe { _mm256_loadu_ps(c.as_ptr()) };
            let top = _mm256_and_si256(_mm256_srli_epi32::<20>(_mm256_castps_si256(x)), _mm256_set1_epi32(0x7ff));
            let y = _mm256_set_m128(exp4(_mm256_extractf128_ps::<1>(x)), exp4(_mm256_castps256_ps128(x)));
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), y) };
            _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(top, _mm256_set1_epi32(TOP12_LIMIT)))) as u32
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths this CPU can run: the dispatcher, and each SIMD path it has.
    fn paths() -> Vec<(&'static str, fn(&mut [f32]))> {
        let mut p: Vec<(&'static str, fn(&mut [f32]))> = vec![("exp_in_place", exp_in_place)];
        #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("fma") {
                p.push(("avx512", |xs| unsafe { simd::exp_in_place_avx512(xs) }));
            }
            if has!("avx2") && has!("fma") {
                p.push(("avx2", |xs| unsafe { simd::exp_in_place_avx2(xs) }));
            }
        }
        p
    }

    /// `exp` by `f` against `f32::exp` on the bit patterns `start, start + step, ...` (as bits).
    fn mismatches(f: fn(&mut [f32]), start: u32, step: u32) -> Vec<(f32, f32, f32)> {
        let mut bad = Vec::new();
        let mut buf = Vec::with_capacity(1 << 16);
        let mut bits = start as u64;
        while bits <= u32::MAX as u64 {
            buf.clear();
            while buf.len() < (1 << 16) && bits <= u32::MAX as u64 {
                buf.push(f32::from_bits(bits as u32));
                bits += step as u64;
            }
            let mut out = buf.clone();
            f(&mut out);
            for (&x, &y) in buf.iter().zip(&out) {
                let want = x.exp();
                if want.to_bits() != y.to_bits() && !(want.is_nan() && y.is_nan()) {
                    bad.push((x, y, want));
                }
            }
        }
        bad
    }

    #[test]
    fn exp_equals_libm_bit_for_bit() {
        // The fast path's edges, glibc's thresholds, specials, and tails shorter than a register.
        let mut xs = vec![0.0, -0.0, 1.0, -1.0, 85.0, -85.0, 85.2, -85.2, 88.72, 88.73, -103.2, -103.3, -103.97, -104.0, -150.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-30, -1e-30, 0.5, -0.5, 20.0, -20.0];
        xs.extend((0..1000).map(|i| -60.0 + i as f32 * 0.123));
        for (name, f) in paths() {
            for len in [xs.len(), 7, 15, 17] {
                let mut out = xs[..len].to_vec();
                f(&mut out);
                for (&x, &y) in xs.iter().zip(&out) {
                    assert!(y.to_bits() == x.exp().to_bits() || (y.is_nan() && x.is_nan()), "{name}: exp({x}) = {y}, libm {}", x.exp());
                }
            }
            let bad = mismatches(f, 0, 97);
            assert!(bad.is_empty(), "{name}: {} of every 97th f32 differ from libm, e.g. {:?}", bad.len(), &bad[..bad.len().min(5)]);
        }
    }

    /// Every `f32`, every path (about 30 s each): `cargo test --lib exp_equals_libm_on_every_f32 -- --ignored`.
    #[test]
    #[ignore]
    fn exp_equals_libm_on_every_f32() {
        for (name, f) in paths() {
            let bad = mismatches(f, 0, 1);
            assert!(bad.is_empty(), "{name}: {} f32s differ from libm, e.g. {:?}", bad.len(), &bad[..bad.len().min(5)]);
        }
    }
}
