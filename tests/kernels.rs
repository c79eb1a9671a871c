//! instrec's own CPU kernels against burn's paths on random inputs: the convolution forward
//! and its two gradients (model::kernels) for the ResNet shapes, strides 1 and 2, with and without
//! padding, over one and several image chunks, by im2col and by Winograd.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use instrec::model::kernels;

mod common;
use common::{RESNET18_CONVS, rel_err, values};

type Case = common::ConvCase;

/// Beside common::RESNET18_CONVS.
const MORE_CASES: &[Case] = &[
    // ResNet18's stage-3 → 4 downsampling.
    (4, 256, 3, 8, 512, 3, 2, 1),
    // ResNet50's 1×1 reduce.
    (2, 256, 6, 16, 64, 1, 1, 0),
    // Odd shapes: no padding, even kernel, padding wider than the stride.
    (3, 5, 7, 9, 4, 3, 1, 0),
    (2, 3, 6, 5, 4, 2, 2, 1),
    (1, 2, 5, 5, 3, 3, 3, 2),
    // Stride 2 on narrow planes (im2col's and col2im's pairs down to one column): the stem's
    // 7×7 on an odd width, a 3×3 on a plane two wide.
    (2, 3, 9, 3, 4, 7, 2, 3),
    (1, 2, 4, 2, 3, 3, 2, 1),
    // Planes smaller than the kernel's reach (`instrec forward` takes any frames × mels): taps
    // that read no input column at all, and a unit-stride tap shifted past the whole plane.
    (2, 8, 1, 1, 4, 3, 1, 1),
    (1, 3, 1, 1, 4, 7, 2, 3),
    (2, 5, 2, 3, 4, 7, 2, 3),
    (1, 4, 1, 2, 3, 5, 1, 2),
    // Several chunks: 64·9 rows × 200·200 positions exceed one chunk per image.
    (2, 64, 200, 200, 4, 3, 1, 1),
    // Stride 1 over larger planes: an even kernel, no padding, 5×5.
    (2, 3, 20, 30, 4, 2, 1, 1),
    (3, 4, 30, 40, 5, 3, 1, 0),
    (2, 6, 24, 33, 7, 5, 1, 2),
    // Winograd (3×3, stride 1, padding 1, ≥ 64 channels). F(4×4, 3×3): stage 2, odd sides
    // (cut-off tiles), unequal channels, several chunks of one image. F(2×2, 3×3), where planes
    // are too small for 4×4 tiles: a 1×1 and a 3×1 plane, and two chunks of two rows with an odd
    // width (ResNet18's stage 1 at 64 channels is in RESNET18_CONVS).
    (2, 128, 6, 16, 128, 3, 1, 1),
    (3, 128, 5, 7, 130, 3, 1, 1),
    (3, 128, 40, 41, 128, 3, 1, 1),
    (2, 128, 1, 1, 128, 3, 1, 1),
    (1, 131, 3, 1, 128, 3, 1, 1),
    (2, 128, 2, 1001, 128, 3, 1, 1),
    // 1×1 stride 1, a GEMM per image (≥ 64 positions): ResNet50's stage-1 expand, exactly 64
    // positions over an odd batch (uneven weight-gradient parts), one image; 63 positions (im2col).
    (3, 64, 11, 32, 256, 1, 1, 0),
    (3, 7, 8, 8, 5, 1, 1, 0),
    (1, 4, 9, 9, 3, 1, 1, 0),
    (2, 16, 7, 9, 8, 1, 1, 0),
    // Eight chunks and more, taken side by side, one thread each (in a 2-thread pool, see
    // `two_threads`): ResNet18's stage 1 at batch 16 (2 images a chunk), stride 2 and stride 1
    // over odd batches (the last chunk one image short).
    (16, 64, 11, 32, 64, 3, 1, 1),
    (17, 8, 100, 120, 16, 3, 2, 1),
    (17, 8, 50, 60, 16, 3, 1, 1),
];

/// `f` on a pool of two threads, as on this project's machines: how a convolution splits its
/// work depends on the thread count, and the cases above are sized for two.
fn two_threads(f: impl FnOnce() + Send) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a 2-thread pool")
        .install(f)
}

fn layer(case: &Case, bias: bool, device: &Device) -> Conv2d {
    let &(_, cin, _, _, cout, k, s, p) = case;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(bias)
        .init(device)
}

fn options(case: &Case) -> ConvOptions<2> {
    let &(_, _, _, _, _, _, s, p) = case;
    ConvOptions::new([s, s], [p, p], [1, 1], 1)
}

#[test]
fn conv_forward_matches_burn_with_and_without_bias_and_relu() {
    two_threads(conv_forward_matches_burn);
}

fn conv_forward_matches_burn() {
    let device = Device::flex();
    for case in RESNET18_CONVS.iter().chain(MORE_CASES) {
        let &(b, cin, h, w, ..) = case;
        for bias in [false, true] {
            let layer = layer(case, bias, &device);
            let x = Tensor::<4>::random([b, cin, h, w], Distribution::Normal(0.0, 1.0), &device);
            let reference = conv2d(
                x.clone(),
                layer.weight.val(),
                layer.bias.as_ref().map(|b| b.val()),
                options(case),
            );
            let ours = kernels::conv2d(&layer, x.clone(), false);
            assert_eq!(ours.dims(), reference.dims(), "{case:?}");
            // F(4×4, 3×3) rounds about ten times more than a GEMM (its transforms' coefficients
            // reach 8): up to 1e-5 measured; a wrong index or tile is off by O(1).
            let e = rel_err(&values(ours), &values(reference.clone()));
            assert!(
                e < 5e-5,
                "{case:?} bias {bias}: forward relative error {e:.2e}"
            );
            let ours = values(kernels::conv2d(&layer, x, true));
            let e = rel_err(&ours, &values(burn::tensor::activation::relu(reference)));
            assert!(
                e < 5e-5,
                "{case:?} bias {bias}: fused ReLU relative error {e:.2e}"
            );
        }
    }
}

#[test]
fn conv_gradients_match_burns_autodiff() {
    two_threads(conv_gradients_match_burn);
}

fn conv_gradients_match_burn() {
    let device = Device::flex().autodiff();
    for case in RESNET18_CONVS.iter().chain(MORE_CASES) {
        let &(b, cin, h, w, ..) = case;
        let layer = layer(case, false, &device);
        let x0 = Tensor::<4>::random([b, cin, h, w], Distribution::Normal(0.0, 1.0), &device);
        // A random linear function of the output, so every output gradient differs.
        let r = Tensor::<4>::random(
            conv2d(x0.clone(), layer.weight.val(), None, options(case)).dims(),
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let probe = |y: Tensor<4>| (y * r.clone()).sum();
        let x = x0.clone().detach().require_grad();
        let weight = layer.weight.val().detach().require_grad();
        let loss = probe(conv2d(x.clone(), weight.clone(), None, options(case)));
        let grads = loss.backward();
        let (dx_ref, dw_ref) = (x.grad(&grads).unwrap(), weight.grad(&grads).unwrap());

        let x = x0.detach().require_grad();
        let mut ours = layer.clone();
        ours.weight = Param::from_tensor(layer.weight.val().detach().require_grad());
        let loss = probe(kernels::conv2d(&ours, x.clone(), false));
        let grads = loss.backward();
        let dx = x.grad(&grads).unwrap();
        let dw = ours.weight.val().grad(&grads).unwrap();

        // Each gradient sums up to 80,000 products in f32 in another order than burn: ~√n·ε
        // relative apart (≈2e-5), where a wrong index or a missed chunk is off by O(1).
        let e = rel_err(&values(dx), &values(dx_ref));
        assert!(e < 1e-4, "{case:?}: input gradient relative error {e:.2e}");
        let e = rel_err(&values(dw), &values(dw_ref));
        assert!(e < 1e-4, "{case:?}: weight gradient relative error {e:.2e}");
    }
}

#[test]
fn conv_gradient_is_the_numerical_derivative() {
    // f(x) = Σ conv(x)·r: its derivative along a direction d equals (f(x + εd) − f(x − εd)) / 2ε.
    let device = Device::flex().autodiff();
    let case = &(2, 3, 7, 6, 4, 3, 2, 1);
    let layer = layer(case, false, &device);
    let x = Tensor::<4>::random([2, 3, 7, 6], Distribution::Normal(0.0, 1.0), &device);
    let r = Tensor::<4>::random([2, 4, 4, 3], Distribution::Normal(0.0, 1.0), &device);
    let d = Tensor::<4>::random([2, 3, 7, 6], Distribution::Normal(0.0, 1.0), &device);
    let xg = x.clone().require_grad();
    let grads = (kernels::conv2d(&layer, xg.clone(), false) * r.clone())
        .sum()
        .backward();
    let analytic = (xg.grad(&grads).unwrap() * d.clone().inner())
        .sum()
        .into_scalar::<f64>();
    let eps = 1e-2;
    let f = |x: Tensor<4>| {
        (kernels::conv2d(&layer, x, false) * r.clone())
            .sum()
            .into_scalar::<f64>()
    };
    let numeric = (f(x.clone() + d.clone() * eps) - f(x - d * eps)) / (2.0 * eps);
    let e = (analytic - numeric).abs() / analytic.abs().max(1.0);
    assert!(e < 1e-3, "analytic {analytic} vs numeric {numeric}");
}

#[test]
fn max_pool_matches_burn() {
    use burn::nn::pool::MaxPool2dConfig;
    let device = Device::flex();
    // (batch, channels, h, w, kernel, stride, pad): ResNet's stem pool, then odd shapes.
    for &(b, c, h, w, k, s, p) in &[
        (3, 64, 22, 64, 3, 2, 1),
        (2, 5, 7, 9, 3, 2, 1),
        (2, 3, 6, 5, 2, 2, 0),
        (1, 2, 5, 5, 3, 1, 1),
        (1, 4, 11, 32, 3, 3, 0),
    ] {
        let pool = MaxPool2dConfig::new([k, k])
            .with_strides([s, s])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .init();
        let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let expected = pool.forward(x.clone());
        let out_dims = expected.dims();
        let ours = kernels::max_pool2d(&pool, x);
        assert_eq!(
            ours.dims(),
            expected.dims(),
            "{b} {c} {h} {w} k{k} s{s} p{p}"
        );
        assert_eq!(
            values(ours),
            values(expected),
            "{b} {c} {h} {w} k{k} s{s} p{p}"
        );

        // Training: the same output and the gradient routed to the same maxima, also where
        // rounding makes ties (the first maximum in scan order takes it, as in PyTorch).
        let ad = Device::flex().autodiff();
        for ties in [false, true] {
            let x0 = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &ad);
            let x0 = if ties { x0.round() } else { x0 };
            let r = Tensor::<4>::random(out_dims, Distribution::Normal(0.0, 1.0), &ad);
            let x = x0.clone().require_grad();
            let y_ref = pool.forward(x.clone());
            let dx_ref = x
                .grad(&(y_ref.clone() * r.clone()).sum().backward())
                .unwrap();
            let x = x0.require_grad();
            let y = kernels::max_pool2d(&pool, x.clone());
            let dx = x.grad(&(y.clone() * r).sum().backward()).unwrap();
            let what = format!("{b} {c} {h} {w} k{k} s{s} p{p} ties {ties}");
            assert_eq!(values(y), values(y_ref), "{what}: output");
            assert_eq!(values(dx), values(dx_ref), "{what}: gradient");
        }
    }
}

#[test]
fn max_pool_keeps_nan_and_routes_its_gradient_to_the_last_nan() {
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::TensorData;
    // PyTorch's max pooling takes a value when it is larger or NaN, scanning each window row by
    // row: a NaN wins its windows, and of two NaNs in one window the later takes the gradient.
    let pool = MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init();
    let (h, w) = (5, 11);
    let mut x: Vec<f32> = (0..h * w).map(|i| ((i * 7) % 13) as f32).collect();
    // (1, 3) lies in the windows of outputs (0..2, 1..3), (2, 3) in those of (1, 1..3).
    x[w + 3] = f32::NAN;
    x[2 * w + 3] = f32::NAN;
    let ad = Device::flex().autodiff();
    let x = Tensor::<4>::from_data(TensorData::new(x, [1, 1, h, w]), &ad).require_grad();
    let y = kernels::max_pool2d(&pool, x.clone());
    let dx = values(x.grad(&y.clone().sum().backward()).unwrap());
    let y = values(y);
    let o_w = 6;
    for (oh, ow) in [(0, 2), (1, 2), (0, 1), (1, 1)] {
        assert!(y[oh * o_w + ow].is_nan(), "output ({oh}, {ow}) {y:?}");
    }
    assert!(y.iter().filter(|v| v.is_nan()).count() == 4, "{y:?}");
    // Windows (1, 1) and (1, 2) hold both NaNs and route their gradient to the later one.
    assert_eq!(dx[2 * w + 3], 2.0, "{dx:?}");
    assert_eq!(dx[w + 3], 2.0, "{dx:?}");
}

#[test]
fn batchnorm_with_residual_and_relu_in_one_node_matches_the_ops_one_by_one() {
    use burn::module::Param;
    use instrec::model::norm::BatchNorm2d;
    let device = Device::flex().autodiff();
    for (&[b, c, h, w], residual, relu) in [
        (&[4, 64, 11, 32], true, true),
        (&[3, 5, 7, 9], false, true),
        (&[2, 512, 2, 4], true, false),
        (&[1, 3, 1, 1], true, true),
    ] {
        let mut bn = BatchNorm2d::new(c, &device);
        let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.3), &device);
        let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.3), &device);
        bn.weight = Param::from_tensor(gamma.require_grad());
        bn.bias = Param::from_tensor(beta.require_grad());
        let x0 = Tensor::<4>::random([b, c, h, w], Distribution::Normal(2.0, 3.0), &device);
        let r0 = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let up = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        // [output, dx, dγ, dβ, dresidual] of bn → (+ residual) → (ReLU).
        let run = |fused: bool| {
            let (x, r) = (x0.clone().require_grad(), r0.clone().require_grad());
            let y = if fused {
                bn.forward_with(x.clone(), residual.then(|| r.clone()), relu)
            } else {
                let y = bn.forward(x.clone());
                let y = if residual { y + r.clone() } else { y };
                if relu {
                    burn::tensor::activation::relu(y)
                } else {
                    y
                }
            };
            let grads = (y.clone() * up.clone()).sum().backward();
            [
                values(y),
                values(x.grad(&grads).unwrap()),
                values(bn.weight.val().grad(&grads).unwrap()),
                values(bn.bias.val().grad(&grads).unwrap()),
                r.grad(&grads).map_or_else(Vec::new, values),
            ]
        };
        let (ours, expected) = (run(true), run(false));
        if relu && b * h * w > 1 {
            // The ReLU cut some of the outputs, so its mask is exercised (with one value per
            // channel the output is β + r, whose three signs may agree).
            assert!(ours[0].contains(&0.0) && ours[0].iter().any(|&v| v > 0.0));
        }
        for (what, (o, e)) in ["output", "dx", "dγ", "dβ", "dresidual"]
            .iter()
            .zip(ours.iter().zip(&expected))
        {
            assert_eq!(o.len(), e.len(), "[{b}, {c}, {h}, {w}] {what}");
            let err = rel_err(o, e);
            assert!(
                err < 1e-6,
                "[{b}, {c}, {h}, {w}] residual {residual} relu {relu} {what}: relative error {err:.2e}"
            );
        }
    }
}

#[test]
fn fused_batchnorm_training_matches_burns_op_and_its_gradients() {
    use burn::module::Param;
    use instrec::model::norm::BatchNorm2d;
    let device = Device::flex().autodiff();
    // Inputs far from zero too (mean 100, deviation 0.5), where variance as E[x²] − E[x]² in
    // f32 would cancel (measured: that mutation fails here, relative error 5.7e-4).
    for &([b, c, h, w], mu, sigma) in &[
        ([4, 64, 11, 32], 2.0, 3.0),
        ([3, 5, 7, 9], 2.0, 3.0),
        ([2, 512, 2, 4], 2.0, 3.0),
        ([1, 3, 1, 1], 2.0, 3.0),
        ([8, 6, 3, 5], 100.0, 0.5),
    ] {
        let mut bn = BatchNorm2d::new(c, &device);
        let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.3), &device);
        let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.3), &device);
        bn.weight = Param::from_tensor(gamma.clone().require_grad());
        bn.bias = Param::from_tensor(beta.clone().require_grad());
        let x0 = Tensor::<4>::random([b, c, h, w], Distribution::Normal(mu, sigma), &device);
        let r = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);

        // burn's own op on the same inputs.
        let (x, g, be) = (
            x0.clone().require_grad(),
            gamma.clone().require_grad(),
            beta.clone().require_grad(),
        );
        let out = burn::tensor::module::batch_norm_train(x.clone(), g.clone(), be.clone(), 1e-5);
        let grads = (out.output.clone() * r.clone()).sum().backward();
        let expected = [
            values(out.output),
            values(x.grad(&grads).unwrap()),
            values(g.grad(&grads).unwrap()),
            values(be.grad(&grads).unwrap()),
        ];

        let x = x0.require_grad();
        let y = bn.forward(x.clone());
        let grads = (y.clone() * r).sum().backward();
        let ours = [
            values(y),
            values(x.grad(&grads).unwrap()),
            values(bn.weight.val().grad(&grads).unwrap()),
            values(bn.bias.val().grad(&grads).unwrap()),
        ];
        for (what, (o, e)) in ["output", "dx", "dγ", "dβ"]
            .iter()
            .zip(ours.iter().zip(&expected))
        {
            let err = rel_err(o, e);
            assert!(
                err < 1e-4,
                "[{b}, {c}, {h}, {w}] {what}: relative error {err:.2e}"
            );
        }
    }
}
