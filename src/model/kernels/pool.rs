//! Max pooling on Flex: the forward with or without argmax positions, an SSE2 select that keeps
//! NaN as PyTorch does, and its autodiff node.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::im2col::out_len;
use super::route::{FlexAd, Route, flex_tensor, route, symmetric_padding};

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
    let mut y = super::zeroed(x.len() / (h * w).max(1) * per);
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
        let mut dx = super::zeroed(b * c * h * w);
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
