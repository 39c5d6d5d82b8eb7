//! A decode step's matrix products alone, without the model or the server: SmolLM2-135M's
//! Q4_1 shapes (30 layers of q, k, v, o, gate, up and down: 106 M weights, 66 MB, more
//! than any cache), one row each, as a decode step runs them, on one thread and on two.
//! Prints milliseconds a step and picoseconds a weight, streaming from memory and with one
//! matrix that stays in cache, so a kernel change is measured in seconds and the two
//! limits (arithmetic, memory) are told apart.
//! Run: `cargo bench -p instagen-kernels --bench decode`.

#[cfg(target_arch = "x86_64")]
fn main() {
    use instagen_kernels::{Q4_1, QK, V3, columns_q4_1, quantize, test_blocks, test_values};
    use std::time::Instant;

    let Some(simd) = V3::try_new() else {
        println!("skipped: this CPU has no AVX2");
        return;
    };
    // (columns, inputs) of one layer's products.
    let shapes = [
        (576, 576),
        (192, 576),
        (192, 576),
        (576, 576),
        (1536, 576),
        (1536, 576),
        (576, 1536),
    ];
    let layers = 30;
    let block_bytes = std::mem::size_of::<Q4_1>();
    // Scales and minimums of 1/16 and -1/16 (0x2c00 as f16).
    let matrices: Vec<(usize, usize, Vec<Q4_1>)> = (0..layers)
        .flat_map(|_| shapes)
        .enumerate()
        .map(|(i, (n, k))| (n, k, test_blocks::<Q4_1>(n, k / QK, [0x00, 0x2c], i as u32)))
        .collect();
    let weights: usize = matrices.iter().map(|(n, k, _)| n * k).sum();
    let x = test_values(1536, 5);

    // One step: every product, each one's columns split over `threads` (each thread takes
    // its share of every matrix in turn, with no barrier between products: the kernel's
    // throughput, not a pool's).
    let step = |threads: usize, set: &[(usize, usize, &[Q4_1])]| {
        let share = |t: usize| {
            for &(n, k, w) in set {
                let kb = k / QK;
                let rows = quantize(simd, &x[..k]);
                let per = n.div_ceil(threads).next_multiple_of(32);
                let (from, to) = (t * per, n.min((t + 1) * per));
                let mut out = vec![0f32; to - from];
                // 32 columns a call, as the engine hands them to its pool.
                for (c, out) in out.chunks_mut(32).enumerate() {
                    let first = from + c * 32;
                    let w = &w[first * kb..(first + out.len()) * kb];
                    columns_q4_1(simd, &rows, 1, kb, w, out);
                }
                std::hint::black_box(&out);
            }
        };
        std::thread::scope(|s| {
            for t in 1..threads {
                s.spawn(move || share(t));
            }
            share(0);
        });
    };
    let measure = |name: &str, threads: usize, set: &[(usize, usize, &[Q4_1])], values: usize| {
        step(threads, set);
        let mut best = f64::MAX;
        for _ in 0..7 {
            let start = Instant::now();
            step(threads, set);
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "{name:<28} {threads} thread(s): {:7.3} ms, {:6.1} ps a weight ({:.1} GB/s of weights)",
            best * 1e3,
            best * 1e12 / values as f64,
            (values / QK * block_bytes) as f64 / best / 1e9
        );
    };
    // The same 576 × 1536 matrix again and again: it stays in cache.
    let all: Vec<(usize, usize, &[Q4_1])> = matrices
        .iter()
        .map(|(n, k, b)| (*n, *k, b.as_slice()))
        .collect();
    let hot: Vec<_> = std::iter::repeat_n(all[4], 70).collect();
    let hot_values = 70 * 1536 * 576;
    for threads in [1, 2] {
        measure("a step, from memory", threads, &all, weights);
        measure("one matrix, in cache", threads, &hot, hot_values);
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("skipped: the kernels are x86-64 only");
}
