//! 2-D convolution on the Flex (CPU) backend as im2col + one GEMM over many images at once,
//! forward and backward. Other backends keep burn's own convolution.
//!
//! Why: burn-flex multiplies image by image, so in ResNet's late stages (3×8 and 2×4 outputs for a
//! 43×128 window) each GEMM has 8–24 columns and re-reads the whole weight matrix per image; its
//! weight gradient is a convolution over batch↔channel-swapped tensors (again a GEMM with 9
//! columns) and its input gradient a transposed convolution. Here the columns of all images of a
//! chunk go into one GEMM, and the two gradients are the two other products of the same three
//! matrices: `dWᵀ = col·dYᵀ`, `dcol = Wᵀ·dY` then col2im. With unit stride both gradients come
//! from one im2col of `dY` instead (`backward_unit_stride`).

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

/// The most floats one chunk's im2col matrix should hold (2 MB, about a core's L2), so the GEMM
/// reads what im2col just wrote from cache: images are grouped up to it...
const CHUNK_FLOATS: usize = 1 << 19;
/// ...but a chunk has at least this many GEMM columns (whole images), so the late stages, whose
/// weights are megabytes, still multiply them over many columns. (Measured, ResNet18 b64, 2
/// threads: 16 MB chunks and no minimum 117 training / 565 inference samples/s; these 130 / 600.)
const MIN_COLUMNS: usize = 512;
/// The most floats the per-thread partial weight gradients may hold together (4 MB): above it,
/// one product on gemm's own threads (ResNet18's stages 3 and 4 measured no faster split).
const SPLIT_DW_FLOATS: usize = 1 << 20;

/// Scratch buffers reused across calls: fresh multi-megabyte buffers cost a page fault and a
/// page clear per 4 KB (≈10 % of a training step when each call allocated its own).
static SCRATCH: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// A scratch buffer of `len` floats; its contents are unspecified (every user overwrites it).
pub(super) struct Scratch(pub(super) Vec<f32>);

impl Scratch {
    pub(super) fn take(len: usize) -> Self {
        let mut pool = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = match pool.iter().position(|b| b.capacity() >= len) {
            Some(i) => pool.swap_remove(i),
            None => pool.pop().unwrap_or_default(),
        };
        drop(pool);
        v.resize(len, 0.0);
        Self(v)
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mut pool = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
        // A few buffers cover a forward or backward pass (activations, im2col, GEMM output);
        // more would only hold memory.
        if pool.len() < 6 {
            pool.push(std::mem::take(&mut self.0));
        }
    }
}

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
pub(super) fn out_len(input: usize, kernel: usize, stride: usize, pad: usize) -> usize {
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
    fn k(&self) -> usize {
        self.c_in * self.k_h * self.k_w
    }
    /// Output positions per image.
    fn p(&self) -> usize {
        self.out_h() * self.out_w()
    }
    fn images_per_chunk(&self) -> usize {
        let by_size = CHUNK_FLOATS / (self.k() * self.p()).max(1);
        let by_columns = MIN_COLUMNS.div_ceil(self.p().max(1));
        by_size.max(by_columns).clamp(1, self.batch.max(1))
    }
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> {
        let per = self.images_per_chunk();
        let batch = self.batch;
        (0..batch.div_ceil(per)).map(move |i| (i * per, ((i + 1) * per).min(batch)))
    }
}

/// The output columns `lo..hi` of one kernel tap that read inside the input along one axis.
fn valid_range(out: usize, input: usize, stride: usize, pad: usize, tap: usize) -> (usize, usize) {
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
fn im2col(x: &[f32], g: &Geometry, b0: usize, b1: usize, col: &mut [f32]) {
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
                    let lo = (h_lo * w).max(shift.min(0).unsigned_abs());
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
                    let first = w_lo * sw + kj - pw;
                    if sw == 1 {
                        orow[w_lo..w_hi].copy_from_slice(&src[first..first + (w_hi - w_lo)]);
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
fn col2im(col: &[f32], g: &Geometry, b0: usize, b1: usize, dx_cb: &mut [f32]) {
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

/// `c[m×n] (+)= a·b`, row-major `c`; `a` and `b` are given with (row, column) strides so that
/// transposes cost nothing. On the rayon pool if `parallel`, else on the calling thread alone.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
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

/// Forward: `y[b][co][p] = Σ_k w[co][k]·col[k][b·P + p] + bias[co]`, then ReLU if asked (the
/// inference path with BatchNorm folded in).
pub fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, relu: bool, g: &Geometry) -> Vec<f32> {
    let (k, p, c_out) = (g.k(), g.p(), g.c_out);
    let mut y = vec![0f32; g.batch * c_out * p];
    let mut col = Scratch::take(k * g.images_per_chunk() * p);
    let mut out = Scratch::take(c_out * g.images_per_chunk() * p);
    for (b0, b1) in g.chunks() {
        let n = (b1 - b0) * p;
        im2col(x, g, b0, b1, &mut col.0);
        gemm(
            c_out,
            n,
            k,
            &mut out.0,
            false,
            w,
            [k, 1],
            &col.0,
            [n, 1],
            true,
        );
        scatter_images(&out.0, [c_out, p], b0, b1, &mut y, bias, relu);
    }
    y
}

/// Images `b0..b1` of `t` (`[b][c][p]`, `dims` = [c, p]) as `[c][(b − b0)·p + p]` in `out`.
fn gather_images(t: &[f32], dims: [usize; 2], b0: usize, b1: usize, out: &mut [f32]) {
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

/// The inverse of [`gather_images`]: `src[c][(b − b0)·p + p]` (+ bias[c], then ReLU if asked)
/// into images `b0..b1` of `y` (`[b][c][p]`).
fn scatter_images(
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

/// How many partial sums a weight gradient of `len` floats is taken in: one per thread when it
/// is small (see [`add_abt`]), else one.
fn weight_parts(len: usize) -> usize {
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
fn add_abt(
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
fn sum_parts(acc: Vec<f32>, len: usize) -> Vec<f32> {
    if acc.len() == len {
        return acc;
    }
    let mut sum = acc[..len].to_vec();
    for part in acc[len..].chunks(len) {
        sum.iter_mut().zip(part).for_each(|(s, v)| *s += v);
    }
    sum
}

/// Backward: the gradients of the input and of the weights (each only if asked) for the
/// output gradient `dy` `[b][co][p]`.
pub fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    g: &Geometry,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    if g.stride == [1, 1] && g.pad[0] < g.k_h && g.pad[1] < g.k_w {
        let want = Wanted {
            dx: want_dx,
            dw: want_dw,
        };
        return backward_unit_stride([x, w, dy], g, want);
    }
    let (k, p, c_out) = (g.k(), g.p(), g.c_out);
    let per = g.images_per_chunk();
    let mut col = Scratch::take(k * per * p);
    let mut dyc = Scratch::take(c_out * per * p);
    let parts = weight_parts(c_out * k);
    // dWᵀ `[k][co]`, in parts.
    let mut dwt = want_dw.then(|| vec![0f32; parts * k * c_out]);
    let mut dx_cb = want_dx.then(|| vec![0f32; g.c_in * g.batch * g.h * g.w]);
    for (i, (b0, b1)) in g.chunks().enumerate() {
        let n = (b1 - b0) * p;
        gather_images(dy, [c_out, p], b0, b1, &mut dyc.0);
        if let Some(dwt) = &mut dwt {
            im2col(x, g, b0, b1, &mut col.0);
            // dWᵀ[k][co] += Σ_n col[k][n]·dY[co][n]
            add_abt([k, c_out, n], parts, dwt, &col.0, &dyc.0, i == 0);
        }
        if let Some(dx_cb) = &mut dx_cb {
            // dcol[k][n] = Σ_co W[co][k]·dY[co][n]
            gemm(
                k,
                n,
                c_out,
                &mut col.0,
                false,
                w,
                [1, k],
                &dyc.0,
                [n, 1],
                true,
            );
            col2im(&col.0, g, b0, b1, dx_cb);
        }
    }
    // dWᵀ[k][co] → dW[co][k]
    let dw = dwt.map(|dwt| {
        let dwt = sum_parts(dwt, k * c_out);
        let mut dw = vec![0f32; c_out * k];
        dw.par_chunks_mut(k).enumerate().for_each(|(co, row)| {
            for (kk, v) in row.iter_mut().enumerate() {
                *v = dwt[kk * c_out + co];
            }
        });
        dw
    });
    // [c][b][hw] → [b][c][hw]
    let dx = dx_cb.map(|cb| {
        let mut dx = vec![0f32; cb.len()];
        scatter_images(&cb, [g.c_in, g.h * g.w], 0, g.batch, &mut dx, None, false);
        dx
    });
    (dx, dw)
}

/// Which gradients a backward pass computes.
#[derive(Clone, Copy)]
struct Wanted {
    dx: bool,
    dw: bool,
}

/// [`backward`] of a unit-stride convolution, from one im2col of `dy` instead of two im2cols of
/// `x` and a col2im: the input gradient of such a convolution is itself a convolution of `dy`
/// (padded by `k − 1 − pad`, kernel flipped, channels swapped), whose im2col rows, (co, tap),
/// also give the weight gradient against `x`: `dW[co][c][tap] = Σ_n col'[co][flip tap][n]·x[c][n]`.
/// It skips col2im's scattered adds, the input gradient's transpose and one of the two
/// kernel-sized matrices per chunk.
fn backward_unit_stride(
    [x, w, dy]: [&[f32]; 3],
    g: &Geometry,
    want: Wanted,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (taps, c_in, c_out, hw) = (g.k_h * g.k_w, g.c_in, g.c_out, g.h * g.w);
    // The convolution whose im2col of dy has one column per input position.
    let t = Geometry {
        c_in: c_out,
        h: g.out_h(),
        w: g.out_w(),
        c_out: c_in,
        pad: [g.k_h - 1 - g.pad[0], g.k_w - 1 - g.pad[1]],
        ..*g
    };
    debug_assert_eq!((t.out_h(), t.out_w()), (g.h, g.w));
    let kt = t.k();
    let per = t.images_per_chunk();
    let mut col = Scratch::take(kt * per * hw);
    // Tap `(i, j)` of the flipped kernel is tap `(k_h − 1 − i, k_w − 1 − j)` of the kernel.
    let flip = |tap: usize| taps - 1 - tap;
    // wf[c][co·taps + tap] = w[co][c][flip tap]
    let wf = want.dx.then(|| {
        let mut wf = vec![0f32; c_in * kt];
        wf.par_chunks_mut(kt).enumerate().for_each(|(c, row)| {
            for (co, row) in row.chunks_mut(taps).enumerate() {
                let kernel = &w[(co * c_in + c) * taps..][..taps];
                row.iter_mut()
                    .zip(kernel.iter().rev())
                    .for_each(|(v, k)| *v = *k);
            }
        });
        wf
    });
    let mut dx = want.dx.then(|| vec![0f32; g.batch * c_in * hw]);
    let mut xc = Scratch::take(if want.dw { c_in * per * hw } else { 0 });
    let mut out = Scratch::take(if want.dx { c_in * per * hw } else { 0 });
    let parts = weight_parts(kt * c_in);
    // G[co·taps + tap][c], in parts.
    let mut gw = want.dw.then(|| vec![0f32; parts * kt * c_in]);
    for (i, (b0, b1)) in t.chunks().enumerate() {
        let n = (b1 - b0) * hw;
        im2col(dy, &t, b0, b1, &mut col.0);
        if let Some(gw) = &mut gw {
            gather_images(x, [c_in, hw], b0, b1, &mut xc.0);
            // G[r][c] += Σ_n col'[r][n]·x[c][n]
            add_abt([kt, c_in, n], parts, gw, &col.0, &xc.0, i == 0);
        }
        if let (Some(dx), Some(wf)) = (&mut dx, &wf) {
            // dx[c][n] = Σ_r wf[c][r]·col'[r][n]
            gemm(
                c_in,
                n,
                kt,
                &mut out.0,
                false,
                wf,
                [kt, 1],
                &col.0,
                [n, 1],
                true,
            );
            scatter_images(&out.0, [c_in, hw], b0, b1, dx, None, false);
        }
    }
    let dw = gw.map(|gw| {
        let gw = sum_parts(gw, kt * c_in);
        let mut dw = vec![0f32; c_out * c_in * taps];
        dw.par_chunks_mut(c_in * taps)
            .enumerate()
            .for_each(|(co, rows)| {
                for (c, row) in rows.chunks_mut(taps).enumerate() {
                    for (tap, v) in row.iter_mut().enumerate() {
                        *v = gw[(co * taps + flip(tap)) * c_in + c];
                    }
                }
            });
        dw
    });
    (dx, dw)
}

/// `[rows, columns]` of a padding that is the same on both sides of each axis (all the kernels
/// here take); `None` for any other.
pub(super) fn symmetric_padding(p: &burn::nn::PaddingConfig2d) -> Option<[usize; 2]> {
    match p {
        burn::nn::PaddingConfig2d::Explicit(top, left, bottom, right)
            if top == bottom && left == right =>
        {
            Some([*top, *left])
        }
        burn::nn::PaddingConfig2d::Valid => Some([0, 0]),
        _ => None,
    }
}

/// A tensor's values as f32 on the host (`None` only if conversion fails).
pub(super) fn host_f32<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    t.into_data().convert::<f32>().try_to_vec().ok()
}

fn geometry(x: [usize; 4], w: [usize; 4], conv: &Conv2d) -> Option<Geometry> {
    let ([batch, c_in, h, w_in], [c_out, c_in_w, k_h, k_w]) = (x, w);
    let pad = symmetric_padding(&conv.padding)?;
    let g = Geometry {
        batch,
        c_in,
        h,
        w: w_in,
        c_out,
        k_h,
        k_w,
        stride: conv.stride,
        pad,
    };
    let fits = conv.groups == 1
        && conv.dilation == [1, 1]
        && c_in == c_in_w
        && h + 2 * pad[0] >= k_h
        && w_in + 2 * pad[1] >= k_w
        && g.stride.iter().all(|&s| s > 0);
    fits.then_some(g)
}

pub(super) fn flex_tensor<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// Flex under autodiff without checkpointing: the backend this module's autodiff nodes are for.
pub(super) type FlexAd = Autodiff<Flex, NoCheckpointing>;

/// Where an f32 tensor lives, for choosing a kernel: Flex for inference, Flex or LibTorch under
/// autodiff without checkpointing (the nodes here and in `model::torch` keep their own state),
/// or elsewhere (burn's own ops).
pub(super) enum Route {
    Flex,
    FlexAutodiff,
    #[cfg(feature = "tch")]
    TchAutodiff,
    Other,
}

pub(super) fn route(x: &Tensor<4>) -> Route {
    use burn::backend::{DispatchDevice, GradientCheckpointingStrategy};
    if x.dtype() != DType::F32 {
        return Route::Other;
    }
    let device = x.device();
    let autodiff = device.is_autodiff();
    let strategy = device.gradient_checkpointing_strategy();
    let unchecked = strategy == Some(GradientCheckpointingStrategy::Disabled);
    match device.inner().as_dispatch() {
        DispatchDevice::Flex(_) if !autodiff => Route::Flex,
        DispatchDevice::Flex(_) if unchecked => Route::FlexAutodiff,
        #[cfg(feature = "tch")]
        DispatchDevice::LibTorch(_) if autodiff && unchecked => Route::TchAutodiff,
        #[allow(unreachable_patterns)]
        _ => Route::Other,
    }
}

/// `conv.forward(x)`, then ReLU if `relu`; on Flex through this module's kernels.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let plain = |x: Tensor<4>| {
        let y = conv.forward(x);
        if relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        }
    };
    let weight = conv.weight.val();
    let Some(g) = geometry(x.dims(), weight.dims(), conv) else {
        return plain(x);
    };
    match route(&x) {
        Route::Flex => {
            let (Ok(xp), Ok(wp)) = (
                x.clone().try_into_primitive::<Flex>(),
                weight.try_into_primitive::<Flex>(),
            ) else {
                return plain(x);
            };
            let bias = match conv
                .bias
                .as_ref()
                .map(|b| b.val().try_into_primitive::<Flex>())
            {
                None => None,
                Some(Ok(b)) => Some(b.to_contiguous()),
                Some(Err(_)) => return plain(x),
            };
            let (xp, wp) = (xp.to_contiguous(), wp.to_contiguous());
            let y = forward(
                xp.storage::<f32>(),
                wp.storage::<f32>(),
                bias.as_ref().map(|b| b.storage::<f32>()),
                relu,
                &g,
            );
            Tensor::from_primitive::<Flex>(flex_tensor(y, [g.batch, g.c_out, g.out_h(), g.out_w()]))
        }
        Route::FlexAutodiff if conv.bias.is_none() => {
            let Some(y) = autodiff_conv(x.clone(), weight, g) else {
                return plain(x);
            };
            if relu {
                burn::tensor::activation::relu(y)
            } else {
                y
            }
        }
        _ => plain(x),
    }
}

/// `pool.forward(x)` (max pooling, padding that never wins, as PyTorch pads with −∞); on Flex a
/// direct loop per plane: for inference without indices (burn-flex keeps them for a backward
/// pass inference never takes: 15 % of tagging time), for training as one autodiff node that
/// keeps each maximum's position in its plane and scatters the gradient there (burn-flex's
/// indexed pooling and its backward: 4–5 % of a training step).
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let route = route(&x);
    if !matches!(route, Route::Flex | Route::FlexAutodiff) {
        return pool.forward(x);
    }
    let (Some(pad), [k_h, k_w], [1, 1]) = (
        symmetric_padding(&pool.padding),
        pool.kernel_size,
        pool.dilation,
    ) else {
        return pool.forward(x);
    };
    let [b, c, h, w] = x.dims();
    let g = PoolGeometry {
        h,
        w,
        kernel: [k_h, k_w],
        stride: pool.stride,
        pad,
    };
    if !g.fits() {
        return pool.forward(x);
    }
    let out_dims = [b, c, g.out_h(), g.out_w()];
    match route {
        Route::Flex => {
            let Ok(xp) = x.clone().try_into_primitive::<Flex>() else {
                return pool.forward(x);
            };
            let y = pool_planes(xp.to_contiguous().storage::<f32>(), &g, None);
            Tensor::from_primitive::<Flex>(flex_tensor(y, out_dims))
        }
        _ => {
            let Ok(xa) = x.clone().try_into_primitive::<FlexAd>() else {
                return pool.forward(x);
            };
            let xp = xa.primitive().to_contiguous();
            let mut arg = vec![0u32; b * c * g.out_h() * g.out_w()];
            let y = pool_planes(xp.storage::<f32>(), &g, Some(&mut arg));
            let y = flex_tensor(y, out_dims);
            let out = match MaxPoolBackward
                .prepare::<NoCheckpointing>([xa.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish((arg, [b, c, h, w]), y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            Tensor::from_primitive::<FlexAd>(out)
        }
    }
}

/// Shapes of one max pooling over `h×w` planes.
struct PoolGeometry {
    h: usize,
    w: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
}

impl PoolGeometry {
    fn out_h(&self) -> usize {
        out_len(self.h, self.kernel[0], self.stride[0], self.pad[0])
    }
    fn out_w(&self) -> usize {
        out_len(self.w, self.kernel[1], self.stride[1], self.pad[1])
    }
    /// Shapes the loops handle: every window holds at least one input (padding < kernel) and a
    /// plane's positions fit the u32 indices.
    fn fits(&self) -> bool {
        let ([k_h, k_w], [s_h, s_w], [p_h, p_w]) = (self.kernel, self.stride, self.pad);
        s_h > 0
            && s_w > 0
            && self.h + 2 * p_h >= k_h
            && self.w + 2 * p_w >= k_w
            && p_h < k_h
            && p_w < k_w
            && u32::try_from(self.h * self.w).is_ok()
    }
}

/// One window element of a row of max-pool outputs: `next[j]` = `v[j]` if it beats `m[j]` (is
/// larger, or NaN, as PyTorch keeps it), else `m[j]`; `at[j]` takes `first + j·step` where it
/// does. Selects by mask, explicitly: the compiler turned the plain version into per-element
/// branches, mispredicted on the ties of ReLU outputs.
fn keep_larger(m: &[f32], next: &mut [f32], at: &mut [u32], v: &[f32], first: u32, step: u32) {
    let n = m.len().min(next.len()).min(at.len()).min(v.len());
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86-64; every load and store is of 4 lanes at j..j + 4 ≤ n.
        unsafe {
            let stride = _mm_set1_epi32((4 * step) as i32);
            let mut idx = _mm_setr_epi32(
                first as i32,
                first.wrapping_add(step) as i32,
                first.wrapping_add(2 * step) as i32,
                first.wrapping_add(3 * step) as i32,
            );
            while j + 4 <= n {
                let vj = _mm_loadu_ps(v.as_ptr().add(j));
                let mj = _mm_loadu_ps(m.as_ptr().add(j));
                let take = _mm_or_ps(_mm_cmpgt_ps(vj, mj), _mm_cmpunord_ps(vj, vj));
                let kept = _mm_or_ps(_mm_and_ps(take, vj), _mm_andnot_ps(take, mj));
                _mm_storeu_ps(next.as_mut_ptr().add(j), kept);
                let take = _mm_castps_si128(take);
                let aj = _mm_loadu_si128(at.as_ptr().add(j).cast());
                let a = _mm_or_si128(_mm_and_si128(take, idx), _mm_andnot_si128(take, aj));
                _mm_storeu_si128(at.as_mut_ptr().add(j).cast(), a);
                idx = _mm_add_epi32(idx, stride);
                j += 4;
            }
        }
    }
    for j in j..n {
        let take = (v[j] > m[j]) | v[j].is_nan();
        next[j] = if take { v[j] } else { m[j] };
        if take {
            at[j] = first.wrapping_add(step.wrapping_mul(j as u32));
        }
    }
}

/// Max pooling of every `h×w` plane of `x`; with `arg`, also each maximum's position in its
/// plane (the first in scan order, and NaN wins, as in PyTorch).
fn pool_planes(x: &[f32], g: &PoolGeometry, arg: Option<&mut [u32]>) -> Vec<f32> {
    let (h, w) = (g.h, g.w);
    let (o_h, o_w) = (g.out_h(), g.out_w());
    let ([k_h, k_w], [s_h, s_w], [p_h, p_w]) = (g.kernel, g.stride, g.pad);
    let per = o_h * o_w;
    let mut y = vec![0f32; x.len() / (h * w).max(1) * per];
    // A whole output row at a time, window element by window element in scan order, each over
    // the full row: an input row, padded with −∞ (which never wins, so padding counts as
    // absent), is split into its `s_w` column phases, so that [`keep_larger`] runs over
    // contiguous values. (One window at a time, on ReLU outputs whose zeros tie, a branch was
    // mispredicted about every other element: 17 ms per ResNet18 stem pool of a batch of 64,
    // ~4 % of a training step; this takes 6 ms.)
    let phase_len = o_w + (k_w - 1) / s_w + 1;
    let one = |plane: &[f32], out: &mut [f32], arg: &mut [u32], buf: &mut Vec<f32>| {
        buf.clear();
        buf.resize(s_w * phase_len + 2 * o_w, f32::NEG_INFINITY);
        let (phases, rest) = buf.split_at_mut(s_w * phase_len);
        let (mut m, mut next) = rest.split_at_mut(o_w);
        for oh in 0..o_h {
            let (h0, h1) = (
                (oh * s_h).saturating_sub(p_h),
                (oh * s_h + k_h - p_h).min(h),
            );
            let at = &mut arg[oh * o_w..(oh + 1) * o_w];
            m.fill(f32::NEG_INFINITY);
            for (ow, a) in at.iter_mut().enumerate() {
                *a = (h0 * w + (ow * s_w).saturating_sub(p_w)) as u32;
            }
            for r in h0..h1 {
                // Padded column c + p_w → phase (c + p_w) mod s_w, at (c + p_w) / s_w.
                let (mut q, mut t) = (p_w % s_w, p_w / s_w);
                for &v in &plane[r * w..(r + 1) * w] {
                    if t < phase_len {
                        phases[q * phase_len + t] = v;
                    }
                    q += 1;
                    if q == s_w {
                        (q, t) = (0, t + 1);
                    }
                }
                for dj in 0..k_w {
                    // Output ow reads padded column ow·s_w + dj: phase dj mod s_w, at
                    // ow + dj / s_w; its position in the plane is r·w + ow·s_w + dj − p_w.
                    let src = &phases[(dj % s_w) * phase_len + dj / s_w..][..o_w];
                    let first = ((r * w + dj) as u32).wrapping_sub(p_w as u32);
                    keep_larger(m, next, at, src, first, s_w as u32);
                    std::mem::swap(&mut m, &mut next);
                }
            }
            out[oh * o_w..(oh + 1) * o_w].copy_from_slice(m);
        }
    };
    let planes = y.par_chunks_mut(per).zip(x.par_chunks(h * w));
    match arg {
        Some(arg) => planes
            .zip(arg.par_chunks_mut(per))
            .for_each_init(Vec::new, |phases, ((out, plane), a)| {
                one(plane, out, a, phases)
            }),
        None => planes.for_each_init(
            || (vec![0u32; per], Vec::new()),
            |(a, phases), (out, plane)| one(plane, out, a, phases),
        ),
    }
    y
}

#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    /// Each output's maximum position in its plane, and the input's shape.
    type State = (Vec<u32>, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let [Some(node)] = ops.parents else {
            return;
        };
        let (arg, [b, c, h, w]) = ops.state;
        let per = arg.len() / (b * c).max(1);
        let mut dx = vec![0f32; b * c * h * w];
        dx.par_chunks_mut(h * w)
            .zip(dy.storage::<f32>().par_chunks(per.max(1)))
            .zip(arg.par_chunks(per.max(1)))
            .for_each(|((d, g), a)| {
                for (&gi, &ai) in g.iter().zip(a) {
                    d[ai as usize] += gi;
                }
            });
        grads.register::<Flex>(node.id, flex_tensor(dx, [b, c, h, w]));
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (NodeId, NodeId, Geometry);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, ckpt: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state, g) = ops.state;
        let x = ckpt.retrieve_node_output::<FlexTensor>(x_state);
        let w = ckpt.retrieve_node_output::<FlexTensor>(w_state);
        let (x, w, dy) = (x.to_contiguous(), w.to_contiguous(), dy.to_contiguous());
        let (dx, dw) = backward(
            x.storage::<f32>(),
            w.storage::<f32>(),
            dy.storage::<f32>(),
            &g,
            node_x.is_some(),
            node_w.is_some(),
        );
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, flex_tensor(dx, [g.batch, g.c_in, g.h, g.w]));
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, flex_tensor(dw, [g.c_out, g.c_in, g.k_h, g.k_w]));
        }
    }
}

/// The convolution as one autodiff node with [`backward`] as its gradient; `None` if the tensors
/// are not both autodiff Flex tensors.
fn autodiff_conv(x: Tensor<4>, weight: Tensor<4>, g: Geometry) -> Option<Tensor<4>> {
    let (Ok(x), Ok(w)) = (
        x.try_into_primitive::<FlexAd>(),
        weight.try_into_primitive::<FlexAd>(),
    ) else {
        return None;
    };
    let run = |x: &FlexTensor, w: &FlexTensor| {
        let (x, w) = (x.to_contiguous(), w.to_contiguous());
        let y = forward(x.storage::<f32>(), w.storage::<f32>(), None, false, &g);
        flex_tensor(y, [g.batch, g.c_out, g.out_h(), g.out_w()])
    };
    let out = match ConvBackward
        .prepare::<NoCheckpointing>([x.node(), w.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let w_state = prep.checkpoint(&w);
            let y = run(x.primitive(), w.primitive());
            prep.finish((x_state, w_state, g), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(run(x.primitive(), w.primitive())),
    };
    Some(Tensor::from_primitive::<FlexAd>(out))
}
