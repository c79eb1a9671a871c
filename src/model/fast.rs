//! Inference of a BatchNorm-folded ResNet on the CPU, outside burn: activations channels-last
//! (NHWC) in plain buffers, weights packed once as `[kh·kw·c_in][c_out]`. Channels-last turns
//! im2col into copies of whole channel runs (64–512 floats, where NCHW copies 4–32 or gathers
//! single floats), lets the GEMM write its output in place (`[positions][c_out]` is NHWC), and
//! the bias, residual and ReLU are one pass over that output. The 3×3 stride-1 convolutions of
//! up to 256 channels take Winograd's F(4×4, 3×3) instead (`kernels::winograd_nhwc`, their kernels
//! transformed once here). Built by [`super::ResNet`] the first time a folded model runs on
//! Flex; its logits equal burn's path (`tests/models.rs`).

use rayon::prelude::*;

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;

use super::kernels::winograd_nhwc::{self, Packed};
use super::kernels::{Scratch, gemm, host_f32, out_len, symmetric_padding};

/// A folded ResNet's layers, as [`FastResNet::new`] packs them (the ResNet lists them).
pub struct Layers<'a> {
    pub stem: &'a Conv2d,
    pub maxpool: &'a MaxPool2d,
    pub blocks: Vec<BlockLayers<'a>>,
    pub fc: &'a Linear,
}

/// A residual block's convolutions: the main path in order (a ReLU after each but the last), and
/// the shortcut's.
pub struct BlockLayers<'a> {
    pub convs: Vec<&'a Conv2d>,
    pub downsample: Option<&'a Conv2d>,
}

/// The fewest GEMM rows (output positions) per chunk, and the most floats of a chunk's im2col.
const MIN_ROWS: usize = 512;
const CHUNK_FLOATS: usize = 1 << 19;

/// The fewest channels a 3×3 stride-1 convolution takes Winograd with (as in training).
const WINOGRAD_MIN_CHANNELS: usize = 64;
/// The most kernels (`c_in·c_out`) it does: a transformed kernel holds 36 floats where it held
/// 9. ResNet18's 512-channel stage (2×4 planes, one tile per image) would add 113 MB of them for
/// 8 % more tagging speed (`bench tag`: 171 → 240 audio-s/s up to 256 channels, 259 with it).
const WINOGRAD_MAX_KERNELS: usize = 256 * 256;

/// One convolution with its BatchNorm folded in.
#[derive(Debug, Clone)]
struct Conv {
    /// `[(ki·kw + kj)·c_in + c][c_out]`: the im2col row order below.
    w: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    k: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    /// The kernels transformed for Winograd, where [`winograd_nhwc`] takes this convolution.
    winograd: Option<Packed>,
}

/// An activation `[batch][h][w][c]`.
struct Act {
    /// Pooled buffers: every value is written before it is read, so none is cleared.
    data: Scratch,
    b: usize,
    h: usize,
    w: usize,
    c: usize,
}

impl Conv {
    fn from_burn(conv: &burn::nn::conv::Conv2d) -> Option<Self> {
        let pad = symmetric_padding(&conv.padding)?;
        if conv.groups != 1 || conv.dilation != [1, 1] {
            return None;
        }
        let weight = conv.weight.val();
        let [c_out, c_in, kh, kw] = weight.dims();
        let src = host_f32(weight)?;
        let mut w = vec![0f32; c_out * c_in * kh * kw];
        for co in 0..c_out {
            for c in 0..c_in {
                for t in 0..kh * kw {
                    w[(t * c_in + c) * c_out + co] = src[(co * c_in + c) * kh * kw + t];
                }
            }
        }
        let bias = match &conv.bias {
            Some(b) => host_f32(b.val())?,
            None => vec![0.0; c_out],
        };
        let winograd = ([kh, kw] == [3, 3]
            && conv.stride == [1, 1]
            && pad == [1, 1]
            && c_in.min(c_out) >= WINOGRAD_MIN_CHANNELS
            && c_in * c_out <= WINOGRAD_MAX_KERNELS)
            .then(|| Packed::new(&src, c_in, c_out));
        Some(Self {
            w,
            bias,
            c_in,
            c_out,
            k: [kh, kw],
            stride: conv.stride,
            pad,
            winograd,
        })
    }

    /// The convolution of `x`, plus `residual` (same shape as the output) if given, then ReLU
    /// if asked.
    fn run(&self, x: &Act, residual: Option<&Act>, relu: bool) -> Act {
        let [kh, kw] = self.k;
        let [sh, sw] = self.stride;
        let [ph, pw] = self.pad;
        let (oh, ow) = (out_len(x.h, kh, sh, ph), out_len(x.w, kw, sw, pw));
        let k = kh * kw * self.c_in;
        let rows = x.b * oh * ow;
        let mut y = Scratch::take(rows * self.c_out);
        if let Some(packed) = self.winograd.as_ref().filter(|_| winograd_nhwc::enabled()) {
            let res = residual.map(|r| &r.data[..rows * self.c_out]);
            let epilogue = (&self.bias[..], res, relu);
            packed.forward(&x.data, [x.b, x.h, x.w], &mut y, epilogue);
            return Act {
                data: y,
                b: x.b,
                h: oh,
                w: ow,
                c: self.c_out,
            };
        }
        // A 1×1 convolution with stride 1 and no padding reads its input as it is.
        let direct = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
        let chunk = (CHUNK_FLOATS / k).max(MIN_ROWS).min(rows.max(1));
        let mut col = Scratch::take(if direct { 0 } else { chunk * k });
        let mut r0 = 0;
        while r0 < rows {
            let r1 = (r0 + chunk).min(rows);
            let n = r1 - r0;
            let lhs: &[f32] = if direct {
                &x.data[r0 * k..r1 * k]
            } else {
                col.0[..n * k]
                    .par_chunks_mut(k)
                    .enumerate()
                    .for_each(|(i, dst)| {
                        let r = r0 + i;
                        let (bi, pos) = (r / (oh * ow), r % (oh * ow));
                        let (yh, yw) = (pos / ow, pos % ow);
                        let run = kw * self.c_in;
                        for ki in 0..kh {
                            let ih = yh * sh + ki;
                            let d = &mut dst[ki * run..][..run];
                            if ih < ph || ih - ph >= x.h {
                                d.fill(0.0);
                                continue;
                            }
                            let row = (bi * x.h + ih - ph) * x.w;
                            let iw0 = yw * sw;
                            if iw0 >= pw && iw0 + kw - pw <= x.w {
                                // The kernel row's taps are adjacent pixels: one copy.
                                let at = (row + iw0 - pw) * x.c;
                                d.copy_from_slice(&x.data[at..at + run]);
                                continue;
                            }
                            for kj in 0..kw {
                                let d = &mut d[kj * self.c_in..][..self.c_in];
                                let iw = iw0 + kj;
                                if iw < pw || iw - pw >= x.w {
                                    d.fill(0.0);
                                } else {
                                    let at = (row + iw - pw) * x.c;
                                    d.copy_from_slice(&x.data[at..at + self.c_in]);
                                }
                            }
                        }
                    });
                &col.0[..n * k]
            };
            let out = &mut y[r0 * self.c_out..r1 * self.c_out];
            gemm(
                n,
                self.c_out,
                k,
                out,
                false,
                lhs,
                [k, 1],
                &self.w,
                [self.c_out, 1],
                true,
            );
            let res = residual.map(|r| &r.data[r0 * self.c_out..r1 * self.c_out]);
            finish(out, &self.bias, res, relu);
            r0 = r1;
        }
        Act {
            data: y,
            b: x.b,
            h: oh,
            w: ow,
            c: self.c_out,
        }
    }
}

/// `out` `[rows][c]` + bias (+ `residual`), then ReLU if asked, in one pass over the rows.
fn finish(out: &mut [f32], bias: &[f32], residual: Option<&[f32]>, relu: bool) {
    let c = bias.len();
    out.par_chunks_mut(c).enumerate().for_each(|(i, row)| {
        let res = residual.map(|r| &r[i * c..(i + 1) * c]);
        winograd_nhwc::epilogue(row, bias, res, relu);
    });
}

#[derive(Debug, Clone)]
struct FastBlock {
    /// conv1 … conv2 (basic) or conv3 (bottleneck), each with a ReLU but the last.
    convs: Vec<Conv>,
    downsample: Option<Conv>,
}

/// A folded ResNet ready for [`FastResNet::forward`].
#[derive(Debug, Clone)]
pub struct FastResNet {
    stem: Conv,
    pool: ([usize; 2], [usize; 2], [usize; 2]),
    blocks: Vec<FastBlock>,
    /// `[classes][features]`.
    fc_w: Vec<f32>,
    fc_b: Vec<f32>,
    classes: usize,
}

impl FastResNet {
    /// The packed network, or `None` if some layer is not of the shape this runs (then burn's
    /// path is used).
    pub fn new(r: Layers<'_>) -> Option<Self> {
        let mut blocks = Vec::new();
        for block in r.blocks {
            blocks.push(FastBlock {
                convs: block
                    .convs
                    .into_iter()
                    .map(Conv::from_burn)
                    .collect::<Option<_>>()?,
                downsample: match block.downsample {
                    Some(d) => Some(Conv::from_burn(d)?),
                    None => None,
                },
            });
        }
        let pool_pad = symmetric_padding(&r.maxpool.padding)?;
        let [k, p] = [r.maxpool.kernel_size, pool_pad];
        if r.maxpool.dilation != [1, 1] || p[0] >= k[0] || p[1] >= k[1] {
            return None;
        }
        let w = r.fc.weight.val();
        let [d_in, d_out] = w.dims();
        let wv = host_f32(w)?;
        let mut fc_w = vec![0f32; d_in * d_out];
        for i in 0..d_in {
            for o in 0..d_out {
                fc_w[o * d_in + i] = wv[i * d_out + o];
            }
        }
        let fc_b = match &r.fc.bias {
            Some(b) => host_f32(b.val())?,
            None => vec![0.0; d_out],
        };
        Some(Self {
            stem: Conv::from_burn(r.stem)?,
            pool: (r.maxpool.kernel_size, r.maxpool.stride, pool_pad),
            blocks,
            fc_w,
            fc_b,
            classes: d_out,
        })
    }

    /// Pooled features `[b][features]` and logits `[b][classes]` of `x` `[b][c][h][w]` (NCHW).
    pub fn forward(&self, x: &[f32], [b, c, h, w]: [usize; 4]) -> (Vec<f32>, Vec<f32>) {
        let mut nhwc = Scratch::take(x.len());
        nhwc.par_chunks_mut(h * w * c)
            .enumerate()
            .for_each(|(bi, img)| {
                for ch in 0..c {
                    let plane = &x[(bi * c + ch) * h * w..][..h * w];
                    for (p, &v) in plane.iter().enumerate() {
                        img[p * c + ch] = v;
                    }
                }
            });
        let x = Act {
            data: nhwc,
            b,
            h,
            w,
            c,
        };
        let x = self.stem.run(&x, None, true);
        let mut x = max_pool(&x, self.pool);
        for block in &self.blocks {
            let identity = block.downsample.as_ref().map(|d| d.run(&x, None, false));
            let mut out = None::<Act>;
            let last = block.convs.len() - 1;
            for (i, conv) in block.convs.iter().enumerate() {
                let input = out.as_ref().unwrap_or(&x);
                out = Some(if i == last {
                    conv.run(input, Some(identity.as_ref().unwrap_or(&x)), true)
                } else {
                    conv.run(input, None, true)
                });
            }
            x = out.expect("a block has convolutions");
        }
        // Global average pooling, then the head.
        let (feat, positions) = (x.c, x.h * x.w);
        let mut pooled = vec![0f32; b * feat];
        for (bi, p) in pooled.chunks_mut(feat).enumerate() {
            for pos in 0..positions {
                let row = &x.data[(bi * positions + pos) * feat..][..feat];
                for (a, v) in p.iter_mut().zip(row) {
                    *a += v;
                }
            }
            p.iter_mut().for_each(|v| *v /= positions as f32);
        }
        let mut logits = vec![0f32; b * self.classes];
        for (bi, out) in logits.chunks_mut(self.classes).enumerate() {
            let f = &pooled[bi * feat..(bi + 1) * feat];
            for (o, v) in out.iter_mut().enumerate() {
                *v = crate::util::dot(&self.fc_w[o * feat..(o + 1) * feat], f) + self.fc_b[o];
            }
        }
        (pooled, logits)
    }
}

/// Max pooling of an NHWC activation (padding never wins).
fn max_pool(x: &Act, (k, s, p): ([usize; 2], [usize; 2], [usize; 2])) -> Act {
    let (oh, ow) = (
        out_len(x.h, k[0], s[0], p[0]),
        out_len(x.w, k[1], s[1], p[1]),
    );
    let c = x.c;
    let mut y = Scratch::take(x.b * oh * ow * c);
    y.par_chunks_mut(c).enumerate().for_each(|(r, out)| {
        out.fill(f32::NEG_INFINITY);
        let (bi, pos) = (r / (oh * ow), r % (oh * ow));
        let (yh, yw) = (pos / ow, pos % ow);
        for ih in (yh * s[0]).saturating_sub(p[0])..(yh * s[0] + k[0] - p[0]).min(x.h) {
            for iw in (yw * s[1]).saturating_sub(p[1])..(yw * s[1] + k[1] - p[1]).min(x.w) {
                let src = &x.data[((bi * x.h + ih) * x.w + iw) * c..][..c];
                for (o, &v) in out.iter_mut().zip(src) {
                    // A select, not a branch, so it vectorises; NaN propagates as in PyTorch.
                    *o = if v > *o || v.is_nan() { v } else { *o };
                }
            }
        }
    });
    Act {
        data: y,
        b: x.b,
        h: oh,
        w: ow,
        c,
    }
}
