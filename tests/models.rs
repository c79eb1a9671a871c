//! ResNet18/50 against PyTorch (weights from a generator that tests/fixtures/make_fixtures.py
//! shares, and the full-size ../shared/fixtures/resnet when it is there), the Han baseline,
//! BatchNorm, weight import errors, and the model bundle.

mod common;
use common::rel_err;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use instrec::model::import::{Head, load_resnet_pth};
use instrec::model::norm::BatchNorm2d;
use instrec::model::{Arch, Model, ResNet, ResNetDepth};
use instrec::npy::NpyArray;

fn resnet_fixtures() -> PathBuf {
    common::fixtures().join("resnet")
}

/// The full-size torchvision files in ../shared, when it is there.
fn shared_resnet_fixtures() -> Option<PathBuf> {
    common::shared().map(|s| s.join("fixtures/resnet"))
}

fn tensor4(a: &NpyArray, device: &Device) -> Tensor<4> {
    let s: [usize; 4] = a.shape.clone().try_into().expect("4-D input");
    Tensor::from_data(TensorData::new(a.data.clone(), s), device)
}

// The generator of tests/fixtures/make_fixtures.py: splitmix64(fnv1a64(name) + i) >> 40, / 2^24.
fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn uniform(name: &str, n: usize) -> Vec<f64> {
    let seed = fnv1a64(name);
    (0..n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f64 / (1u64 << 24) as f64
        })
        .collect()
}

/// One state-dict tensor as the generator makes it (make_fixtures.py: `value`).
fn prng_tensor(name: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product();
    let u = uniform(name, n);
    let f = |g: &dyn Fn(f64) -> f64| u.iter().map(|&u| g(u) as f32).collect();
    if name.ends_with("running_var") {
        f(&|u| 0.5 + u)
    } else if name.ends_with("running_mean") {
        f(&|u| 0.2 * (2.0 * u - 1.0))
    } else if name.ends_with("bias") {
        f(&|u| 0.1 * (2.0 * u - 1.0))
    } else if shape.len() == 1 {
        f(&|u| 1.0 + 0.2 * (2.0 * u - 1.0))
    } else {
        let fan_in = shape[1..].iter().product::<usize>() as f64;
        let a = (3.0 / fan_in).sqrt();
        f(&|u| (2.0 * u - 1.0) * a)
    }
}

/// The state dict PyTorch had (names, shapes, dtypes in order), from `ARCH.keys.json`.
fn torchvision_keys(arch: &str) -> Vec<(String, Vec<usize>, String)> {
    let path = resnet_fixtures().join(format!("{arch}.keys.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Writes the generator's weights as a torchvision-layout safetensors file, as
/// `safetensors.torch.save_file(model.state_dict(), path)` would.
fn write_prng_safetensors(arch: &str, path: &Path) {
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, shape, dtype) in torchvision_keys(arch) {
        let bytes: Vec<u8> = match dtype.as_str() {
            "float32" => prng_tensor(&name, &shape)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            "int64" => 0i64.to_le_bytes().to_vec(),
            other => panic!("{name}: dtype {other}"),
        };
        let st_dtype = if dtype == "int64" { "I64" } else { "F32" };
        header.insert(
            name,
            serde_json::json!({"dtype": st_dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}),
        );
        data.extend(bytes);
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

fn load_resnet_safetensors(model: ResNet, path: &Path, head: Head) -> Result<ResNet, String> {
    let bytes = std::fs::read(path).unwrap();
    assert!(instrec::model::safetensors::is_torchvision(&bytes));
    instrec::model::import::load_resnet_safetensors(model, bytes, &path.display().to_string(), head)
        .map_err(|e| e.to_string())
}

fn prng_resnet(arch: &str, device: &Device) -> ResNet {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{arch}.safetensors"));
    write_prng_safetensors(arch, &path);
    let arch_enum = if arch == "resnet18" {
        Arch::ResNet18
    } else {
        Arch::ResNet50
    };
    match instrec::model::load_into(Model::new(arch_enum, 11, device), &path, Head::Load) {
        Ok(Model::ResNet(r)) => r,
        Ok(_) => panic!("not a ResNet"),
        Err(e) => panic!("{e}"),
    }
}

fn compare(model: &ResNet, dir: &Path, input: &str, logits: &str, pooled: &str, device: &Device) {
    let input = NpyArray::read(&dir.join(input)).unwrap();
    let x = tensor4(&input, device);
    assert!(!model.bn1.folded, "compare() takes an unfolded model");
    let ours_pooled = model
        .features(x.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let ours_logits = model.forward(x).into_data().try_to_vec::<f32>().unwrap();
    let exp_logits = NpyArray::read(&dir.join(logits)).unwrap();
    let exp_pooled = NpyArray::read(&dir.join(pooled)).unwrap();
    let (el, ep) = (
        rel_err(&ours_logits, &exp_logits.data),
        rel_err(&ours_pooled, &exp_pooled.data),
    );
    eprintln!("{logits}: logits max|Δ|/max|y| {el:.2e}, pooled {ep:.2e}");
    assert!(el <= 1e-4, "{logits}: logits relative error {el:.2e}");
    assert!(ep <= 1e-4, "{pooled}: pooled relative error {ep:.2e}");

    // Inference folds every BatchNorm into its convolution: the same logits within 1e-5.
    let folded = model.clone().fold_batchnorm();
    let input = tensor4(&input, device);
    let folded_logits = folded
        .forward(input)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let (fe, fp) = (
        rel_err(&folded_logits, &ours_logits),
        rel_err(&folded_logits, &exp_logits.data),
    );
    eprintln!("{logits}: BN-folded vs unfolded {fe:.2e}, vs PyTorch {fp:.2e}");
    assert!(
        fe <= 1e-5,
        "{logits}: BN-folded logits relative error {fe:.2e}"
    );
    assert!(
        fp <= 1e-4,
        "{logits}: BN-folded vs PyTorch relative error {fp:.2e}"
    );
}

fn check_prng(arch: &str, device: &Device) {
    let model = prng_resnet(arch, device);
    compare(
        &model,
        &resnet_fixtures(),
        "input.npy",
        &format!("{arch}.logits.npy"),
        &format!("{arch}.pooled.npy"),
        device,
    );
}

/// The full-size torchvision `.pth` files in ../shared (1000-class head).
fn check_shared(arch: &str, depth: ResNetDepth, device: &Device) {
    let Some(dir) = shared_resnet_fixtures() else {
        return;
    };
    let model = load_resnet_pth(
        ResNet::new(depth, 1000, device),
        &dir.join(format!("{arch}-random-seed11.pth")),
        Head::Load,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    compare(
        &model,
        &dir,
        &format!("{arch}-seed11.input.npy"),
        &format!("{arch}-seed11.logits.npy"),
        &format!("{arch}-seed11.pooled.npy"),
        device,
    );
}

/// Inference runs a folded network through channels-last kernels (Winograd on its 3×3 stride-1
/// convolutions, in chunks of images): over several chunks and every ResNet plane of a 43×128
/// window, its logits equal the unfolded network's, which takes the training kernels.
#[test]
fn folded_inference_over_several_image_chunks_matches_the_unfolded_network() {
    let device = Device::flex();
    for arch in ["resnet18", "resnet50"] {
        let model = prng_resnet(arch, &device);
        // 24 windows: the 11×32 stage takes 11 images per Winograd chunk, so three chunks.
        let u = uniform("chunks", 24 * 3 * 43 * 128);
        let x: Vec<f32> = u.iter().map(|&u| (-8.0 + 6.0 * (u - 0.5)) as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [24, 3, 43, 128]), &device);
        let unfolded = model
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let folded = model.clone().fold_batchnorm().forward(x);
        let folded = folded.into_data().try_to_vec::<f32>().unwrap();
        let e = rel_err(&folded, &unfolded);
        eprintln!("{arch}, 24 windows: folded vs unfolded {e:.2e}");
        assert!(e <= 1e-5, "{arch}: folded logits relative error {e:.2e}");
    }
}

#[test]
fn resnet18_reproduces_pytorch_logits() {
    check_prng("resnet18", &Device::flex());
}

#[test]
fn resnet50_reproduces_pytorch_logits() {
    check_prng("resnet50", &Device::flex());
}

#[test]
fn shared_resnets_reproduce_pytorch_logits_from_torch_save_files() {
    check_shared("resnet18", ResNetDepth::ResNet18, &Device::flex());
    check_shared("resnet50", ResNetDepth::ResNet50, &Device::flex());
}

#[cfg(feature = "tch")]
#[test]
#[allow(deprecated)]
fn resnets_reproduce_pytorch_logits_on_libtorch() {
    check_prng("resnet18", &Device::libtorch());
    check_prng("resnet50", &Device::libtorch());
    check_shared("resnet18", ResNetDepth::ResNet18, &Device::libtorch());
    check_shared("resnet50", ResNetDepth::ResNet50, &Device::libtorch());
}

/// burn's `.pth` reader on a file `torch.save` wrote: float32 and int64 tensors, and a view with
/// transposed strides, each with the generator's exact values.
#[test]
fn pth_reader_reads_what_torch_save_wrote() {
    use burn::store::pytorch_reader::{DType, PytorchReader};
    let path = resnet_fixtures().join("tiny.pth");
    let reader = PytorchReader::new(&path).unwrap();
    let mut keys = reader.keys();
    keys.sort();
    assert_eq!(keys.len(), 8, "{keys:?}");
    for name in keys {
        let t = reader.get(&name).unwrap();
        let bytes = t.read().unwrap();
        if name.ends_with("num_batches_tracked") {
            assert_eq!(t.dtype(), DType::I64);
            assert_eq!(t.shape(), &[] as &[usize]);
            continue;
        }
        assert_eq!(t.dtype(), DType::F32, "{name}");
        let ours: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(ours, prng_tensor(&name, t.shape()), "{name}");
    }
    assert_eq!(reader.get("fc.weight").unwrap().shape(), &[11, 512]);
    // The same file through instrec's loader: the missing keys are named, no partial model.
    let e = load_resnet_pth(
        ResNet::new(ResNetDepth::ResNet18, 11, &Device::flex()),
        &path,
        Head::Load,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tiny.pth") && e.contains("layer1.0.conv1.weight"),
        "{e}"
    );
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

/// `instrec forward` takes any frames × mels (the Han network from 27 of each): planes smaller
/// than a kernel's reach give logits, not a panic, folded (inference) or not.
#[test]
fn every_architecture_runs_on_inputs_smaller_than_its_kernels() {
    let device = Device::flex();
    for shape in [[1, 3, 1, 1], [2, 3, 5, 7], [1, 3, 2, 300], [1, 3, 27, 27]] {
        let x = Tensor::<4>::random(shape, Distribution::Normal(-8.0, 3.0), &device);
        let han = shape[2].min(shape[3]) >= instrec::model::han::MIN_SIDE;
        let archs = [Arch::ResNet18, Arch::ResNet50]
            .into_iter()
            .chain(han.then_some(Arch::Han));
        for arch in archs {
            let model = Model::new(arch, 11, &device);
            for model in [model.clone(), model.fold_batchnorm()] {
                let y = model
                    .forward(x.clone())
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                assert_eq!(y.len(), shape[0] * 11, "{arch} on {shape:?}");
                assert!(y.iter().all(|v| v.is_finite()), "{arch} on {shape:?}");
            }
        }
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
fn running_stats_follow_steps_made_on_different_threads() {
    // Training steps run on whichever rayon worker takes them; burn's RunningState averages
    // per-thread pending values, which must not mix one step's statistics with another's.
    let device = Device::flex().autodiff();
    let bn = BatchNorm2d::new(1, &device);
    let step = |v: f32| {
        bn.forward(Tensor::<4>::from_data(
            TensorData::new(vec![v, v + 2.0], [1, 1, 1, 2]),
            &device,
        ))
    };
    std::thread::scope(|s| {
        s.spawn(|| step(1.0));
    });
    step(5.0);
    std::thread::scope(|s| {
        s.spawn(|| step(9.0));
    });
    // Means 2, 6, 10: running mean 0.9·(0.9·(0.9·0 + 0.2) + 0.6) + 1.0.
    let expected = 0.9f32 * (0.9 * 0.2 + 0.6) + 1.0;
    for read in [
        bn.running_mean.value_sync(),
        std::thread::scope(|s| s.spawn(|| bn.running_mean.value_sync()).join().unwrap()),
    ] {
        let mean = read.into_data().try_to_vec::<f32>().unwrap()[0];
        assert!(
            (mean - expected).abs() < 1e-6,
            "running mean {mean}, expected {expected}"
        );
    }
}

#[test]
fn import_errors_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let r50 = tmp.path().join("resnet50.safetensors");
    let r18 = tmp.path().join("resnet18.safetensors");
    write_prng_safetensors("resnet50", &r50);
    write_prng_safetensors("resnet18", &r18);
    // ResNet50 weights into a ResNet18: missing / unexpected / shape errors, each naming a key.
    let e = instrec::model::load_into(Model::new(Arch::ResNet18, 11, &device), &r50, Head::Load)
        .unwrap_err()
        .to_string();
    assert!(e.contains("resnet50.safetensors"), "{e}");
    assert!(e.contains("layer"), "{e}");
    // An 11-class head does not fit a 1000-class model unless it is left fresh.
    let e = load_resnet_safetensors(
        ResNet::new(ResNetDepth::ResNet18, 1000, &device),
        &r18,
        Head::Load,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("fc.weight") || e.contains("fc.bias"), "{e}");
    load_resnet_safetensors(
        ResNet::new(ResNetDepth::ResNet18, 1000, &device),
        &r18,
        Head::Fresh,
    )
    .unwrap();
    // The full-size torchvision .pth files, when ../shared is there.
    if let Some(dir) = shared_resnet_fixtures() {
        let e = load_resnet_pth(
            ResNet::new(ResNetDepth::ResNet18, 1000, &device),
            &dir.join("resnet50-random-seed11.pth"),
            Head::Load,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("resnet50-random-seed11.pth") && e.contains("layer"),
            "{e}"
        );
        let e = load_resnet_pth(
            ResNet::new(ResNetDepth::ResNet18, 11, &device),
            &dir.join("resnet18-random-seed11.pth"),
            Head::Load,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("fc.weight") || e.contains("fc.bias"), "{e}");
    }
    // A missing file and a file that is not a state dict.
    let e = load_resnet_pth(
        ResNet::new(ResNetDepth::ResNet18, 11, &device),
        &tmp.path().join("nope.pth"),
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
    // Put a file in the cache and it is used: here torchvision-format random weights (a full-size
    // .pth, so only where ../shared is there).
    if let Some(dir) = shared_resnet_fixtures() {
        let cache = home.path().join("hub/checkpoints");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::copy(
            dir.join("resnet18-random-seed11.pth"),
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
            &dir.join("resnet18-random-seed11.pth"),
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
    }
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
        let path = dir.path().join(arch.to_string());
        save_bundle(&path, &model, &config).unwrap();
        let (loaded, cfg) = load_bundle(&path, &device).unwrap();
        // The saved config records the weights' checksum, otherwise it is the one given.
        assert_eq!(cfg.weights_sha256.as_ref().map(String::len), Some(64));
        assert_eq!(
            BundleConfig {
                weights_sha256: None,
                ..cfg
            },
            config
        );
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
    let weights = tmp.path().join("resnet18.safetensors");
    write_prng_safetensors("resnet18", &weights);
    for (flag, expected) in [("", "logits"), ("--pooled", "pooled")] {
        let out = tmp.path().join(format!("{expected}.npy"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_instrec"));
        cmd.args([
            "forward",
            "--arch",
            "resnet18",
            "--num-classes",
            "11",
            "--weights",
        ])
        .arg(&weights)
        .arg("--input")
        .arg(dir.join("input.npy"))
        .arg("--out")
        .arg(&out);
        if !flag.is_empty() {
            cmd.arg(flag);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ours = NpyArray::read(&out).unwrap();
        let exp = NpyArray::read(&dir.join(format!("resnet18.{expected}.npy"))).unwrap();
        assert_eq!(ours.shape, exp.shape);
        assert!(rel_err(&ours.data, &exp.data) <= 1e-4);
    }
}

/// `forward` refuses a batch with no frames or no mel bands, and one too small for the Han
/// network, naming the file and the shape; it never panics on them.
#[test]
fn forward_cli_refuses_empty_and_too_small_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("resnet18.safetensors");
    write_prng_safetensors("resnet18", &weights);
    for (arch, shape, expected) in [
        (
            "resnet18",
            [1, 3, 0, 128],
            "at least one frame and one mel band",
        ),
        (
            "resnet18",
            [2, 3, 43, 0],
            "at least one frame and one mel band",
        ),
        (
            "han",
            [1, 3, 26, 128],
            "at least 27 frames and 27 mel bands",
        ),
    ] {
        let input = tmp.path().join("input.npy");
        let n = shape.iter().product();
        NpyArray::new(shape.to_vec(), vec![0.0; n])
            .write(&input)
            .unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_instrec"))
            .args([
                "forward",
                "--arch",
                arch,
                "--num-classes",
                "11",
                "--weights",
            ])
            .arg(&weights)
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(tmp.path().join("out.npy"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{arch} {shape:?}: {err}");
        assert!(err.contains(expected) && err.contains("input.npy"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A ResNet bundle's weights are torchvision's `state_dict()`: the names, shapes and dtypes
/// PyTorch listed (ARCH.keys.json), `fc.weight` as [11, 512], and every value unchanged.
#[test]
fn bundle_weights_are_a_torchvision_state_dict() {
    use instrec::features::ChannelMode;
    use instrec::model::bundle::{BundleConfig, load_bundle, save_bundle};
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let model = Model::ResNet(prng_resnet("resnet18", &device));
    save_bundle(
        dir.path(),
        &model,
        &BundleConfig::new(Arch::ResNet18, ChannelMode::Dup),
    )
    .unwrap();
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let keys = torchvision_keys("resnet18");
    assert_eq!(
        header.len() - 1,
        keys.len(),
        "tensor count (plus __metadata__)"
    );
    for (name, shape, dtype) in keys {
        let e = header
            .get(&name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let got: Vec<usize> = serde_json::from_value(e["shape"].clone()).unwrap();
        assert_eq!(got, shape, "{name}");
        let (a, b) = (
            e["data_offsets"][0].as_u64().unwrap() as usize,
            e["data_offsets"][1].as_u64().unwrap() as usize,
        );
        if dtype == "int64" {
            assert_eq!(e["dtype"], "I64", "{name}");
            continue;
        }
        assert_eq!(e["dtype"], "F32", "{name}");
        let values: Vec<f32> = data[a..b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(values, prng_tensor(&name, &shape), "{name}");
    }
    // It loads back to the same logits.
    assert_same_logits(&load_bundle(dir.path(), &device).unwrap().0, &model);
}

fn assert_same_logits(a: &Model, b: &Model) {
    let x = Tensor::<4>::ones([1, 3, 43, 128], &Device::flex());
    let logits = |m: &Model| {
        m.forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(logits(a), logits(b));
}

/// Bundles written before the torchvision layout (burn's names, `fc.weight` transposed) load.
#[test]
fn old_burn_layout_bundles_still_load() {
    use burn::store::{ModuleSnapshot, SafetensorsStore};
    use instrec::features::ChannelMode;
    use instrec::model::bundle::{BundleConfig, load_bundle};
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let model = Model::ResNet(prng_resnet("resnet18", &device));
    let mut store = SafetensorsStore::from_bytes(None);
    model.save_into(&mut store).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        store.get_bytes().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&BundleConfig::new(Arch::ResNet18, ChannelMode::Dup)).unwrap(),
    )
    .unwrap();
    assert_same_logits(&load_bundle(dir.path(), &device).unwrap().0, &model);
}

/// `instrec export` writes what `torch.save` writes: instrec's own `.pth` reader takes it back
/// to the same logits (instrec → .pth → instrec); `benches/check_torchvision.py` runs it through
/// `torch.load(weights_only=True)` and torchvision.
#[test]
fn exported_pth_loads_back_to_the_same_logits() {
    use instrec::features::ChannelMode;
    use instrec::model::bundle::{BundleConfig, save_bundle};
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let model = Model::ResNet(prng_resnet("resnet50", &device));
    let bundle = dir.path().join("bundle");
    save_bundle(
        &bundle,
        &model,
        &BundleConfig::new(Arch::ResNet50, ChannelMode::Dup),
    )
    .unwrap();
    let pth = dir.path().join("w.pth");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_instrec"))
        .args(["export", "--model"])
        .arg(&bundle)
        .arg("--out")
        .arg(&pth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reader = burn::store::pytorch_reader::PytorchReader::new(&pth).unwrap();
    assert_eq!(reader.keys().len(), torchvision_keys("resnet50").len());
    let back = load_resnet_pth(
        ResNet::new(ResNetDepth::ResNet50, 11, &device),
        &pth,
        Head::Load,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_same_logits(&Model::ResNet(back), &model);
    // The Han CNN has no torchvision original.
    let han = dir.path().join("han");
    save_bundle(
        &han,
        &Model::new(Arch::Han, 11, &device),
        &BundleConfig::new(Arch::Han, ChannelMode::Dup),
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_instrec"))
        .args(["export", "--model"])
        .arg(&han)
        .arg("--out")
        .arg(dir.path().join("h.pth"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no torchvision original"));
}

/// `pack` halves a bundle (conv and linear weights as f16) and the packed bundle tags a clip with
/// the same scores to within half-float rounding.
#[test]
fn a_packed_bundle_is_half_the_size_and_scores_alike() {
    use instrec::model::bundle::{WEIGHTS_FILE, pack_bundle};
    use instrec::tag::Tagger;
    let d = tempfile::tempdir().unwrap();
    let full = common::random_bundle(&d.path().join("full"));
    let small = d.path().join("small");
    pack_bundle(&full, &small, None).unwrap();
    let size = |p: &Path| std::fs::metadata(p.join(WEIGHTS_FILE)).unwrap().len() as f64;
    let ratio = size(&small) / size(&full);
    assert!((0.49..0.52).contains(&ratio), "size ratio {ratio}");
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chord_stereo_44k.flac");
    let device = Device::flex();
    let a = Tagger::load(&full, &device)
        .unwrap()
        .tag_file(&clip)
        .unwrap();
    let b = Tagger::load(&small, &device)
        .unwrap()
        .tag_file(&clip)
        .unwrap();
    for (x, y) in a.scores.iter().zip(&b.scores) {
        assert!((x - y).abs() < 2e-3, "{x} vs {y}");
    }
}

/// `pack --aggregation s2` makes s2 the bundle's default: its tagger aggregates with s2 (the top
/// class scores 1) as the unpacked bundle does when asked, and an older config without the field
/// stays s1.
#[test]
fn a_bundle_can_carry_its_default_aggregation() {
    use instrec::eval::metrics::Aggregation;
    use instrec::model::bundle::pack_bundle;
    use instrec::tag::Tagger;
    let d = tempfile::tempdir().unwrap();
    let full = common::random_bundle(&d.path().join("full"));
    let small = d.path().join("small");
    let config = pack_bundle(&full, &small, Some(Aggregation::S2)).unwrap();
    assert_eq!(config.aggregation, Some(Aggregation::S2));
    let text = std::fs::read_to_string(full.join("config.json")).unwrap();
    assert!(!text.contains("\"aggregation\""), "{text}");
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chord_stereo_44k.flac");
    let device = Device::flex();
    let s1 = Tagger::load(&full, &device).unwrap();
    assert_eq!(s1.aggregation, Aggregation::S1);
    let s2 = Tagger::load(&small, &device).unwrap();
    assert_eq!(s2.aggregation, Aggregation::S2);
    let a = s1
        .with_aggregation(Aggregation::S2)
        .tag_file(&clip)
        .unwrap();
    let b = s2.tag_file(&clip).unwrap();
    let top = b.scores.iter().cloned().fold(f32::MIN, f32::max);
    assert!((top - 1.0).abs() < 1e-6, "top s2 score {top}");
    for (x, y) in a.scores.iter().zip(&b.scores) {
        assert!((x - y).abs() < 5e-3, "{x} vs {y}");
    }
}
