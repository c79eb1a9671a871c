//! Hostile input and faults: bad audio, bad values, broken bundles, odd output paths, leftovers
//! of killed processes. Each test names the defect it guards against.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::tensor::Device;
use common::{WavFormat, instrec, stderr, wav_bytes};
use instrec::features::ChannelMode;
use instrec::model::bundle::{BundleConfig, save_bundle};
use instrec::model::{Arch, Model};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Exit 1 with one `error:` line naming `file` and saying `reason`; never a panic.
fn assert_fails_naming(o: &Output, file: &str, reason: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.contains(file) && e.contains(reason), "{e}");
}

/// A float WAV, 1 s of a 440 Hz tone at 22,050 Hz, with `bad` written at sample 1000.
fn tone_with(bad: f32) -> Vec<u8> {
    let mut x: Vec<f32> = (0..22_050)
        .map(|i| 0.3 * (i as f32 * 440.0 * std::f32::consts::TAU / 22_050.0).sin())
        .collect();
    x[1000] = bad;
    wav_bytes(1, 22_050, WavFormat::F32, &x)
}

fn random_bundle(dir: &Path) -> PathBuf {
    common::random_bundle(&dir.join("bundle"))
}

#[test]
fn non_finite_samples_are_rejected_with_their_time() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bad) in [("nan.wav", f32::NAN), ("inf.wav", f32::INFINITY)] {
        let p = dir.path().join(name);
        std::fs::write(&p, tone_with(bad)).unwrap();
        let o = instrec(&["features", s(&p), "--out", s(&dir.path().join("x.npy"))]);
        assert_fails_naming(&o, name, "1 non-finite samples (NaN/Inf) at t = 0.045 s");
        assert!(!dir.path().join("x.npy").exists());
    }
    // In a batch command the file is reported and skipped; the others are tagged.
    let bundle = random_bundle(dir.path());
    let clips = dir.path().join("clips");
    std::fs::create_dir(&clips).unwrap();
    std::fs::write(clips.join("nan.wav"), tone_with(f32::NAN)).unwrap();
    std::fs::write(clips.join("ok.wav"), tone_with(0.0)).unwrap();
    let o = instrec(&["tag", s(&clips), "--model", s(&bundle), "--format", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 1);
    assert!(v["failures"][0].as_str().unwrap().contains("non-finite"));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("null"));
}

#[test]
fn a_zero_hz_header_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut wav = tone_with(0.0);
    wav[24..28].copy_from_slice(&0u32.to_le_bytes()); // sample rate
    let p = dir.path().join("zero-hz.wav");
    std::fs::write(&p, &wav).unwrap();
    let o = instrec(&["features", s(&p), "--out", s(&dir.path().join("x.npy"))]);
    assert_fails_naming(&o, "zero-hz.wav", "");
    // An absurd rate would make the resampler's tables huge: refused.
    wav[24..28].copy_from_slice(&3_000_000_000u32.to_le_bytes());
    std::fs::write(&p, &wav).unwrap();
    let o = instrec(&["features", s(&p), "--out", s(&dir.path().join("x.npy"))]);
    assert_fails_naming(&o, "zero-hz.wav", "outside the 1000–384000 Hz");
}

#[test]
fn bad_flag_values_are_refused_before_any_work() {
    for (args, flag) in [
        (
            &["evaluate", "--model", "m", "--data", "d", "--hop", "0"][..],
            "--hop",
        ),
        (&["tag", "x.wav", "--model", "m", "--hop", "0"][..], "--hop"),
        (
            &["tag", "x.wav", "--model", "m", "--threshold", "1.5"][..],
            "--threshold",
        ),
        (
            &["train", "--data", "d", "--out", "o", "--batch-size", "0"][..],
            "--batch-size",
        ),
        (
            &[
                "train",
                "--data",
                "d",
                "--out",
                "o",
                "--val-fraction",
                "1.5",
            ][..],
            "--val-fraction",
        ),
        (
            &["train", "--data", "d", "--out", "o", "--lr=-1"][..],
            "--lr",
        ),
        (
            &["train", "--data", "d", "--out", "o", "--lr", "nan"][..],
            "--lr",
        ),
        (
            &["train", "--data", "d", "--out", "o", "--max-epochs", "0"][..],
            "--max-epochs",
        ),
        (
            &["synth", "--out", "o", "--train-per-class", "0"][..],
            "--train-per-class",
        ),
        (&["demo", "--test-clips", "0"][..], "--test-clips"),
    ] {
        let o = instrec(args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(flag) && !e.contains("panicked"), "{args:?}: {e}");
    }
}

#[test]
fn experiment_toml_values_are_checked_like_flags() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("grid.toml");
    std::fs::write(
        &toml,
        "name = \"x\"\ndata = \"d\"\nout = \"o\"\narchs = [\"resnet18\"]\ninits = [\"random\"]\n\
         channels = [\"dup\"]\n[train]\nbatch_size = 0\n",
    )
    .unwrap();
    let o = instrec(&["experiment", s(&toml)]);
    assert_fails_naming(
        &o,
        "grid.toml",
        "batch_size must be between 1 and 4096, got 0",
    );
    // The mixing and calibration sections too, even when the grid starts with a run without mixing.
    let grid = "name = \"x\"\ndata = \"d\"\nout = \"o\"\narchs = [\"resnet18\"]\n\
                inits = [\"random\"]\nchannels = [\"dup\"]\nmix = [false, true]\n";
    for (section, message) in [
        (
            "[mixing]\ngain_db = [0.0, -6.0]\n",
            "[mixing] mix.gain_db must be a range LOW,HIGH with LOW <= HIGH",
        ),
        (
            "[mixing]\nprob = 2.0\n",
            "[mixing] mix.prob must be a finite number in (0, 1], got 2",
        ),
        (
            "[calibration]\nshares = [0.0, 0.0, 0.0]\n",
            "[calibration] calibration.shares must not all be 0",
        ),
        (
            "[mixing]\nprobability = 0.5\n",
            "unknown field `probability`",
        ),
    ] {
        std::fs::write(&toml, format!("{grid}{section}")).unwrap();
        assert_fails_naming(&instrec(&["experiment", s(&toml)]), "grid.toml", message);
    }
}

#[test]
fn bf16_is_refused_where_libtorch_does_not_train() {
    // The default backend is flex; the check comes before reading any data.
    for args in [
        &["train", "--data", "d", "--out", "o", "--precision", "bf16"][..],
        &["bench", "model", "--precision", "bf16"][..],
    ] {
        let o = instrec(args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            e.contains("--precision") && e.contains("--backend tch") && !e.contains("panicked"),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn mixing_and_augmentation_flags_are_checked_and_need_their_switch() {
    let bad = [
        (vec!["--mix", "--mix-prob", "0"], "--mix-prob"),
        (vec!["--mix", "--mix-sources", "1"], "--mix-sources"),
        (vec!["--mix", "--mix-gain-db=0,-6"], "--mix-gain-db"),
        (vec!["--mix", "--mix-partners", "tempo"], "--mix-partners"),
        (vec!["--mix-prob", "0.3"], "--mix"),
        (vec!["--calib-shares", "1,-1"], "--calib-shares"),
        (vec!["--calib-mixtures", "0"], "--calib-mixtures"),
        (
            vec!["--spec-augment", "--spec-level-db", "100"],
            "--spec-level-db",
        ),
        (
            vec!["--spec-augment", "--spec-colour-db=-1"],
            "--spec-colour-db",
        ),
        (
            vec!["--spec-augment", "--spec-freq-masks", "99"],
            "--spec-freq-masks",
        ),
        (vec!["--spec-time-masks", "1"], "--spec-augment"),
    ];
    for (flags, named) in bad {
        let mut args = vec!["train", "--data", "d", "--out", "o"];
        args.extend(&flags);
        let o = instrec(&args);
        assert_eq!(o.status.code(), Some(2), "{flags:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(named), "{flags:?}: {err}");
    }
    // synth --solo is a share of songs: 0 ≤ p ≤ 1, a number.
    for value in ["-0.1", "1.5", "NaN", "half"] {
        let flag = format!("--solo={value}");
        let o = instrec(&["synth", "--out", "o", &flag]);
        assert_eq!(o.status.code(), Some(2), "--solo {value}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("--solo"), "--solo {value}: {err}");
    }
}

#[test]
fn bundles_are_checked_for_damage_class_order_and_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = random_bundle(dir.path());
    let clip = common::frontend_fixtures().join("voice_22k.wav");
    let tag = |b: &Path| instrec(&["tag", s(&clip), "--model", s(b)]);
    assert!(tag(&bundle).status.success());
    let fresh = || {
        let d = dir.path().join("copy");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        for f in ["model.safetensors", "config.json"] {
            std::fs::copy(bundle.join(f), d.join(f)).unwrap();
        }
        d
    };
    let edit_config = |d: &Path, f: &dyn Fn(&mut serde_json::Value)| {
        let p = d.join("config.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    // One flipped bit in the weights.
    let d = fresh();
    let mut w = std::fs::read(d.join("model.safetensors")).unwrap();
    let n = w.len();
    w[n - 100] ^= 0x40;
    std::fs::write(d.join("model.safetensors"), &w).unwrap();
    assert_fails_naming(&tag(&d), "model.safetensors", "weights_sha256");
    // NaN weights in a bundle without a checksum (as older bundles are).
    let d = fresh();
    edit_config(&d, &|v| {
        v.as_object_mut().unwrap().remove("weights_sha256");
    });
    let mut w = std::fs::read(d.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(w[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&w[8..8 + n]).unwrap();
    let at = 8 + n + header["fc.bias"]["data_offsets"][0].as_u64().unwrap() as usize;
    w[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(d.join("model.safetensors"), &w).unwrap();
    assert_fails_naming(
        &tag(&d),
        "model.safetensors",
        "fc.bias holds NaN or infinite",
    );
    // A reordered class list would mislabel every prediction.
    let d = fresh();
    edit_config(&d, &|v| v["classes"].as_array_mut().unwrap().swap(0, 1));
    assert_fails_naming(&tag(&d), "config.json", "weights were trained with");
    // A per-class threshold list of the wrong length, a threshold out of range.
    let d = fresh();
    edit_config(&d, &|v| {
        v["thresholds"]["per_class"] = serde_json::json!([0.3, 0.4])
    });
    assert_fails_naming(&tag(&d), "config.json", "2 values for 11 classes");
    let d = fresh();
    edit_config(&d, &|v| v["thresholds"]["global"] = serde_json::json!(7.0));
    assert_fails_naming(&tag(&d), "config.json", "thresholds.global");
}

#[test]
fn identical_models_give_identical_bundle_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::random(Arch::Han, 11, &Device::flex());
    let config = BundleConfig::new(Arch::Han, ChannelMode::Dup);
    for name in ["a", "b"] {
        save_bundle(&dir.path().join(name), &model, &config).unwrap();
    }
    for f in ["model.safetensors", "config.json"] {
        assert_eq!(
            std::fs::read(dir.path().join("a").join(f)).unwrap(),
            std::fs::read(dir.path().join("b").join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn outputs_never_replace_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let clip = common::frontend_fixtures().join("voice_22k.wav");
    let target = dir.path().join("target.npy");
    std::fs::write(&target, b"keep me").unwrap();
    let link = dir.path().join("link.npy");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let sub = dir.path().join("sub.npy");
    std::fs::create_dir(&sub).unwrap();
    let sock = dir.path().join("sock.npy");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for (out, what) in [
        (&link, "symbolic link"),
        (&sub, "directory"),
        (&sock, "not a regular file"),
    ] {
        let o = instrec(&["features", s(&clip), "--out", s(out)]);
        assert_fails_naming(&o, s(out), what);
        // The OS error is said once, not twice.
        assert_eq!(stderr(&o).matches(what).count(), 1, "{}", stderr(&o));
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    assert!(link.is_symlink() && sub.is_dir());
    // A requested timeline that cannot be written makes tag fail.
    let bundle = random_bundle(dir.path());
    let o = instrec(&[
        "tag",
        s(&clip),
        "--model",
        s(&bundle),
        "--timeline",
        s(&sub),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("timeline not written"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_instrec"))
        .arg("backends")
        .stdout(full)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("stdout") && !e.contains("panicked"), "{e}");
}

#[test]
fn clips_too_short_for_a_window_are_refused_not_tagged_from_padding() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = random_bundle(dir.path());
    let tone = |secs: f64| {
        let n = (secs * 22_050.0) as usize;
        let x: Vec<f32> = (0..n).map(|i| 0.3 * (i as f32 * 0.1).sin()).collect();
        wav_bytes(1, 22_050, WavFormat::I16, &x)
    };
    let short = dir.path().join("short.wav");
    std::fs::write(&short, tone(0.05)).unwrap();
    let o = instrec(&["tag", s(&short), "--model", s(&bundle)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("short.wav: too short to score: 0.05 s"),
        "{}",
        stderr(&o)
    );
    // Half a window and more is tagged.
    let ok = dir.path().join("ok.wav");
    std::fs::write(&ok, tone(0.6)).unwrap();
    assert!(
        instrec(&["tag", s(&ok), "--model", s(&bundle)])
            .status
            .success()
    );
}

#[test]
fn features_streams_and_equals_the_whole_signal_log_mel() {
    use instrec::features::{FeatureSettings, MelExtractor};
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.wav");
    common::long_chord(&long, 20.0);
    let out = dir.path().join("f.npy");
    for channel in ["mono", "right"] {
        let o = instrec(&["features", s(&long), "--out", s(&out), "--channel", channel]);
        assert!(o.status.success(), "{}", stderr(&o));
        let ours = instrec::npy::NpyArray::read(&out).unwrap();
        let audio = instrec::audio::decode_file(&long).unwrap();
        let whole = MelExtractor::new(FeatureSettings::default())
            .log_mel_of(&audio, clap::ValueEnum::from_str(channel, false).unwrap());
        assert_eq!(ours.shape, vec![128, whole.frames]);
        assert_eq!(ours.data, whole.data, "{channel}");
    }
}

#[test]
fn temporary_files_of_killed_writers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let clip = common::frontend_fixtures().join("voice_22k.wav");
    let out = dir.path().join("f.npy");
    let stale = dir.path().join(".f.npy.999999999.tmp");
    std::fs::write(&stale, vec![0u8; 1000]).unwrap();
    assert!(
        instrec(&["features", s(&clip), "--out", s(&out)])
            .status
            .success()
    );
    assert!(!stale.exists() && out.is_file());
}

#[test]
fn synth_voices_refuses_a_file_as_its_folder_and_writes_the_same_bytes_twice() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, b"mine").unwrap();
    let o = instrec(&["synth-voices", "--out", s(&file)]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("taken") && !e.contains("panicked"),
        "{e}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        assert!(
            instrec(&["synth-voices", "--out", s(d), "--seed", "4"])
                .status
                .success()
        );
    }
    let files = common::all_files(&a);
    assert_eq!(
        files
            .iter()
            .filter(|f| f.extension().is_some_and(|x| x == "sfz"))
            .count(),
        4
    );
    for f in files {
        let rel = f.strip_prefix(&a).unwrap();
        assert_eq!(
            std::fs::read(&f).unwrap(),
            std::fs::read(b.join(rel)).unwrap(),
            "{rel:?}"
        );
    }
}

#[test]
fn synth_never_mixes_corpora() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("corpus");
    let files = |d: &Path| common::all_files(d).len();
    let synth = |n: &str, seed: &str| {
        instrec(&[
            "synth",
            "--out",
            s(&out),
            "--train-per-class",
            n,
            "--test-clips",
            "1",
            "--seed",
            seed,
        ])
    };
    assert!(synth("2", "1").status.success());
    assert_eq!(files(&out), 11 * 2 + 2 + 1);
    // Other settings into the same folder: exactly the new corpus, none of the old files.
    assert!(synth("1", "2").status.success());
    assert_eq!(files(&out), 11 + 2 + 1);
    // A folder holding anything else is refused, and left as it was.
    let other = dir.path().join("mine");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("song.wav"), b"x").unwrap();
    let o = instrec(&[
        "synth",
        "--out",
        s(&other),
        "--train-per-class",
        "1",
        "--test-clips",
        "1",
    ]);
    assert_fails_naming(&o, "mine", "not empty");
    assert_eq!(files(&other), 1);
}

#[test]
fn evaluate_with_no_scorable_clip_is_an_error_not_a_zero_report() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = random_bundle(dir.path());
    let data = dir.path().join("data");
    let part = data.join("IRMAS-TestingData-Part1/Part1");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("a.wav"), b"not audio").unwrap();
    std::fs::write(part.join("a.txt"), b"pia\t\n").unwrap();
    let o = instrec(&[
        "evaluate",
        "--model",
        s(&bundle),
        "--data",
        s(&data),
        "--cache-dir",
        s(&dir.path().join("cache")),
    ]);
    assert_fails_naming(&o, "data", "none of the 1 test clips could be scored");
    assert!(!bundle.join("eval/report.json").exists());
}

/// The decoder boundary under mutation: truncated, bit-flipped and header-mangled WAV, FLAC, MP3
/// and OGG files built from the test clips. Every case either decodes to finite samples or is
/// refused with a message naming the file; none panics.
#[test]
fn fuzzed_files_decode_or_fail_cleanly() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let wav = std::fs::read(common::frontend_fixtures().join("voice_22k.wav")).unwrap();
    let sources: Vec<(&str, Vec<u8>)> = vec![
        ("wav", wav[..20_000].to_vec()),
        ("wav", tone_with(0.0)),
        (
            "flac",
            std::fs::read(data.join("chord_stereo_44k.flac")).unwrap()[..30_000].to_vec(),
        ),
        ("mp3", std::fs::read(data.join("voice_22k.mp3")).unwrap()),
        ("ogg", std::fs::read(data.join("voice_22k.ogg")).unwrap()),
    ];
    let mut rng = instrec::util::Rng::new(7);
    let (mut cases, mut decoded, mut refused) = (0, 0, 0);
    let start = std::time::Instant::now();
    for (ext, bytes) in &sources {
        for k in 0..800 {
            let mut b = bytes.clone();
            match k % 4 {
                // Truncated anywhere.
                0 => b.truncate(rng.range(0, b.len())),
                // A few bits flipped, most likely in the header.
                1 => {
                    for _ in 0..rng.range(1, 6) {
                        let i = if rng.f64() < 0.7 {
                            rng.range(0, 64.min(b.len()))
                        } else {
                            rng.range(0, b.len())
                        };
                        b[i] ^= 1 << rng.range(0, 8);
                    }
                }
                // Absurd header fields: a 32-bit word of the first 64 bytes set to an extreme.
                2 => {
                    let i = rng.range(0, 60) & !3;
                    let v =
                        *rng.choose(&[0u32, 1, 0xFFFF, 0xFFFF_FFFF, 0x7FFF_FFFF, 3_000_000_000]);
                    b[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
                // Random bytes spliced in.
                _ => {
                    let i = rng.range(0, b.len());
                    let junk: Vec<u8> = (0..rng.range(1, 200))
                        .map(|_| rng.range(0, 256) as u8)
                        .collect();
                    b.splice(i..i, junk);
                }
            }
            let name = format!("case{cases}.{ext}");
            cases += 1;
            let r = std::panic::catch_unwind(|| instrec::audio::decode_bytes(b, Some(ext), &name));
            match r {
                Err(_) => panic!("{name}: panicked"),
                Ok(Ok(a)) => {
                    assert!(a.channels.iter().flatten().all(|v| v.is_finite()), "{name}");
                    decoded += 1;
                }
                Ok(Err(e)) => {
                    assert!(e.to_string().starts_with(&name), "{e}");
                    refused += 1;
                }
            }
        }
    }
    eprintln!(
        "{cases} mutated files: {decoded} decoded, {refused} refused, 0 panics, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(cases, 4000);
}

#[test]
fn a_nan_clip_in_a_training_set_is_skipped_and_named_not_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pia = data.join("IRMAS-TrainingData/pia");
    std::fs::create_dir_all(&pia).unwrap();
    std::fs::write(pia.join("[pia][nod][cla]0001__1.wav"), tone_with(f32::NAN)).unwrap();
    std::fs::write(pia.join("[pia][nod][cla]0002__1.wav"), tone_with(0.0)).unwrap();
    let o = instrec(&[
        "prepare",
        "--data",
        s(&data),
        "--cache-dir",
        s(&dir.path().join("cache")),
    ]);
    let e = stderr(&o);
    assert!(e.contains("0001__1.wav") && e.contains("non-finite"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

/// demo and experiment re-render a corpus whose render was cut short, keep a complete one, and
/// use a corpus from before manifests as it is.
#[test]
fn corpora_are_rerendered_only_when_incomplete() {
    use instrec::data::soundfont::{SoundFontSource, load_soundfont};
    use instrec::data::synth::{MANIFEST, SynthOptions, needs_render, render_corpus};
    let dir = tempfile::tempdir().unwrap();
    let sf = load_soundfont(&SoundFontSource::Embedded).unwrap();
    let opts = SynthOptions {
        out: dir.path().join("c"),
        train_per_class: 1,
        test_clips: 1,
        seed: 3,
    };
    assert!(needs_render(&opts.out, &sf, &opts));
    render_corpus(&sf, &opts, &|_, _| {}).unwrap();
    assert!(!needs_render(&opts.out, &sf, &opts));
    let other = SynthOptions {
        seed: 4,
        ..opts.clone()
    };
    assert!(needs_render(&opts.out, &sf, &other));
    // A render killed part-way leaves its manifest saying so.
    let m = opts.out.join(MANIFEST);
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        text.replace("\"complete\": true", "\"complete\": false"),
    )
    .unwrap();
    assert!(needs_render(&opts.out, &sf, &opts));
    // No manifest at all: an older version's corpus, used as it is.
    std::fs::remove_file(&m).unwrap();
    assert!(!needs_render(&opts.out, &sf, &opts));
}
