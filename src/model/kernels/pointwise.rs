//! 1×1 stride-1 convolutions (ResNet50's bottleneck ends) as one GEMM per image, straight on the
//! `[b][c][hw]` planes. The im2col path first gathers the images into one `[c][b·hw]` matrix and
//! scatters its product back: for a 1×1 convolution that is nothing but copies, five full ones
//! of the activations per training step (x and y forward; dy, x and dx backward).

use rayon::prelude::*;

use super::gemm::{gemm, sum_parts};
use super::im2col::{Geometry, bias_relu_in_place};

/// The fewest positions per image this path takes: with fewer, a GEMM per image has too few
/// columns and im2col's one GEMM over the batch measured faster (ResNet50's stages 3 and 4).
const MIN_POSITIONS: usize = 64;

/// Whether [`forward`] and [`backward`] take this convolution: 1×1, stride 1, no padding, at
/// least [`MIN_POSITIONS`] per image, unless `INSTREC_CONV=im2col` asks for im2col everywhere.
pub(super) fn applies(g: &Geometry) -> bool {
    g.k_h == 1
        && g.k_w == 1
        && g.stride == [1, 1]
        && g.pad == [0, 0]
        && g.h * g.w >= MIN_POSITIONS
        && !super::im2col::everywhere()
}

/// The convolution's output `[b][k][h][w]` (+ bias, then ReLU if asked).
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
) -> Vec<f32> {
    let (c_in, c_out, hw) = (g.c_in, g.c_out, g.h * g.w);
    let mut y = super::zeroed(g.batch * c_out * hw);
    y.par_chunks_mut(c_out * hw)
        .zip(x.par_chunks(c_in * hw))
        .for_each(|(y, x)| {
            // y[k][p] = Σ_c w[k][c]·x[c][p]
            gemm(c_out, hw, c_in, y, false, w, [c_in, 1], x, [hw, 1], false);
            bias_relu_in_place(y, hw, bias, relu);
        });
    y
}

/// The gradients of the input and of the weights (each only if asked) for the output gradient
/// `dy` `[b][k][h][w]`.
pub(super) fn backward(
    [x, w, dy]: [&[f32]; 3],
    g: &Geometry,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (batch, c_in, c_out, hw) = (g.batch, g.c_in, g.c_out, g.h * g.w);
    let dx = want_dx.then(|| {
        let mut dx = super::zeroed(batch * c_in * hw);
        dx.par_chunks_mut(c_in * hw)
            .zip(dy.par_chunks(c_out * hw))
            .for_each(|(dx, dy)| {
                // dx[c][p] = Σ_k w[k][c]·dy[k][p]
                gemm(c_in, hw, c_out, dx, false, w, [1, c_in], dy, [hw, 1], false);
            });
        dx
    });
    let dw = want_dw.then(|| {
        // One partial sum per thread over its run of images, as `gemm::add_abt` does over columns.
        let parts = rayon::current_num_threads().clamp(1, batch.max(1));
        let span = batch.div_ceil(parts);
        let mut acc = vec![0f32; parts * c_out * c_in];
        acc.par_chunks_mut(c_out * c_in)
            .enumerate()
            .for_each(|(t, acc)| {
                let (lo, hi) = ((t * span).min(batch), ((t + 1) * span).min(batch));
                for b in lo..hi {
                    // dW[k][c] += Σ_p dy[k][p]·x[c][p]
                    let (dy, x) = (&dy[b * c_out * hw..], &x[b * c_in * hw..]);
                    gemm(c_out, c_in, hw, acc, b > lo, dy, [hw, 1], x, [1, hw], false);
                }
            });
        sum_parts(acc, c_out * c_in)
    });
    (dx, dw)
}
