//! Times `gemm::gemm` (f32) on the matrix products of a SmolLM2-135M training step (rows = batch
//! × sequence = 4 × 128 = 512 tokens): per layer the fused QKV, output, gate/up and down
//! projections, forward (`x·W`) and backward (`dY·Wᵀ`), and the tied LM head. Prints one CSV row
//! per shape: GFLOP/s, median of `RUNS` timed repetitions after one warm-up.
//! Usage: gemm_isa THREADS

use std::time::Instant;

const RUNS: usize = 7;

fn time_gemm(m: usize, k: usize, n: usize, threads: usize) -> f64 {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let mut one = || {
        let t = Instant::now();
        // SAFETY: row-major buffers of the stated sizes; strides in elements.
        unsafe {
            gemm::gemm(m, n, k, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), 1, k as isize, b.as_ptr(), 1, n as isize, 0.0f32, 1.0f32, false, false, false, par);
        }
        t.elapsed().as_secs_f64()
    };
    one();
    let mut ts: Vec<f64> = (0..RUNS).map(|_| one()).collect();
    ts.sort_by(f64::total_cmp);
    2.0 * (m * k * n) as f64 / ts[RUNS / 2] / 1e9
}

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let isa = if cfg!(feature = "x86-v4") { "x86-v4" } else { "fma" };
    let rows = 512;
    // SmolLM2-135M: d 576, 9 query heads and 3 key/value heads of 64 (qkv 576 + 2·192 = 960),
    // MLP 1536 (gate and up fused: 3072), vocab 49,152.
    let shapes = [
        ("qkv", rows, 576, 960),
        ("qkv_dx", rows, 960, 576),
        ("proj", rows, 576, 576),
        ("gate_up", rows, 576, 3072),
        ("gate_up_dx", rows, 3072, 576),
        ("down", rows, 1536, 576),
        ("down_dx", rows, 576, 1536),
        ("lm_head", rows, 576, 49152),
    ];
    println!("isa,threads,shape,m,k,n,gflops");
    for (name, m, k, n) in shapes {
        println!("{isa},{threads},{name},{m},{k},{n},{:.1}", time_gemm(m, k, n, threads));
    }
}
