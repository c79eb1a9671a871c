//! im2col and col2im: the images of a chunk unrolled into one matrix whose columns are output
//! positions, and back; and the batch ↔ channel reorders around them.

use rayon::prelude::*;

/// The most floats one chunk's im2col matrix should hold (2 MB, about a core's L2), so the GEMM
/// reads what im2col just wrote from cache: images are grouped up to it...
const CHUNK_FLOATS: usize = 1 << 19;
/// ...but a chunk has at least this many GEMM columns (whole images), so the late stages, whose
/// weights are megabytes, still multiply them over many columns. (Measured, ResNet18 b64, 2
/// threads: 16 MB chunks and no minimum 117 training / 565 inference samples/s; these 130 / 600.)
const MIN_COLUMNS: usize = 512;

/// Shapes of one convolution (no groups, no dilation: what the ResNets use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: [usize; 2],
    pub pad: [usize; 2],
}

/// Output length along one axis of a window `kernel` long sliding by `stride` over `input`
/// padded by `pad` on both sides (convolution and pooling alike; the window must fit).
pub(crate) fn out_len(input: usize, kernel: usize, stride: usize, pad: usize) -> usize {
    (input + 2 * pad - kernel) / stride + 1
}

impl Geometry {
    pub fn out_h(&self) -> usize {
        out_len(self.h, self.k_h, self.stride[0], self.pad[0])
    }
    pub fn out_w(&self) -> usize {
        out_len(self.w, self.k_w, self.stride[1], self.pad[1])
    }
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    pub(super) fn k(&self) -> usize {
        self.c_in * self.k_h * self.k_w
    }
    /// Output positions per image.
    pub(super) fn p(&self) -> usize {
        self.out_h() * self.out_w()
    }
    pub(super) fn images_per_chunk(&self) -> usize {
        // One image when its plane alone gives the GEMM its columns: its `[c][p]` output is
        // then the image itself, written and read in place without a scatter or gather.
        if self.p() >= MIN_COLUMNS {
            return 1;
        }
        let by_size = CHUNK_FLOATS / (self.k() * self.p()).max(1);
        let by_columns = MIN_COLUMNS.div_ceil(self.p().max(1));
        by_size.max(by_columns).clamp(1, self.batch.max(1))
    }
    pub(super) fn chunks(&self) -> impl Iterator<Item = (usize, usize)> {
        let per = self.images_per_chunk();
        let batch = self.batch;
        (0..batch.div_ceil(per)).map(move |i| (i * per, ((i + 1) * per).min(batch)))
    }
}

/// Whether `INSTREC_CONV=im2col` asks for im2col + GEMM everywhere (no Winograd, no per-image
/// 1×1 GEMMs), in training and inference, for side-by-side measurements.
pub(super) fn everywhere() -> bool {
    std::env::var_os("INSTREC_CONV").is_some_and(|v| v == "im2col")
}

/// The output columns `lo..hi` of one kernel tap that read inside the input along one axis.
pub(super) fn valid_range(
    out: usize,
    input: usize,
    stride: usize,
    pad: usize,
    tap: usize,
) -> (usize, usize) {
    // Input index = o·stride + tap − pad must lie in 0..input.
    let lo = pad.saturating_sub(tap).div_ceil(stride).min(out);
    let hi = if input + pad > tap {
        ((input + pad - tap - 1) / stride + 1).min(out)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// im2col of images `b0..b1`: `col[k][(b − b0)·P + p]`, k = (channel, kernel row, kernel column).
pub(super) fn im2col(x: &[f32], g: &Geometry, b0: usize, b1: usize, col: &mut [f32]) {
    let (p, out_h, out_w) = (g.p(), g.out_h(), g.out_w());
    let n = (b1 - b0) * p;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.pad;
    col[..g.k() * n]
        .par_chunks_mut(n)
        .enumerate()
        .for_each(|(row, dst)| {
            let c = row / (g.k_h * g.k_w);
            let (ki, kj) = ((row / g.k_w) % g.k_h, row % g.k_w);
            let (w_lo, w_hi) = valid_range(out_w, g.w, sw, pw, kj);
            let (h_lo, h_hi) = valid_range(out_h, g.h, sh, ph, ki);
            for (bi, b) in (b0..b1).enumerate() {
                let plane = &x[(b * g.c_in + c) * g.h * g.w..][..g.h * g.w];
                let out = &mut dst[bi * p..(bi + 1) * p];
                if sh == 1 && sw == 1 && out_w == g.w {
                    // Rows as long as the input's, unit strides: the tap's rows are one shifted
                    // run of the plane (one copy, not one per row), with the columns that fall
                    // outside it zeroed after.
                    let w = g.w;
                    let shift = (ki * w + kj) as isize - (ph * w + pw) as isize;
                    // A tap shifted past a plane smaller than the kernel's reach reads none of it.
                    let lo = (h_lo * w).max(shift.min(0).unsigned_abs()).min(out.len());
                    let hi = (h_hi * w).min((plane.len() as isize - shift).max(0) as usize);
                    out[..lo].fill(0.0);
                    if hi > lo {
                        let from = (lo as isize + shift) as usize;
                        out[lo..hi].copy_from_slice(&plane[from..from + (hi - lo)]);
                    }
                    out[hi.max(lo)..].fill(0.0);
                    if w_lo > 0 || w_hi < w {
                        for row in out[h_lo * w..h_hi * w].chunks_mut(w) {
                            row[..w_lo].fill(0.0);
                            row[w_hi..].fill(0.0);
                        }
                    }
                    continue;
                }
                for oh in 0..out_h {
                    let orow = &mut out[oh * out_w..(oh + 1) * out_w];
                    if oh < h_lo || oh >= h_hi {
                        orow.fill(0.0);
                        continue;
                    }
                    let ih = oh * sh + ki - ph;
                    let src = &plane[ih * g.w..(ih + 1) * g.w];
                    orow[..w_lo].fill(0.0);
                    orow[w_hi..].fill(0.0);
                    if w_hi <= w_lo {
                        // The tap reads no input column (a plane narrower than its reach).
                        continue;
                    }
                    let first = w_lo * sw + kj - pw;
                    if sw == 1 {
                        orow[w_lo..w_hi].copy_from_slice(&src[first..first + (w_hi - w_lo)]);
                    } else if sw == 2 && w_hi > w_lo {
                        // Pairs, not a stepped iterator: the compiler vectorises this gather.
                        let len = w_hi - w_lo;
                        let (body, last) = orow[w_lo..w_hi].split_at_mut(len - 1);
                        let pairs = src[first..first + 2 * (len - 1)].chunks_exact(2);
                        for (v, pair) in body.iter_mut().zip(pairs) {
                            *v = pair[0];
                        }
                        last[0] = src[first + 2 * (len - 1)];
                    } else {
                        for (v, s) in orow[w_lo..w_hi]
                            .iter_mut()
                            .zip(src[first..].iter().step_by(sw))
                        {
                            *v = *s;
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`im2col`]: adds `col` (images `b0..b1`) into `dx` laid out `[c][b][h·w]`.
pub(super) fn col2im(col: &[f32], g: &Geometry, b0: usize, b1: usize, dx_cb: &mut [f32]) {
    let (p, out_h, out_w) = (g.p(), g.out_h(), g.out_w());
    let n = (b1 - b0) * p;
    let hw = g.h * g.w;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.pad;
    let taps = g.k_h * g.k_w;
    dx_cb
        .par_chunks_mut(g.batch * hw)
        .enumerate()
        .for_each(|(c, planes)| {
            for tap in 0..taps {
                let (ki, kj) = (tap / g.k_w, tap % g.k_w);
                let src_row = &col[(c * taps + tap) * n..][..n];
                let (w_lo, w_hi) = valid_range(out_w, g.w, sw, pw, kj);
                let (h_lo, h_hi) = valid_range(out_h, g.h, sh, ph, ki);
                if w_hi <= w_lo {
                    // The tap reads no input column (a plane narrower than its reach).
                    continue;
                }
                for (bi, b) in (b0..b1).enumerate() {
                    let plane = &mut planes[b * hw..(b + 1) * hw];
                    for oh in h_lo..h_hi {
                        let ih = oh * sh + ki - ph;
                        let dst = &mut plane[ih * g.w..(ih + 1) * g.w];
                        let src = &src_row[bi * p + oh * out_w..][..out_w];
                        let first = w_lo * sw + kj - pw;
                        if sw == 1 {
                            // Unit stride: a plain slice add, which the compiler vectorises.
                            let d = &mut dst[first..first + (w_hi - w_lo)];
                            for (d, v) in d.iter_mut().zip(&src[w_lo..w_hi]) {
                                *d += v;
                            }
                        } else if sw == 2 && w_hi > w_lo {
                            // Pairs, as in im2col: a vectorised scatter-add.
                            let len = w_hi - w_lo;
                            let pairs = dst[first..first + 2 * (len - 1)].chunks_exact_mut(2);
                            for (pair, v) in pairs.zip(&src[w_lo..w_hi - 1]) {
                                pair[0] += v;
                            }
                            dst[first + 2 * (len - 1)] += src[w_hi - 1];
                        } else {
                            for (i, v) in src[w_lo..w_hi].iter().enumerate() {
                                dst[first + i * sw] += v;
                            }
                        }
                    }
                }
            }
        });
}

/// Images `b0..b1` of `t` (`[b][c][p]`, `dims` = [c, p]) as `[c][(b − b0)·p + p]` in `out`.
pub(super) fn gather_images(t: &[f32], dims: [usize; 2], b0: usize, b1: usize, out: &mut [f32]) {
    let [c, p] = dims;
    let n = (b1 - b0) * p;
    out[..c * n]
        .par_chunks_mut(n)
        .enumerate()
        .for_each(|(ci, row)| {
            for (bi, b) in (b0..b1).enumerate() {
                row[bi * p..(bi + 1) * p].copy_from_slice(&t[(b * c + ci) * p..][..p]);
            }
        });
}

/// One image's `[c][p]` convolution output in place: + bias[c], then ReLU if asked (nothing to
/// do without either).
pub(super) fn bias_relu_in_place(img: &mut [f32], p: usize, bias: Option<&[f32]>, relu: bool) {
    if bias.is_none() && !relu {
        return;
    }
    for (ci, row) in img.chunks_mut(p).enumerate() {
        let add = bias.map_or(0.0, |b| b[ci]);
        for v in row {
            *v += add;
            if relu {
                *v = v.max(0.0);
            }
        }
    }
}

/// The inverse of [`gather_images`]: `src[c][(b − b0)·p + p]` (+ bias[c], then ReLU if asked)
/// into images `b0..b1` of `y` (`[b][c][p]`).
pub(super) fn scatter_images(
    src: &[f32],
    dims: [usize; 2],
    b0: usize,
    b1: usize,
    y: &mut [f32],
    bias: Option<&[f32]>,
    relu: bool,
) {
    let [c, p] = dims;
    let n = (b1 - b0) * p;
    y[b0 * c * p..b1 * c * p]
        .par_chunks_mut(c * p)
        .enumerate()
        .for_each(|(bi, img)| {
            for (ci, dst) in img.chunks_mut(p).enumerate() {
                let src = &src[ci * n + bi * p..][..p];
                let add = bias.map_or(0.0, |b| b[ci]);
                for (d, s) in dst.iter_mut().zip(src) {
                    let v = s + add;
                    *d = if relu { v.max(0.0) } else { v };
                }
            }
        });
}
