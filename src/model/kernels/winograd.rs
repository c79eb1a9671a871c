//! 3×3 stride-1 convolutions with padding 1 (ResNet's main path) by Winograd's minimal filtering
//! F(2×2, 3×3): each 2×2 output tile comes from a 4×4 input tile through 16 products per
//! (input, output) channel pair where im2col + GEMM takes 36, as 16 GEMMs over channels × tiles,
//! one per transformed position ξ. The forward pass is `Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` per tile;
//! both gradients are the transposes of the same maps (`dM = A dY Aᵀ`, `dW = Gᵀ dU G`,
//! `dX = B dV Bᵀ` overlap-added), so they are exact up to rounding, like the forward pass.
//!
//! Layouts (n = tiles of a chunk's images): transformed inputs `[c][ξ][n]` and output gradients
//! `[k][ξ][n]` (written by one task per channel), GEMM outputs `[ξ][rows][n]` (one task per ξ),
//! transformed weights and their gradient `[ξ][k][c]`.

use rayon::prelude::*;

use super::gemm::gemm;
use super::im2col::Geometry;
use super::scratch::Scratch;

/// Transformed positions per tile (4×4).
const XI: usize = 16;
/// The most floats a chunk's transformed tiles should hold (4 MB)...
const CHUNK_FLOATS: usize = 1 << 20;
/// ...but each of a chunk's 16 GEMMs gets at least this many tile columns.
const MIN_TILES: usize = 256;
/// The fewest planes a transform task takes: the late stages' planes hold one or two tiles.
const MIN_PLANES: usize = 16;

/// The fewest input and output channels a convolution takes this path with: below, im2col +
/// GEMM measured as fast or faster (`examples/conv_bench.rs`). Where gemm has AVX-512 (its 4×6
/// microkernel) im2col's 2.25× more products cost less, and at ResNet18's 64-channel stage
/// Winograd's backward was slower (28.2 → 33.1 ms); with AVX2 alone both passes were faster
/// there (forward 21.4 → 13.0 ms, backward 34.1 → 29.0 ms). Elsewhere, unmeasured: 128.
fn min_channels() -> usize {
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avx512f") {
        return 64;
    }
    128
}

/// Whether [`forward`] and [`backward`] take this convolution: 3×3, stride 1, padding 1, at
/// least [`min_channels`] channels, images of under 16 M values, unless `INSTREC_CONV=im2col`
/// asks for im2col everywhere (for side-by-side measurements).
pub(super) fn applies(g: &Geometry) -> bool {
    g.k_h == 3
        && g.k_w == 3
        && g.stride == [1, 1]
        && g.pad == [1, 1]
        && g.c_in.min(g.c_out) >= min_channels()
        // A chunk (at most MIN_TILES images) indexes its input by u32 (`transform_inputs`).
        && MIN_TILES
            .saturating_mul(g.c_in)
            .saturating_mul(g.h * g.w)
            < u32::MAX as usize
        && std::env::var_os("INSTREC_CONV").is_none_or(|v| v != "im2col")
}

/// Tiles of one image: `th` rows of `tw` 2×2 output tiles, the last row or column cut off when
/// the output's side is odd.
#[derive(Clone, Copy)]
struct Tiles {
    th: usize,
    tw: usize,
}

impl Tiles {
    fn of(g: &Geometry) -> Self {
        Self {
            th: g.h.div_ceil(2),
            tw: g.w.div_ceil(2),
        }
    }
    fn per_image(self) -> usize {
        self.th * self.tw
    }
    /// Images per chunk: the transformed inputs, their gradients and the outputs' in budget.
    fn chunks(self, g: &Geometry) -> Vec<(usize, usize)> {
        let per_image = XI * (2 * g.c_in + g.c_out) * self.per_image();
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

/// G·(a, b, c) down a kernel's columns, or along its rows: Winograd's kernel transform.
fn g_rows([a, b, c]: [f32; 3]) -> [f32; 4] {
    [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
}

/// Gᵀ·(u0, u1, u2, u3): the kernel transform's transpose, for the weight gradient.
fn g_t([u0, u1, u2, u3]: [f32; 4]) -> [f32; 3] {
    [u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3]
}

/// The first `N` consecutive `len`-float slices of `buf`.
fn rows_mut<const N: usize>(buf: &mut [f32], len: usize) -> [&mut [f32]; N] {
    let mut rows = buf[..N * len].chunks_exact_mut(len);
    std::array::from_fn(|_| rows.next().unwrap_or_default())
}

/// Rows `rows` (each `len` floats) of `buf`, mutably at once; the rows are distinct and inside
/// `buf` at every call here.
fn rows_at<const N: usize>(buf: &mut [f32], len: usize, rows: [usize; N]) -> [&mut [f32]; N] {
    match buf.get_disjoint_mut(rows.map(|r| r * len..(r + 1) * len)) {
        Ok(rows) => rows,
        Err(_) => unreachable!("distinct rows inside the buffer"),
    }
}

/// A row split by column parity after shifting it `lead` columns right: `e[m]` takes shifted
/// column 2m, `o[m]` 2m + 1, the rest zero. Tiles start at even columns, so each of a tile's
/// columns is then a contiguous run over tiles, which the transforms read in vector passes.
fn deinterleave(row: &[f32], lead: usize, e: &mut [f32], o: &mut [f32]) {
    e.fill(0.0);
    o.fill(0.0);
    for (parity, half) in [(0, &mut *e), (1, &mut *o)] {
        let first = (parity + 2 - lead % 2) % 2;
        for (v, x) in half[(first + lead) / 2..]
            .iter_mut()
            .zip(row.iter().skip(first).step_by(2))
        {
            *v = *x;
        }
    }
}

/// The inverse of [`deinterleave`] over `row`'s columns.
fn interleave(e: &[f32], o: &[f32], lead: usize, row: &mut [f32]) {
    for (parity, half) in [(0, e), (1, o)] {
        let first = (parity + 2 - lead % 2) % 2;
        for (x, v) in row
            .iter_mut()
            .skip(first)
            .step_by(2)
            .zip(&half[(first + lead) / 2..])
        {
            *x = *v;
        }
    }
}

/// `U[ξ][k][c] = G g Gᵀ` for every kernel `g = w[k][c]`, in blocks of kernels, each block's 16
/// ξ rows written by one task.
fn transform_weights(w: &[f32], c_in: usize, c_out: usize) -> Scratch {
    let plane = c_out * c_in;
    // Scratch, not a fresh vector: 16 MB for ResNet's last stage, page-faulted anew each call.
    let mut u = Scratch::take(XI * plane);
    let mut blocks: Vec<Vec<&mut [f32]>> = (0..plane.div_ceil(KERNEL_BLOCK))
        .map(|_| Vec::with_capacity(XI))
        .collect();
    for row in u[..XI * plane].chunks_mut(plane) {
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
            // The nine taps as rows, then G·g: rows g0, (g0+g1+g2)/2, (g0−g1+g2)/2, g2 per column.
            let mut g = vec![0f32; 9 * len];
            for (tap, row) in g.chunks_mut(len).enumerate() {
                for (v, k) in row.iter_mut().zip(kernels.chunks_exact(9)) {
                    *v = k[tap];
                }
            }
            // G·g down each column q into t[a][q], then ·Gᵀ along each row a: ξ = 4a + (0..4).
            let mut t = vec![0f32; 12 * len];
            for q in 0..3 {
                let inp = [q, 3 + q, 6 + q].map(|tap| &g[tap * len..][..len]);
                let out = rows_at(&mut t, len, [q, 3 + q, 6 + q, 9 + q]);
                combine(inp, out, g_rows);
            }
            for a in 0..4 {
                let inp = [0, 1, 2].map(|q| &t[(3 * a + q) * len..][..len]);
                let Ok(out) = rows.get_disjoint_mut([4 * a, 4 * a + 1, 4 * a + 2, 4 * a + 3])
                else {
                    unreachable!("four distinct rows")
                };
                combine(inp, out.map(|r| &mut **r), g_rows);
            }
        });
    u
}

/// The weight gradient `dW[k][c] = Gᵀ dU G` from `dU[ξ][k][c]`.
fn weight_gradient(du: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let plane = c_out * c_in;
    let mut dw = vec![0f32; plane * 9];
    dw.par_chunks_mut(9 * KERNEL_BLOCK)
        .enumerate()
        .for_each(|(bi, out)| {
            let len = out.len() / 9;
            let d = |xi: usize| &du[xi * plane + bi * KERNEL_BLOCK..][..len];
            // Gᵀ·dU down each column into t[p][col], then ·G along each row p: taps 3p + (0..3).
            let mut t = vec![0f32; 12 * len];
            for col in 0..4 {
                let inp = [col, 4 + col, 8 + col, 12 + col].map(d);
                let out = rows_at(&mut t, len, [col, 4 + col, 8 + col]);
                combine(inp, out, g_t);
            }
            let mut taps = vec![0f32; 9 * len];
            for p in 0..3 {
                let inp = [0, 1, 2, 3].map(|col| &t[(4 * p + col) * len..][..len]);
                combine(inp, rows_mut(&mut taps[3 * p * len..], len), g_t);
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
fn combine<const I: usize, const O: usize>(
    inp: [&[f32]; I],
    out: [&mut [f32]; O],
    f: impl Fn([f32; I]) -> [f32; O],
) {
    let n = out.first().map_or(0, |r| r.len());
    let inp = inp.map(|r| &r[..n]);
    let out = out.map(|r| &mut r[..n]);
    let mut out = out;
    for t in 0..n {
        let v = f(std::array::from_fn(|i| inp[i][t]));
        for (o, v) in out.iter_mut().zip(v) {
            o[t] = v;
        }
    }
}

/// The same four-point map applied in place to rows `rows` (each `n` long) of `buf`.
#[inline(always)]
fn pass4(buf: &mut [f32], n: usize, rows: [usize; 4], f: impl Fn([f32; 4]) -> [f32; 4]) {
    let [r0, r1, r2, r3] = rows_at(buf, n, rows);
    for t in 0..n {
        let [a, b, c, d] = f([r0[t], r1[t], r2[t], r3[t]]);
        (r0[t], r1[t], r2[t], r3[t]) = (a, b, c, d);
    }
}

/// Bᵀ·(a, b, c, d), and ·B on a row: Winograd's input transform along one axis.
fn b_t([a, b, c, d]: [f32; 4]) -> [f32; 4] {
    [a - c, b + c, c - b, b - d]
}

/// `V[c][ξ][n] = Bᵀ d B` for every input tile of images `b0..b1` (`x` is `[b][c][h][w]`): the
/// tiles gathered as 16 rows over the chunk's tiles, then transformed in eight passes.
fn transform_inputs(x: &[f32], g: &Geometry, t: Tiles, (b0, b1): (usize, usize), v: &mut [f32]) {
    let (h, w, hw, c_in) = (g.h, g.w, g.h * g.w, g.c_in);
    let n = (b1 - b0) * t.per_image();
    let tw = t.tw;
    // Where each raw tile value d[r][col] (ξ = 4r + col; padded row 2i + r, column 2j + col)
    // reads, from channel 0 of image b0 (`u32::MAX`: padding): one table for all channels,
    // then a gather over all the chunk's tiles per ξ, however few tiles a plane holds (one
    // strided loop per tile row and tap was most of this pass for the late stages).
    let per_image = t.per_image();
    let mut at = vec![u32::MAX; XI * n];
    for (xi, row) in at.chunks_mut(n).enumerate() {
        let (r, col) = (xi / 4, xi % 4);
        for (p, v) in row.iter_mut().enumerate() {
            let (bi, tile) = (p / per_image, p % per_image);
            let (i, j) = (tile / tw, tile % tw);
            let y = (2 * i + r).checked_sub(1).filter(|&y| y < h);
            let x = (2 * j + col).checked_sub(1).filter(|&x| x < w);
            if let (Some(y), Some(x)) = (y, x) {
                *v = (bi * c_in * hw + y * w + x) as u32;
            }
        }
    }
    let images = &x[b0 * c_in * hw..b1 * c_in * hw];
    v[..c_in * XI * n]
        .par_chunks_mut(XI * n)
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
            for col in 0..4 {
                pass4(v, n, [col, 4 + col, 8 + col, 12 + col], b_t);
            }
            for r in 0..4 {
                pass4(v, n, [4 * r, 4 * r + 1, 4 * r + 2, 4 * r + 3], b_t);
            }
        });
}

/// The output gradient's tiles `dM[k][ξ][n] = A dY Aᵀ` for images `b0..b1` (`dy` `[b][k][h][w]`).
fn transform_output_gradient(
    dy: &[f32],
    g: &Geometry,
    t: Tiles,
    (b0, b1): (usize, usize),
    dm: &mut [f32],
) {
    let (h, w, hw, c_out) = (g.h, g.w, g.h * g.w, g.c_out);
    let n = (b1 - b0) * t.per_image();
    let tw = t.tw;
    // A·(e0, e1): e0, e0 + e1, e0 − e1, −e1 (down the columns and along the rows alike).
    let a = |[e0, e1]: [f32; 2]| [e0, e0 + e1, e0 - e1, -e1];
    dm[..c_out * XI * n]
        .par_chunks_mut(XI * n)
        .enumerate()
        .for_each_init(
            || vec![0f32; 12 * n],
            |buf, (k, dm)| {
                // e[r][col]: each tile's 2×2 output gradient; q[a][col] = A·e down the columns.
                let (e, q) = buf.split_at_mut(4 * n);
                for (bi, b) in (b0..b1).enumerate() {
                    let plane = &dy[(b * c_out + k) * hw..][..hw];
                    for i in 0..t.th {
                        let base = bi * t.per_image() + i * tw;
                        for r in 0..2 {
                            let [ee, eo] =
                                rows_mut(&mut e[2 * r * n..], n).map(|s| &mut s[base..base + tw]);
                            match Some(2 * i + r).filter(|&y| y < h) {
                                Some(y) => deinterleave(&plane[y * w..][..w], 0, ee, eo),
                                None => {
                                    ee.fill(0.0);
                                    eo.fill(0.0);
                                }
                            }
                        }
                    }
                }
                for col in 0..2 {
                    let inp = [&e[col * n..][..n], &e[(2 + col) * n..][..n]];
                    let out = rows_at(q, n, [0, 2, 4, 6].map(|a| a + col));
                    combine(inp, out, a);
                }
                for row in 0..4 {
                    let inp = [&q[2 * row * n..][..n], &q[(2 * row + 1) * n..][..n]];
                    combine(inp, rows_mut(&mut dm[4 * row * n..], n), a);
                }
            },
        );
}

/// The outputs `y = Aᵀ M A` (+ bias, then ReLU if asked) of images `b0..b1` from `M[ξ][k][n]`:
/// per channel over all tiles into `yt` (`[k][row][col][n]`), then into the planes.
#[allow(clippy::too_many_arguments)]
fn transform_outputs(
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
    let tw = t.tw;
    let mut yt = Scratch::take(c_out * 4 * n);
    yt[..c_out * 4 * n]
        .par_chunks_mut(4 * n)
        .enumerate()
        .for_each_init(
            || vec![0f32; 8 * n],
            |p, (k, yt)| {
                let add = bias.map_or(0.0, |b| b[k]);
                let finish = |v: f32| {
                    let v = v + add;
                    if relu { v.max(0.0) } else { v }
                };
                let mx = |xi: usize| &m[(xi * c_out + k) * n..][..n];
                // ·A along each row a: m0 + m1 + m2, m1 − m2 − m3, into p[a][col].
                for a in 0..4 {
                    let inp = [mx(4 * a), mx(4 * a + 1), mx(4 * a + 2), mx(4 * a + 3)];
                    combine(
                        inp,
                        rows_mut::<2>(&mut p[2 * a * n..], n),
                        |[m0, m1, m2, m3]| [m0 + m1 + m2, m1 - m2 - m3],
                    );
                }
                // Aᵀ· down each column: rows p0 + p1 + p2, p1 − p2 − p3, into yt[row][col].
                for col in 0..2 {
                    let pr = |a: usize| &p[(2 * a + col) * n..][..n];
                    let out = rows_at(yt, n, [col, 2 + col]);
                    combine([pr(0), pr(1), pr(2), pr(3)], out, |[p0, p1, p2, p3]| {
                        [finish(p0 + p1 + p2), finish(p1 - p2 - p3)]
                    });
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
            let yk = &yt[k * 4 * n..][..4 * n];
            for i in 0..t.th {
                let base = bi * t.per_image() + i * tw;
                for r in 0..2 {
                    let y0 = 2 * i + r;
                    if y0 < h {
                        let (e, o) = (
                            &yk[2 * r * n + base..][..tw],
                            &yk[(2 * r + 1) * n + base..][..tw],
                        );
                        interleave(e, o, 0, &mut plane[y0 * w..][..w]);
                    }
                }
            }
        });
}

/// The input gradient `dX = B dV Bᵀ`, each tile's 4×4 overlap-added, of images `b0..b1` from
/// `dV[ξ][c][n]` (into `dx` `[b][c][h][w]`, overwritten): per channel over all tiles into
/// `pt` (`[c][row][col][n]`), then added into the padded planes.
fn transform_input_gradient(
    dv: &[f32],
    g: &Geometry,
    t: Tiles,
    (b0, b1): (usize, usize),
    dx: &mut [f32],
) {
    let (h, w, hw, c_in) = (g.h, g.w, g.h * g.w, g.c_in);
    let n = (b1 - b0) * t.per_image();
    let (tw, m) = (t.tw, t.tw + 1);
    let mut pt = Scratch::take(c_in * XI * n);
    pt[..c_in * XI * n]
        .par_chunks_mut(XI * n)
        .enumerate()
        .for_each(|(c, pt)| {
            let vx = |xi: usize| &dv[(xi * c_in + c) * n..][..n];
            // ·Bᵀ along each row a: v0, v1 − v2 + v3, −v0 + v1 + v2, −v3.
            for a in 0..4 {
                let inp = [vx(4 * a), vx(4 * a + 1), vx(4 * a + 2), vx(4 * a + 3)];
                combine(
                    inp,
                    rows_mut(&mut pt[4 * a * n..], n),
                    |[v0, v1, v2, v3]| [v0, v1 - v2 + v3, -v0 + v1 + v2, -v3],
                );
            }
            // B· down each column, in place.
            for col in 0..4 {
                pass4(
                    pt,
                    n,
                    [col, 4 + col, 8 + col, 12 + col],
                    |[s0, s1, s2, s3]| [s0, s1 - s2 + s3, -s0 + s1 + s2, -s3],
                );
            }
        });
    let pt = &pt[..];
    // A padded row: its even then its odd columns.
    let row_len = 2 * m;
    dx[b0 * c_in * hw..b1 * c_in * hw]
        .par_chunks_mut(hw)
        .enumerate()
        .with_min_len(MIN_PLANES)
        .for_each_init(
            || vec![0f32; (2 * t.th + 2) * row_len],
            |acc, (plane_index, plane)| {
                let (bi, c) = (plane_index / c_in, plane_index % c_in);
                let pc = &pt[c * XI * n..][..XI * n];
                acc.fill(0.0);
                for i in 0..t.th {
                    let base = bi * t.per_image() + i * tw;
                    for r in 0..4 {
                        // Tile columns 2j .. 2j + 4 of padded row 2i + r: e[j], o[j], e[j+1], o[j+1].
                        let (e, o) = acc[(2 * i + r) * row_len..][..row_len].split_at_mut(m);
                        let p = |col: usize| &pc[(4 * r + col) * n + base..][..tw];
                        e[..tw].iter_mut().zip(p(0)).for_each(|(d, v)| *d += v);
                        o[..tw].iter_mut().zip(p(1)).for_each(|(d, v)| *d += v);
                        e[1..].iter_mut().zip(p(2)).for_each(|(d, v)| *d += v);
                        o[1..].iter_mut().zip(p(3)).for_each(|(d, v)| *d += v);
                    }
                }
                for (y, row) in plane.chunks_mut(w).enumerate().take(h) {
                    let padded = &acc[(y + 1) * row_len..][..row_len];
                    interleave(&padded[..m], &padded[m..], 1, row);
                }
            },
        );
}

/// The 16 products of a chunk, one GEMM per ξ on the rayon pool: `out[ξ] = a_ξ·b_ξ` where `a`
/// and `b` give each ξ's operand as (offset, row stride, column stride).
#[allow(clippy::too_many_arguments)]
fn products(
    [m, n, k]: [usize; 3],
    out: &mut [f32],
    accumulate: bool,
    a: &[f32],
    a_at: impl Fn(usize) -> (usize, [usize; 2]) + Sync,
    b: &[f32],
    b_at: impl Fn(usize) -> (usize, [usize; 2]) + Sync,
) {
    out[..XI * m * n]
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
    let (c_in, c_out) = (g.c_in, g.c_out);
    let t = Tiles::of(g);
    let u = transform_weights(w, c_in, c_out);
    let mut y = vec![0f32; g.batch * c_out * g.h * g.w];
    for chunk in t.chunks(g) {
        let n = (chunk.1 - chunk.0) * t.per_image();
        let mut v = Scratch::take(c_in * XI * n);
        let mut m = Scratch::take(XI * c_out * n);
        transform_inputs(x, g, t, chunk, &mut v);
        // M[ξ][k][n] = Σ_c U[ξ][k][c]·V[c][ξ][n]
        products(
            [c_out, n, c_in],
            &mut m,
            false,
            &u,
            |xi| (xi * c_out * c_in, [c_in, 1]),
            &v,
            |xi| (xi * n, [XI * n, 1]),
        );
        transform_outputs(&m, g, t, chunk, &mut y, bias, relu);
    }
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
    let (c_in, c_out) = (g.c_in, g.c_out);
    let t = Tiles::of(g);
    let u = want_dx.then(|| transform_weights(w, c_in, c_out));
    let mut dx = want_dx.then(|| vec![0f32; g.batch * c_in * g.h * g.w]);
    let mut du = want_dw.then(|| Scratch::take(XI * c_out * c_in));
    for (i, chunk) in t.chunks(g).into_iter().enumerate() {
        let n = (chunk.1 - chunk.0) * t.per_image();
        let mut dm = Scratch::take(c_out * XI * n);
        transform_output_gradient(dy, g, t, chunk, &mut dm);
        if let Some(du) = &mut du {
            let mut v = Scratch::take(c_in * XI * n);
            transform_inputs(x, g, t, chunk, &mut v);
            // dU[ξ][k][c] += Σ_n dM[k][ξ][n]·V[c][ξ][n]
            products(
                [c_out, c_in, n],
                du,
                i > 0,
                &dm,
                |xi| (xi * n, [XI * n, 1]),
                &v,
                |xi| (xi * n, [1, XI * n]),
            );
        }
        if let (Some(dx), Some(u)) = (&mut dx, &u) {
            let mut dv = Scratch::take(XI * c_in * n);
            // dV[ξ][c][n] = Σ_k U[ξ][k][c]·dM[k][ξ][n]
            products(
                [c_in, n, c_out],
                &mut dv,
                false,
                u,
                |xi| (xi * c_out * c_in, [1, c_in]),
                &dm,
                |xi| (xi * n, [XI * n, 1]),
            );
            transform_input_gradient(&dv, g, t, chunk, dx);
        }
    }
    (dx, du.map(|du| weight_gradient(&du, c_in, c_out)))
}
