//! The engine's hot loops on the CPU, optimised even in debug builds (a crate of their
//! own, so `[profile.dev.package]` can say so: at `opt-level = 0` the intrinsics below
//! are calls and a prompt takes 100× longer).
//!
//! Q8_0 and Q4_1 matrix products in register tiles: rows are quantized to 8 bits once,
//! exactly as candle and llama.cpp quantize them, and `ROWS × COLS` outputs are
//! accumulated at once in AVX2 registers, so each weight block is loaded and each scale
//! converted once per tile of rows, and lanes are summed once per output. For Q8_0 the
//! products, their accumulation and the final sum of lanes follow candle's
//! `vec_dot_q8_0_q8_0` step for step, so the results are its bits. The intrinsics are
//! pulp's safe, run-time-checked ones: no `unsafe` here. Only x86-64 has them so far;
//! elsewhere [`available`] is false and candle's kernels (NEON included) are used.
//!
//! A decode step's attention ([`attend`]) runs on every architecture.

mod attend;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use attend::{Head, attend};
#[cfg(target_arch = "x86_64")]
pub use x86::*;

/// Whether this CPU runs these kernels; elsewhere candle's are used.
#[cfg(not(target_arch = "x86_64"))]
pub fn available() -> bool {
    false
}

/// A deterministic spread of values, some large, some near zero: test inputs shared by
/// this crate's tests and the engine's.
#[doc(hidden)]
pub fn test_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}
