//! Inference's 3×3 stride-1 convolutions (padding 1) on channels-last activations by Winograd's
//! F(4×4, 3×3), the maps of [`super::winograd`]: 36 products per (input, output) channel pair
//! for each 4×4 output tile where im2col + GEMM takes 144. Channels-last makes every tile value
//! a contiguous run of channels, so both transforms are vector passes over channel runs and the
//! outputs are written straight into the `[b][h][w][c]` activation. The weights are transformed
//! once, when the network is packed ([`Packed::new`]).

use rayon::prelude::*;

use super::gemm::gemm;
use super::scratch::Scratch;
use super::winograd::{F4, Tile, combine, rows_at, rows_mut, transform_weights};

/// F(4×4, 3×3): output tile side, input tile side, transformed positions ξ.
const M: usize = 4;
const A: usize = 6;
const XIS: usize = A * A;
/// The most floats a chunk's transformed inputs and products should hold (4 MB)...
const CHUNK_FLOATS: usize = 1 << 20;
/// ...but each of a chunk's GEMMs gets at least this many tile rows.
const MIN_TILES: usize = 256;

/// Whether inference takes this path for a convolution of these channels; `INSTREC_CONV=im2col`
/// asks for im2col everywhere, as in training.
pub(crate) fn enabled() -> bool {
    !super::im2col::everywhere()
}

/// A convolution's kernels transformed, `U[ξ][c_in][c_out] = G g Gᵀ`.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    u: Vec<f32>,
    c_in: usize,
    c_out: usize,
}

impl Packed {
    /// From the kernels `w` `[c_out][c_in][3][3]`.
    pub(crate) fn new(w: &[f32], c_in: usize, c_out: usize) -> Self {
        let plane = c_in * c_out;
        let t = transform_weights::<F4, M, A>(w, c_in, c_out);
        let mut u = vec![0f32; XIS * plane];
        u.par_chunks_mut(plane)
            .zip(t[..XIS * plane].par_chunks(plane))
            .for_each(|(dst, src)| {
                for (k, row) in src.chunks_exact(c_in).enumerate() {
                    for (c, v) in row.iter().enumerate() {
                        dst[c * c_out + k] = *v;
                    }
                }
            });
        Self { u, c_in, c_out }
    }

    /// `y` `[b][h][w][c_out]` (overwritten) = the convolution of `x` `[b][h][w][c_in]` + `bias`
    /// (+ `residual`, shaped as `y`), then ReLU if asked: the epilogue applied as the output
    /// tiles are copied into place.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        [b, h, w]: [usize; 3],
        y: &mut [f32],
        (bias, residual, relu): (&[f32], Option<&[f32]>, bool),
    ) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        if h == 0 || w == 0 {
            return;
        }
        let (th, tw) = (h.div_ceil(M), w.div_ceil(M));
        let per_image = th * tw;
        let by_size = CHUNK_FLOATS / (per_image * XIS * (c_in + c_out)).max(1);
        let by_tiles = MIN_TILES.div_ceil(per_image.max(1));
        let per = by_size.max(by_tiles).clamp(1, b.max(1));
        let zero = vec![0f32; c_in];
        let hw = h * w;
        for b0 in (0..b).step_by(per) {
            let b1 = (b0 + per).min(b);
            let n = (b1 - b0) * per_image;
            let mut v = Scratch::take(n * XIS * c_in);
            let mut m = Scratch::take(XIS * n * c_out);
            // V[tile][ξ][c] = Bᵀ d B: down each column of the tile's 6×6 channel runs, then along
            // each row (ξ = 6·row + column).
            v[..n * XIS * c_in]
                .par_chunks_mut(XIS * c_in)
                .enumerate()
                .for_each_init(
                    || vec![0f32; XIS * c_in],
                    |t, (tile, v)| {
                        let (bi, ti, tj) =
                            (b0 + tile / per_image, tile % per_image / tw, tile % tw);
                        let d = |r: usize, col: usize| -> &[f32] {
                            let yy = (M * ti + r).checked_sub(1).filter(|&yy| yy < h);
                            let xx = (M * tj + col).checked_sub(1).filter(|&xx| xx < w);
                            match (yy, xx) {
                                (Some(yy), Some(xx)) => {
                                    &x[((bi * h + yy) * w + xx) * c_in..][..c_in]
                                }
                                _ => &zero,
                            }
                        };
                        for col in 0..A {
                            let inp = std::array::from_fn(|r| d(r, col));
                            let out = rows_at(t, c_in, std::array::from_fn(|a| A * a + col));
                            combine(inp, out, F4::input);
                        }
                        for a in 0..A {
                            let inp = std::array::from_fn(|j| &t[(A * a + j) * c_in..][..c_in]);
                            combine(inp, rows_mut(&mut v[A * a * c_in..], c_in), F4::input);
                        }
                    },
                );
            // M[ξ][tile][k] = Σ_c V[tile][ξ][c]·U[ξ][c][k]: one GEMM per ξ, side by side.
            let (v, u) = (&v[..], &self.u[..]);
            m[..XIS * n * c_out]
                .par_chunks_mut(n * c_out)
                .enumerate()
                .for_each(|(xi, out)| {
                    let (a, bm) = (&v[xi * c_in..], &u[xi * c_in * c_out..]);
                    gemm(
                        n,
                        c_out,
                        c_in,
                        out,
                        false,
                        a,
                        [XIS * c_in, 1],
                        bm,
                        [c_out, 1],
                        false,
                    );
                });
            // Y = Aᵀ M A per tile, the 4×4 outputs copied into the image where they fall in it.
            let m = &m[..];
            y[b0 * hw * c_out..b1 * hw * c_out]
                .par_chunks_mut(hw * c_out)
                .enumerate()
                .for_each_init(
                    || vec![0f32; (A * M + M * M) * c_out],
                    |buf, (bi, img)| {
                        let (p, yt) = buf.split_at_mut(A * M * c_out);
                        let res = residual.map(|r| &r[(b0 + bi) * hw * c_out..][..hw * c_out]);
                        for (ti, tj) in (0..th).flat_map(|ti| (0..tw).map(move |tj| (ti, tj))) {
                            let tile = bi * per_image + ti * tw + tj;
                            let mx = |xi: usize| &m[(xi * n + tile) * c_out..][..c_out];
                            for a in 0..A {
                                let inp = std::array::from_fn(|i| mx(A * a + i));
                                combine(
                                    inp,
                                    rows_mut::<M>(&mut p[M * a * c_out..], c_out),
                                    F4::output,
                                );
                            }
                            for col in 0..M {
                                let inp =
                                    std::array::from_fn(|a| &p[(M * a + col) * c_out..][..c_out]);
                                let out =
                                    rows_at(yt, c_out, std::array::from_fn(|row| M * row + col));
                                combine(inp, out, F4::output);
                            }
                            let (x0, cols) = (M * tj, M.min(w - M * tj));
                            for row in 0..M.min(h - M * ti) {
                                let at = ((M * ti + row) * w + x0) * c_out;
                                let dst = &mut img[at..at + cols * c_out];
                                dst.copy_from_slice(&yt[M * row * c_out..][..cols * c_out]);
                                let res = res.map(|r| &r[at..at + cols * c_out]);
                                epilogue(dst, bias, res, relu);
                            }
                        }
                    },
                );
        }
    }
}

/// Channels-last outputs `out` (pixels of `bias.len()` channels) in place: + bias
/// (+ `residual`, shaped as `out`), then ReLU if asked.
#[inline(always)]
pub(crate) fn epilogue(out: &mut [f32], bias: &[f32], residual: Option<&[f32]>, relu: bool) {
    let c = bias.len();
    for (i, px) in out.chunks_exact_mut(c).enumerate() {
        let res = residual.map(|r| &r[i * c..][..c]);
        for (co, v) in px.iter_mut().enumerate() {
            let mut s = *v + bias[co];
            if let Some(r) = res {
                s += r[co];
            }
            *v = if relu { s.max(0.0) } else { s };
        }
    }
}
