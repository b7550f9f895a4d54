//! Times `gemm::gemm` (f32) on the matrix products of a SmolLM2-135M training step (rows = batch
//! × sequence = 4 × 128 = 512 tokens): per layer the fused QKV, output, gate/up and down
//! projections, forward (`x·W`) and backward (`dY·Wᵀ`), and the tied LM head. Prints one CSV row
//! per shape: GFLOP/s, median of `RUNS` timed repetitions after one warm-up.
//! With `list`, times instead the whole list of a training step's products that `s2rm bench
//! --benchmarks matmul` times through burn (`bench::train_matmuls` at SmolLM2's shape, 543
//! products, 426.7 GFLOP): one row, the median of `RUNS` passes over the list.
//! Usage: gemm_isa THREADS [list]

use std::time::Instant;

const RUNS: usize = 7;

/// `c = a · w` for row-major `a: [m, k]`, `w: [k, n]`, `c: [m, n]`.
fn gemm_f32(m: usize, k: usize, n: usize, a: &[f32], w: &[f32], c: &mut [f32], par: gemm::Parallelism) {
    assert!(a.len() >= m * k && w.len() >= k * n && c.len() >= m * n);
    // SAFETY: row-major slices of at least the stated sizes (checked above); strides in elements.
    unsafe {
        gemm::gemm(m, n, k, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), 1, k as isize, w.as_ptr(), 1, n as isize, 0.0f32, 1.0f32, false, false, false, par);
    }
}

/// gemm's own threading over `threads` (none for one).
fn parallelism(threads: usize) -> gemm::Parallelism {
    if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None }
}

/// Median seconds of `RUNS` timed calls of `f` after one warm-up call.
fn median_secs(mut f: impl FnMut()) -> f64 {
    f();
    let mut ts: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[RUNS / 2]
}

fn time_gemm(m: usize, k: usize, n: usize, threads: usize) -> f64 {
    let (a, w, mut c) = (vec![0.5f32; m * k], vec![0.25f32; k * n], vec![0.0f32; m * n]);
    2.0 * (m * k * n) as f64 / median_secs(|| gemm_f32(m, k, n, &a, &w, &mut c, parallelism(threads))) / 1e9
}

/// `[batch, m, k, n]` of every product of one SmolLM2 training step (4 × 128 tokens): per block
/// the fused QKV, two attention products (36 = 4 rows × 9 heads), output, gate/up and down
/// projections, then the LM head; each forward product followed by its two backward ones.
fn step_products() -> Vec<[usize; 4]> {
    let (rows, t, bh, d, dh, ff, v) = (512, 128, 36, 576, 64, 1536, 49152);
    let mut fwd = Vec::new();
    for _ in 0..30 {
        fwd.extend([[1, rows, d, 960], [bh, t, dh, t], [bh, t, t, dh], [1, rows, d, d], [1, rows, d, 2 * ff], [1, rows, ff, d]]);
    }
    fwd.push([1, rows, d, v]);
    let mut all = fwd.clone();
    for &[b, m, k, n] in &fwd {
        all.extend([[b, m, n, k], [b, k, m, n]]);
    }
    all
}

/// One pass over [`step_products`] on preallocated buffers, as burn flex dispatches them: a large
/// product parallel inside gemm, a batch of small ones parallel over the batch.
fn time_list(threads: usize) -> f64 {
    use rayon::prelude::*;
    let list = step_products();
    let flops: f64 = list.iter().map(|&[b, m, k, n]| 2.0 * (b * m * k * n) as f64).sum();
    let mut bufs: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> =
        list.iter().map(|&[b, m, k, n]| (vec![0.5f32; b * m * k], vec![0.25f32; b * k * n], vec![0.0f32; b * m * n])).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let secs = pool.install(|| {
        median_secs(|| {
            for (&[b, m, k, n], (a, w, c)) in list.iter().zip(bufs.iter_mut()) {
                if b == 1 {
                    gemm_f32(m, k, n, a, w, c, parallelism(threads));
                } else {
                    c.par_chunks_mut(m * n)
                        .enumerate()
                        .for_each(|(i, c)| gemm_f32(m, k, n, &a[i * m * k..], &w[i * k * n..], c, gemm::Parallelism::None));
                }
            }
        })
    });
    flops / secs / 1e9
}

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let isa = if cfg!(feature = "x86-v4") { "x86-v4" } else { "fma" };
    // Whether this build checks debug assertions (Cargo's dev profile, or `--profile dev-asserts`).
    let asserts = cfg!(debug_assertions);
    if std::env::args().nth(2).as_deref() == Some("list") {
        println!("isa,threads,debug_assertions,shape,gflops");
        println!("{isa},{threads},{asserts},train_step_list,{:.1}", time_list(threads));
        return;
    }
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
