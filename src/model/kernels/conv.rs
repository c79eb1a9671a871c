//! 2-D convolution on the Flex (CPU) backend as im2col + one GEMM over many images at once,
//! forward and backward, and its autodiff node. Other backends keep burn's own convolution.
//!
//! Why: burn-flex multiplies image by image, so in ResNet's late stages (3×8 and 2×4 outputs for a
//! 43×128 window) each GEMM has 8–24 columns and re-reads the whole weight matrix per image; its
//! weight gradient is a convolution over batch↔channel-swapped tensors (again a GEMM with 9
//! columns) and its input gradient a transposed convolution. Here the columns of all images of a
//! chunk go into one GEMM, and the two gradients are the two other products of the same three
//! matrices: `dWᵀ = col·dYᵀ`, `dcol = Wᵀ·dY` then col2im. With unit stride both gradients come
//! from one im2col of `dY` instead (`backward_unit_stride`). The 3×3 stride-1 convolutions of
//! 64 channels and more go to `winograd` instead (fewer products; measured faster there; see
//! `winograd::applies`), and
//! the 1×1 stride-1 ones over planes of 64 positions or more to `pointwise` (no copies). Where a
//! convolution has many small chunks (the early stages), the chunks run side by side, one thread
//! each (`chunks_in_parallel`), not one after the other with the threads inside each GEMM.

use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::gemm::{add_abt, gemm, sum_parts, weight_parts};
use super::im2col::{Geometry, bias_relu_in_place, col2im, gather_images, im2col, scatter_images};
use super::route::{FlexAd, Route, flex_tensor, route, symmetric_padding};
use super::scratch::Scratch;
use super::{pointwise, winograd};

/// Forward: `y[b][co][p] = Σ_k w[co][k]·col[k][b·P + p] + bias[co]`, then ReLU if asked (the
/// inference path with BatchNorm folded in).
pub fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, relu: bool, g: &Geometry) -> Vec<f32> {
    if winograd::applies(g) {
        return winograd::forward(x, w, bias, relu, g);
    }
    if pointwise::applies(g) {
        return pointwise::forward(x, w, bias, relu, g);
    }
    let (k, p, c_out) = (g.k(), g.p(), g.c_out);
    let mut y = super::zeroed(g.batch * c_out * p);
    let per = g.images_per_chunk();
    // Chunk i's images into `y`'s slice of them, the GEMM on every thread if `parallel`.
    let chunk = |i: usize, y: &mut [f32], parallel: bool| {
        let (b0, b1) = (i * per, (i * per + per).min(g.batch));
        let n = (b1 - b0) * p;
        let mut col = Scratch::take(k * n);
        im2col(x, g, b0, b1, &mut col.0);
        if b1 - b0 == 1 {
            // One image: `[c_out][p]` is its layout already.
            output_columns(g, n, w, &col.0, y, parallel);
            bias_relu_in_place(y, p, bias, relu);
            return;
        }
        let mut out = Scratch::take(c_out * n);
        output_columns(g, n, w, &col.0, &mut out.0, parallel);
        scatter_images(&out.0, [c_out, p], 0, b1 - b0, y, bias, relu);
    };
    if chunks_in_parallel(g) {
        y.par_chunks_mut(per * c_out * p)
            .enumerate()
            .for_each(|(i, y)| chunk(i, y, false));
    } else {
        for (i, y) in y.chunks_mut(per * c_out * p).enumerate() {
            chunk(i, y, true);
        }
    }
    y
}

/// Whether a convolution's chunks run side by side, each on one thread: where its chunks are
/// many and small, gemm keeps each product on one thread (measured on 2 AVX-512 cores: a
/// 64×704×576 product, one chunk of ResNet18's 64-channel 3×3 convolution, ran at 130 GFLOP/s
/// with `Parallelism::Rayon` and alone), so one chunk at a time left the other core idle: that
/// convolution took 21 ms forward and 30 ms backward, 11 and 18 with its chunks side by side.
fn chunks_in_parallel(g: &Geometry) -> bool {
    g.batch.div_ceil(g.images_per_chunk()) >= 4 * rayon::current_num_threads()
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
    if winograd::applies(g) {
        return winograd::backward([x, w, dy], g, want_dx, want_dw);
    }
    if pointwise::applies(g) {
        return pointwise::backward([x, w, dy], g, want_dx, want_dw);
    }
    if g.stride == [1, 1] && g.pad[0] < g.k_h && g.pad[1] < g.k_w {
        let want = Wanted {
            dx: want_dx,
            dw: want_dw,
        };
        return backward_unit_stride([x, w, dy], g, want);
    }
    let (k, p, c_out) = (g.k(), g.p(), g.c_out);
    if chunks_in_parallel(g) {
        return strided_chunks_in_parallel([x, w, dy], g, want_dx, want_dw);
    }
    let per = g.images_per_chunk();
    let mut col = Scratch::take(k * per * p);
    let mut dyc = Scratch::take(c_out * per * p);
    let parts = weight_parts(c_out * k);
    // dWᵀ `[k][co]`, in parts.
    let mut dwt = want_dw.then(|| vec![0f32; parts * k * c_out]);
    let mut dx_cb = want_dx.then(|| super::zeroed(g.c_in * g.batch * g.h * g.w));
    for (i, (b0, b1)) in g.chunks().enumerate() {
        let n = (b1 - b0) * p;
        gather_images(dy, [c_out, p], b0, b1, &mut dyc.0);
        if let Some(dwt) = &mut dwt {
            im2col(x, g, b0, b1, &mut col.0);
            // dWᵀ[k][co] += Σ_n col[k][n]·dY[co][n]
            add_abt([k, c_out, n], parts, dwt, &col.0, &dyc.0, i == 0);
        }
        if let Some(dx_cb) = &mut dx_cb {
            column_gradient(g, n, w, &dyc.0, &mut col.0, true);
            col2im(&col.0, g, b0, b1, dx_cb);
        }
    }
    let dw = dwt.map(|dwt| transpose_weight_gradient(&sum_parts(dwt, k * c_out), g));
    // [c][b][hw] → [b][c][hw]
    let dx = dx_cb.map(|cb| {
        let mut dx = super::zeroed(cb.len());
        scatter_images(&cb, [g.c_in, g.h * g.w], 0, g.batch, &mut dx, None, false);
        dx
    });
    (dx, dw)
}

/// `out[co][n] = Σ_k w[co][k]·col[k][n]` for a chunk of `n` columns: a convolution's output.
fn output_columns(g: &Geometry, n: usize, w: &[f32], col: &[f32], out: &mut [f32], parallel: bool) {
    let (k, c_out) = (g.k(), g.c_out);
    gemm(c_out, n, k, out, false, w, [k, 1], col, [n, 1], parallel);
}

/// `dcol[k][n] = Σ_co W[co][k]·dY[co][n]` for a chunk of `n` columns, into `col`.
fn column_gradient(
    g: &Geometry,
    n: usize,
    w: &[f32],
    dyc: &[f32],
    col: &mut [f32],
    parallel: bool,
) {
    let (k, c_out) = (g.k(), g.c_out);
    gemm(k, n, c_out, col, false, w, [1, k], dyc, [n, 1], parallel);
}

/// `dW[co][k]` from `dWᵀ[k][co]`.
fn transpose_weight_gradient(dwt: &[f32], g: &Geometry) -> Vec<f32> {
    let (k, c_out) = (g.k(), g.c_out);
    let mut dw = vec![0f32; c_out * k];
    dw.par_chunks_mut(k).enumerate().for_each(|(co, row)| {
        for (kk, v) in row.iter_mut().enumerate() {
            *v = dwt[kk * c_out + co];
        }
    });
    dw
}

/// [`backward`]'s loop with its chunks side by side, each on one thread
/// ([`chunks_in_parallel`]): each chunk's input gradient taken by col2im into images of its own
/// and written in place, `dWᵀ` summed over the threads.
fn strided_chunks_in_parallel(
    [x, w, dy]: [&[f32]; 3],
    g: &Geometry,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (k, p, c_out, c_in, hw) = (g.k(), g.p(), g.c_out, g.c_in, g.h * g.w);
    let mut dx = want_dx.then(|| super::zeroed(g.batch * c_in * hw));
    let sizes = [c_in * hw, k * c_out];
    let dwt = chunk_groups(g, dx.as_deref_mut(), sizes, want_dw, |b0, b1, dx, dwt| {
        let n = (b1 - b0) * p;
        // One image's `dy` is `[c_out][p]` already; more are gathered into that layout.
        let mut dyc = Scratch::take(if b1 - b0 == 1 { 0 } else { c_out * n });
        let dyc: &[f32] = if b1 - b0 == 1 {
            &dy[b0 * c_out * p..][..c_out * p]
        } else {
            gather_images(dy, [c_out, p], b0, b1, &mut dyc.0);
            &dyc.0
        };
        let mut col = Scratch::take(k * n);
        if let Some(dwt) = dwt {
            im2col(x, g, b0, b1, &mut col.0);
            gemm(k, c_out, n, dwt, true, &col.0, [n, 1], dyc, [1, n], false);
        }
        if let Some(dx) = dx {
            column_gradient(g, n, w, dyc, &mut col.0, false);
            // This chunk's images alone, `[c][b − b0][hw]`, then `[b − b0][c][hw]`.
            let local = Geometry {
                batch: b1 - b0,
                ..*g
            };
            if b1 - b0 == 1 {
                // One image: `[c][1][hw]` is `[1][c][hw]`, and `dx` starts zeroed.
                col2im(&col.0, &local, 0, 1, dx);
                return;
            }
            let mut cb = Scratch::take(c_in * (b1 - b0) * hw);
            cb.fill(0.0);
            col2im(&col.0, &local, 0, b1 - b0, &mut cb.0);
            scatter_images(&cb.0, [c_in, hw], 0, b1 - b0, dx, None, false);
        }
    });
    (dx, dwt.map(|dwt| transpose_weight_gradient(&dwt, g)))
}

/// Runs `task(b0, b1, dx, acc)` on every chunk of `g`'s batch, the chunks in one contiguous
/// group per thread, the groups side by side and each group's chunks in order: `dx` is the
/// chunk's images of `dx` (`image_len` floats each), `acc` its group's running sum (`acc_len`
/// floats, if `want_acc`). Returns the groups' sums added in group order, so a result depends
/// on the thread count but not on how rayon schedules the groups.
fn chunk_groups<F>(
    g: &Geometry,
    dx: Option<&mut [f32]>,
    [image_len, acc_len]: [usize; 2],
    want_acc: bool,
    task: F,
) -> Option<Vec<f32>>
where
    F: Fn(usize, usize, Option<&mut [f32]>, Option<&mut [f32]>) + Sync,
{
    let per = g.images_per_chunk();
    let chunks = g.batch.div_ceil(per);
    let per_group = chunks.div_ceil(rayon::current_num_threads().max(1));
    let group_images = per_group * per;
    let groups = g.batch.div_ceil(group_images);
    let dx_groups: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => dx.chunks_mut(group_images * image_len).map(Some).collect(),
        None => (0..groups).map(|_| None).collect(),
    };
    let sums: Vec<Vec<f32>> = dx_groups
        .into_par_iter()
        .enumerate()
        .map(|(gi, mut dx)| {
            let mut acc = want_acc.then(|| vec![0f32; acc_len]);
            let first = gi * group_images;
            let last = (first + group_images).min(g.batch);
            for b0 in (first..last).step_by(per) {
                let b1 = (b0 + per).min(last);
                let images = dx
                    .as_deref_mut()
                    .map(|dx| &mut dx[(b0 - first) * image_len..(b1 - first) * image_len]);
                task(b0, b1, images, acc.as_deref_mut());
            }
            acc.unwrap_or_default()
        })
        .collect();
    want_acc.then(|| sum_parts(sums.concat(), acc_len))
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
    let mut dx = want.dx.then(|| super::zeroed(g.batch * c_in * hw));
    if chunks_in_parallel(&t) {
        let gw = unit_stride_chunks_in_parallel(
            [x, dy],
            g,
            &t,
            wf.as_deref(),
            dx.as_deref_mut(),
            want.dw,
        );
        return (dx, gw.map(|gw| unflip_weight_gradient(&gw, g)));
    }
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
            output_columns(&t, n, wf, &col.0, &mut out.0, true);
            scatter_images(&out.0, [c_in, hw], b0, b1, dx, None, false);
        }
    }
    let dw = gw.map(|gw| unflip_weight_gradient(&sum_parts(gw, kt * c_in), g));
    (dx, dw)
}

/// `dW[co][c][tap]` from `G[co·taps + flipped tap][c]`.
fn unflip_weight_gradient(gw: &[f32], g: &Geometry) -> Vec<f32> {
    let (taps, c_in) = (g.k_h * g.k_w, g.c_in);
    let mut dw = vec![0f32; g.c_out * c_in * taps];
    dw.par_chunks_mut(c_in * taps)
        .enumerate()
        .for_each(|(co, rows)| {
            for (c, row) in rows.chunks_mut(taps).enumerate() {
                for (tap, v) in row.iter_mut().enumerate() {
                    *v = gw[(co * taps + taps - 1 - tap) * c_in + c];
                }
            }
        });
    dw
}

/// [`backward_unit_stride`]'s loop with its chunks side by side, each on one thread
/// ([`chunks_in_parallel`]): `dx`'s images written in place, `G` summed over the threads.
fn unit_stride_chunks_in_parallel(
    [x, dy]: [&[f32]; 2],
    g: &Geometry,
    t: &Geometry,
    wf: Option<&[f32]>,
    dx: Option<&mut [f32]>,
    want_dw: bool,
) -> Option<Vec<f32>> {
    let (kt, c_in, hw) = (t.k(), g.c_in, g.h * g.w);
    chunk_groups(t, dx, [c_in * hw, kt * c_in], want_dw, |b0, b1, dx, gw| {
        let n = (b1 - b0) * hw;
        let mut col = Scratch::take(kt * n);
        im2col(dy, t, b0, b1, &mut col.0);
        if let Some(gw) = gw {
            let mut xc = Scratch::take(c_in * n);
            gather_images(x, [c_in, hw], b0, b1, &mut xc.0);
            gemm(kt, c_in, n, gw, true, &col.0, [n, 1], &xc.0, [1, n], false);
        }
        if let (Some(dx), Some(wf)) = (dx, wf) {
            let mut out = Scratch::take(c_in * n);
            output_columns(t, n, wf, &col.0, &mut out.0, false);
            scatter_images(&out.0, [c_in, hw], 0, b1 - b0, dx, None, false);
        }
    })
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
