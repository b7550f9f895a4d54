//! `exp` over a slice, sixteen `f32`s (AVX-512) or eight (AVX2) at a time, or eight `f64`s or four,
//! bit for bit equal to the libm `expf` / `exp` that `f32::exp` / `f64::exp` call.
//!
//! The fused flex ops reproduce burn's compositions exactly, so they must use the same `expf`:
//! glibc's (2.27 and later: `sysdeps/ieee754/flt-32/e_expf.c`), which on a CPU with FMA resolves
//! to `__expf_fma`. Called once per element, it was 6–7 % of a SmolLM2 LoRA training step on flex
//! (over 50 million calls a step in the log-softmax over a vocabulary of 49,152, forward and
//! backward). Here the same algorithm runs in AVX-512 registers, eight doubles to a register (or
//! AVX2, four):
//! `x·32/ln2 = k + r`, `2^(k/32)` from glibc's 32-entry table, a cubic in `r`, and the same fused
//! multiply-adds in the same places as glibc's FMA build (read from its machine code), so the same
//! bits. Inputs outside glibc's fast path (|x| ≥ 85.2, inf, NaN) take `f32::exp` itself.
//!
//! The host sampler of generation draws each token from an `f64` softmax over the vocabulary
//! (`model::generate`), two `f64::exp` per logit. [`exp_f64_in_place`] is glibc's `exp`
//! (`sysdeps/ieee754/dbl-64/e_exp.c`, `__exp_fma` on a CPU with FMA) the same way: `x·128/ln2 = k + r`,
//! `2^(k/128)` from its 128-entry table, a quintic in `r`, the FMA build's fused multiply-adds;
//! inputs outside its fast path (|x| < 2^-54 or ≥ 512, inf, NaN) take `f64::exp`.
//!
//! Only on x86-64 Linux with glibc, on a CPU with AVX-512F or AVX2, and FMA; anywhere else `exp`
//! element by element, as before (another libm, or glibc without FMA, rounds differently). The
//! unit tests compare with libm on every 97th `f32` bit pattern and on millions of `f64`s; an ignored
//! test on every `f32`.

/// `exp` of every element of `xs`, in place, bit for bit `f32::exp`.
pub fn exp_in_place(xs: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if let Some(simd_exp) = simd::widest(simd::exp_in_place_avx512, simd::exp_in_place_avx2) {
        // SAFETY: `widest` chose a function whose features this CPU has.
        return unsafe { simd_exp(xs) };
    }
    for x in xs {
        *x = x.exp();
    }
}

/// `exp` of every element of `xs`, in place, bit for bit `f64::exp`.
pub fn exp_f64_in_place(xs: &mut [f64]) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if let Some(simd_exp) = simd::widest(simd::exp_f64_in_place_avx512, simd::exp_f64_in_place_avx2) {
        // SAFETY: as above.
        return unsafe { simd_exp(xs) };
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

    /// The widest of the two paths this CPU runs (AVX-512F, else AVX2; either with FMA), if any.
    pub(super) fn widest<T>(avx512: unsafe fn(&mut [T]), avx2: unsafe fn(&mut [T])) -> Option<unsafe fn(&mut [T])> {
        use std::arch::is_x86_feature_detected as has;
        match (has!("fma"), has!("avx512f"), has!("avx2")) {
            (true, true, _) => Some(avx512),
            (true, false, true) => Some(avx2),
            _ => None,
        }
    }

    /// `W` values at a time: `block` writes a block's exps in place and returns the mask of lanes
    /// (bit `i` for lane `i`) outside glibc's fast path, which, like the last `len % W`, take the
    /// scalar libm `exp` itself. Inlined into each width's `target_feature` function below.
    #[inline(always)]
    fn in_blocks<T: Copy, const W: usize>(xs: &mut [T], libm: impl Fn(T) -> T, mut block: impl FnMut(&mut [T]) -> u32) {
        let mut chunks = xs.chunks_exact_mut(W);
        for c in &mut chunks {
            let x: [T; W] = c.try_into().ok().expect("a whole block");
            let special = block(c);
            if special != 0 {
                for (i, o) in c.iter_mut().enumerate().filter(|(i, _)| special >> i & 1 == 1) {
                    *o = libm(x[i]);
                }
            }
        }
        for x in chunks.into_remainder() {
            *x = libm(*x);
        }
    }

    /// Sixteen at a time (AVX-512).
    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn exp_in_place_avx512(xs: &mut [f32]) {
        in_blocks::<f32, 16>(xs, f32::exp, |c| {
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
        in_blocks::<f32, 8>(xs, f32::exp, |c| {
            // SAFETY: `c` holds 8 floats; unaligned loads and stores.
            let x = unsafe { _mm256_loadu_ps(c.as_ptr()) };
            let top = _mm256_and_si256(_mm256_srli_epi32::<20>(_mm256_castps_si256(x)), _mm256_set1_epi32(0x7ff));
            let y = _mm256_set_m128(exp4(_mm256_extractf128_ps::<1>(x)), exp4(_mm256_castps256_ps128(x)));
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), y) };
            _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(top, _mm256_set1_epi32(TOP12_LIMIT)))) as u32
        });
    }

    /// glibc's `__exp_data.tab[2i]`: the low part of `2^(i/128)`, as bits of a double.
    static TAIL: [u64; 128] = [
        0x0000000000000000, 0x3c9b3b4f1a88bf6e, 0xbc7160139cd8dc5d, 0xbc905e7a108766d1, 0x3c8cd2523567f613, 0xbc8bce8023f98efa,
        0x3c60f74e61e6c861, 0x3c90a3e45b33d399, 0x3c979aa65d837b6d, 0x3c8eb51a92fdeffc, 0x3c3ebe3d702f9cd1, 0xbc6a033489906e0b,
        0xbc9556522a2fbd0e, 0xbc5080ef8c4eea55, 0xbc91c923b9d5f416, 0x3c80d3e3e95c55af, 0xbc801b15eaa59348, 0xbc8f1ff055de323d,
        0x3c8b898c3f1353bf, 0xbc96d99c7611eb26, 0x3c9aecf73e3a2f60, 0xbc8fe782cb86389d, 0x3c8a6f4144a6c38d, 0x3c807a05b0e4047d,
        0x3c968efde3a8a894, 0x3c875e18f274487d, 0x3c80472b981fe7f2, 0xbc96b87b3f71085e, 0x3c82f7e16d09ab31, 0xbc3d219b1a6fbffa,
        0x3c8b3782720c0ab4, 0x3c6e149289cecb8f, 0x3c834d754db0abb6, 0x3c864201e2ac744c, 0x3c8fdd395dd3f84a, 0xbc86a3803b8e5b04,
        0xbc924aedcc4b5068, 0xbc9907f81b512d8e, 0xbc71d1e83e9436d2, 0xbc991919b3ce1b15, 0x3c859f48a72a4c6d, 0xbc9312607a28698a,
        0xbc58a78f4817895b, 0xbc7c2c9b67499a1b, 0x3c4363ed60c2ac11, 0x3c9666093b0664ef, 0x3c6ecce1daa10379, 0x3c93ff8e3f0f1230,
        0x3c7690cebb7aafb0, 0x3c931dbdeb54e077, 0xbc8f94340071a38e, 0xbc87deccdc93a349, 0xbc78dec6bd0f385f, 0xbc861246ec7b5cf6,
        0x3c93350518fdd78e, 0x3c7b98b72f8a9b05, 0x3c9063e1e21c5409, 0x3c34c7855019c6ea, 0x3c9432e62b64c035, 0xbc8ce44a6199769f,
        0xbc8c33c53bef4da8, 0xbc845378892be9ae, 0xbc93cedd78565858, 0x3c5710aa807e1964, 0xbc93b3efbf5e2228, 0xbc6a12ad8734b982,
        0xbc6367efb86da9ee, 0xbc80dc3d54e08851, 0xbc781f647e5a3ecf, 0xbc86ee4ac08b7db0, 0xbc8619321e55e68a, 0x3c909ccb5e09d4d3,
        0xbc7b32dcb94da51d, 0x3c94ecfd5467c06b, 0x3c65ebe1abd66c55, 0xbc88a1c52fb3cf42, 0xbc9369b6f13b3734, 0xbc805e843a19ff1e,
        0xbc94d450d872576e, 0x3c90ad675b0e8a00, 0x3c8db72fc1f0eab4, 0xbc65b6609cc5e7ff, 0x3c7bf68359f35f44, 0xbc93091fa71e3d83,
        0xbc5da9b88b6c1e29, 0xbc6c23f97c90b959, 0xbc92434322f4f9aa, 0xbc85ca6cd7668e4b, 0x3c71affc2b91ce27, 0x3c6dd235e10a73bb,
        0xbc87c50422622263, 0x3c8b1c86e3e231d5, 0xbc91bbd1d3bcbb15, 0x3c90cc319cee31d2, 0x3c8469846e735ab3, 0xbc82dfcd978e9db4,
        0x3c8c1a7792cb3387, 0xbc907b8f4ad1d9fa, 0xbc55c3d956dcaeba, 0xbc90a40e3da6f640, 0xbc68d6f438ad9334, 0xbc91eee26b588a35,
        0x3c74ffd70a5fddcd, 0xbc91bdfbfa9298ac, 0x3c736eae30af0cb3, 0x3c8ee3325c9ffd94, 0x3c84e08fd10959ac, 0x3c63cdaf384e1a67,
        0x3c676b2c6c921968, 0xbc808a1883ccb5d2, 0xbc8fad5d3ffffa6f, 0xbc900dae3875a949, 0x3c74a385a63d07a7, 0xbc82919e2040220f,
        0x3c8e5a50d5c192ac, 0x3c843a59ac016b4b, 0xbc82d52107b43e1f, 0xbc892ab93b470dc9, 0x3c74b604603a88d3, 0x3c83c5ec519d7271,
        0xbc8ff7128fd391f0, 0xbc8dae98e223747d, 0x3c8ec3bc41aa2008, 0x3c842b94c3a9eb32, 0x3c8a64a931d185ee, 0xbc8e37bae43be3ed,
        0x3c77893b4d91cd9d, 0x3c5305c14160cc89,
    ];
    /// glibc's `__exp_data.tab[2i + 1]`: `bits(2^(i/128)) - (i << 45)`.
    static SBITS: [u64; 128] = [
        0x3ff0000000000000, 0x3feff63da9fb3335, 0x3fefec9a3e778061, 0x3fefe315e86e7f85, 0x3fefd9b0d3158574, 0x3fefd06b29ddf6de,
        0x3fefc74518759bc8, 0x3fefbe3ecac6f383, 0x3fefb5586cf9890f, 0x3fefac922b7247f7, 0x3fefa3ec32d3d1a2, 0x3fef9b66affed31b,
        0x3fef9301d0125b51, 0x3fef8abdc06c31cc, 0x3fef829aaea92de0, 0x3fef7a98c8a58e51, 0x3fef72b83c7d517b, 0x3fef6af9388c8dea,
        0x3fef635beb6fcb75, 0x3fef5be084045cd4, 0x3fef54873168b9aa, 0x3fef4d5022fcd91d, 0x3fef463b88628cd6, 0x3fef3f49917ddc96,
        0x3fef387a6e756238, 0x3fef31ce4fb2a63f, 0x3fef2b4565e27cdd, 0x3fef24dfe1f56381, 0x3fef1e9df51fdee1, 0x3fef187fd0dad990,
        0x3fef1285a6e4030b, 0x3fef0cafa93e2f56, 0x3fef06fe0a31b715, 0x3fef0170fc4cd831, 0x3feefc08b26416ff, 0x3feef6c55f929ff1,
        0x3feef1a7373aa9cb, 0x3feeecae6d05d866, 0x3feee7db34e59ff7, 0x3feee32dc313a8e5, 0x3feedea64c123422, 0x3feeda4504ac801c,
        0x3feed60a21f72e2a, 0x3feed1f5d950a897, 0x3feece086061892d, 0x3feeca41ed1d0057, 0x3feec6a2b5c13cd0, 0x3feec32af0d7d3de,
        0x3feebfdad5362a27, 0x3feebcb299fddd0d, 0x3feeb9b2769d2ca7, 0x3feeb6daa2cf6642, 0x3feeb42b569d4f82, 0x3feeb1a4ca5d920f,
        0x3feeaf4736b527da, 0x3feead12d497c7fd, 0x3feeab07dd485429, 0x3feea9268a5946b7, 0x3feea76f15ad2148, 0x3feea5e1b976dc09,
        0x3feea47eb03a5585, 0x3feea34634ccc320, 0x3feea23882552225, 0x3feea155d44ca973, 0x3feea09e667f3bcd, 0x3feea012750bdabf,
        0x3fee9fb23c651a2f, 0x3fee9f7df9519484, 0x3fee9f75e8ec5f74, 0x3fee9f9a48a58174, 0x3fee9feb564267c9, 0x3feea0694fde5d3f,
        0x3feea11473eb0187, 0x3feea1ed0130c132, 0x3feea2f336cf4e62, 0x3feea427543e1a12, 0x3feea589994cce13, 0x3feea71a4623c7ad,
        0x3feea8d99b4492ed, 0x3feeaac7d98a6699, 0x3feeace5422aa0db, 0x3feeaf3216b5448c, 0x3feeb1ae99157736, 0x3feeb45b0b91ffc6,
        0x3feeb737b0cdc5e5, 0x3feeba44cbc8520f, 0x3feebd829fde4e50, 0x3feec0f170ca07ba, 0x3feec49182a3f090, 0x3feec86319e32323,
        0x3feecc667b5de565, 0x3feed09bec4a2d33, 0x3feed503b23e255d, 0x3feed99e1330b358, 0x3feede6b5579fdbf, 0x3feee36bbfd3f37a,
        0x3feee89f995ad3ad, 0x3feeee07298db666, 0x3feef3a2b84f15fb, 0x3feef9728de5593a, 0x3feeff76f2fb5e47, 0x3fef05b030a1064a,
        0x3fef0c1e904bc1d2, 0x3fef12c25bd71e09, 0x3fef199bdd85529c, 0x3fef20ab5fffd07a, 0x3fef27f12e57d14b, 0x3fef2f6d9406e7b5,
        0x3fef3720dcef9069, 0x3fef3f0b555dc3fa, 0x3fef472d4a07897c, 0x3fef4f87080d89f2, 0x3fef5818dcfba487, 0x3fef60e316c98398,
        0x3fef69e603db3285, 0x3fef7321f301b460, 0x3fef7c97337b9b5f, 0x3fef864614f5a129, 0x3fef902ee78b3ff6, 0x3fef9a51fbc74c83,
        0x3fefa4afa2a490da, 0x3fefaf482d8e67f1, 0x3fefba1bee615a27, 0x3fefc52b376bba97, 0x3fefd0765b6e4540, 0x3fefdbfdad9cbe14,
        0x3fefe7c1819e90d8, 0x3feff3c22b8f71f1,
    ];
    /// glibc's `__exp_data`: 128/ln 2, -ln 2/128 in two parts, the rounding shift 1.5·2^52, and the
    /// quintic's coefficients of `r^2 .. r^5`.
    const INV_LN2_128: f64 = f64::from_bits(0x40671547652b82fe);
    const NEG_LN2_HI_128: f64 = f64::from_bits(0xbf762e42fefa0000);
    const NEG_LN2_LO_128: f64 = f64::from_bits(0xbd0cf79abc9e3b3a);
    const Q2: f64 = f64::from_bits(0x3fdffffffffffdbd);
    const Q3: f64 = f64::from_bits(0x3fc555555555543c);
    const Q4: f64 = f64::from_bits(0x3fa55555cf172b91);
    const Q5: f64 = f64::from_bits(0x3f81111167a4d017);
    /// glibc's fast path: `2^-54 <= |x| < 512`, i.e. the top 12 bits of |x| minus 0x3c9 at most 0x3e
    /// (unsigned).
    const TOP12_LOW: i64 = 0x3c9;
    const TOP12_SPAN: i64 = 0x3e;

    /// `fn $name` computes a register of `exp`s as `__exp_fma` computes one (its machine code, in
    /// order): `kd = fma(x, 128/ln2, shift)`, `kd' = kd - shift`, `r = fma(kd', lo, fma(kd', hi, x))`,
    /// `tmp = fma(r2·r2, fma(r, Q5, Q4), fma(fma(r, Q3, Q2), r2, tail + r))`, `fma(scale, tmp, scale)`
    /// with `scale = 2^(k/128)` from the table. The arguments name each width's intrinsics.
    macro_rules! glibc_exp {
        ($doc:literal, $features:literal, fn $name:ident($f:ty), $set1:ident, $fmadd:ident, $add:ident, $sub:ident, $mul:ident,
         $bits:ident, $and:ident, $set1_i64:ident, $gather:ident, $from_bits:ident, $add_i64:ident, $shl:ident) => {
            #[doc = $doc]
            #[target_feature(enable = $features)]
            fn $name(x: $f) -> $f {
                let shift = $set1(SHIFT);
                let kd = $fmadd(x, $set1(INV_LN2_128), shift);
                let ki = $bits(kd);
                let kd = $sub(kd, shift);
                let r = $fmadd(kd, $set1(NEG_LN2_HI_128), x);
                let r = $fmadd(kd, $set1(NEG_LN2_LO_128), r);
                let idx = $and(ki, $set1_i64(127));
                // SAFETY: every index is in 0..128, inside both tables.
                let (tail, sbits) = unsafe { ($from_bits($gather(idx, TAIL.as_ptr())), $gather(idx, SBITS.as_ptr())) };
                let q32 = $fmadd(r, $set1(Q3), $set1(Q2));
                let tr = $add(r, tail);
                let r2 = $mul(r, r);
                let q54 = $fmadd(r, $set1(Q5), $set1(Q4));
                let t = $fmadd(q32, r2, tr);
                let tmp = $fmadd($mul(r2, r2), q54, t);
                let scale = $from_bits($add_i64(sbits, $shl::<45>(ki)));
                $fmadd(scale, tmp, scale)
            }
        };
    }
    #[target_feature(enable = "avx512f")]
    unsafe fn gather8(idx: __m512i, table: *const u64) -> __m512i {
        unsafe { _mm512_i64gather_epi64::<8>(idx, table as *const i64) }
    }
    #[target_feature(enable = "avx2")]
    unsafe fn gather4(idx: __m256i, table: *const u64) -> __m256i {
        unsafe { _mm256_i64gather_epi64::<8>(table as *const i64, idx) }
    }
    glibc_exp!("Eight at once (AVX-512).", "avx512f,fma", fn exp_f64x8(__m512d), _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd, _mm512_sub_pd,
        _mm512_mul_pd, _mm512_castpd_si512, _mm512_and_si512, _mm512_set1_epi64, gather8, _mm512_castsi512_pd, _mm512_add_epi64, _mm512_slli_epi64);
    glibc_exp!("Four at once (AVX2).", "avx2,fma", fn exp_f64x4(__m256d), _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd, _mm256_sub_pd,
        _mm256_mul_pd, _mm256_castpd_si256, _mm256_and_si256, _mm256_set1_epi64x, gather4, _mm256_castsi256_pd, _mm256_add_epi64, _mm256_slli_epi64);

    /// Eight doubles at a time (AVX-512).
    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn exp_f64_in_place_avx512(xs: &mut [f64]) {
        in_blocks::<f64, 8>(xs, f64::exp, |c| {
            // SAFETY: `c` holds 8 doubles; unaligned loads and stores.
            let x = unsafe { _mm512_loadu_pd(c.as_ptr()) };
            let top = _mm512_and_si512(_mm512_srli_epi64::<52>(_mm512_castpd_si512(x)), _mm512_set1_epi64(0x7ff));
            unsafe { _mm512_storeu_pd(c.as_mut_ptr(), exp_f64x8(x)) };
            let off = _mm512_sub_epi64(top, _mm512_set1_epi64(TOP12_LOW));
            _mm512_cmpgt_epu64_mask(off, _mm512_set1_epi64(TOP12_SPAN)) as u32
        });
    }

    /// Four doubles at a time (AVX2).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp_f64_in_place_avx2(xs: &mut [f64]) {
        in_blocks::<f64, 4>(xs, f64::exp, |c| {
            // SAFETY: `c` holds 4 doubles; unaligned loads and stores.
            let x = unsafe { _mm256_loadu_pd(c.as_ptr()) };
            let top = _mm256_and_si256(_mm256_srli_epi64::<52>(_mm256_castpd_si256(x)), _mm256_set1_epi64x(0x7ff));
            unsafe { _mm256_storeu_pd(c.as_mut_ptr(), exp_f64x4(x)) };
            // Outside `[TOP12_LOW, TOP12_LOW + TOP12_SPAN]`; AVX2 has only signed 64-bit compares,
            // and the top 12 bits are small non-negative numbers.
            let out = _mm256_or_si256(
                _mm256_cmpgt_epi64(_mm256_set1_epi64x(TOP12_LOW), top),
                _mm256_cmpgt_epi64(top, _mm256_set1_epi64x(TOP12_LOW + TOP12_SPAN)),
            );
            _mm256_movemask_pd(_mm256_castsi256_pd(out)) as u32
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
    /// The `f64` paths this CPU can run, as [`paths`].
    fn paths_f64() -> Vec<(&'static str, fn(&mut [f64]))> {
        let mut p: Vec<(&'static str, fn(&mut [f64]))> = vec![("exp_f64_in_place", exp_f64_in_place)];
        #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("fma") {
                p.push(("avx512", |xs| unsafe { simd::exp_f64_in_place_avx512(xs) }));
            }
            if has!("avx2") && has!("fma") {
                p.push(("avx2", |xs| unsafe { simd::exp_f64_in_place_avx2(xs) }));
            }
        }
        p
    }

    /// `n` doubles from `seed`: half uniform over exp's finite range (and a little past it), half
    /// uniform bit patterns (every exponent, subnormals, infinities, NaNs).
    fn doubles(seed: u64, n: usize) -> Vec<f64> {
        let mut rng = crate::util::SplitMix64::new(seed);
        (0..n).map(|i| if i % 2 == 0 { -760.0 + 1480.0 * rng.next_f64() } else { f64::from_bits(rng.next_u64()) }).collect()
    }

    /// How many of `xs` the path `f` maps to other bits than `f64::exp`, with a few examples.
    fn mismatches_f64(f: fn(&mut [f64]), xs: &[f64]) -> (usize, Vec<(f64, f64, f64)>) {
        let mut out = xs.to_vec();
        f(&mut out);
        let bad: Vec<_> = xs.iter().zip(&out).filter(|(x, y)| y.to_bits() != x.exp().to_bits() && !(x.is_nan() && y.is_nan())).map(|(&x, &y)| (x, y, x.exp())).collect();
        (bad.len(), bad.into_iter().take(5).collect())
    }

    #[test]
    fn exp_f64_equals_libm_bit_for_bit() {
        // The fast path's edges (2^-54 and 512 either side), over- and underflow, the subnormal
        // results, specials, tails shorter than a register, and the sampler's range (-60..0).
        let tiny = 2f64.powi(-54);
        let mut xs = vec![0.0, -0.0, tiny, -tiny, tiny.next_down(), -tiny.next_down(), 511.999, -511.999, 512.0, -512.0, 709.78, 709.79, -708.4, -708.5, -744.0, -745.1, -745.2, -746.0, -1000.0, 1000.0,
            f64::INFINITY, f64::NEG_INFINITY, f64::NAN, f64::MIN_POSITIVE, -f64::MIN_POSITIVE, 1e-300, -1e-300, 0.5, -0.5, 1.0, -1.0];
        xs.extend((0..100_000).map(|i| -60.0 + i as f64 * 6e-4));
        xs.extend(doubles(7, 2_000_000));
        for (name, f) in paths_f64() {
            for len in [xs.len(), 3, 7, 9] {
                let (n, e) = mismatches_f64(f, &xs[..len]);
                assert_eq!(n, 0, "{name}: {n} of {len} doubles differ from libm's exp, e.g. (x, ours, libm) {e:?}");
            }
        }
    }

    /// 2^30 doubles per path (about a minute each): `cargo test --lib exp_f64_equals_libm_on_a_billion -- --ignored`.
    #[test]
    #[ignore]
    fn exp_f64_equals_libm_on_a_billion() {
        for (name, f) in paths_f64() {
            for seed in 0..64 {
                let (n, e) = mismatches_f64(f, &doubles(1000 + seed, 1 << 24));
                assert_eq!(n, 0, "{name}, seed {seed}: {n} doubles differ from libm's exp, e.g. {e:?}");
            }
        }
    }
}
