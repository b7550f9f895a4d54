//! Dequantization of GGML tensor payloads to `f32`.
//!
//! Block layouts (ggml's `block_q4_0`, `block_q4_1`, `block_q8_0`; all little-endian, 32 elements
//! a block, blocks laid along the fastest-varying dimension `ne[0]`):
//!
//! | type | bytes | layout | value of element `j` |
//! | --- | --- | --- | --- |
//! | Q4_0 | 18 | f16 `d`, 16 bytes `qs` | `j < 16`: `((qs[j] & 0xF) - 8)·d`; `j ≥ 16`: `((qs[j-16] >> 4) - 8)·d` |
//! | Q4_1 | 20 | f16 `d`, f16 `m`, 16 bytes `qs` | `j < 16`: `(qs[j] & 0xF)·d + m`; `j ≥ 16`: `(qs[j-16] >> 4)·d + m` |
//! | Q8_0 | 34 | f16 `d`, 32 × i8 `qs` | `qs[j]·d` |
//!
//! F32, F16 and BF16 are element arrays.

use anyhow::{Result, bail, ensure};
use half::{bf16, f16};

/// The GGML element types this module can turn into `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
}

impl GgmlType {
    /// GGML's numeric type id (the value stored in a GGUF tensor descriptor).
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::BF16 => 30,
        }
    }

    /// `(elements per block, bytes per block)`.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
        }
    }

    /// Payload size in bytes of `n` elements.
    pub fn nbytes(self, n: usize) -> Result<usize> {
        let (elems, bytes) = self.block();
        ensure!(n % elems == 0, "{self:?}: {n} elements is not a whole number of {elems}-blocks");
        Ok(n / elems * bytes)
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `n` elements of type `ty` from `bytes` (exactly [`GgmlType::nbytes`] long).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let want = ty.nbytes(n)?;
    if bytes.len() != want {
        bail!("{ty:?}: {n} elements need {want} bytes, got {}", bytes.len());
    }
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => {
            out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        }
        GgmlType::F16 => out.extend(bytes.chunks_exact(2).map(|c| f16_at(c, 0))),
        GgmlType::BF16 => {
            out.extend(bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()))
        }
        GgmlType::Q4_0 => {
            for blk in bytes.chunks_exact(18) {
                let d = f16_at(blk, 0);
                let qs = &blk[2..18];
                out.extend(qs.iter().map(|&q| ((q & 0x0F) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
        }
        GgmlType::Q4_1 => {
            for blk in bytes.chunks_exact(20) {
                let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
                let qs = &blk[4..20];
                out.extend(qs.iter().map(|&q| (q & 0x0F) as f32 * d + m));
                out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
            }
        }
        GgmlType::Q8_0 => {
            for blk in bytes.chunks_exact(34) {
                let d = f16_at(blk, 0);
                out.extend(blk[2..34].iter().map(|&q| q as i8 as f32 * d));
            }
        }
    }
    debug_assert_eq!(out.len(), n);
    Ok(out)
}

/// Reference quantizers (round to nearest, as ggml's `quantize_row_*_ref`), used by tests and
/// to build small GGUF fixtures. Inputs must be a whole number of 32-blocks.
pub mod encode {
    use half::f16;

    fn push_f16(out: &mut Vec<u8>, x: f32) {
        out.extend_from_slice(&f16::from_f32(x).to_le_bytes());
    }

    pub fn q8_0(x: &[f32]) -> Vec<u8> {
        assert!(x.len() % 32 == 0);
        let mut out = Vec::with_capacity(x.len() / 32 * 34);
        for blk in x.chunks_exact(32) {
            let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            push_f16(&mut out, d);
            out.extend(blk.iter().map(|v| (v * id).round() as i8 as u8));
        }
        out
    }

    pub fn q4_0(x: &[f32]) -> Vec<u8> {
        assert!(x.len() % 32 == 0);
        let mut out = Vec::with_capacity(x.len() / 32 * 18);
        for blk in x.chunks_exact(32) {
            // ggml: d = max / -8 where max is the value of largest magnitude (sign kept).
            let max = blk.iter().fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            push_f16(&mut out, d);
            let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
            out.extend((0..16).map(|j| q(blk[j]) | (q(blk[j + 16]) << 4)));
        }
        out
    }

    pub fn q4_1(x: &[f32]) -> Vec<u8> {
        assert!(x.len() % 32 == 0);
        let mut out = Vec::with_capacity(x.len() / 32 * 20);
        for blk in x.chunks_exact(32) {
            let min = blk.iter().copied().fold(f32::INFINITY, f32::min);
            let max = blk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            push_f16(&mut out, d);
            push_f16(&mut out, min);
            let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
            out.extend((0..16).map(|j| q(blk[j]) | (q(blk[j + 16]) << 4)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16b(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_0_block_layout() {
        // d = 0.5; low nibbles 0..16 are elements 0..16, high nibbles elements 16..32.
        let mut blk = f16b(0.5).to_vec();
        for j in 0..16u8 {
            blk.push(j | ((15 - j) << 4));
        }
        let x = dequantize(GgmlType::Q4_0, &blk, 32).unwrap();
        for j in 0..16 {
            assert_eq!(x[j], (j as f32 - 8.0) * 0.5, "element {j}");
            assert_eq!(x[j + 16], ((15 - j) as f32 - 8.0) * 0.5, "element {}", j + 16);
        }
        assert_eq!(x[0], -4.0);
        assert_eq!(x[16], 3.5);
    }

    #[test]
    fn q4_1_block_layout() {
        let (d, m) = (0.25f32, -1.5f32);
        let mut blk = f16b(d).to_vec();
        blk.extend(f16b(m));
        for j in 0..16u8 {
            blk.push((j % 16) | (((j * 7) % 16) << 4));
        }
        let x = dequantize(GgmlType::Q4_1, &blk, 32).unwrap();
        for j in 0..16 {
            assert_eq!(x[j], j as f32 * d + m);
            assert_eq!(x[j + 16], ((j * 7) % 16) as f32 * d + m);
        }
        assert_eq!(x[0], -1.5);
        assert_eq!(x[17], 7.0 * 0.25 - 1.5);
    }

    #[test]
    fn q8_0_block_layout_and_multiple_blocks() {
        let mut bytes = Vec::new();
        for (b, d) in [(0usize, 0.125f32), (1, -2.0)] {
            bytes.extend(f16b(d));
            for j in 0..32i32 {
                bytes.push((j - 16 + b as i32 * 100).clamp(-128, 127) as i8 as u8);
            }
        }
        let x = dequantize(GgmlType::Q8_0, &bytes, 64).unwrap();
        assert_eq!(x[0], -16.0 * 0.125);
        assert_eq!(x[31], 15.0 * 0.125);
        assert_eq!(x[32], 84.0 * -2.0);
        assert_eq!(x[63], 115.0 * -2.0);
        // i8 sign handling: 0xFF is -1.
        let mut one = f16b(1.0).to_vec();
        one.extend([0xFFu8; 32]);
        assert!(dequantize(GgmlType::Q8_0, &one, 32).unwrap().iter().all(|&v| v == -1.0));
    }

    #[test]
    fn float_types() {
        let vals = [1.0f32, -2.5, 0.0, 65504.0];
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(dequantize(GgmlType::F32, &f32b, 4).unwrap(), vals);
        let f16s: Vec<u8> = vals.iter().flat_map(|&v| f16b(v)).collect();
        assert_eq!(dequantize(GgmlType::F16, &f16s, 4).unwrap(), vals);
        let bf: Vec<u8> = [1.0f32, -2.5, 0.0, 3.0e38]
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect();
        let got = dequantize(GgmlType::BF16, &bf, 4).unwrap();
        assert_eq!(&got[..3], &[1.0, -2.5, 0.0]);
        assert!((got[3] - 3.0e38).abs() / 3.0e38 < 1e-2);
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(dequantize(GgmlType::Q4_1, &[0u8; 19], 32).is_err());
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 34], 31).is_err());
        assert!(dequantize(GgmlType::F32, &[0u8; 7], 2).is_err());
    }

    #[test]
    fn encode_decode_round_trip_is_close() {
        let x: Vec<f32> = (0..96).map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.3).collect();
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (ty, bytes, tol) in [
            // Half a step; Q4_0's extra half step is its clamp at +7 (the range is [-8d, 7d]).
            (GgmlType::Q8_0, encode::q8_0(&x), amax / 127.0 / 2.0),
            (GgmlType::Q4_0, encode::q4_0(&x), amax / 8.0),
            (GgmlType::Q4_1, encode::q4_1(&x), amax / 15.0),
        ] {
            let y = dequantize(ty, &bytes, x.len()).unwrap();
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= tol + 1e-3, "{ty:?}: {a} vs {b} (tol {tol})");
            }
        }
    }
}
