//! A residual block's end in training, `relu(bn(x) + identity)`, forward and backward on Flex
//! under autodiff (batch 64, ResNet shapes of a 43×128 window): as one node
//! (`BatchNorm2d::forward_with`) and as three ops (BN, add, ReLU), interleaved; the best of 8.
//!
//!     cargo run --release --example bn_bench

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use instrec::model::norm::BatchNorm2d;

fn main() {
    let device = Device::flex().autodiff();
    println!("| channels × plane | three ops: forward | backward | one node: forward | backward |");
    println!("|---|---|---|---|---|");
    for (c, h, w) in [(64, 11, 32), (256, 11, 32), (512, 6, 16), (2048, 2, 4)] {
        let bn = BatchNorm2d::new(c, &device);
        let x0 = Tensor::<4>::random([64, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let r0 = Tensor::<4>::random([64, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let up = Tensor::<4>::random([64, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        // [three ops forward, backward, one node forward, backward], milliseconds.
        let mut best = [f64::MAX; 4];
        for run in 0..16 {
            let fused = run % 2 == 1;
            let (x, r) = (
                x0.clone().detach().require_grad(),
                r0.clone().detach().require_grad(),
            );
            let t = Instant::now();
            let y = if fused {
                bn.forward_with(x.clone(), Some(r.clone()), true)
            } else {
                burn::tensor::activation::relu(bn.forward(x.clone()) + r.clone())
            };
            let loss = (y * up.clone()).sum();
            std::hint::black_box(loss.clone().into_data());
            let forward = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let grads = loss.backward();
            std::hint::black_box(x.grad(&grads).map(|g| g.into_data()));
            let backward = t.elapsed().as_secs_f64() * 1e3;
            let i = if fused { 2 } else { 0 };
            best[i] = best[i].min(forward);
            best[i + 1] = best[i + 1].min(backward);
        }
        println!(
            "| {c} × {h}×{w} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            best[0], best[1], best[2], best[3]
        );
    }
}
