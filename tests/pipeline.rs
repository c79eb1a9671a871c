//! The paper end to end on the synthetic corpus: learning, resumption, evaluation, tagging and
//! experiment grids.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{instrec, json_lines};
use std::sync::OnceLock;

use burn::tensor::{Device, Tensor};
use instrec::data::soundfont::{find_soundfont, load_soundfont};
use instrec::data::synth::{SynthOptions, render_corpus};
use instrec::eval::{EvalOptions, ThresholdKind, evaluate};
use instrec::features::ChannelMode;
use instrec::model::Arch;
use instrec::model::bundle::load_bundle;
use instrec::train::{Observer, Outcome, Quiet, TrainConfig, TrainSummary, resume, start};

/// Stops a run before its epoch `n + 1`, as an interruption would.
struct StopAfter(usize);
impl Observer for StopAfter {
    fn interrupt(&self, epochs_done: usize) -> bool {
        epochs_done >= self.0
    }
}

fn finished(o: instrec::error::Result<Outcome>) -> TrainSummary {
    match o.unwrap() {
        Outcome::Finished(s) => s,
        Outcome::Interrupted { epochs_done } => panic!("interrupted after {epochs_done} epochs"),
    }
}

fn interrupted(o: instrec::error::Result<Outcome>) -> usize {
    match o.unwrap() {
        Outcome::Interrupted { epochs_done } => epochs_done,
        Outcome::Finished(_) => panic!("trained to the end"),
    }
}

/// A corpus rendered once per test process: 16 training clips per class, 24 test clips.
fn corpus() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sf = load_soundfont(&find_soundfont(None).unwrap()).unwrap();
        let opts = SynthOptions {
            out: dir.path().to_path_buf(),
            train_per_class: 16,
            test_clips: 24,
            seed: 11,
        };
        render_corpus(&sf, &opts, &|_, _| {}).unwrap();
        dir
    })
    .path()
}

fn config(cache: &Path, epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::paper(
        corpus().to_path_buf(),
        Arch::ResNet18,
        "random",
        ChannelMode::Dup,
        3,
    );
    c.recipe.max_epochs = epochs;
    c.recipe.warmup_epochs = 1;
    c.recipe.patience = epochs;
    c.cache_dir = cache.to_path_buf();
    c
}

fn eval_opts(cache: &Path) -> EvalOptions {
    EvalOptions::paper(cache.to_path_buf())
}

/// Trains `c` into `run` to the end, asserts that the validation loss fell well below its first
/// epoch's, and evaluates the model on the corpus's test set: the log and the report.
fn train_learns(
    c: &TrainConfig,
    cache: &Path,
    run: &Path,
) -> (Vec<instrec::train::EpochLog>, instrec::eval::EvalReport) {
    let summary = finished(start(c, run, &Quiet));
    let log: Vec<instrec::train::EpochLog> = std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = log[0].val_loss;
    eprintln!(
        "{}: validation loss: first epoch {first:.4}, best {:.4}",
        c.precision, summary.best_val_loss
    );
    assert!(
        summary.best_val_loss < 0.6 * first,
        "validation loss did not fall well below its start: {first:.4} → {:.4}",
        summary.best_val_loss
    );
    let report = evaluate(
        &run.join("model"),
        corpus(),
        &eval_opts(cache),
        &Device::flex(),
        &|_, _| {},
    )
    .unwrap();
    (log, report)
}

/// bf16 training on LibTorch (feature `tch`) learns the corpus as fp32 does: the same run in
/// fp32 and in bf16 (same seed), each with the validation loss falling well below its start,
/// bf16's test micro-F1 at the oracle threshold within 0.03 of fp32's, and at the
/// validation-tuned one well above the constant predictor's. (The tuned F1 is no comparison: over
/// seeds 1–4 fp32 gave 0.469, 0.339, 0.455, 0.523 and bf16 0.492, 0.514, 0.400, 0.500; the
/// oracle F1 0.624, 0.584, 0.634, 0.640 and 0.615, 0.598, 0.630, 0.625.) Ignored by default:
/// on a CPU without bf16 instructions LibTorch emulates bf16 (ResNet18 training 2 samples/s
/// against 42 in fp32 on a 2-core VM: about 30 minutes; 2 minutes with AVX512-BF16);
/// `tests/tch.rs` has a short bf16 learning test.
#[cfg(feature = "tch")]
#[test]
#[ignore = "slow where the CPU has no bf16 instructions: run with --ignored"]
fn bf16_training_on_libtorch_learns_the_synthetic_corpus_as_fp32_does() {
    let cache = tempfile::tempdir().unwrap();
    let f1s = |precision| {
        let mut c = config(cache.path(), 6);
        c.backend = instrec::backend::Backend::Tch;
        c.precision = precision;
        let run = tempfile::tempdir().unwrap();
        let (_, report) = train_learns(&c, cache.path(), run.path());
        let f1 = |k| report.result(k).unwrap().metrics.micro.f1;
        let (tuned, oracle) = (f1(ThresholdKind::TunedGlobal), f1(ThresholdKind::Oracle));
        eprintln!(
            "{precision} test micro-F1: tuned {tuned:.3}, oracle {oracle:.3}, constant {:.3}",
            report.constant_baseline_f1
        );
        (tuned, oracle, report.constant_baseline_f1)
    };
    let fp32 = f1s(instrec::backend::Precision::Fp32);
    let bf16 = f1s(instrec::backend::Precision::Bf16);
    assert!(
        (bf16.1 - fp32.1).abs() < 0.03 && bf16.0 > bf16.2 + 0.05,
        "bf16 {bf16:?} against fp32 {fp32:?} (tuned, oracle, constant)"
    );
}

#[test]
fn resnet18_learns_the_synthetic_corpus() {
    let cache = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    let (log, report) = train_learns(&config(cache.path(), 6), cache.path(), run.path());
    assert_eq!(log.len(), 6);
    let tuned = report
        .result(ThresholdKind::TunedGlobal)
        .unwrap()
        .metrics
        .micro
        .f1;
    let oracle = report
        .result(ThresholdKind::Oracle)
        .unwrap()
        .metrics
        .micro
        .f1;
    let constant = report.constant_baseline_f1;
    eprintln!(
        "test micro-F1: validation-tuned {tuned:.3}, oracle {oracle:.3}, best constant {constant:.3}"
    );
    // Measured here: tuned 0.508, oracle 0.632, constant 0.329 (16 clips per class, 6 epochs).
    assert!(
        tuned > constant + 0.1,
        "F1 {tuned:.3} is not well above the constant predictor's {constant:.3}"
    );
    assert!(
        oracle > constant + 0.2,
        "oracle F1 {oracle:.3} vs constant {constant:.3}"
    );
    // The rows agree with micro-F1 recomputed here from the clip scores: the tuned row uses the
    // bundle's threshold, and no threshold on a 0.01 grid beats the oracle.
    let (_, cfg) = load_bundle(&run.path().join("model"), &Device::flex()).unwrap();
    let micro_f1 = |t: f32| {
        let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
        for c in &report.clip_scores {
            let (labels, scores) = (&c.labels, &c.scores);
            for (k, &s) in scores.iter().enumerate() {
                match (s >= t, labels.contains(&k)) {
                    (true, true) => tp += 1.0,
                    (true, false) => fp += 1.0,
                    (false, true) => fn_ += 1.0,
                    _ => {}
                }
            }
        }
        if tp == 0.0 {
            0.0
        } else {
            2.0 * tp / (2.0 * tp + fp + fn_)
        }
    };
    let tuned_row = report.result(ThresholdKind::TunedGlobal).unwrap();
    assert!(
        tuned_row
            .thresholds
            .iter()
            .all(|&t| t == cfg.thresholds.global)
    );
    assert!((micro_f1(cfg.thresholds.global) - tuned).abs() < 1e-9);
    // The mixture-calibrated row uses the bundle's mixture threshold; the bundle has s2's too.
    let mixture = cfg.thresholds.mixture.as_ref().expect("mixture thresholds");
    let mixture_f1 = report
        .result(ThresholdKind::MixtureGlobal)
        .unwrap()
        .metrics
        .micro
        .f1;
    assert!((micro_f1(mixture.global) - mixture_f1).abs() < 1e-9);
    eprintln!(
        "mixture-calibrated threshold {:.2} (single clips: {:.2}): test micro-F1 {mixture_f1:.3}",
        mixture.global, cfg.thresholds.global
    );
    let s2 = cfg.thresholds_s2.as_ref().expect("s2 thresholds");
    assert!(s2.mixture.is_some() && s2.per_class.is_some());
    // Tagging can use any of them; a bundle without them says so.
    use instrec::tag::{Tagger, TunedOn};
    let tagger = || Tagger::load(&run.path().join("model"), &Device::flex()).unwrap();
    assert_eq!(
        tagger().with_tuned(TunedOn::Mixtures).unwrap().thresholds,
        vec![mixture.global; 11]
    );
    assert_eq!(
        tagger()
            .with_tuned(TunedOn::MixturesPerClass)
            .unwrap()
            .thresholds,
        mixture.per_class
    );
    assert_eq!(tagger().thresholds, vec![mixture.global; 11], "the default");
    assert_eq!(
        tagger()
            .with_tuned(TunedOn::ClipsPerClass)
            .unwrap()
            .thresholds,
        cfg.thresholds.per_class.clone().unwrap()
    );
    let untuned = random_bundle();
    let err = Tagger::load(untuned.path(), &Device::flex())
        .unwrap()
        .with_tuned(TunedOn::Mixtures)
        .err()
        .unwrap();
    assert!(
        err.contains("no thresholds calibrated on validation mixtures"),
        "{err}"
    );
    let oracle_t = report.result(ThresholdKind::Oracle).unwrap().thresholds[0];
    assert!((micro_f1(oracle_t) - oracle).abs() < 1e-9);
    let grid_best = (1..100)
        .map(|i| micro_f1(i as f32 / 100.0))
        .fold(0.0, f64::max);
    assert!(
        grid_best <= oracle + 1e-9,
        "grid {grid_best} beats the oracle {oracle}"
    );
    // The bundle is complete: thresholds tuned on validation, provenance filled in.
    assert_eq!(cfg.thresholds.source, "validation-tuned");
    assert_eq!(cfg.thresholds.per_class.as_ref().unwrap().len(), 11);
    assert_eq!(cfg.provenance.seed, 3);
    assert!(run.path().join("loss.png").is_file());
    // Reports.
    let written = instrec::eval::write_report(&report, &run.path().join("eval")).unwrap();
    assert!(written.iter().any(|p| p.ends_with("report.md")));
    let md = std::fs::read_to_string(run.path().join("eval/report.md")).unwrap();
    assert!(md.contains("test-oracle") && md.contains("validation-tuned"));
}

fn weights(dir: &Path) -> Vec<f32> {
    let (m, _) = load_bundle(&dir.join("model"), &Device::flex()).unwrap();
    let x = Tensor::<4>::ones([2, 3, 43, 128], &Device::flex());
    m.forward(x).into_data().try_to_vec::<f32>().unwrap()
}

fn log_without_times(dir: &Path) -> Vec<(usize, String, String, String)> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let e: instrec::train::EpochLog = serde_json::from_str(l).unwrap();
            (
                e.epoch,
                format!("{:e}", e.lr),
                format!("{:e}", e.train_loss),
                format!("{:e}", e.val_loss),
            )
        })
        .collect()
}

/// Trains `c` whole, and in three parts (interrupted after epochs 1 and 2, then resumed): the
/// same log and the same model.
fn assert_resume_is_exact(c: &TrainConfig) {
    let whole = tempfile::tempdir().unwrap();
    finished(start(c, whole.path(), &Quiet));
    let parts = tempfile::tempdir().unwrap();
    // Interrupted after one epoch...
    assert_eq!(interrupted(start(c, parts.path(), &StopAfter(1))), 1);
    assert_eq!(log_without_times(parts.path()).len(), 1);
    // ...then after another, then resumed to the end.
    assert_eq!(interrupted(resume(parts.path(), &StopAfter(2))), 2);
    finished(resume(parts.path(), &Quiet));
    assert_eq!(
        log_without_times(whole.path()),
        log_without_times(parts.path())
    );
    assert_eq!(weights(whole.path()), weights(parts.path()));
}

#[test]
fn resume_ends_with_the_same_model_as_an_uninterrupted_run() {
    let cache = tempfile::tempdir().unwrap();
    let mut c = config(cache.path(), 3);
    c.recipe.batch_size = 32;
    assert_resume_is_exact(&c);
}

/// The same on LibTorch, whose optimizer is LibTorch's fused Adam (feature `tch`).
#[cfg(feature = "tch")]
#[test]
fn resume_on_libtorch_with_its_fused_adam_ends_with_the_same_model() {
    let cache = tempfile::tempdir().unwrap();
    let mut c = config(cache.path(), 3);
    c.recipe.batch_size = 32;
    c.backend = instrec::backend::Backend::Tch;
    assert_resume_is_exact(&c);
}

/// `augmented` (the paper's recipe with one augmentation switched on) resumes exactly from an
/// interruption, and trains on something else than the recipe without it.
fn assert_augmented_run_resumes_and_differs(augment: impl Fn(&mut TrainConfig)) {
    let cache = tempfile::tempdir().unwrap();
    let mut paper = config(cache.path(), 2);
    paper.recipe.batch_size = 32;
    let mut c = paper.clone();
    augment(&mut c);
    assert_ne!(c, paper);
    let whole = tempfile::tempdir().unwrap();
    finished(start(&c, whole.path(), &Quiet));
    let parts = tempfile::tempdir().unwrap();
    assert_eq!(interrupted(start(&c, parts.path(), &StopAfter(1))), 1);
    finished(resume(parts.path(), &Quiet));
    assert_eq!(
        log_without_times(whole.path()),
        log_without_times(parts.path())
    );
    assert_eq!(weights(whole.path()), weights(parts.path()));
    let plain = tempfile::tempdir().unwrap();
    interrupted(start(&paper, plain.path(), &StopAfter(1)));
    assert_ne!(
        log_without_times(plain.path())[0],
        log_without_times(parts.path())[0]
    );
}

#[test]
fn resume_with_mixing_ends_with_the_same_model_as_an_uninterrupted_run() {
    assert_augmented_run_resumes_and_differs(|c| {
        c.mix = Some(instrec::data::mix::MixConfig::default())
    });
}

#[test]
fn resume_with_spec_augment_ends_with_the_same_model_as_an_uninterrupted_run() {
    assert_augmented_run_resumes_and_differs(|c| {
        c.spec_augment = Some(instrec::data::spec_augment::SpecAugmentConfig::default())
    });
}

#[test]
fn resume_with_the_asymmetric_loss_ends_with_the_same_model_as_an_uninterrupted_run() {
    assert_augmented_run_resumes_and_differs(|c| c.loss = instrec::train::Loss::Asl);
}

/// A run judges its validation windows by the loss it trains with: the validation loss logged for
/// the kept epoch is `--loss asl`'s loss of the saved model on them, not their BCE.
#[test]
fn an_asl_runs_validation_loss_is_the_asymmetric_loss() {
    use burn::tensor::TensorData;
    use instrec::features::{FeatureSettings, Windowing};
    use instrec::train::Loss;
    let cache = tempfile::tempdir().unwrap();
    let mut c = config(cache.path(), 1);
    c.recipe.batch_size = 32;
    c.loss = Loss::Asl;
    let dir = tempfile::tempdir().unwrap();
    finished(start(&c, dir.path(), &Quiet));
    let log = std::fs::read_to_string(dir.path().join("log.jsonl")).unwrap();
    let logged: instrec::train::EpochLog =
        serde_json::from_str(log.lines().next().unwrap()).unwrap();
    // The validation windows as training lays them, with their labels.
    let data = instrec::train::load_run_data(&c, &Quiet).unwrap();
    let silence = FeatureSettings::default().silence();
    let classes = instrec::CLASSES.len();
    let (mut x, mut y, mut n) = (Vec::new(), Vec::new(), 0);
    for (f, labels) in &data.valid {
        for s in Windowing::training().starts(f.frames()) {
            x.extend(f.input(s, 43, silence));
            let mut row = vec![0f32; classes];
            labels.iter().for_each(|&l| row[l] = 1.0);
            y.extend(row);
            n += 1;
        }
    }
    let device = Device::flex();
    let (m, _) = load_bundle(&dir.path().join("model"), &device).unwrap();
    let logits = m.forward(Tensor::from_data(
        TensorData::new(x, [n, 3, 43, 128]),
        &device,
    ));
    let y = Tensor::<2>::from_data(TensorData::new(y, [n, classes]), &device);
    let loss = |kind: Loss| {
        let t = kind.of(logits.clone(), y.clone());
        t.into_data().try_to_vec::<f32>().unwrap()[0] as f64
    };
    let (asl, bce) = (loss(Loss::Asl), loss(Loss::Bce));
    assert!(
        (asl - logged.val_loss).abs() < 1e-3 * asl,
        "logged {} vs asl {asl} (bce {bce})",
        logged.val_loss
    );
    assert!((bce - asl).abs() > 0.1 * asl, "bce {bce} vs asl {asl}");
}

#[test]
fn calibration_mixtures_come_from_the_validation_split_only() {
    use instrec::data::mix::{Mixture, calibration_set, mix_clips};
    let cache = tempfile::tempdir().unwrap();
    let c = config(cache.path(), 1);
    let data = instrec::train::load_run_data(&c, &Quiet).unwrap();
    let set = calibration_set(&data.valid_info, &c.calibration, c.seed);
    assert_eq!(
        set,
        calibration_set(&data.valid_info, &c.calibration, c.seed)
    );
    assert_ne!(
        set,
        calibration_set(&data.valid_info, &c.calibration, c.seed + 1)
    );
    // The validation clips are neither training nor test clips.
    let irmas = instrec::data::Irmas::read(corpus()).unwrap();
    for p in &data.valid_paths {
        assert!(irmas.test.iter().all(|t| &t.path != p));
        assert!(!data.train_paths.contains(p));
    }
    let clips = instrec::train::calibration_clips(&data, &c.calibration, c.seed);
    assert_eq!(clips.len(), c.calibration.mixtures);
    let offset = instrec::features::FeatureSettings::default().log_offset;
    let mut sizes = [0usize; 4];
    for (m, (f, labels)) in set.iter().zip(&clips) {
        let Mixture {
            sources, weights, ..
        } = m;
        sizes[sources.len()] += 1;
        assert!(
            sources
                .iter()
                .all(|&(i, start)| i < data.valid.len() && start == 0)
        );
        assert_eq!(labels, &m.labels);
        let parts: Vec<&instrec::features::ClipFeatures> =
            sources.iter().map(|&(i, _)| &data.valid[i].0).collect();
        assert_eq!(f.mels, mix_clips(&parts, weights, offset).mels);
        if sources.len() == 1 {
            assert_eq!(f.mels, data.valid[sources[0].0].0.mels);
        }
    }
    eprintln!(
        "calibration examples with 1/2/3 instruments: {:?}",
        &sizes[1..]
    );
    assert!(sizes[1..].iter().all(|&k| k > 90), "{sizes:?}");
}

/// `--label-chords`: a training clip whose chords an instrument of a class plays carries that
/// class beside its line's, in its label set and in every example made of it; without the flag
/// every clip has one label; a folder without a corpus manifest is refused by name.
#[test]
fn label_chords_adds_the_chords_instrument_to_a_clips_labels() {
    use instrec::data::mix::Mixture;
    use instrec::data::synth::{PROGRAMS, chord_classes, file_records};
    let cache = tempfile::tempdir().unwrap();
    let mut c = config(cache.path(), 1);
    let plain = instrec::train::load_run_data(&c, &Quiet).unwrap();
    assert!(plain.train.iter().all(|(_, l)| l.len() == 1));
    c.label_chords = true;
    let data = instrec::train::load_run_data(&c, &Quiet).unwrap();
    assert_eq!(data.train_paths, plain.train_paths);
    let records = file_records(corpus());
    let class_of = |p: u8| PROGRAMS.iter().position(|c| c.contains(&p));
    let mut labelled = 0;
    let clips = data.train.iter().chain(&data.valid);
    let infos = data.train_info.iter().chain(&data.valid_info);
    let paths = data.train_paths.iter().chain(&data.valid_paths);
    for ((path, (_, labels)), info) in paths.zip(clips).zip(infos) {
        let rel = path.strip_prefix(corpus()).unwrap().to_string_lossy();
        let r = records.iter().find(|r| r.path == rel).unwrap();
        let mut want = vec![info.label];
        want.extend(r.chords.and_then(class_of));
        want.sort_unstable();
        assert_eq!(labels, &want, "{rel}");
        assert_eq!(Mixture::single(0, 0, info).labels, want, "{rel}");
        labelled += usize::from(want.len() == 2);
    }
    assert!(labelled > 5, "{labelled} clips with a class's chords");
    // Mixtures hold every source's labels, chords included.
    let starts: Vec<Vec<usize>> = data.train.iter().map(|_| vec![0]).collect();
    let order: Vec<(usize, usize)> = (0..data.train.len()).map(|i| (i, 0)).collect();
    let mix = instrec::data::mix::MixConfig {
        prob: 1.0,
        ..Default::default()
    };
    let mut rng = instrec::util::Rng::new(5);
    for m in
        instrec::data::mix::training_examples(&order, &data.train_info, &starts, &mix, &mut rng)
    {
        for &(i, _) in &m.sources {
            assert!(
                data.train[i].1.iter().all(|l| m.labels.contains(l)),
                "{m:?}"
            );
        }
    }
    let empty = tempfile::tempdir().unwrap();
    let e = chord_classes(empty.path()).unwrap_err().to_string();
    assert!(
        e.contains("instrec-synth.json") && e.contains("instrec synth"),
        "{e}"
    );
}

/// `--val-data`: every clip of the corpus trains, the other corpus's clips validate, the bundle
/// names the validation corpus and its libraries, and a corpus cannot validate itself.
#[test]
fn validation_can_come_from_another_corpus() {
    let other = tempfile::tempdir().unwrap();
    let sf = load_soundfont(&find_soundfont(None).unwrap()).unwrap();
    let opts = SynthOptions {
        out: other.path().to_path_buf(),
        train_per_class: 3,
        test_clips: 2,
        seed: 12,
    };
    render_corpus(&sf, &opts, &|_, _| {}).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut c = config(cache.path(), 1);
    c.val_data = Some(other.path().to_path_buf());
    let data = instrec::train::load_run_data(&c, &Quiet).unwrap();
    let own = instrec::data::Irmas::read(corpus()).unwrap();
    let theirs = instrec::data::Irmas::read(other.path()).unwrap();
    assert_eq!(data.train.len(), own.train.len());
    assert_eq!(data.valid.len(), theirs.train.len());
    assert!(data.valid_paths.iter().all(|p| p.starts_with(other.path())));
    let run = tempfile::tempdir().unwrap();
    let s = finished(start(&c, run.path(), &Quiet));
    assert_eq!(s.val_clips, theirs.train.len());
    let bundle = instrec::model::bundle::read_config(&run.path().join("model")).unwrap();
    let p = &bundle.provenance;
    assert_eq!(p.validation.as_deref(), other.path().to_str());
    assert!(!p.validation_sources.is_empty());
    // Resuming keeps it: train.json has it.
    let saved: TrainConfig =
        serde_json::from_slice(&std::fs::read(run.path().join("train.json")).unwrap()).unwrap();
    assert_eq!(saved.val_data, c.val_data);
    // The training corpus itself, named another way.
    c.val_data = Some(corpus().join("."));
    let Err(e) = instrec::train::load_run_data(&c, &Quiet) else {
        panic!("a corpus validated itself")
    };
    let e = e.to_string();
    assert!(
        e.contains("--val-data") && e.contains("is a training clip too"),
        "{e}"
    );
}

/// A fine-tune (`--init` a bundle) records the start bundle's provenance, so the libraries its
/// weights first learnt from stay on record, and `pack` keeps it.
#[test]
fn a_fine_tune_records_where_its_weights_started() {
    use instrec::model::bundle::{pack_bundle, read_config};
    let cache = tempfile::tempdir().unwrap();
    let (first, second, packed) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut c = config(cache.path(), 1);
    finished(start(&c, first.path(), &Quiet));
    let start_bundle = read_config(&first.path().join("model")).unwrap().provenance;
    assert!(
        start_bundle.init_provenance.is_none(),
        "random init has none"
    );
    assert!(!start_bundle.sources.is_empty());
    // A run directory names its bundle too.
    c.init = first.path().display().to_string();
    c.seed = 4;
    finished(start(&c, second.path(), &Quiet));
    pack_bundle(&second.path().join("model"), packed.path(), None).unwrap();
    for dir in [second.path().join("model"), packed.path().to_path_buf()] {
        let p = read_config(&dir).unwrap().provenance;
        assert_eq!(p.init, c.init);
        assert_eq!(p.init_provenance.as_deref(), Some(&start_bundle));
        assert_eq!(p.chain().count(), 2);
        assert_eq!(p.all_sources().len(), 2 * start_bundle.sources.len());
    }
    // Interrupted, then resumed after the start bundle has gone: the record stays.
    let third = tempfile::tempdir().unwrap();
    let mut two = c.clone();
    two.recipe.max_epochs = 2;
    two.recipe.patience = 2;
    assert!(matches!(
        start(&two, third.path(), &StopAfter(1)).unwrap(),
        Outcome::Interrupted { epochs_done: 1 }
    ));
    let moved = tempfile::tempdir().unwrap();
    std::fs::rename(first.path().join("model"), moved.path().join("model")).unwrap();
    let s = finished(resume(third.path(), &Quiet));
    assert_eq!(s.epochs, 2);
    let p = read_config(&third.path().join("model")).unwrap().provenance;
    assert_eq!(p.init_provenance.as_deref(), Some(&start_bundle));
    std::fs::rename(moved.path().join("model"), first.path().join("model")).unwrap();
    // A start bundle whose record does not read is refused before training, naming the file.
    let config_file = first.path().join("model").join("config.json");
    std::fs::write(&config_file, "{ not json").unwrap();
    let Err(e) = start(&c, tempfile::tempdir().unwrap().path(), &Quiet) else {
        panic!("a start bundle with a broken config.json trained")
    };
    assert!(e.to_string().contains("config.json"), "{e}");
}

/// `pack --calibrate-on`: the packed weights as they were, every threshold re-tuned on the other
/// corpus's clips exactly as the library tunes them for those weights, and the corpus recorded.
#[test]
fn pack_can_retune_thresholds_on_another_corpus() {
    use instrec::data::mix::CalibrationConfig;
    use instrec::model::bundle::read_config;
    let bundle = random_bundle();
    let cache = tempfile::tempdir().unwrap();
    let (plain, tuned) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pack = |out: &Path, extra: &[&str]| {
        let model = bundle.path().to_str().unwrap();
        let mut args = vec!["pack", "--model", model, "--out", out.to_str().unwrap()];
        args.extend(extra);
        let o = instrec(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    pack(plain.path(), &[]);
    let (data, cache_dir) = (corpus().to_str().unwrap(), cache.path().to_str().unwrap());
    let flags = ["--calibrate-on", data, "--calib-mixtures", "60"];
    pack(
        tuned.path(),
        &[&flags[..], &["--cache-dir", cache_dir]].concat(),
    );
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(weights(plain.path()), weights(tuned.path()));
    let (before, after) = (
        read_config(plain.path()).unwrap(),
        read_config(tuned.path()).unwrap(),
    );
    assert_eq!(after.weights_sha256, before.weights_sha256);
    assert_eq!(after.provenance.validation.as_deref(), Some(data));
    let device = Device::flex();
    let (model, _) = load_bundle(tuned.path(), &device).unwrap();
    let clips = instrec::train::data::load_validation_clips(
        corpus(),
        ChannelMode::Dup,
        cache.path(),
        &Quiet,
    )
    .unwrap();
    let calibration = CalibrationConfig {
        mixtures: 60,
        ..Default::default()
    };
    let folded = model.fold_batchnorm();
    let (s1, s2) =
        instrec::train::tune_all_thresholds(&folded, &clips, &calibration, 1, &device, 64);
    assert_eq!(after.thresholds, s1);
    assert_eq!(after.thresholds_s2, Some(s2));
    assert_ne!(after.thresholds, before.thresholds);
}

/// A model bundle with random weights, in a folder of its own.
fn random_bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::random_bundle(dir.path());
    dir
}

/// `tag --format json` on a folder of a 20-s and a 3-s clip: a window every 22 frames, the last
/// one ending at the clip's end, and every class reported at threshold 0.
fn tag_gives_a_full_timeline(folder: &Path) {
    let bundle = random_bundle();
    let o = instrec(&[
        "tag",
        folder.to_str().unwrap(),
        "--model",
        bundle.path().to_str().unwrap(),
        "--format",
        "json",
        "--threshold",
        "0.0",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for f in files {
        let timeline = f["timeline"].as_array().unwrap();
        let duration = f["duration_s"].as_f64().unwrap();
        // 20-s clip: 862 frames → windows at 0, 22, ..., 814 and a last one at 819.
        let expected = if duration > 10.0 { 39 } else { 5 };
        assert_eq!(timeline.len(), expected, "{duration}");
        assert_eq!(timeline[0]["scores"].as_array().unwrap().len(), 11);
        let last_end = timeline.last().unwrap()["end_s"].as_f64().unwrap();
        assert!(
            (last_end - duration).abs() < 0.03,
            "last window ends at {last_end}, clip at {duration}"
        );
        // Threshold 0: every class is reported, best first.
        let p = f["predominant"].as_array().unwrap();
        assert_eq!(p.len(), 11);
        assert!(p[0][1].as_f64().unwrap() >= p[10][1].as_f64().unwrap());
    }
}

#[test]
fn tag_gives_a_full_timeline_for_long_and_short_clips() {
    let dir = tempfile::tempdir().unwrap();
    common::long_chord(&dir.path().join("long.wav"), 20.0);
    std::fs::copy(
        common::frontend_fixtures().join("chord_stereo_44k.wav"),
        dir.path().join("short.wav"),
    )
    .unwrap();
    tag_gives_a_full_timeline(dir.path());
}

#[test]
fn tag_reads_the_irmas_sample_and_gives_a_full_timeline() {
    if let Some(shared) = common::shared() {
        tag_gives_a_full_timeline(&shared.join("irmas-sample"));
    }
}

#[test]
fn tag_goes_on_past_bad_files_and_reports_them() {
    let bundle = random_bundle();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = common::frontend_fixtures().join("voice_22k.wav");
    std::fs::copy(&good, d.join("a-good.wav")).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chord_stereo_44k.ogg"),
        d.join("sub/b-good.ogg"),
    )
    .unwrap();
    std::fs::write(d.join("c-bad.wav"), b"not audio at all").unwrap();
    let mp3 = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/voice_22k.mp3"))
        .unwrap();
    std::fs::write(d.join("d-empty.mp3"), &mp3[..0]).unwrap();
    std::fs::write(d.join("notes.txt"), b"ignored: not an audio extension").unwrap();
    let timeline = d.join("tl.png");
    let o = instrec(&[
        "tag",
        d.to_str().unwrap(),
        "--model",
        bundle.path().to_str().unwrap(),
        "--timeline",
        timeline.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stdout {out}\nstderr {err}");
    assert!(
        out.contains("a-good.wav") && out.contains("b-good.ogg"),
        "{out}"
    );
    assert!(
        err.contains("c-bad.wav") && err.contains("d-empty.mp3"),
        "{err}"
    );
    assert!(err.contains("2 of 4 file(s) failed"), "{err}");
    assert!(!err.contains("panicked"));
    assert!(d.join("tl-a-good.png").is_file() && d.join("tl-b-good.png").is_file());
    // CSV: one row per window, 11 scores each.
    let o = instrec(&[
        "tag",
        d.join("a-good.wav").to_str().unwrap(),
        "--model",
        bundle.path().to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert!(o.status.success());
    let csv = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("file,start_s,end_s,cel,"));
    assert_eq!(lines.len(), 1 + 5); // 126 frames → 0, 22, 44, 66, 83
    assert!(lines[1..].iter().all(|l| l.split(',').count() == 14));
}

/// A grid on the test corpus, in a fresh folder: `axes` and `sections` go into its TOML; `run()`
/// runs `instrec experiment` on it (again and again).
struct Grid {
    cache: tempfile::TempDir,
    out: tempfile::TempDir,
    cfg: PathBuf,
}

impl Grid {
    fn new(axes: &str, sections: &str) -> Self {
        let (cache, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let toml = format!(
            "name = \"grid\"\ndata = \"{}\"\nout = \"{}\"\narchs = [\"han\"]\ninits = [\"random\"]\nchannels = [\"dup\"]\n{axes}\n[train]\nmax_epochs = 1\nwarmup_epochs = 0\n{sections}",
            corpus().display(),
            out.path().display()
        );
        let cfg = out.path().join("grid.toml");
        std::fs::write(&cfg, toml).unwrap();
        Self { cache, out, cfg }
    }

    fn run(&self) -> std::process::Output {
        instrec(&[
            "experiment",
            self.cfg.to_str().unwrap(),
            "--cache-dir",
            self.cache.path().to_str().unwrap(),
        ])
    }
}

#[test]
fn experiment_grid_runs_skips_finished_runs_and_tabulates() {
    let grid = Grid::new("seeds = [1, 2]", "");
    let out = &grid.out;
    let o = grid.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(table.contains("| han | N (random) | dup | 2 |"), "{table}");
    assert!(table.contains(" ± "));
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    // A second run finds both runs finished.
    let o = grid.run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("finished earlier, skipped").count(), 2, "{err}");
}

#[test]
fn experiment_grid_varies_mixing_threshold_source_and_aggregation() {
    let grid = Grid::new(
        "seeds = [1]\nmix = [false, true]\nthresholds = [\"single\", \"mixtures\"]\naggregations = [\"s1\", \"s2\"]",
        "[calibration]\nmixtures = 30\n",
    );
    let out = &grid.out;
    let o = grid.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Two runs (paper, --mix), each evaluated with s1 and s2.
    for run in ["han-random-dup-seed1", "han-random-dup-mix-seed1"] {
        for eval in ["eval", "eval-s2"] {
            assert!(
                out.path()
                    .join(run)
                    .join(eval)
                    .join("report.json")
                    .is_file()
            );
        }
    }
    let mixed: instrec::train::TrainConfig = serde_json::from_slice(
        &std::fs::read(out.path().join("han-random-dup-mix-seed1/train.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(mixed.mix, Some(instrec::data::mix::MixConfig::default()));
    assert_eq!(mixed.calibration.mixtures, 30);
    // 2 trainings × 2 threshold sources × 2 aggregations.
    let table = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| han ")).collect();
    assert_eq!(rows.len(), 8, "{table}");
    assert!(table.contains("| han | N (random) | dup | --mix | validation mixtures | s2 | 1 |"));
    assert!(table.contains("| han | N (random) | dup | paper | validation clips | s1 | 1 |"));
    // The s2 report uses the thresholds tuned for s2.
    let report: instrec::eval::EvalReport = serde_json::from_slice(
        &std::fs::read(out.path().join("han-random-dup-seed1/eval-s2/report.json")).unwrap(),
    )
    .unwrap();
    let (_, bundle) = load_bundle(
        &out.path().join("han-random-dup-seed1/model"),
        &Device::flex(),
    )
    .unwrap();
    let s2 = bundle.thresholds_s2.unwrap();
    let row = report.result(ThresholdKind::MixtureGlobal).unwrap();
    assert!(
        row.thresholds
            .iter()
            .all(|&t| t == s2.mixture.as_ref().unwrap().global)
    );
}

#[test]
fn streaming_tagging_equals_scoring_the_whole_clip() {
    use instrec::features::{ClipFeatures, FeatureSettings, MelExtractor, Windowing};
    let device = Device::flex();
    let ex = MelExtractor::new(FeatureSettings::default());
    let tmp = tempfile::tempdir().unwrap();
    // A clip shorter than one window (0.68 s, padded to one) too.
    let short = tmp.path().join("short.wav");
    let audio =
        instrec::audio::decode_file(&common::frontend_fixtures().join("chord_stereo_44k.wav"))
            .unwrap();
    let cut: Vec<Vec<f32>> = audio
        .channels
        .iter()
        .map(|c| c[..30_000].to_vec())
        .collect();
    instrec::audio::write_wav_i16(&short, 44_100, &cut).unwrap();
    // 20 s of 44.1 kHz stereo: many decoder blocks, the resampler's state carried across them.
    let long = tmp.path().join("long.wav");
    common::long_chord(&long, 20.0);
    let files = [
        long,
        common::frontend_fixtures().join("noise_mono_16k.wav"),
        short,
    ];
    for mode in [ChannelMode::Dup, ChannelMode::Stereo] {
        let dir = tempfile::tempdir().unwrap();
        let model = instrec::model::Model::random(Arch::ResNet18, 11, &device);
        let config = instrec::model::bundle::BundleConfig::new(Arch::ResNet18, mode);
        instrec::model::bundle::save_bundle(dir.path(), &model, &config).unwrap();
        let tagger = instrec::tag::Tagger::load(dir.path(), &device).unwrap();
        for f in &files {
            let streamed = tagger.tag_file(f).unwrap();
            let audio = instrec::audio::decode_file(f).unwrap();
            let feats = ClipFeatures::extract(&ex, &audio, mode);
            let whole = instrec::eval::score_windows(
                &tagger.model,
                &feats,
                Windowing::analysis(),
                &device,
                64,
            );
            assert_eq!(streamed.timeline.len(), whole.len(), "{}", f.display());
            for (a, b) in streamed.timeline.iter().zip(&whole) {
                for (x, y) in a.scores.iter().zip(b) {
                    assert!((x - y).abs() < 1e-5, "{} {mode:?}: {x} vs {y}", f.display());
                }
            }
            assert!((streamed.duration_s - audio.duration_s()).abs() < 1e-9);
        }
    }
}

/// A folder of `n` short clips (copies of the fixtures under distinct names) and one bad file.
fn library(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let srcs = [
        "chord_stereo_44k.wav",
        "voice_22k.wav",
        "noise_mono_16k.wav",
    ];
    for i in 0..n {
        let sub = dir.path().join(format!("album{}", i % 4));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::copy(
            common::frontend_fixtures().join(srcs[i % 3]),
            sub.join(format!("track{i:02}.wav")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("broken.flac"), b"not audio").unwrap();
    dir
}

/// `instrec tag LIB --model BUNDLE --out OUT EXTRA...`
fn tag_into(lib: &Path, bundle: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "tag",
        lib.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    instrec(&args)
}

fn paths_once(lines: &[serde_json::Value]) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for l in lines {
        *seen
            .entry(l["path"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    seen
}

#[test]
fn library_tagging_survives_a_kill_and_resumes_each_file_once() {
    let bundle = random_bundle();
    let lib = library(40);
    let out = lib.path().join("tags.jsonl");
    let args = |resume: bool| {
        let mut v = vec![
            "tag".to_string(),
            lib.path().to_str().unwrap().to_string(),
            "--model".into(),
            bundle.path().to_str().unwrap().into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ];
        if resume {
            v.push("--resume".into());
        }
        v
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_instrec"))
        .args(args(false))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it for real once a few files are written.
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&out).map_or(0, |s| s.lines().count()) < 3 {
        assert!(t0.elapsed().as_secs() < 120, "no output");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = json_lines(&out).len();
    assert!(
        before < 41,
        "the run finished before the kill ({before} lines)"
    );
    // And a line cut off mid-write, as a crash during a write leaves it.
    let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
    std::io::Write::write_all(&mut f, b"{\"path\":\"/cut/off").unwrap();
    drop(f);
    // Without --resume an existing output is refused.
    let o = instrec(&args(false).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
    let o = instrec(&args(true).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines = json_lines(&out);
    let seen = paths_once(&lines);
    assert_eq!(lines.len(), 41, "each file exactly once");
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    // The bad file is listed with its reason; the others have scores and a timeline.
    let bad: Vec<_> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0]["path"].as_str().unwrap().ends_with("broken.flac"));
    assert!(
        lines
            .iter()
            .filter(|l| l.get("error").is_none())
            .all(|l| l["scores"].as_object().unwrap().len() == 11 && l["timeline"].is_array())
    );
    // A finished output resumed again tags nothing more.
    let o = instrec(&args(true).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 files tagged"));
    assert_eq!(json_lines(&out).len(), 41);
}

#[test]
fn shards_cover_the_library_exactly_once() {
    let bundle = random_bundle();
    let lib = library(12);
    let mut all = Vec::new();
    for k in 1..=3 {
        let out = lib.path().join(format!("part{k}.jsonl"));
        let shard = format!("{k}/3");
        tag_into(
            lib.path(),
            bundle.path(),
            &out,
            &["--shard", &shard, "--no-timeline"],
        );
        let lines = json_lines(&out);
        assert!(lines.iter().all(|l| l.get("timeline").is_none()));
        all.extend(lines);
    }
    let seen = paths_once(&all);
    assert_eq!(seen.len(), 13);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    for bad in ["0/3", "4/3", "1/0", "x"] {
        let o = instrec(&[
            "tag", "x.wav", "--model", "m", "--out", "o.jsonl", "--shard", bad,
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
}

/// Many files at once (decoding in parallel, batches drawn from several files) give each file
/// the result it gets alone; the windows waiting at any time stay bounded by the batch and the
/// queue, not by the number or length of the files.
#[test]
fn tagging_many_files_equals_tagging_each_and_stays_bounded() {
    let device = Device::flex();
    let bundle = random_bundle();
    let tagger = instrec::tag::Tagger::load(bundle.path(), &device).unwrap();
    let lib = library(9);
    let long = lib.path().join("long.wav");
    common::long_chord(&long, 60.0);
    let mut files = instrec::tag::collect_audio_files(&[lib.path().to_path_buf()]);
    files.sort();
    let mut got = std::collections::HashMap::new();
    let mut failed = Vec::new();
    let stats = tagger.tag_many(&files, 2, &mut |p, r| match r {
        Ok(r) => {
            got.insert(p.to_path_buf(), r);
        }
        Err(e) => failed.push(e.to_string()),
    });
    assert_eq!(got.len() + failed.len(), files.len());
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("broken.flac"));
    for f in &files {
        let Ok(alone) = tagger.tag_file(f) else {
            continue;
        };
        let many = &got[f];
        assert_eq!(alone.timeline.len(), many.timeline.len(), "{}", f.display());
        for (a, b) in alone.timeline.iter().zip(&many.timeline) {
            assert_eq!(a.start_s, b.start_s);
            for (x, y) in a.scores.iter().zip(&b.scores) {
                assert!((x - y).abs() < 1e-5, "{}: {x} vs {y}", f.display());
            }
        }
    }
    // 60 s of audio is 118 windows; waiting: one batch plus what 2 workers and the queue hold.
    assert!(got[&long].timeline.len() > 100);
    eprintln!("most windows waiting at once: {}", stats.max_waiting);
    assert!(
        stats.max_waiting > 0 && stats.max_waiting <= 64 + 6 * 64,
        "{}",
        stats.max_waiting
    );
}

#[test]
fn library_tagging_to_csv_resumes_too() {
    let bundle = random_bundle();
    let lib = library(6);
    // A path that needs quoting.
    std::fs::copy(
        common::frontend_fixtures().join("voice_22k.wav"),
        lib.path().join("a, \"quoted\" name.wav"),
    )
    .unwrap();
    let out = lib.path().join("tags.csv");
    let run = |resume: bool| {
        let extra: &[&str] = if resume { &["--resume"] } else { &[] };
        tag_into(lib.path(), bundle.path(), &out, extra)
    };
    assert_eq!(run(false).status.code(), Some(2)); // broken.flac
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0]
            .starts_with("path,path_base64,size,mtime_ns,duration_s,error,predominant,cel,cla,")
    );
    assert_eq!(lines.len(), 1 + 8);
    assert!(text.contains("\"") && text.contains("quoted\"\" name.wav"));
    // Cut the last row in half, as a crash would: resume tags that file again, and only it.
    let cut = text.trim_end().rfind('\n').unwrap() + 10;
    std::fs::write(&out, &text[..cut]).unwrap();
    let o = run(true);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("(7 already there)"), "{said}");
    let again = std::fs::read_to_string(&out).unwrap();
    assert_eq!(again.lines().count(), 1 + 8, "{again}");
    let mut rows: Vec<&str> = again.lines().skip(1).collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 8);
}
