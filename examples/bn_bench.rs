//! A residual block's end in training, `relu(bn(x) + identity)`, forward and backward on Flex
//! under autodiff (batch 64, ResNet shapes of a 43×128 window): as one node
//! (`BatchNorm2d::forward_with`) and as three ops (BN, add, ReLU), interleaved; the best of 8.
//!
//!     cargo run --release --example bn_bench

use burn::tensor::{Device, Distribution, Tensor};
use instrec::model::norm::BatchNorm2d;

#[path = "shared/timing.rs"]
mod timing;
use timing::Best;

fn main() {
    let device = Device::flex().autodiff();
    println!("| channels × plane | three ops: forward | backward | one node: forward | backward |");
    println!("|---|---|---|---|---|");
    for (c, h, w) in [(64, 11, 32), (256, 11, 32), (512, 6, 16), (2048, 2, 4)] {
        let bn = BatchNorm2d::new(c, &device);
        let x0 = Tensor::<4>::random([64, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let r0 = Tensor::<4>::random([64, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let up = Tensor::<4>::random([64, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let mut best = Best::new();
        for run in 0..16 {
            let fused = run % 2 == 1;
            let (x, r) = (
                x0.clone().detach().require_grad(),
                r0.clone().detach().require_grad(),
            );
            let times = timing::forward_backward(&x, || {
                let y = if fused {
                    bn.forward_with(x.clone(), Some(r.clone()), true)
                } else {
                    burn::tensor::activation::relu(bn.forward(x.clone()) + r.clone())
                };
                (y * up.clone()).sum()
            });
            best.keep(fused, times);
        }
        println!("{}", best.row(&format!("{c} × {h}×{w}")));
    }
}
