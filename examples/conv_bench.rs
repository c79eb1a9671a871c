//! The 3×3 stride-1 convolutions of ResNet18 (batch 64, 43×128 windows), forward and backward
//! on Flex under autodiff, by instrec's kernels with Winograd where it applies and with
//! `INSTREC_CONV=im2col` (im2col + GEMM everywhere), interleaved; the best of 8 runs each.
//!
//!     cargo run --release --example conv_bench

use std::time::Instant;

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Tensor};
use instrec::model::kernels;

fn main() {
    let device = Device::flex().autodiff();
    println!("| channels × plane | im2col forward | backward | default forward | backward |");
    println!("|---|---|---|---|---|");
    for (c, h, w) in [(64, 11, 32), (128, 6, 16), (256, 3, 8), (512, 2, 4)] {
        let layer = Conv2dConfig::new([c, c], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&device);
        let x0 = Tensor::<4>::random([64, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let r = Tensor::<4>::random([64, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        // [im2col forward, backward, default forward, backward], milliseconds.
        let mut best = [f64::MAX; 4];
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
            let t = Instant::now();
            let loss = (kernels::conv2d(&conv, x.clone(), false) * r.clone()).sum();
            std::hint::black_box(loss.clone().into_data());
            let forward = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let grads = loss.backward();
            std::hint::black_box(x.grad(&grads).map(|g| g.into_data()));
            let backward = t.elapsed().as_secs_f64() * 1e3;
            let i = if im2col { 0 } else { 2 };
            best[i] = best[i].min(forward);
            best[i + 1] = best[i + 1].min(backward);
        }
        println!(
            "| {c} × {h}×{w} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            best[0], best[1], best[2], best[3]
        );
    }
}
