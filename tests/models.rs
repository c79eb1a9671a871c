//! ResNet18/50 against PyTorch (../shared/fixtures/resnet), the Han baseline, BatchNorm, weight
//! import errors, and the model bundle.

mod common;

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use instrec::model::import::{Head, load_resnet_pth};
use instrec::model::norm::BatchNorm2d;
use instrec::model::{Arch, Model, ResNet, ResNetDepth};
use instrec::npy::NpyArray;

fn resnet_fixtures() -> PathBuf {
    let p = common::shared().join("fixtures/resnet");
    assert!(p.is_dir(), "{} is missing", p.display());
    p
}

fn tensor4(a: &NpyArray, device: &Device) -> Tensor<4> {
    let s: [usize; 4] = a.shape.clone().try_into().expect("4-D input");
    Tensor::from_data(TensorData::new(a.data.clone(), s), device)
}

fn rel_err(ours: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(ours.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let max = ours
        .iter()
        .zip(expected)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
    max / scale
}

fn check_fixture(arch: &str, depth: ResNetDepth, device: &Device) {
    let dir = resnet_fixtures();
    let model = ResNet::new(depth, 1000, device);
    let model = load_resnet_pth(
        model,
        &dir.join(format!("{arch}-random-seed11.pth")),
        Head::Load,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let input = NpyArray::read(&dir.join(format!("{arch}-seed11.input.npy"))).unwrap();
    let x = tensor4(&input, device);
    let pooled = model
        .features(x.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let logits = model.forward(x).into_data().try_to_vec::<f32>().unwrap();
    let exp_logits = NpyArray::read(&dir.join(format!("{arch}-seed11.logits.npy"))).unwrap();
    let exp_pooled = NpyArray::read(&dir.join(format!("{arch}-seed11.pooled.npy"))).unwrap();
    let (el, ep) = (
        rel_err(&logits, &exp_logits.data),
        rel_err(&pooled, &exp_pooled.data),
    );
    eprintln!("{arch}: logits max|Δ|/max|y| {el:.2e}, pooled {ep:.2e}");
    assert!(el <= 1e-4, "{arch} logits relative error {el:.2e}");
    assert!(ep <= 1e-4, "{arch} pooled relative error {ep:.2e}");
}

#[test]
fn resnet18_reproduces_pytorch_logits() {
    check_fixture("resnet18", ResNetDepth::ResNet18, &Device::flex());
}

#[test]
fn resnet50_reproduces_pytorch_logits() {
    check_fixture("resnet50", ResNetDepth::ResNet50, &Device::flex());
}

#[cfg(feature = "tch")]
#[test]
#[allow(deprecated)]
fn resnets_reproduce_pytorch_logits_on_libtorch() {
    check_fixture("resnet18", ResNetDepth::ResNet18, &Device::libtorch());
    check_fixture("resnet50", ResNetDepth::ResNet50, &Device::libtorch());
}

#[test]
fn parameter_counts_match_torchvision_and_han() {
    let device = Device::flex();
    assert_eq!(
        Model::new(Arch::ResNet18, 11, &device).num_trainable_params(),
        11_182_155
    );
    assert_eq!(
        Model::new(Arch::ResNet50, 11, &device).num_trainable_params(),
        23_530_571
    );
    assert_eq!(
        Model::new(Arch::Han, 11, &device).num_trainable_params(),
        1_446_123
    );
}

#[test]
fn every_architecture_maps_windows_to_11_logits() {
    let device = Device::flex();
    let x = Tensor::<4>::zeros([2, 3, 43, 128], &device);
    for arch in [Arch::ResNet18, Arch::Han] {
        let y = Model::new(arch, 11, &device).forward(x.clone());
        assert_eq!(y.dims(), [2, 11], "{arch}");
    }
}

#[test]
fn batchnorm_training_step_moves_running_stats_like_pytorch() {
    let device = Device::flex().autodiff();
    let bn = BatchNorm2d::new(2, &device);
    // Batch of 2, 2 channels, 1×2 spatial: channel 0 values {1, 3, 5, 7}, channel 1 {0, 0, 2, 2}.
    let x = Tensor::<4>::from_data(
        TensorData::new(
            vec![1.0f32, 3.0, 0.0, 0.0, 5.0, 7.0, 2.0, 2.0],
            [2, 2, 1, 2],
        ),
        &device,
    );
    let y = bn.forward(x);
    // PyTorch: running_mean = 0.9·0 + 0.1·mean; running_var = 0.9·1 + 0.1·unbiased var.
    // Channel 0: mean 4, unbiased var 20/3. Channel 1: mean 1, unbiased var 4/3.
    let mean = bn
        .running_mean
        .value_sync()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let var = bn
        .running_var
        .value_sync()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let expect_mean = [0.4f32, 0.1];
    let expect_var = [0.9 + 0.1 * 20.0 / 3.0, 0.9 + 0.1 * 4.0 / 3.0f32];
    for c in 0..2 {
        assert!((mean[c] - expect_mean[c]).abs() < 1e-6, "mean {mean:?}");
        assert!((var[c] - expect_var[c]).abs() < 1e-6, "var {var:?}");
    }
    // The output is normalised with the biased batch variance (5 and 1).
    let out = y.into_data().try_to_vec::<f32>().unwrap();
    let expect0 = (1.0 - 4.0) / (5.0f32 + 1e-5).sqrt();
    assert!((out[0] - expect0).abs() < 1e-5, "{out:?}");
    // Inference mode (no autodiff) leaves the statistics alone.
    let inf = bn.valid();
    let _ = inf.forward(Tensor::<4>::ones([1, 2, 1, 2], &Device::flex()));
    let mean2 = inf
        .running_mean
        .value_sync()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(mean, mean2);
}

#[test]
fn import_errors_name_the_key() {
    let dir = resnet_fixtures();
    let device = Device::flex();
    // ResNet50 weights into a ResNet18: missing / unexpected / shape errors, each naming a key.
    let e = load_resnet_pth(
        ResNet::new(ResNetDepth::ResNet18, 1000, &device),
        &dir.join("resnet50-random-seed11.pth"),
        Head::Load,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("resnet50-random-seed11.pth"), "{e}");
    assert!(e.contains("layer"), "{e}");
    // The 1000-class head does not fit an 11-class model unless it is left fresh.
    let e = load_resnet_pth(
        ResNet::new(ResNetDepth::ResNet18, 11, &device),
        &dir.join("resnet18-random-seed11.pth"),
        Head::Load,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("fc.weight") || e.contains("fc.bias"), "{e}");
    load_resnet_pth(
        ResNet::new(ResNetDepth::ResNet18, 11, &device),
        &dir.join("resnet18-random-seed11.pth"),
        Head::Fresh,
    )
    .unwrap();
    // A missing file and a file that is not a state dict.
    let e = load_resnet_pth(
        ResNet::new(ResNetDepth::ResNet18, 11, &device),
        &dir.join("nope.pth"),
        Head::Fresh,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("nope.pth") && e.contains("no such file"), "{e}");
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.pth");
    std::fs::write(&junk, b"not a pickle").unwrap();
    let e = load_resnet_pth(
        ResNet::new(ResNetDepth::ResNet18, 11, &device),
        &junk,
        Head::Fresh,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("junk.pth"), "{e}");
}

#[test]
fn imagenet_offline_error_names_file_url_and_folder() {
    let home = tempfile::tempdir().unwrap();
    // SAFETY: tests in this binary that read TORCH_HOME / INSTREC_OFFLINE are this one only.
    unsafe {
        std::env::set_var("TORCH_HOME", home.path());
        std::env::set_var("INSTREC_OFFLINE", "1");
    }
    let e = instrec::model::build_model(
        Arch::ResNet18,
        11,
        &instrec::model::Init::ImageNet { v2: false },
        &Device::flex(),
        &|_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("resnet18-f37072fd.pth"), "{e}");
    assert!(
        e.contains("https://download.pytorch.org/models/resnet18-f37072fd.pth"),
        "{e}"
    );
    assert!(
        e.contains(&home.path().join("hub/checkpoints").display().to_string()),
        "{e}"
    );
    // Put a file in the cache and it is used: here torchvision-format random weights.
    let cache = home.path().join("hub/checkpoints");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(
        resnet_fixtures().join("resnet18-random-seed11.pth"),
        cache.join("resnet18-f37072fd.pth"),
    )
    .unwrap();
    let m = instrec::model::build_model(
        Arch::ResNet18,
        11,
        &instrec::model::Init::ImageNet { v2: false },
        &Device::flex(),
        &|_, _| {},
    )
    .unwrap();
    // The backbone is the file's, the head is new with 11 outputs.
    let reference = load_resnet_pth(
        ResNet::new(ResNetDepth::ResNet18, 11, &Device::flex()),
        &resnet_fixtures().join("resnet18-random-seed11.pth"),
        Head::Fresh,
    )
    .unwrap();
    let x = Tensor::<4>::ones([1, 3, 43, 128], &Device::flex());
    let Model::ResNet(r) = m else {
        panic!("not a resnet")
    };
    let a = r
        .features(x.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b = reference
        .features(x)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
    assert!(
        instrec::model::build_model(
            Arch::Han,
            11,
            &instrec::model::Init::ImageNet { v2: false },
            &Device::flex(),
            &|_, _| {},
        )
        .is_err()
    );
}

#[test]
fn bundle_round_trip_keeps_every_tensor_and_the_config() {
    use instrec::features::ChannelMode;
    use instrec::model::bundle::{BundleConfig, load_bundle, save_bundle};
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::ResNet18, Arch::Han] {
        let model = Model::new(arch, 11, &device);
        let mut config = BundleConfig::new(arch, ChannelMode::Stereo);
        config.provenance.seed = 7;
        config.thresholds.per_class = Some(vec![0.3; 11]);
        let path = dir.path().join(arch.name());
        save_bundle(&path, &model, &config).unwrap();
        let (loaded, cfg) = load_bundle(&path, &device).unwrap();
        assert_eq!(cfg, config);
        let x = Tensor::<4>::random(
            [2, 3, 43, 128],
            burn::tensor::Distribution::Default,
            &device,
        );
        let a = model
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b = loaded.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b, "{arch}");
        // The weights also initialise a new model through --init PATH.
        let again = instrec::model::build_model(
            arch,
            11,
            &instrec::model::Init::File(path.join("model.safetensors")),
            &device,
            &|_, _| {},
        )
        .unwrap();
        let x = Tensor::<4>::ones([1, 3, 43, 128], &device);
        assert_eq!(
            again
                .forward(x.clone())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
            loaded.forward(x).into_data().try_to_vec::<f32>().unwrap()
        );
    }
    // A bundle of one architecture does not load as another.
    let e = instrec::model::load_into(
        Model::new(Arch::Han, 11, &device),
        &dir.path().join("resnet18"),
        Head::Load,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("resnet18"), "{e}");
}

#[test]
fn forward_cli_writes_logits_and_pooled_features() {
    let dir = resnet_fixtures();
    let tmp = tempfile::tempdir().unwrap();
    for (flag, expected) in [("", "logits"), ("--pooled", "pooled")] {
        let out = tmp.path().join(format!("{expected}.npy"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_instrec"));
        cmd.args(["forward", "--arch", "resnet18", "--weights"])
            .arg(dir.join("resnet18-random-seed11.pth"))
            .arg("--input")
            .arg(dir.join("resnet18-seed11.input.npy"))
            .arg("--out")
            .arg(&out);
        if !flag.is_empty() {
            cmd.arg(flag);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ours = NpyArray::read(&out).unwrap();
        let exp = NpyArray::read(&dir.join(format!("resnet18-seed11.{expected}.npy"))).unwrap();
        assert_eq!(ours.shape, exp.shape);
        assert!(rel_err(&ours.data, &exp.data) <= 1e-4);
    }
}
