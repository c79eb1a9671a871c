//! 3×3 stride-1 convolutions with padding 1 (ResNet's main path) by Winograd's minimal filtering
//! F(m×m, 3×3): each m×m output tile comes from an (m + 2)² input tile through (m + 2)² products
//! per (input, output) channel pair where im2col + GEMM takes 9m², as (m + 2)² GEMMs over
//! channels × tiles, one per transformed position ξ. F(4×4, 3×3) (36 products for 16 outputs)
//! where its tiles cover a plane with fewer products than F(2×2, 3×3)'s (16 for 4), which is
//! every plane of ResNet's stages but the last (2×4: one 4×4 tile, half of it padding). The
//! forward pass is `Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` per tile; both gradients are the transposes of
//! the same maps (`dM = A dY Aᵀ`, `dW = Gᵀ dU G`, `dX = B dV Bᵀ` overlap-added), so they are
//! exact up to rounding, like the forward pass.
//!
//! Layouts (n = tiles of a chunk's images): transformed inputs `[c][ξ][n]` and output gradients
//! `[k][ξ][n]` (written by one task per channel), GEMM outputs `[ξ][rows][n]` (one task per ξ),
//! transformed weights and their gradient `[ξ][k][c]`.

use rayon::prelude::*;

use super::gemm::gemm;
use super::im2col::Geometry;
use super::scratch::Scratch;

/// The most floats a chunk's transformed tiles should hold (4 MB)...
const CHUNK_FLOATS: usize = 1 << 20;
/// ...but each of a chunk's GEMMs gets at least this many tile columns.
const MIN_TILES: usize = 256;
/// The fewest planes a transform task takes: the late stages' planes hold one or two tiles.
const MIN_PLANES: usize = 16;

/// The fewest input and output channels a convolution takes this path with: below, im2col +
/// GEMM measured as fast or faster (`examples/conv_bench.rs`, `bench model`). F(4×4) from 64
/// channels: at ResNet18's 64-channel stage on 2 AVX-512 cores its forward took 9.0 ms where
/// im2col took 11.2 (backward 18.5 against 17.6), and ResNet18's training step ran 2.5–6 %
/// faster in three interleaved rounds. F(2×2) has 2.25× fewer products than im2col where F(4×4)
/// has 4×, and where gemm has AVX-512 (its 4×6 microkernel) that was not enough at 64 channels:
/// its backward was slower there (28.2 → 33.1 ms), so on such CPUs F(2×2) starts at 128; with
/// AVX2 alone both its passes were faster at 64 (forward 21.4 → 13.0 ms, backward 34.1 → 29.0).
fn min_channels(large_tiles: bool) -> usize {
    #[cfg(target_arch = "x86_64")]
    if !large_tiles && std::arch::is_x86_feature_detected!("avx512f") {
        return 128;
    }
    64
}

/// Whether [`forward`] and [`backward`] take this convolution: 3×3, stride 1, padding 1, at
/// least [`min_channels`] channels, images of under 16 M values, unless `INSTREC_CONV=im2col`
/// asks for im2col everywhere (for side-by-side measurements).
pub(super) fn applies(g: &Geometry) -> bool {
    g.k_h == 3
        && g.k_w == 3
        && g.stride == [1, 1]
        && g.pad == [1, 1]
        && g.c_in.min(g.c_out) >= min_channels(large_tiles(g))
        // A chunk (at most MIN_TILES images) indexes its input by u32 (`transform_inputs`).
        && MIN_TILES
            .saturating_mul(g.c_in)
            .saturating_mul(g.h * g.w)
            < u32::MAX as usize
        && !super::im2col::everywhere()
}

/// One of Winograd's minimal filterings F(M×M, 3×3) with A = M + 2: the 1-D maps its 2-D
/// transforms apply along each axis of a tile.
pub(super) trait Tile<const M: usize, const A: usize>: Sync {
    /// Bᵀ·d: the input transform.
    fn input(d: [f32; A]) -> [f32; A];
    /// B·v: its transpose, for the input gradient.
    fn input_t(v: [f32; A]) -> [f32; A];
    /// G·g: the kernel transform.
    fn kernel(g: [f32; 3]) -> [f32; A];
    /// Gᵀ·u: its transpose, for the weight gradient.
    fn kernel_t(u: [f32; A]) -> [f32; 3];
    /// Aᵀ·m: the output transform.
    fn output(m: [f32; A]) -> [f32; M];
    /// A·e: its transpose, for the output gradient.
    fn output_t(e: [f32; M]) -> [f32; A];
}

/// F(2×2, 3×3), interpolating at 0, ±1 and ∞.
struct F2;

impl Tile<2, 4> for F2 {
    fn input([a, b, c, d]: [f32; 4]) -> [f32; 4] {
        [a - c, b + c, c - b, b - d]
    }
    fn input_t([v0, v1, v2, v3]: [f32; 4]) -> [f32; 4] {
        [v0, v1 - v2 + v3, -v0 + v1 + v2, -v3]
    }
    fn kernel([a, b, c]: [f32; 3]) -> [f32; 4] {
        [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
    }
    fn kernel_t([u0, u1, u2, u3]: [f32; 4]) -> [f32; 3] {
        [u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3]
    }
    fn output([m0, m1, m2, m3]: [f32; 4]) -> [f32; 2] {
        [m0 + m1 + m2, m1 - m2 - m3]
    }
    fn output_t([e0, e1]: [f32; 2]) -> [f32; 4] {
        [e0, e0 + e1, e0 - e1, -e1]
    }
}

/// F(4×4, 3×3), interpolating at 0, ±1, ±2 and ∞ (Lavin & Gray's matrices).
pub(super) struct F4;

impl Tile<4, 6> for F4 {
    fn input([d0, d1, d2, d3, d4, d5]: [f32; 6]) -> [f32; 6] {
        let (a, b) = (d4 - 4.0 * d2, d3 - 4.0 * d1);
        let (c, e) = (d4 - d2, 2.0 * (d3 - d1));
        [
            4.0 * d0 - 5.0 * d2 + d4,
            a + b,
            a - b,
            c + e,
            c - e,
            4.0 * d1 - 5.0 * d3 + d5,
        ]
    }
    fn input_t([v0, v1, v2, v3, v4, v5]: [f32; 6]) -> [f32; 6] {
        let (s12, d12, s34, d34) = (v1 + v2, v2 - v1, v3 + v4, v3 - v4);
        [
            4.0 * v0,
            4.0 * d12 - 2.0 * d34 + 4.0 * v5,
            -5.0 * v0 - 4.0 * s12 - s34,
            -d12 + 2.0 * d34 - 5.0 * v5,
            v0 + s12 + s34,
            v5,
        ]
    }
    fn kernel([g0, g1, g2]: [f32; 3]) -> [f32; 6] {
        let (s, d) = (g0 + g2, g1);
        [
            0.25 * g0,
            -(s + d) / 6.0,
            -(s - d) / 6.0,
            g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
            g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
            g2,
        ]
    }
    fn kernel_t([u0, u1, u2, u3, u4, u5]: [f32; 6]) -> [f32; 3] {
        let (s12, d12, s34, d34) = (u1 + u2, u2 - u1, u3 + u4, u3 - u4);
        [
            0.25 * u0 - s12 / 6.0 + s34 / 24.0,
            d12 / 6.0 + d34 / 12.0,
            -s12 / 6.0 + s34 / 6.0 + u5,
        ]
    }
    fn output([m0, m1, m2, m3, m4, m5]: [f32; 6]) -> [f32; 4] {
        let (s, t, p, q) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        [m0 + s + p, t + 2.0 * q, s + 4.0 * p, t + 8.0 * q + m5]
    }
    fn output_t([e0, e1, e2, e3]: [f32; 4]) -> [f32; 6] {
        let (s02, s13) = (e0 + e2, e1 + e3);
        let (p, q) = (e0 + 4.0 * e2, 2.0 * e1 + 8.0 * e3);
        [e0, s02 + s13, s02 - s13, p + q, p - q, e3]
    }
}

/// Which filtering a plane takes: F(4×4) where its tiles need fewer products per (input, output)
/// channel pair than F(2×2)'s.
fn large_tiles(g: &Geometry) -> bool {
    let products = |m: usize| Tiles::of(g, m).per_image() * (m + 2) * (m + 2);
    products(4) < products(2)
}

/// Tiles of one image: `th` rows of `tw` m×m output tiles, the last row or column cut off where
/// the output's side is not a multiple of m.
#[derive(Clone, Copy)]
struct Tiles {
    th: usize,
    tw: usize,
}

impl Tiles {
    fn of(g: &Geometry, m: usize) -> Self {
        Self {
            th: g.h.div_ceil(m),
            tw: g.w.div_ceil(m),
        }
    }
    fn per_image(self) -> usize {
        self.th * self.tw
    }
    /// Images per chunk: the transformed inputs, their gradients and the outputs' in budget.
    fn chunks(self, g: &Geometry, xi: usize) -> Vec<(usize, usize)> {
        let per_image = xi * (2 * g.c_in + g.c_out) * self.per_image();
        let by_size = CHUNK_FLOATS / per_image.max(1);
        let by_tiles = MIN_TILES.div_ceil(self.per_image().max(1));
        let per = by_size.max(by_tiles).clamp(1, g.batch.max(1));
        let batch = g.batch;
        (0..batch.div_ceil(per))
            .map(|i| (i * per, ((i + 1) * per).min(batch)))
            .collect()
    }
}

/// Kernels per task in the weight transforms.
const KERNEL_BLOCK: usize = 1024;

/// The first `N` consecutive `len`-float slices of `buf`.
pub(super) fn rows_mut<const N: usize>(buf: &mut [f32], len: usize) -> [&mut [f32]; N] {
    let mut rows = buf[..N * len].chunks_exact_mut(len);
    std::array::from_fn(|_| rows.next().unwrap_or_default())
}

/// Rows `rows` (each `len` floats) of `buf`, mutably at once; the rows are distinct and inside
/// `buf` at every call here.
pub(super) fn rows_at<const N: usize>(
    buf: &mut [f32],
    len: usize,
    rows: [usize; N],
) -> [&mut [f32]; N] {
    match buf.get_disjoint_mut(rows.map(|r| r * len..(r + 1) * len)) {
        Ok(rows) => rows,
        Err(_) => unreachable!("distinct rows inside the buffer"),
    }
}

/// A row split by column phase after shifting it `lead` columns right: `phases[p][t]` takes
/// shifted column M·t + p, the rest zero. Tiles start at multiples of M, so each of a tile's
/// columns is then a contiguous run over tiles, which the transforms read in vector passes.
fn deinterleave<const M: usize>(row: &[f32], lead: usize, phases: [&mut [f32]; M]) {
    for (p, phase) in phases.into_iter().enumerate() {
        phase.fill(0.0);
        let first = (p + M - lead % M) % M;
        for (v, x) in phase[(first + lead) / M..]
            .iter_mut()
            .zip(row.iter().skip(first).step_by(M))
        {
            *v = *x;
        }
    }
}

/// The inverse of [`deinterleave`] over `row`'s columns.
fn interleave<const M: usize>(phases: [&[f32]; M], lead: usize, row: &mut [f32]) {
    for (p, phase) in phases.into_iter().enumerate() {
        let first = (p + M - lead % M) % M;
        for (x, v) in row
            .iter_mut()
            .skip(first)
            .step_by(M)
            .zip(&phase[(first + lead) / M..])
        {
            *x = *v;
        }
    }
}

/// `U[ξ][k][c] = G g Gᵀ` for every kernel `g = w[k][c]`, in blocks of kernels, each block's A²
/// ξ rows written by one task.
pub(super) fn transform_weights<T: Tile<M, A>, const M: usize, const A: usize>(
    w: &[f32],
    c_in: usize,
    c_out: usize,
) -> Scratch {
    let plane = c_out * c_in;
    // Scratch, not a fresh vector: 36 MB for ResNet's last stage, page-faulted anew each call.
    let mut u = Scratch::take(A * A * plane);
    let mut blocks: Vec<Vec<&mut [f32]>> = (0..plane.div_ceil(KERNEL_BLOCK))
        .map(|_| Vec::with_capacity(A * A))
        .collect();
    for row in u[..A * A * plane].chunks_mut(plane) {
        for (block, piece) in blocks.iter_mut().zip(row.chunks_mut(KERNEL_BLOCK)) {
            block.push(piece);
        }
    }
    blocks
        .into_par_iter()
        .enumerate()
        .for_each(|(bi, mut rows)| {
            let len = rows.first().map_or(0, |r| r.len());
            let kernels = &w[bi * KERNEL_BLOCK * 9..][..len * 9];
            // The nine taps as rows, tap 3r + q.
            let mut g = vec![0f32; 9 * len];
            for (tap, row) in g.chunks_mut(len).enumerate() {
                for (v, k) in row.iter_mut().zip(kernels.chunks_exact(9)) {
                    *v = k[tap];
                }
            }
            // G·g down each column q into t[a][q], then ·Gᵀ along each row a: ξ = A·a + (0..A).
            let mut t = vec![0f32; 3 * A * len];
            for q in 0..3 {
                let inp = [q, 3 + q, 6 + q].map(|tap| &g[tap * len..][..len]);
                let out = rows_at(&mut t, len, std::array::from_fn(|a| 3 * a + q));
                combine(inp, out, T::kernel);
            }
            for a in 0..A {
                let inp = [0, 1, 2].map(|q| &t[(3 * a + q) * len..][..len]);
                let Ok(out) = rows.get_disjoint_mut(std::array::from_fn(|i| A * a + i)) else {
                    unreachable!("distinct rows")
                };
                combine(inp, out.map(|r| &mut **r), T::kernel);
            }
        });
    u
}

/// The weight gradient `dW[k][c] = Gᵀ dU G` from `dU[ξ][k][c]`.
fn weight_gradient<T: Tile<M, A>, const M: usize, const A: usize>(
    du: &[f32],
    c_in: usize,
    c_out: usize,
) -> Vec<f32> {
    let plane = c_out * c_in;
    let mut dw = vec![0f32; plane * 9];
    dw.par_chunks_mut(9 * KERNEL_BLOCK)
        .enumerate()
        .for_each(|(bi, out)| {
            let len = out.len() / 9;
            let d = |xi: usize| &du[xi * plane + bi * KERNEL_BLOCK..][..len];
            // Gᵀ·dU down each column into t[p][col], then ·G along each row p: taps 3p + (0..3).
            let mut t = vec![0f32; 3 * A * len];
            for col in 0..A {
                let inp = std::array::from_fn(|r| d(A * r + col));
                let out = rows_at(&mut t, len, [col, A + col, 2 * A + col]);
                combine(inp, out, T::kernel_t);
            }
            let mut taps = vec![0f32; 9 * len];
            for p in 0..3 {
                let inp = std::array::from_fn(|col| &t[(A * p + col) * len..][..len]);
                combine(inp, rows_mut(&mut taps[3 * p * len..], len), T::kernel_t);
            }
            for (tap, row) in taps.chunks(len).enumerate() {
                for (k, v) in out.chunks_exact_mut(9).zip(row) {
                    k[tap] = *v;
                }
            }
        });
    dw
}

/// `out[o][t] = f(inp[·][t])[o]` over `t`, `out` and `inp` rows `n` long.
#[inline(always)]
pub(super) fn combine<const I: usize, const O: usize>(
    inp: [&[f32]; I],
    out: [&mut [f32]; O],
    f: impl Fn([f32; I]) -> [f32; O],
) {
    let n = out.first().map_or(0, |r| r.len());
    let inp = inp.map(|r| &r[..n]);
    let mut out = out.map(|r| &mut r[..n]);
    for t in 0..n {
        let v = f(std::array::from_fn(|i| inp[i][t]));
        for (o, v) in out.iter_mut().zip(v) {
            o[t] = v;
        }
    }
}

/// The same map applied in place to rows `rows` (each `n` long) of `buf`.
#[inline(always)]
fn pass<const N: usize>(
    buf: &mut [f32],
    n: usize,
    rows: [usize; N],
    f: impl Fn([f32; N]) -> [f32; N],
) {
    let mut r = rows_at(buf, n, rows).map(|r| &mut r[..n]);
    for t in 0..n {
        let v = f(std::array::from_fn(|i| r[i][t]));
        for (o, v) in r.iter_mut().zip(v) {
            o[t] = v;
        }
    }
}

/// `V[c][ξ][n] = Bᵀ d B` for every input tile of images `b0..b1` (`x` is `[b][c][h][w]`): the
/// tiles gathered as A² rows over the chunk's tiles, then transformed in 2A passes.
fn transform_inputs<T: Tile<M, A>, const M: usize, const A: usize>(
    x: &[f32],
    g: &Geometry,
    t: Tiles,
    (b0, b1): (usize, usize),
    v: &mut [f32],
) {
    let (h, w, hw, c_in) = (g.h, g.w, g.h * g.w, g.c_in);
    let n = (b1 - b0) * t.per_image();
    let (tw, xis) = (t.tw, A * A);
    // Where each raw tile value d[r][col] (ξ = A·r + col; padded row M·i + r, column M·j + col)
    // reads, from channel 0 of image b0 (`u32::MAX`: padding): one table for all channels,
    // then a gather over all the chunk's tiles per ξ, however few tiles a plane holds (one
    // strided loop per tile row and tap was most of this pass for the late stages).
    let per_image = t.per_image();
    let mut at = vec![u32::MAX; xis * n];
    for (xi, row) in at.chunks_mut(n).enumerate() {
        let (r, col) = (xi / A, xi % A);
        for (p, v) in row.iter_mut().enumerate() {
            let (bi, tile) = (p / per_image, p % per_image);
            let (i, j) = (tile / tw, tile % tw);
            let y = (M * i + r).checked_sub(1).filter(|&y| y < h);
            let x = (M * j + col).checked_sub(1).filter(|&x| x < w);
            if let (Some(y), Some(x)) = (y, x) {
                *v = (bi * c_in * hw + y * w + x) as u32;
            }
        }
    }
    let images = &x[b0 * c_in * hw..b1 * c_in * hw];
    v[..c_in * xis * n]
        .par_chunks_mut(xis * n)
        .enumerate()
        .for_each(|(c, v)| {
            let images = &images[c * hw..];
            for (dst, at) in v.chunks_mut(n).zip(at.chunks(n)) {
                for (d, &a) in dst.iter_mut().zip(at) {
                    *d = if a == u32::MAX {
                        0.0
                    } else {
                        images[a as usize]
                    };
                }
            }
            for col in 0..A {
                pass(v, n, std::array::from_fn(|r| A * r + col), T::input);
            }
            for r in 0..A {
                pass(v, n, std::array::from_fn(|col| A * r + col), T::input);
            }
        });
}

/// The output gradient's tiles `dM[k][ξ][n] = A dY Aᵀ` for images `b0..b1` (`dy` `[b][k][h][w]`).
fn transform_output_gradient<T: Tile<M, A>, const M: usize, const A: usize>(
    dy: &[f32],
    g: &Geometry,
    t: Tiles,
    (b0, b1): (usize, usize),
    dm: &mut [f32],
) {
    let (h, w, hw, c_out) = (g.h, g.w, g.h * g.w, g.c_out);
    let n = (b1 - b0) * t.per_image();
    let (tw, xis) = (t.tw, A * A);
    dm[..c_out * xis * n]
        .par_chunks_mut(xis * n)
        .enumerate()
        .for_each_init(
            || vec![0f32; (M + A) * M * n],
            |buf, (k, dm)| {
                // e[r][col]: each tile's M×M output gradient; q[a][col] = A·e down the columns.
                let (e, q) = buf.split_at_mut(M * M * n);
                for (bi, b) in (b0..b1).enumerate() {
                    let plane = &dy[(b * c_out + k) * hw..][..hw];
                    for i in 0..t.th {
                        let base = bi * t.per_image() + i * tw;
                        for r in 0..M {
                            let phases = rows_mut::<M>(&mut e[M * r * n..], n)
                                .map(|s| &mut s[base..base + tw]);
                            match Some(M * i + r).filter(|&y| y < h) {
                                Some(y) => deinterleave(&plane[y * w..][..w], 0, phases),
                                None => phases.into_iter().for_each(|p| p.fill(0.0)),
                            }
                        }
                    }
                }
                for col in 0..M {
                    let inp = std::array::from_fn(|r| &e[(M * r + col) * n..][..n]);
                    let out = rows_at(q, n, std::array::from_fn(|a| M * a + col));
                    combine(inp, out, T::output_t);
                }
                for a in 0..A {
                    let inp = std::array::from_fn(|col| &q[(M * a + col) * n..][..n]);
                    combine(inp, rows_mut(&mut dm[A * a * n..], n), T::output_t);
                }
            },
        );
}

/// The outputs `y = Aᵀ M A` (+ bias, then ReLU if asked) of images `b0..b1` from `M[ξ][k][n]`:
/// per channel over all tiles into `yt` (`[k][row][col][n]`), then into the planes.
#[allow(clippy::too_many_arguments)]
fn transform_outputs<T: Tile<M, A>, const M: usize, const A: usize>(
    m: &[f32],
    g: &Geometry,
    t: Tiles,
    (b0, b1): (usize, usize),
    y: &mut [f32],
    bias: Option<&[f32]>,
    relu: bool,
) {
    let (h, w, hw, c_out) = (g.h, g.w, g.h * g.w, g.c_out);
    let n = (b1 - b0) * t.per_image();
    let (tw, mm) = (t.tw, M * M);
    let mut yt = Scratch::take(c_out * mm * n);
    yt[..c_out * mm * n]
        .par_chunks_mut(mm * n)
        .enumerate()
        .for_each_init(
            || vec![0f32; A * M * n],
            |p, (k, yt)| {
                let add = bias.map_or(0.0, |b| b[k]);
                let finish = |v: f32| {
                    let v = v + add;
                    if relu { v.max(0.0) } else { v }
                };
                let mx = |xi: usize| &m[(xi * c_out + k) * n..][..n];
                // ·A along each row a into p[a][col].
                for a in 0..A {
                    let inp = std::array::from_fn(|i| mx(A * a + i));
                    combine(inp, rows_mut::<M>(&mut p[M * a * n..], n), T::output);
                }
                // Aᵀ· down each column into yt[row][col].
                for col in 0..M {
                    let inp = std::array::from_fn(|a| &p[(M * a + col) * n..][..n]);
                    let out = rows_at(yt, n, std::array::from_fn(|row| M * row + col));
                    combine(inp, out, |v| T::output(v).map(finish));
                }
            },
        );
    let yt = &yt[..];
    y[b0 * c_out * hw..b1 * c_out * hw]
        .par_chunks_mut(hw)
        .enumerate()
        .with_min_len(MIN_PLANES)
        .for_each(|(plane_index, plane)| {
            let (bi, k) = (plane_index / c_out, plane_index % c_out);
            let yk = &yt[k * mm * n..][..mm * n];
            for i in 0..t.th {
                let base = bi * t.per_image() + i * tw;
                for r in 0..M {
                    let y0 = M * i + r;
                    if y0 < h {
                        let phases =
                            std::array::from_fn(|col| &yk[(M * r + col) * n + base..][..tw]);
                        interleave::<M>(phases, 0, &mut plane[y0 * w..][..w]);
                    }
                }
            }
        });
}

/// The input gradient `dX = B dV Bᵀ`, each tile's A×A overlap-added, of images `b0..b1` from
/// `dV[ξ][c][n]` (into `dx` `[b][c][h][w]`, overwritten): per channel over all tiles into
/// `pt` (`[c][row][col][n]`), then added into the padded planes.
fn transform_input_gradient<T: Tile<M, A>, const M: usize, const A: usize>(
    dv: &[f32],
    g: &Geometry,
    t: Tiles,
    (b0, b1): (usize, usize),
    dx: &mut [f32],
) {
    let (h, w, hw, c_in) = (g.h, g.w, g.h * g.w, g.c_in);
    let n = (b1 - b0) * t.per_image();
    let (tw, xis) = (t.tw, A * A);
    let mut pt = Scratch::take(c_in * xis * n);
    pt[..c_in * xis * n]
        .par_chunks_mut(xis * n)
        .enumerate()
        .for_each(|(c, pt)| {
            let vx = |xi: usize| &dv[(xi * c_in + c) * n..][..n];
            // ·Bᵀ along each row a, then B· down each column, in place.
            for a in 0..A {
                let inp = std::array::from_fn(|i| vx(A * a + i));
                combine(inp, rows_mut(&mut pt[A * a * n..], n), T::input_t);
            }
            for col in 0..A {
                pass(pt, n, std::array::from_fn(|r| A * r + col), T::input_t);
            }
        });
    let pt = &pt[..];
    // A padded row as M phases of `phase` columns (a tile's columns reach one phase column on).
    let phase = tw + 1;
    let row_len = M * phase;
    dx[b0 * c_in * hw..b1 * c_in * hw]
        .par_chunks_mut(hw)
        .enumerate()
        .with_min_len(MIN_PLANES)
        .for_each_init(
            || vec![0f32; (M * t.th + 2) * row_len],
            |acc, (plane_index, plane)| {
                let (bi, c) = (plane_index / c_in, plane_index % c_in);
                let pc = &pt[c * xis * n..][..xis * n];
                acc.fill(0.0);
                for i in 0..t.th {
                    let base = bi * t.per_image() + i * tw;
                    for r in 0..A {
                        // Tile column col of padded row M·i + r: phase col % M, from column
                        // col / M on.
                        let phases = rows_mut::<M>(&mut acc[(M * i + r) * row_len..], phase);
                        for col in 0..A {
                            let src = &pc[(A * r + col) * n + base..][..tw];
                            let dst = &mut phases[col % M][col / M..][..tw];
                            dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                        }
                    }
                }
                for (y, row) in plane.chunks_mut(w).enumerate().take(h) {
                    let padded = &acc[(y + 1) * row_len..][..row_len];
                    let phases = std::array::from_fn(|p| &padded[p * phase..][..phase]);
                    interleave::<M>(phases, 1, row);
                }
            },
        );
}

/// The `xis` products of a chunk, one GEMM per ξ on the rayon pool: `out[ξ] = a_ξ·b_ξ` where `a`
/// and `b` give each ξ's operand as (offset, row stride, column stride).
#[allow(clippy::too_many_arguments)]
fn products(
    [xis, m, n, k]: [usize; 4],
    out: &mut [f32],
    accumulate: bool,
    a: &[f32],
    a_at: impl Fn(usize) -> (usize, [usize; 2]) + Sync,
    b: &[f32],
    b_at: impl Fn(usize) -> (usize, [usize; 2]) + Sync,
) {
    out[..xis * m * n]
        .par_chunks_mut(m * n)
        .enumerate()
        .for_each(|(xi, out)| {
            let (ao, astr) = a_at(xi);
            let (bo, bstr) = b_at(xi);
            gemm(
                m,
                n,
                k,
                out,
                accumulate,
                &a[ao..],
                astr,
                &b[bo..],
                bstr,
                false,
            );
        });
}

/// The convolution's output `[b][k][h][w]` (+ bias, then ReLU if asked).
pub(super) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
) -> Vec<f32> {
    if large_tiles(g) {
        forward_with::<F4, 4, 6>(x, w, bias, relu, g)
    } else {
        forward_with::<F2, 2, 4>(x, w, bias, relu, g)
    }
}

fn forward_with<T: Tile<M, A>, const M: usize, const A: usize>(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
) -> Vec<f32> {
    let (c_in, c_out, xis) = (g.c_in, g.c_out, A * A);
    let t = Tiles::of(g, M);
    let u = transform_weights::<T, M, A>(w, c_in, c_out);
    let mut y = super::zeroed(g.batch * c_out * g.h * g.w);
    for chunk in t.chunks(g, xis) {
        let n = (chunk.1 - chunk.0) * t.per_image();
        let mut v = Scratch::take(c_in * xis * n);
        let mut m = Scratch::take(xis * c_out * n);
        transform_inputs::<T, M, A>(x, g, t, chunk, &mut v);
        // M[ξ][k][n] = Σ_c U[ξ][k][c]·V[c][ξ][n]
        products(
            [xis, c_out, n, c_in],
            &mut m,
            false,
            &u,
            |xi| (xi * c_out * c_in, [c_in, 1]),
            &v,
            |xi| (xi * n, [xis * n, 1]),
        );
        transform_outputs::<T, M, A>(&m, g, t, chunk, &mut y, bias, relu);
    }
    y
}

/// The gradients of the input and of the weights (each only if asked) for the output gradient
/// `dy` `[b][k][h][w]`.
pub(super) fn backward(
    xwdy: [&[f32]; 3],
    g: &Geometry,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    if large_tiles(g) {
        backward_with::<F4, 4, 6>(xwdy, g, want_dx, want_dw)
    } else {
        backward_with::<F2, 2, 4>(xwdy, g, want_dx, want_dw)
    }
}

fn backward_with<T: Tile<M, A>, const M: usize, const A: usize>(
    [x, w, dy]: [&[f32]; 3],
    g: &Geometry,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (c_in, c_out, xis) = (g.c_in, g.c_out, A * A);
    let t = Tiles::of(g, M);
    let u = want_dx.then(|| transform_weights::<T, M, A>(w, c_in, c_out));
    let mut dx = want_dx.then(|| super::zeroed(g.batch * c_in * g.h * g.w));
    let mut du = want_dw.then(|| Scratch::take(xis * c_out * c_in));
    for (i, chunk) in t.chunks(g, xis).into_iter().enumerate() {
        let n = (chunk.1 - chunk.0) * t.per_image();
        let mut dm = Scratch::take(c_out * xis * n);
        transform_output_gradient::<T, M, A>(dy, g, t, chunk, &mut dm);
        if let Some(du) = &mut du {
            let mut v = Scratch::take(c_in * xis * n);
            transform_inputs::<T, M, A>(x, g, t, chunk, &mut v);
            // dU[ξ][k][c] += Σ_n dM[k][ξ][n]·V[c][ξ][n]
            products(
                [xis, c_out, c_in, n],
                du,
                i > 0,
                &dm,
                |xi| (xi * n, [xis * n, 1]),
                &v,
                |xi| (xi * n, [1, xis * n]),
            );
        }
        if let (Some(dx), Some(u)) = (&mut dx, &u) {
            let mut dv = Scratch::take(xis * c_in * n);
            // dV[ξ][c][n] = Σ_k U[ξ][k][c]·dM[k][ξ][n]
            products(
                [xis, c_in, n, c_out],
                &mut dv,
                false,
                u,
                |xi| (xi * c_out * c_in, [1, c_in]),
                &dm,
                |xi| (xi * n, [xis * n, 1]),
            );
            transform_input_gradient::<T, M, A>(&dv, g, t, chunk, dx);
        }
    }
    (
        dx,
        du.map(|du| weight_gradient::<T, M, A>(&du, c_in, c_out)),
    )
}
