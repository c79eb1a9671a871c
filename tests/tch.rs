//! The LibTorch training path (model::torch: conv → BN → ReLU as one LibTorch autograd graph)
//! against burn's own ops on the same backend: outputs, all four gradients and the running
//! statistics. Built only with `--features tch` (CI builds without it):
//! `LIBTORCH_USE_PYTORCH=1 cargo test --release --features tch --test tch`.
#![cfg(feature = "tch")]
#![allow(deprecated)]

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Distribution, Tensor};
use instrec::model::norm::BatchNorm2d;
use instrec::model::torch::conv_bn_train;

mod common;
use common::{rel_err, values};

/// ResNet18's convolutions and an odd shape (even kernel, stride 2).
fn cases() -> Vec<common::ConvCase> {
    let mut v = common::RESNET18_CONVS.to_vec();
    v.push((3, 5, 7, 9, 4, 2, 2, 1));
    v
}

/// The same conv and BN weights twice, each pair with its own running statistics.
fn layers(case: usize, device: &Device) -> [(Conv2d, BatchNorm2d); 2] {
    let (_, cin, _, _, cout, k, s, p) = cases()[case];
    let conv = Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device);
    let gamma = Tensor::<1>::random([cout], Distribution::Normal(1.0, 0.3), device);
    let beta = Tensor::<1>::random([cout], Distribution::Normal(0.0, 0.3), device);
    let make = || {
        let mut c = conv.clone();
        c.weight = Param::from_tensor(conv.weight.val().detach().require_grad());
        let mut bn = BatchNorm2d::new(cout, device);
        bn.weight = Param::from_tensor(gamma.clone().detach().require_grad());
        bn.bias = Param::from_tensor(beta.clone().detach().require_grad());
        (c, bn)
    };
    [make(), make()]
}

#[test]
fn conv_bn_relu_through_libtorch_autograd_matches_burns_ops() {
    let device = Device::libtorch().autodiff();
    for (i, &(b, cin, h, w, ..)) in cases().iter().enumerate() {
        for (relu, track_x, residual) in [
            (true, true, false),
            (false, true, false),
            (true, false, false),
            (true, true, true),
        ] {
            let [(conv_ref, bn_ref), (conv, bn)] = layers(i, &device);
            let x0 = Tensor::<4>::random([b, cin, h, w], Distribution::Normal(0.5, 2.0), &device);
            let input = || {
                let x = x0.clone().detach();
                if track_x { x.require_grad() } else { x }
            };
            let out_dims = conv_ref.forward(x0.clone()).dims();
            let id0 = Tensor::<4>::random(out_dims, Distribution::Normal(0.0, 1.0), &device);
            let identity = || residual.then(|| id0.clone().detach().require_grad());
            let reference = |x: Tensor<4>, id: Option<Tensor<4>>| {
                let y = bn_ref.forward(conv_ref.forward(x));
                let y = match id {
                    Some(id) => y + id,
                    None => y,
                };
                if relu {
                    burn::tensor::activation::relu(y)
                } else {
                    y
                }
            };
            let r = Tensor::<4>::random(out_dims, Distribution::Normal(0.0, 1.0), &device);
            // The output, the parameters' gradients and running statistics, then dx and the
            // residual's gradient where they are tracked, for ⟨output, r⟩.
            let observe = |y: Tensor<4>, conv: &Conv2d, bn: &BatchNorm2d, x, id: Option<_>| {
                let grads = (y.clone() * r.clone()).sum().backward();
                let grad = |t: Tensor<1>| values(t.grad(&grads).unwrap());
                let mut seen = vec![
                    values(y),
                    values(conv.weight.val().grad(&grads).unwrap()),
                    grad(bn.weight.val()),
                    grad(bn.bias.val()),
                    values(bn.running_mean.value_sync()),
                    values(bn.running_var.value_sync()),
                ];
                let x: Tensor<4> = x;
                match x.grad(&grads) {
                    Some(dx) => seen.push(values(dx)),
                    None => assert!(!track_x, "x is tracked but has no gradient"),
                }
                if let Some(id) = id {
                    let id: Tensor<4> = id;
                    seen.push(values(id.grad(&grads).unwrap()));
                }
                seen
            };
            let (x, id) = (input(), identity());
            let expected = observe(reference(x.clone(), id.clone()), &conv_ref, &bn_ref, x, id);
            let (x, id) = (input(), identity());
            let y = conv_bn_train(&conv, &bn, &x, id.as_ref(), relu)
                .expect("the LibTorch path applies");
            let ours = observe(y, &conv, &bn, x, id);
            let mut names = vec!["output", "dW", "dγ", "dβ", "running mean", "running var"];
            names.extend(track_x.then_some("dx"));
            names.extend(residual.then_some("d residual"));
            assert_eq!((ours.len(), expected.len()), (names.len(), names.len()));
            for ((what, o), e) in names.iter().zip(&ours).zip(&expected) {
                let err = rel_err(o, e);
                assert!(
                    err < 1e-4,
                    "{:?} relu {relu} track_x {track_x} residual {residual}: {what} relative \
                     error {err:.2e}",
                    cases()[i]
                );
            }
        }
    }
}

#[test]
fn the_libtorch_path_stays_out_of_inference_and_other_backends() {
    use burn::module::Module;
    let [(conv, bn), _] = layers(1, &Device::flex().autodiff());
    let x = Tensor::<4>::zeros([2, 64, 11, 32], &Device::flex().autodiff());
    assert!(conv_bn_train(&conv, &bn, &x, None, true).is_none());
    let [(conv, bn), _] = layers(1, &Device::libtorch().autodiff());
    let (conv, bn) = (conv.valid(), bn.valid());
    let x = Tensor::<4>::zeros([2, 64, 11, 32], &Device::libtorch());
    assert!(conv_bn_train(&conv, &bn, &x, None, true).is_none());
}

#[test]
fn resnet_training_steps_on_libtorch_run_and_move_the_running_stats() {
    use burn::optim::{AdamConfig, GradientsParams};
    use instrec::model::{Arch, Model, bce_with_logits};
    let device = Device::libtorch().autodiff();
    let mut model = Model::new(Arch::ResNet18, 11, &device);
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let x = Tensor::<4>::random([4, 3, 43, 128], Distribution::Normal(-8.0, 3.0), &device);
    let y = Tensor::<2>::random([4, 11], Distribution::Bernoulli(0.2), &device);
    let stem_mean = |m: &Model| match m {
        Model::ResNet(r) => values(r.bn1.running_mean.value_sync()),
        _ => unreachable!(),
    };
    let mut before = stem_mean(&model);
    // Each step saves BN's running statistics in LibTorch's graph and then hands burn copies:
    // burn merging its own in place must not touch the saved ones (LibTorch checks versions).
    for step in 0..3 {
        let loss = bce_with_logits(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(5e-4, model, grads);
        let l = values(loss)[0];
        assert!(l.is_finite(), "step {step}: loss {l}");
        let after = stem_mean(&model);
        assert_ne!(
            after, before,
            "step {step}: the stem's running mean did not move"
        );
        before = after;
    }
}
