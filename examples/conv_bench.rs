//! The 3×3 stride-1 convolutions of ResNet18 and the 1×1 ones of ResNet50 (batch 64, 43×128
//! windows), forward and backward on Flex under autodiff, by instrec's kernels (Winograd, a GEMM
//! per image, where they apply) and with `INSTREC_CONV=im2col` (im2col + GEMM everywhere),
//! interleaved; the best of 8 runs each.
//!
//!     cargo run --release --example conv_bench

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
    let shapes = [
        (3, 64, 64, 11, 32),
        (3, 128, 128, 6, 16),
        (3, 256, 256, 3, 8),
        (3, 512, 512, 2, 4),
        (1, 256, 64, 11, 32),
        (1, 64, 256, 11, 32),
        (1, 512, 128, 6, 16),
        (1, 128, 512, 6, 16),
        (1, 1024, 256, 3, 8),
    ];
    for (k, c, c_out, h, w) in shapes {
        let pad = k / 2;
        let layer = Conv2dConfig::new([c, c_out], [k, k])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(&device);
        let x0 = Tensor::<4>::random([64, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let r = Tensor::<4>::random([64, c_out, h, w], Distribution::Normal(0.0, 1.0), &device);
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
            let x = x0.clone().detach().require_grad();
            let mut conv = layer.clone();
            conv.weight = Param::from_tensor(layer.weight.val().detach().require_grad());
            let times = timing::forward_backward(&x, || {
                (kernels::conv2d(&conv, x.clone(), false) * r.clone()).sum()
            });
            best.keep(!im2col, times);
        }
        println!("{}", best.row(&format!("{k}×{k}, {c} → {c_out} × {h}×{w}")));
    }
}
