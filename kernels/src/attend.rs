//! Attention of one query head over a sequence's cached keys and values, compiled for the
//! best vector unit this CPU has (pulp's run-time dispatch; plain loops elsewhere).

/// Where one head's keys and values sit in a position-major cache: each position holds
/// `stride` values, this head's `q.len()` of them from `offset`.
#[derive(Clone, Copy)]
pub struct Head<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub stride: usize,
    pub offset: usize,
}

/// `out` = softmax(q · keysᵀ / `scale`) · values over every cached position: candle's
/// arithmetic (scaled dot products, then its `softmax_last_dim`), with the dot products
/// summed in eight lanes. `scores` is scratch space.
pub fn attend(q: &[f32], head: Head<'_>, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    pulp::Arch::new().dispatch(Attend {
        q,
        head,
        scale,
        scores,
        out,
    });
}

struct Attend<'a> {
    q: &'a [f32],
    head: Head<'a>,
    scale: f32,
    scores: &'a mut Vec<f32>,
    out: &'a mut [f32],
}

impl pulp::WithSimd for Attend<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Attend {
            q,
            head,
            scale,
            scores,
            out,
        } = self;
        let width = q.len();
        let (from, to) = (head.offset, head.offset + width);
        scores.clear();
        scores.extend(
            head.keys
                .chunks_exact(head.stride)
                .map(|keys| dot(q, &keys[from..to]) / scale),
        );
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0f32;
        for x in scores.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        out.fill(0.0);
        for (w, values) in scores.iter().zip(head.values.chunks_exact(head.stride)) {
            let w = w / sum;
            for (out, v) in out.iter_mut().zip(&values[from..to]) {
                *out += w * v;
            }
        }
    }
}

/// A dot product in eight lanes, which the compiler keeps in vector registers.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in a8.zip(b8) {
        for ((lane, a), b) in lanes.iter_mut().zip(a).zip(b) {
            *lane += a * b;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same attention written out plainly, in f64.
    fn plain(q: &[f32], keys: &[Vec<f32>], values: &[Vec<f32>], scale: f32) -> Vec<f64> {
        let scores: Vec<f64> = keys
            .iter()
            .map(|k| q.iter().zip(k).map(|(a, b)| f64::from(a * b)).sum::<f64>() / f64::from(scale))
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        (0..q.len())
            .map(|d| {
                exps.iter()
                    .zip(values)
                    .map(|(e, v)| e / sum * f64::from(v[d]))
                    .sum()
            })
            .collect()
    }

    #[test]
    fn one_head_reads_its_own_slice_of_each_position() {
        let (width, heads, positions) = (12, 3, 7);
        let stride = width * heads;
        let value = |i: usize| ((i * 37 % 101) as f32 - 50.0) / 25.0;
        let keys: Vec<f32> = (0..stride * positions).map(value).collect();
        let values: Vec<f32> = (0..stride * positions).map(|i| value(i + 5)).collect();
        let q: Vec<f32> = (0..width).map(|i| value(i + 11)).collect();
        for h in 0..heads {
            let offset = h * width;
            let slice = |all: &[f32]| -> Vec<Vec<f32>> {
                all.chunks(stride)
                    .map(|p| p[offset..offset + width].to_vec())
                    .collect()
            };
            let want = plain(&q, &slice(&keys), &slice(&values), 8.0);
            let mut out = vec![f32::NAN; width];
            let head = Head {
                keys: &keys,
                values: &values,
                stride,
                offset,
            };
            attend(&q, head, 8.0, &mut Vec::new(), &mut out);
            for (got, want) in out.iter().zip(&want) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-5,
                    "head {h}: {got} against {want}"
                );
            }
        }
    }
}
