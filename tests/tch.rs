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
            // In both layouts (`model::channels_last`; the running statistics move twice).
            let expected_twice = [expected.clone(), expected];
            for (cl, expected) in [true, false].into_iter().zip(expected_twice) {
                let (x, id) = (input(), identity());
                let y = instrec::model::channels_last::with(cl, || {
                    conv_bn_train(&conv, &bn, &x, id.as_ref(), relu)
                        .expect("the LibTorch path applies")
                });
                let mut names = vec!["output", "dW", "dγ", "dβ", "running mean", "running var"];
                names.extend(track_x.then_some("dx"));
                names.extend(residual.then_some("d residual"));
                // Burn's reference moved its running statistics once; the NCHW call is the
                // second to move these, so they are compared on the first call only.
                fn pick<T>(v: Vec<T>, cl: bool) -> Vec<T> {
                    v.into_iter()
                        .enumerate()
                        .filter(|(k, _)| cl || !(4..6).contains(k))
                        .map(|(_, e)| e)
                        .collect()
                }
                let (names, expected) = (pick(names, cl), pick(expected, cl));
                let ours = pick(observe(y, &conv, &bn, x, id), cl);
                assert_eq!((ours.len(), expected.len()), (names.len(), names.len()));
                for ((what, o), e) in names.iter().zip(&ours).zip(&expected) {
                    let err = rel_err(o, e);
                    assert!(
                        err < 1e-4,
                        "{:?} relu {relu} track_x {track_x} residual {residual} channels-last \
                         {cl}: {what} relative error {err:.2e}",
                        cases()[i]
                    );
                }
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

/// Every trained parameter of `model`, in visiting order (not BatchNorm's running statistics,
/// which clones of a model share).
fn parameters(model: &instrec::model::Model) -> Vec<Vec<f32>> {
    use burn::module::{Module, ModuleVisitor, Param};
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.is_require_grad() {
                self.0.push(values(param.val()));
            }
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// The paper's learning rate and weight decay.
const LR: f64 = 5e-4;
const WD: f32 = 5e-4;

/// Gradient values for parameter tensor `index` at `step`: a cheap hash, in [-1, 1) at scales
/// from 1e-4 to 1.
fn gradient(step: u64, index: u64, n: usize) -> Vec<f32> {
    let seed = step * 1000 + index;
    (0..n as u64)
        .map(|i| {
            let h = (i ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .wrapping_mul(0xBF58_476D_1CE4_E5B9)
                .rotate_left(31)
                .wrapping_mul(0x94D0_49BB_1331_11EB);
            let unit = (h >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            unit * 10f32.powi(-(((h >> 8) % 5) as i32))
        })
        .collect()
}

/// Optimizer `steps` of `model` with `optim` at [`LR`], each with the [`gradient`]s of its step
/// (the same whatever the parameters: network gradients that round differently would flip
/// Adam's sign-like updates where they are near zero).
fn train_steps(
    mut model: instrec::model::Model,
    optim: &mut instrec::train::RunOptimizer,
    steps: std::ops::Range<u64>,
) -> instrec::model::Model {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    struct Fill(GradientsParams, u64, u64);
    impl ModuleVisitor for Fill {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !param.is_require_grad() {
                return;
            }
            let shape = param.val().shape();
            let v = gradient(self.1, self.2, shape.num_elements());
            self.2 += 1;
            // On the parameter's own device, without autodiff, as burn hands gradients over.
            let device = param.val().inner().device();
            let g: Tensor<D> = Tensor::<1>::from_floats(&*v, &device).reshape(shape);
            self.0.register(param.id, g);
        }
    }
    for step in steps {
        let mut fill = Fill(GradientsParams::new(), step, 0);
        model.visit(&mut fill);
        model = optim.step(LR, model, fill.0).unwrap();
    }
    model
}

/// PyTorch's Adam (or AdamW) in f64 from `initial` over steps 0..5 of [`gradient`], with burn's
/// f32 β₁, β₂ and ε, rounded to f32 at the end.
fn reference_adam(initial: &[Vec<f32>], decoupled: bool) -> Vec<Vec<f32>> {
    let (b1, b2, eps) = (0.9f32 as f64, 0.999f32 as f64, 1e-8f32 as f64);
    let wd = WD as f64;
    initial
        .iter()
        .enumerate()
        .map(|(index, p0)| {
            let mut p: Vec<f64> = p0.iter().map(|&v| v as f64).collect();
            let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
            for step in 0..5u64 {
                let t = (step + 1) as i32;
                let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                for (j, g) in gradient(step, index as u64, p.len()).iter().enumerate() {
                    let mut g = *g as f64;
                    if decoupled {
                        p[j] *= 1.0 - LR * wd;
                    } else {
                        g += wd * p[j];
                    }
                    m[j] = b1 * m[j] + (1.0 - b1) * g;
                    v[j] = b2 * v[j] + (1.0 - b2) * g * g;
                    p[j] -= LR / bc1 * m[j] / ((v[j] / bc2).sqrt() + eps);
                }
            }
            p.iter().map(|&v| v as f32).collect()
        })
        .collect()
}

/// The largest relative error over the parameter tensors of two models.
fn parameter_err(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| rel_err(a, b))
        .fold(0.0, f64::max)
}

/// A ResNet18 (62 parameter tensors: 4-D, 2-D and 1-D) on `device`, and its parameters.
fn resnet_on(device: &Device) -> (instrec::model::Model, Vec<Vec<f32>>) {
    use instrec::model::{Arch, Model};
    let model = Model::new(Arch::ResNet18, 11, &device.clone().autodiff());
    let p = parameters(&model);
    (model, p)
}

fn small_resnet() -> (instrec::model::Model, Vec<Vec<f32>>) {
    resnet_on(&Device::libtorch())
}

/// LibTorch's CPU, and its first GPU where it sees one: the optimizer tests run on each.
fn libtorch_devices() -> Vec<Device> {
    use burn::backend::Backend as _;
    let mut v = vec![Device::libtorch()];
    if burn::backend::LibTorch::device_count(0) > 0 {
        v.push(Device::libtorch_cuda(0));
    }
    v
}

/// Adam and AdamW on each of [`libtorch_devices`].
fn optimizer_cases() -> Vec<(Device, instrec::train::OptimizerKind)> {
    use instrec::train::OptimizerKind;
    let kinds = [OptimizerKind::Adam, OptimizerKind::AdamW];
    libtorch_devices()
        .into_iter()
        .flat_map(|d| kinds.map(|k| (d.clone(), k)))
        .collect()
}

#[test]
fn fused_adam_and_adamw_equal_burns_over_five_steps() {
    use instrec::train::{OptimizerKind, RunOptimizer};
    let optimizer = RunOptimizer::new;
    for (device, kind) in optimizer_cases() {
        let (model, initial) = resnet_on(&device);
        let burn = train_steps(model.clone(), &mut optimizer(kind, WD, false), 0..5);
        let mut fused_optim = optimizer(kind, WD, true);
        let fused = train_steps(model, &mut fused_optim, 0..5);
        // Each step: one LibTorch call for all 62 parameter tensors.
        assert_eq!(
            fused_optim.fused_counts(),
            (5, 5 * 62),
            "{kind}: (calls, tensor steps)"
        );
        let (b, f) = (parameters(&burn), parameters(&fused));
        let exact = reference_adam(&initial, kind == OptimizerKind::AdamW);
        let err = parameter_err(&f, &b);
        let (fused_err, burn_err) = (parameter_err(&f, &exact), parameter_err(&b, &exact));
        println!(
            "{device:?} {kind}: fused − burn {err:.2e} relative; against f64 Adam: fused \
             {fused_err:.2e}, burn {burn_err:.2e}"
        );
        // burn computes 1 − β₂ᵗ in f32, where it cancels (3e-6 relative in BN's β after 5 steps);
        // LibTorch's kernel in f64, as PyTorch: it is the exact one, burn's within 1e-5.
        assert!(
            fused_err < 1e-6,
            "{kind}: fused off f64 Adam by {fused_err:.2e}"
        );
        assert!(
            err < 1e-5,
            "{kind}: parameters differ by {err:.2e} relative"
        );
    }
}

#[test]
fn a_fused_run_resumes_exactly_and_from_burns_state() {
    use burn::optim::OptimizerRecord;
    use instrec::train::RunOptimizer;
    let optimizer = RunOptimizer::new;
    for (device, kind) in optimizer_cases() {
        let (model, _) = resnet_on(&device);
        let whole = train_steps(model.clone(), &mut optimizer(kind, WD, true), 0..5);
        let whole = parameters(&whole);
        for first_fused in [true, false] {
            let mut first = optimizer(kind, WD, first_fused);
            let half = train_steps(model.clone(), &mut first, 0..2);
            // Through bytes, as a checkpoint's optim.bpk.
            let bytes = first.to_record().into_bytes().unwrap();
            let record = OptimizerRecord::from_bytes(bytes).unwrap();
            let mut second = optimizer(kind, WD, true).load_record(record);
            let resumed = parameters(&train_steps(half, &mut second, 2..5));
            let err = parameter_err(&resumed, &whole);
            println!("{device:?} {kind}, first two steps fused {first_fused}: {err:.2e}");
            // From burn's state: burn's two steps differ as above.
            let limit = if first_fused { 0.0 } else { 1e-5 };
            assert!(
                err <= limit,
                "{kind}, first two steps fused {first_fused}: the resumed run differs by \
                 {err:.2e} relative"
            );
        }
    }
}

/// Under `--precision bf16` the fused conv → BN → ReLU blocks convolve in bf16 and hand on bf16
/// activations (as PyTorch's autocast): output and gradients stay near fp32's, and do differ
/// from them.
#[test]
fn bf16_blocks_convolve_in_bf16_and_stay_near_fp32() {
    use instrec::backend::Precision;
    use instrec::model::with_precision;
    let device = Device::libtorch().autodiff();
    for i in [0, 2, 4] {
        let (b, cin, h, w, ..) = cases()[i];
        let [(conv_a, bn_a), (conv_b, bn_b)] = layers(i, &device);
        let x0 = Tensor::<4>::random([b, cin, h, w], Distribution::Normal(0.5, 2.0), &device);
        let run = |conv: &Conv2d, bn: &BatchNorm2d, precision| {
            with_precision(precision, || {
                let x = x0.clone().detach().require_grad();
                let y = conv_bn_train(conv, bn, &x, None, true).expect("the LibTorch path applies");
                // Blocks hand each other activations in the precision they convolve in.
                let expected = match precision {
                    Precision::Fp32 => burn::tensor::DType::F32,
                    Precision::Bf16 => burn::tensor::DType::BF16,
                };
                assert_eq!(y.dtype(), expected);
                // The next block takes that activation as it comes (where the shapes chain).
                if conv.weight.dims()[1] == y.dims()[1] {
                    let next = conv_bn_train(conv, bn, &y.clone().detach(), None, true);
                    assert_eq!(next.map(|n| n.dtype()), Some(expected));
                }
                // A fixed random upstream gradient (ones would vanish through BatchNorm).
                let n = y.dims().iter().product::<usize>();
                let r = Tensor::<1>::from_floats(
                    &*(0..n)
                        .map(|j| ((j * 7919 % 1000) as f32 / 500.0) - 1.0)
                        .collect::<Vec<_>>(),
                    &device,
                )
                .reshape(y.dims());
                let grads = (y.clone() * r).sum().backward();
                vec![
                    values(y),
                    values(conv.weight.val().grad(&grads).unwrap()),
                    values(bn.weight.val().grad(&grads).unwrap()),
                    values(x.grad(&grads).unwrap()),
                ]
            })
        };
        let fp32 = run(&conv_a, &bn_a, Precision::Fp32);
        let bf16 = run(&conv_b, &bn_b, Precision::Bf16);
        for (what, (a, e)) in ["output", "dW", "dγ", "dx"]
            .iter()
            .zip(bf16.iter().zip(&fp32))
        {
            let err = rel_err(a, e);
            // The gradients are sums over many positions of terms that BatchNorm makes cancel:
            // bf16's 8 bits move single elements by up to 20 % of the largest, not the direction.
            let dot = |u: &[f32], v: &[f32]| {
                u.iter()
                    .zip(v)
                    .map(|(x, y)| *x as f64 * *y as f64)
                    .sum::<f64>()
            };
            let cos = dot(a, e) / (dot(a, a) * dot(e, e)).sqrt();
            println!(
                "{:?} {what}: bf16 against fp32 {err:.2e} (cosine {cos:.5})",
                cases()[i]
            );
            if *what == "output" {
                assert!(
                    err < 1e-2 && err > 1e-5,
                    "{:?} output: {err:.2e}",
                    cases()[i]
                );
            } else {
                assert!(cos > 0.98, "{:?} {what}: cosine {cos:.5}", cases()[i]);
            }
        }
    }
}

/// bf16 training learns: ResNet18 fits a small problem (each class a band of mel bins, over
/// noise) in bf16 about as fast as in fp32, from the same weights.
#[test]
fn bf16_training_learns_like_fp32() {
    use burn::optim::GradientsParams;
    use instrec::backend::Precision;
    use instrec::model::{bce_with_logits, with_precision};
    use instrec::train::{OptimizerKind, RunOptimizer};
    let device = Device::libtorch().autodiff();
    let (b, n) = (22, 11);
    // Window j is class j % 11: 10 mel bins lit over noise.
    let mut x = vec![0f32; b * 3 * 43 * 128];
    let mut y = vec![0f32; b * n];
    for j in 0..b {
        let c = j % n;
        y[j * n + c] = 1.0;
        for ch in 0..3 {
            for t in 0..43 {
                for m in 0..128 {
                    let noise = ((j * 131 + t * 17 + m * 7) % 97) as f32 / 97.0;
                    let lit = (c * 11..c * 11 + 10).contains(&m);
                    x[((j * 3 + ch) * 43 + t) * 128 + m] = if lit { 2.0 } else { -6.0 + noise };
                }
            }
        }
    }
    let x = Tensor::<1>::from_floats(&*x, &device).reshape([b, 3, 43, 128]);
    let y = Tensor::<1>::from_floats(&*y, &device).reshape([b, n]);
    let (model, _) = small_resnet();
    let losses = |precision| {
        let mut model = model.clone();
        let mut optim = RunOptimizer::new(OptimizerKind::Adam, WD, true);
        (0..12)
            .map(|_| {
                with_precision(precision, || {
                    let loss = bce_with_logits(model.forward(x.clone()), y.clone());
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    model = optim.step(1e-3, model.clone(), grads).unwrap();
                    values(loss)[0]
                })
            })
            .collect::<Vec<f32>>()
    };
    let (fp32, bf16) = (losses(Precision::Fp32), losses(Precision::Bf16));
    println!("fp32 losses {fp32:?}\nbf16 losses {bf16:?}");
    let (f, h) = (fp32[11], bf16[11]);
    assert!(
        h.is_finite() && h < 0.5 * bf16[0],
        "bf16 did not learn: {bf16:?}"
    );
    assert!(h < 1.5 * f + 0.02, "bf16 ends at {h:.4}, fp32 at {f:.4}");
}

/// The loss as one LibTorch node equals burn's composed ops: value and gradient.
#[test]
fn bce_with_logits_through_libtorch_matches_burns_ops() {
    use instrec::model::torch::bce_with_logits_train;
    let device = Device::libtorch().autodiff();
    let z0 = Tensor::<2>::random([64, 11], Distribution::Normal(0.0, 4.0), &device);
    let y = Tensor::<2>::random([64, 11], Distribution::Bernoulli(0.2), &device);
    let run = |fused: bool| {
        let z = z0.clone().detach().require_grad();
        let loss = if fused {
            bce_with_logits_train(&z, &y).expect("the LibTorch path applies")
        } else {
            // burn's ops, as model::bce_with_logits composes them elsewhere.
            let softplus = z.clone().abs().neg().exp().log1p();
            (z.clone().clamp_min(0.0) - z.clone() * y.clone() + softplus).mean()
        };
        let grads = loss.clone().backward();
        (values(loss), values(z.grad(&grads).unwrap()))
    };
    let ((l_ref, g_ref), (l, g)) = (run(false), run(true));
    let (le, ge) = (rel_err(&l, &l_ref), rel_err(&g, &g_ref));
    println!("loss {} vs {}: {le:.2e}; gradient {ge:.2e}", l[0], l_ref[0]);
    assert!(le < 1e-6 && ge < 1e-5, "loss {le:.2e}, gradient {ge:.2e}");
    // Not on other backends.
    let flex = Tensor::<2>::zeros([2, 11], &Device::flex().autodiff());
    assert!(bce_with_logits_train(&flex, &flex).is_none());
}

/// Whether each 4-D trained parameter (the convolutions' kernels) of `model` is stored
/// channels-last on LibTorch.
fn kernels_channels_last(model: &instrec::model::Model) -> Vec<bool> {
    use burn::module::{Module, ModuleVisitor, Param};
    struct Layouts(Vec<bool>);
    impl ModuleVisitor for Layouts {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 4 && param.is_require_grad() {
                let t = param
                    .val()
                    .inner()
                    .try_into_primitive::<burn::backend::LibTorch>();
                self.0
                    .push(t.is_ok_and(|t| instrec::model::channels_last::is(&t.tensor)));
            }
        }
    }
    let mut l = Layouts(Vec::new());
    model.visit(&mut l);
    l.0
}

/// LibTorch training convolves channels-last by default (`model::channels_last`): a ResNet18's
/// loss equals NCHW's, the fused optimizer then keeps the kernels channels-last (NCHW training
/// leaves them NCHW), and kernels stored so give the same loss in either layout. (Each block's
/// output and gradients are checked in both layouts above; a whole random-init ResNet18's fp32
/// gradients are no test of a layout: PyTorch's own, NCHW or channels-last, lie up to 0.15
/// relative from its f64 ones on such batches.)
#[test]
fn channels_last_training_equals_nchw_and_keeps_the_kernels_channels_last() {
    use burn::optim::GradientsParams;
    use instrec::model::{bce_with_logits, channels_last};
    use instrec::train::{OptimizerKind, RunOptimizer};
    let device = Device::libtorch().autodiff();
    let x = Tensor::<4>::random([6, 3, 43, 128], Distribution::Normal(-8.0, 3.0), &device);
    let y = Tensor::<2>::random([6, 11], Distribution::Bernoulli(0.2), &device);
    let (model, _) = small_resnet();
    let loss = |m: &instrec::model::Model| bce_with_logits(m.forward(x.clone()), y.clone());
    let step = |cl: bool| {
        channels_last::with(cl, || {
            let l = loss(&model);
            let grads = GradientsParams::from_grads(l.backward(), &model);
            let mut optim = RunOptimizer::new(OptimizerKind::Adam, WD, true);
            (values(l)[0], optim.step(LR, model.clone(), grads).unwrap())
        })
    };
    let ((cl, stepped_cl), (nchw, stepped_nchw)) = (step(true), step(false));
    let close = |what: &str, a: f32, b: f32| {
        let err = ((a - b) / b).abs();
        println!("{what}: losses {a} and {b}, {err:.2e} relative");
        assert!(err < 1e-5, "{what}: losses {a} and {b}");
    };
    close("first step", cl, nchw);
    assert!(kernels_channels_last(&stepped_cl).iter().all(|&c| c));
    // The stem's 7×7 kernel on 3 channels (1×1 kernels are both layouts at once).
    assert!(!kernels_channels_last(&stepped_nchw)[0]);
    let again = |cl: bool| channels_last::with(cl, || values(loss(&stepped_cl))[0]);
    close("kernels stored channels-last", again(true), again(false));
}

/// LibTorch inference runs channels-last too (`channels_last::inference_input`): a ResNet18's
/// logits equal NCHW's; training batches (autodiff) are left to the training blocks.
#[test]
fn channels_last_inference_equals_nchw() {
    use burn::module::Module;
    use instrec::model::{Arch, Model, channels_last};
    let device = Device::libtorch();
    let model = Model::new(Arch::ResNet18, 11, &device.clone().autodiff()).valid();
    let x = Tensor::<4>::random([5, 3, 43, 128], Distribution::Normal(-8.0, 3.0), &device);
    let primitive = |t: Tensor<4>| t.try_into_primitive::<burn::backend::LibTorch>().unwrap();
    let converted = channels_last::with(true, || channels_last::inference_input(x.clone()));
    assert!(channels_last::is(&primitive(converted).tensor));
    let kept = channels_last::with(false, || channels_last::inference_input(x.clone()));
    assert!(!channels_last::is(&primitive(kept).tensor));
    let tracked = Tensor::<4>::zeros([2, 3, 43, 128], &device.clone().autodiff());
    let tracked = channels_last::with(true, || channels_last::inference_input(tracked));
    assert!(!channels_last::is(&primitive(tracked.inner()).tensor));
    let logits = |cl| channels_last::with(cl, || values(model.forward(x.clone())));
    let (cl, nchw) = (logits(true), logits(false));
    let err = rel_err(&cl, &nchw);
    println!("channels-last against NCHW logits: {err:.2e} relative");
    assert!(err < 1e-5, "logits differ by {err:.2e}");
}

/// ResNet's head (global mean, then the linear layer) as one LibTorch node equals burn's ops:
/// the logits and the gradients of the activations, the weight and the bias, from f32 and from
/// bf16 activations (pooled in f32 either way).
#[test]
fn pooled_head_through_libtorch_matches_burns_ops() {
    use burn::nn::LinearConfig;
    use instrec::model::torch::pool_linear_train;
    let device = Device::libtorch().autodiff();
    let fc = LinearConfig::new(512, 11).init(&device);
    let x0 = Tensor::<4>::random([8, 512, 2, 4], Distribution::Normal(0.5, 1.0), &device);
    let r = Tensor::<2>::random([8, 11], Distribution::Normal(0.0, 1.0), &device);
    for dtype in [burn::tensor::DType::F32, burn::tensor::DType::BF16] {
        let run = |fused: bool| {
            let x = x0.clone().cast(dtype).detach().require_grad();
            let logits = if fused {
                pool_linear_train(&x, &fc).expect("the LibTorch path applies")
            } else {
                let pooled = x
                    .clone()
                    .cast(burn::tensor::DType::F32)
                    .mean_dim(3)
                    .mean_dim(2);
                fc.forward(pooled.reshape([8, 512]))
            };
            let grads = (logits.clone() * r.clone()).sum().backward();
            let dx = x.grad(&grads).unwrap().cast(burn::tensor::DType::F32);
            vec![
                values(logits),
                values(dx),
                values(fc.weight.val().grad(&grads).unwrap()),
                values(fc.bias.as_ref().unwrap().val().grad(&grads).unwrap()),
            ]
        };
        let (reference, ours) = (run(false), run(true));
        for (what, (o, e)) in ["logits", "dx", "dW", "db"]
            .iter()
            .zip(ours.iter().zip(&reference))
        {
            let err = rel_err(o, e);
            println!("{dtype:?} {what}: {err:.2e}");
            assert!(err < 1e-5, "{dtype:?} {what}: {err:.2e}");
        }
    }
    // Not on other backends.
    let flex = Device::flex().autodiff();
    let fc = LinearConfig::new(4, 11).init(&flex);
    assert!(pool_linear_train(&Tensor::<4>::zeros([2, 4, 1, 1], &flex), &fc).is_none());
}
