//! The matrix products of the convolutions: one call into `gemm`, and the weight gradient split
//! over the long dimension into one partial sum per thread.

use rayon::prelude::*;

/// The most floats the per-thread partial weight gradients may hold together (4 MB): above it,
/// one product on gemm's own threads (ResNet18's stages 3 and 4 measured no faster split).
const SPLIT_DW_FLOATS: usize = 1 << 20;

/// `c[m×n] (+)= a·b`, row-major `c`; `a` and `b` are given with (row, column) strides so that
/// transposes cost nothing. On the rayon pool if `parallel`, else on the calling thread alone.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    accumulate: bool,
    a: &[f32],
    a_strides: [usize; 2],
    b: &[f32],
    b_strides: [usize; 2],
    parallel: bool,
) {
    assert!(c.len() >= m * n);
    assert!(m == 0 || k == 0 || a.len() > (m - 1) * a_strides[0] + (k - 1) * a_strides[1]);
    assert!(n == 0 || k == 0 || b.len() > (k - 1) * b_strides[0] + (n - 1) * b_strides[1]);
    // SAFETY: the asserts above keep every index gemm reads or writes inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_strides[1] as isize,
            a_strides[0] as isize,
            b.as_ptr(),
            b_strides[1] as isize,
            b_strides[0] as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            if parallel {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        )
    }
}

/// How many partial sums a weight gradient of `len` floats is taken in: one per thread when it
/// is small (see [`add_abt`]), else one.
pub(super) fn weight_parts(len: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    if len * threads <= SPLIT_DW_FLOATS {
        threads
    } else {
        1
    }
}

/// `acc[t] (+)= a·bᵀ` over part t of the `n` columns, for `a` `[m][n]` and `b` `[nn][n]` (row
/// stride `n`), `acc` holding `parts` row-major `m×nn` partial sums; `first` overwrites.
///
/// Why parts: gemm splits only the output among threads, and a 64×147 or 64×576 output over
/// thousands of columns left a thread mostly idle (measured, 2 threads: stem dW 70 → 368
/// GFLOP/s, stage 1 120–220 → 430). And `a·bᵀ` with the long dimension inside both operands'
/// rows, not `b·aᵀ`: gemm runs it 1.1–2× faster.
pub(super) fn add_abt(
    [m, nn, n]: [usize; 3],
    parts: usize,
    acc: &mut [f32],
    a: &[f32],
    b: &[f32],
    first: bool,
) {
    if parts == 1 {
        gemm(m, nn, n, acc, !first, a, [n, 1], b, [1, n], true);
        return;
    }
    let span = n.div_ceil(parts);
    acc.par_chunks_mut(m * nn).enumerate().for_each(|(t, acc)| {
        let (lo, hi) = ((t * span).min(n), ((t + 1) * span).min(n));
        let (a, b) = (&a[lo..], &b[lo..]);
        gemm(m, nn, hi - lo, acc, !first, a, [n, 1], b, [1, n], false);
    });
}

/// The sum of the `len`-float partial sums in `acc`.
pub(super) fn sum_parts(acc: Vec<f32>, len: usize) -> Vec<f32> {
    if acc.len() == len {
        return acc;
    }
    let mut sum = acc[..len].to_vec();
    for part in acc[len..].chunks(len) {
        sum.iter_mut().zip(part).for_each(|(s, v)| *s += v);
    }
    sum
}
