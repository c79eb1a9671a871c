//! Every distinct convolution of ResNet18 and ResNet50 (batch 64, 43×128 windows), forward and backward on Flex under autodiff, by instrec's kernels (Winograd, a GEMM
//! per image, where they apply) and with `INSTREC_CONV=im2col` (im2col + GEMM everywhere),
//! interleaved; the best of 8 runs each.
//!
//!     cargo run --release --example conv_bench [FILTER]
//!
//! With FILTER, only the rows whose label contains it (e.g. `1×1/2`).
//!
//! `benches/conv_pytorch.py` times the same layers in PyTorch, in the same row order.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Tensor};
use instrec::model::kernels;

#[path = "shared/timing.rs"]
mod timing;
use timing::Best;

fn main() {
    let device = Device::flex().autodiff();
    println!(
        "| kernel, channels × plane | im2col forward | backward | default forward | backward |"
    );
    println!("|---|---|---|---|---|");
    // (kernel, stride, channels in, out, input height, width): every distinct convolution of
    // ResNet18 and ResNet50 on 43×128 windows, the stem's input without a gradient.
    let shapes = [
        (7, 2, 3, 64, 43, 128),
        (3, 1, 64, 64, 11, 32),
        (3, 1, 128, 128, 6, 16),
        (3, 1, 256, 256, 3, 8),
        (3, 1, 512, 512, 2, 4),
        (3, 2, 64, 128, 11, 32),
        (3, 2, 128, 256, 6, 16),
        (3, 2, 256, 512, 3, 8),
        (3, 2, 128, 128, 11, 32),
        (3, 2, 256, 256, 6, 16),
        (3, 2, 512, 512, 3, 8),
        (1, 2, 64, 128, 11, 32),
        (1, 2, 128, 256, 6, 16),
        (1, 2, 256, 512, 3, 8),
        (1, 1, 64, 64, 11, 32),
        (1, 1, 256, 64, 11, 32),
        (1, 1, 64, 256, 11, 32),
        (1, 1, 256, 128, 11, 32),
        (1, 2, 256, 512, 11, 32),
        (1, 1, 512, 128, 6, 16),
        (1, 1, 128, 512, 6, 16),
        (1, 1, 512, 256, 6, 16),
        (1, 2, 512, 1024, 6, 16),
        (1, 1, 1024, 256, 3, 8),
        (1, 1, 256, 1024, 3, 8),
        (1, 1, 1024, 512, 3, 8),
        (1, 2, 1024, 2048, 3, 8),
        (1, 1, 2048, 512, 2, 4),
        (1, 1, 512, 2048, 2, 4),
    ];
    let filter = std::env::args().nth(1).unwrap_or_default();
    for (k, stride, c, c_out, h, w) in shapes {
        let label = format!("{k}×{k}/{stride}, {c} → {c_out} × {h}×{w}");
        if !label.contains(&filter) {
            continue;
        }
        let pad = k / 2;
        let layer = Conv2dConfig::new([c, c_out], [k, k])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(&device);
        let [oh, ow] = [h, w].map(|n| (n + 2 * pad - k) / stride + 1);
        let x0 = Tensor::<4>::random([64, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let r = Tensor::<4>::random([64, c_out, oh, ow], Distribution::Normal(0.0, 1.0), &device);
        let mut best = Best::new();
        for run in 0..16 {
            let im2col = run % 2 == 1;
            // SAFETY: no other thread reads or writes the environment while this one does.
            unsafe {
                if im2col {
                    std::env::set_var("INSTREC_CONV", "im2col");
                } else {
                    std::env::remove_var("INSTREC_CONV");
                }
            }
            let x = x0.clone().detach();
            let x = if c == 3 { x } else { x.require_grad() };
            let mut conv = layer.clone();
            conv.weight = Param::from_tensor(layer.weight.val().detach().require_grad());
            let times = timing::forward_backward(&x, || {
                (kernels::conv2d(&conv, x.clone(), false) * r.clone()).sum()
            });
            best.keep(!im2col, times);
        }
        println!("{}", best.row(&label));
    }
}
