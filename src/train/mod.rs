//! The paper's training recipe (Section 4.3): batch 64, Adam (lr 5e-4, weight decay 5e-4), linear
//! warm-up for 5 epochs then cosine annealing stepped per batch, at most 300 epochs, early stopping
//! with patience 25 on the validation loss, sigmoid + binary cross-entropy, 15 % of the training
//! clips held out, the best-validation-loss model kept. Every epoch ends with a checkpoint (model,
//! optimizer, schedule position, early-stopping state, log) so `--resume` continues exactly.

pub mod schedule;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, DeviceSpec};
use crate::data::cache;
use crate::data::mix::{self, CalibrationConfig, MixConfig, Mixture, SourceInfo};
use crate::data::{Irmas, SplitMode, split_validation};
use crate::eval::metrics::{self, Aggregation};
use crate::eval::{Error, Result, fail, score_windows, sigmoid_scores};
use crate::features::{ChannelMode, ClipFeatures, FeatureSettings, Windowing};
use crate::model::bundle::{BundleConfig, MixtureThresholds, Provenance, Thresholds, save_bundle};
use crate::model::{Arch, Init, Model, backend_rng, bce_with_logits, build_model};
use crate::util::FileError;
use crate::util::{Rng, write_atomic};
use schedule::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum OptimizerKind {
    /// Adam with L2 weight decay added to the gradient (PyTorch's `Adam(weight_decay=...)`).
    Adam,
    /// AdamW (decoupled weight decay).
    AdamW,
}

crate::util::display_as_value!(OptimizerKind);

/// The training hyper-parameters (Section 4.3); missing ones in a TOML `[train]` section are the
/// paper's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recipe {
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub optimizer: OptimizerKind,
    pub warmup_epochs: usize,
    pub max_epochs: usize,
    pub patience: usize,
    pub val_fraction: f64,
    pub split: SplitMode,
}

/// The paper's recipe: the one place its numbers are written (the CLI's defaults, experiment
/// TOMLs and the demo start from it).
pub const PAPER: Recipe = Recipe {
    batch_size: 64,
    lr: 5e-4,
    weight_decay: 5e-4,
    optimizer: OptimizerKind::Adam,
    warmup_epochs: 5,
    max_epochs: 300,
    patience: 25,
    val_fraction: 0.15,
    // Whole songs on one side: the paper's random 15 % would let a song's clips straddle it.
    split: SplitMode::Song,
};

impl Default for Recipe {
    fn default() -> Self {
        PAPER
    }
}

/// Everything that defines a training run; saved as `train.json` in the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub data: PathBuf,
    pub arch: Arch,
    /// `imagenet`, `imagenet-v2`, `random` or a weights file.
    pub init: String,
    pub channels: ChannelMode,
    pub seed: u64,
    /// The hyper-parameters (flat in `train.json`, as before they had a type of their own).
    #[serde(flatten)]
    pub recipe: Recipe,
    pub backend: Backend,
    /// The backend's device (`--device`); `None` is its default (the CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceSpec>,
    /// Feature cache folder.
    pub cache_dir: PathBuf,
    /// Mixing augmentation (`--mix`); `None` is the paper's recipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<MixConfig>,
    /// The validation mixtures that the mixture-calibrated thresholds are tuned on.
    #[serde(default)]
    pub calibration: CalibrationConfig,
}

impl TrainConfig {
    /// Refuses settings that would panic or poison training, wherever they were read from (flags,
    /// an experiment TOML, a run's train.json); the message names the setting.
    pub fn check(&self) -> Result<(), String> {
        use crate::check as c;
        c::batch("batch_size", self.recipe.batch_size)?;
        c::real("lr", self.recipe.lr, 0.0, 10.0, false)?;
        c::real("weight_decay", self.recipe.weight_decay, 0.0, 1.0, true)?;
        c::count("max_epochs", self.recipe.max_epochs)?;
        c::count0("warmup_epochs", self.recipe.warmup_epochs)?;
        c::count("patience", self.recipe.patience)?;
        c::real("val_fraction", self.recipe.val_fraction, 0.0, 0.9, false)?;
        if let Some(m) = &self.mix {
            m.check()?;
        }
        self.calibration.check()
    }

    /// The paper's settings for a data set, architecture, initialisation and channel mode.
    pub fn paper(data: PathBuf, arch: Arch, init: &str, channels: ChannelMode, seed: u64) -> Self {
        Self {
            data,
            arch,
            init: init.to_string(),
            channels,
            seed,
            recipe: PAPER,
            backend: Backend::Flex,
            device: None,
            cache_dir: cache::default_cache_dir(),
            mix: None,
            calibration: CalibrationConfig::default(),
        }
    }
}

/// One line of the per-epoch log (`log.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    /// Learning rate of the epoch's last batch.
    pub lr: f64,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Clip-level micro-F1 on the validation clips (s1, threshold 0.5).
    pub val_micro_f1: f64,
    pub seconds: f64,
    /// Training windows per second.
    pub samples_per_s: f64,
}

/// Early stopping on the validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub patience: usize,
    pub best_loss: f64,
    /// 1-based epoch of the best loss (0: none yet).
    pub best_epoch: usize,
    /// Epochs since the best.
    pub wait: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            best_loss: f64::INFINITY,
            best_epoch: 0,
            wait: 0,
        }
    }

    /// Records an epoch's validation loss; returns whether it is a new best.
    pub fn update(&mut self, epoch: usize, loss: f64) -> bool {
        if loss < self.best_loss {
            self.best_loss = loss;
            self.best_epoch = epoch;
            self.wait = 0;
            true
        } else {
            self.wait += 1;
            false
        }
    }

    /// Whether `patience` epochs have passed without a new best.
    pub fn should_stop(&self) -> bool {
        self.wait >= self.patience
    }
}

/// What the checkpoint holds besides the model and optimizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    epochs_done: usize,
    steps_done: usize,
    early: EarlyStopping,
    log: Vec<EpochLog>,
    stopped: bool,
}

/// What a finished run reports (`summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub epochs: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub early_stopped: bool,
    pub train_windows: usize,
    pub val_clips: usize,
    pub thresholds: Thresholds,
    pub seconds: f64,
}

impl TrainSummary {
    /// Two lines for the end of `instrec train`.
    pub fn text(&self, run_dir: &Path) -> String {
        let mixture = self.thresholds.mixture.as_ref().map_or(String::new(), |m| {
            format!(", on validation mixtures {:.2}", m.global)
        });
        format!(
            "trained {} epochs in {:.0} s; best validation loss {:.4} at epoch {}{}\n\
             threshold tuned on validation clips {:.2}{mixture}; model bundle: {}",
            self.epochs,
            self.seconds,
            self.best_val_loss,
            self.best_epoch,
            if self.early_stopped {
                " (early stop)"
            } else {
                ""
            },
            self.thresholds.global,
            run_dir.join(MODEL_DIR).display()
        )
    }
}

/// Progress reports from [`start`] and [`resume`]; the CLI draws bars, tests ignore them.
pub trait Observer: Sync {
    fn message(&self, _text: &str) {}
    fn epoch_start(&self, _epoch: usize, _max_epochs: usize, _batches: usize) {}
    fn batch(&self, _done: usize, _loss: f64) {}
    fn epoch_end(&self, _log: &EpochLog) {}
    /// Bytes of a weight download so far, and the total when known.
    fn download(&self, _done: u64, _total: Option<u64>) {}
    /// Asked before each epoch after the first, once the last one's checkpoint is written:
    /// `true` ends the call there with [`Outcome::Interrupted`], and [`resume`] goes on exactly.
    fn interrupt(&self, _epochs_done: usize) -> bool {
        false
    }
}

/// An observer that reports nothing.
pub struct Quiet;
impl Observer for Quiet {}

pub const CONFIG_FILE: &str = "train.json";
pub const LOG_FILE: &str = "log.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
pub const MODEL_DIR: &str = "model";
/// Salt of the mixing stream, apart from the shuffling stream of the same seed.
const MIX_STREAM: u64 = 0x6D69_7869_6E67;
const CHECKPOINT_DIR: &str = "checkpoint";

/// A window of a clip: (index into the clip list, start frame).
type WindowRef = (usize, usize);

/// The data a run needs, read from the feature cache.
pub struct RunData {
    /// Clip features and label sets of the training and validation clips.
    pub train: Vec<(ClipFeatures, Vec<usize>)>,
    pub valid: Vec<(ClipFeatures, Vec<usize>)>,
    /// The files of `train` and `valid`, in the same order (to name them in errors).
    pub train_paths: Vec<PathBuf>,
    pub valid_paths: Vec<PathBuf>,
    /// Instrument and tags of each clip of `train` and `valid`, for choosing mixture partners.
    pub train_info: Vec<SourceInfo>,
    pub valid_info: Vec<SourceInfo>,
}

/// Reads the data set, splits it and loads (or builds) the feature cache.
pub fn load_run_data(config: &TrainConfig, obs: &dyn Observer) -> Result<RunData> {
    let set = Irmas::read(&config.data)?;
    for i in &set.issues {
        obs.message(&format!("warning: {i}"));
    }
    if set.train.is_empty() {
        fail!("{}: no training clips", config.data.display());
    }
    let files = set.all_files();
    obs.message(&format!(
        "features for {} clips (cached after the first run)",
        files.len()
    ));
    // Only the training clips' features are held in memory.
    let wanted: std::collections::HashSet<&Path> =
        set.train.iter().map(|c| c.path.as_path()).collect();
    let (mut features, _) = cache::prepare_subset(
        &files,
        &FeatureSettings::default(),
        config.channels,
        &config.cache_dir,
        &|_, _| {},
        &|p| wanted.contains(p),
    )?;
    for f in &features.failures {
        obs.message(&format!("warning: skipped {f}"));
    }
    let split = split_validation(
        &set.train,
        config.recipe.val_fraction,
        config.seed,
        config.recipe.split,
    );
    // Moved out of the cache, not copied: training holds each clip's features once.
    type Picked = (Vec<(ClipFeatures, Vec<usize>)>, Vec<(PathBuf, SourceInfo)>);
    let mut pick = |idx: &[usize]| -> Picked {
        idx.iter()
            .filter_map(|&i| {
                let clip = &set.train[i];
                let info = SourceInfo {
                    label: clip.label,
                    genre: clip.genre.clone(),
                    drums: clip.drums,
                };
                features
                    .take(&clip.path)
                    .map(|f| ((f, vec![clip.label]), (clip.path.clone(), info)))
            })
            .unzip()
    };
    let (train, train_meta) = pick(&split.train);
    let (valid, valid_meta) = pick(&split.valid);
    let (train_paths, train_info) = train_meta.into_iter().unzip();
    let (valid_paths, valid_info) = valid_meta.into_iter().unzip();
    if train.is_empty() || valid.is_empty() {
        fail!(
            "{}: too few training clips for a validation split ({} train, {} validation)",
            config.data.display(),
            train.len(),
            valid.len()
        );
    }
    Ok(RunData {
        train,
        valid,
        train_paths,
        valid_paths,
        train_info,
        valid_info,
    })
}

fn windows_of(clips: &[(ClipFeatures, Vec<usize>)], w: Windowing) -> Vec<WindowRef> {
    clips
        .iter()
        .enumerate()
        .flat_map(|(i, (f, _))| w.starts(f.frames()).into_iter().map(move |s| (i, s)))
        .collect()
}

/// The inputs and targets of a batch of training examples (single windows or mixtures).
fn batch_tensors(
    clips: &[(ClipFeatures, Vec<usize>)],
    batch: &[Mixture],
    n_classes: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<2>) {
    let settings = FeatureSettings::default();
    let len = crate::features::WINDOW_FRAMES;
    let n_mels = clips[0].0.mels[0].n_mels;
    let mut x = Vec::with_capacity(batch.len() * 3 * len * n_mels);
    let mut y = vec![0f32; batch.len() * n_classes];
    for (b, m) in batch.iter().enumerate() {
        let parts: Vec<&ClipFeatures> = m.sources.iter().map(|&(c, _)| &clips[c].0).collect();
        let starts: Vec<usize> = m.sources.iter().map(|&(_, s)| s).collect();
        x.extend(mix::mixture_input(
            &parts,
            &starts,
            &m.weights,
            len,
            settings.silence(),
            settings.log_offset,
        ));
        for &l in &m.labels {
            y[b * n_classes + l] = 1.0;
        }
    }
    (
        Tensor::from_data(TensorData::new(x, [batch.len(), 3, len, n_mels]), device),
        Tensor::from_data(TensorData::new(y, [batch.len(), n_classes]), device),
    )
}

fn make_optimizer(config: &TrainConfig) -> ModuleOptimizer {
    match config.recipe.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(Some(WeightDecayConfig::new(
                config.recipe.weight_decay as f32,
            )))
            .init(),
        OptimizerKind::AdamW => AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(config.recipe.weight_decay as f32)
            .init(),
    }
}

/// Validation loss (mean BCE over windows) and clip-level micro-F1 (s1, threshold 0.5).
fn validate(
    model: &Model,
    valid: &[(ClipFeatures, Vec<usize>)],
    device: &Device,
    batch_size: usize,
) -> (f64, f64) {
    let n_classes = crate::CLASSES.len();
    let windows = windows_of(valid, Windowing::training());
    let eval = model.valid().fold_batchnorm();
    let mut loss_sum = 0.0;
    let mut per_clip: Vec<Vec<Vec<f32>>> = vec![Vec::new(); valid.len()];
    let examples: Vec<Mixture> = windows
        .iter()
        .map(|&(c, s)| Mixture {
            sources: vec![(c, s)],
            weights: vec![1.0],
            labels: valid[c].1.clone(),
        })
        .collect();
    for batch in examples.chunks(batch_size) {
        let (x, y) = batch_tensors(valid, batch, n_classes, device);
        let logits = eval.forward(x);
        let loss = bce_with_logits(logits.clone(), y);
        loss_sum += scalar(loss) * batch.len() as f64;
        for (m, s) in batch.iter().zip(sigmoid_scores(logits)) {
            per_clip[m.sources[0].0].push(s);
        }
    }
    let scores: Vec<Vec<f32>> = per_clip
        .iter()
        .map(|w| metrics::aggregate(w, Aggregation::S1))
        .collect();
    let labels: Vec<Vec<usize>> = valid.iter().map(|(_, l)| l.clone()).collect();
    let f1 = metrics::evaluate(&scores, &labels, &vec![0.5; n_classes])
        .micro
        .f1;
    (loss_sum / windows.len() as f64, f1)
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data().try_to_vec::<f32>().expect("f32 loss")[0] as f64
}

/// How a call to [`start`] or [`resume`] ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Trained to the end: the bundle in `RUN/model` has its thresholds.
    Finished(TrainSummary),
    /// The observer asked to stop after this many epochs; [`resume`] goes on from there.
    Interrupted { epochs_done: usize },
}

/// Starts a new run in `run_dir` (its `train.json` is written first).
pub fn start(config: &TrainConfig, run_dir: &Path, obs: &dyn Observer) -> Result<Outcome> {
    config.check()?;
    std::fs::create_dir_all(run_dir).map_err(|e| FileError::at(run_dir, e))?;
    write_atomic(
        &run_dir.join(CONFIG_FILE),
        &serde_json::to_vec_pretty(config)?,
    )?;
    run(config.clone(), run_dir, false, obs)
}

/// Continues the run in `run_dir` from its last checkpoint, with the settings of its `train.json`
/// (from the beginning when it stopped before its first checkpoint).
pub fn resume(run_dir: &Path, obs: &dyn Observer) -> Result<Outcome> {
    let config = read_config(run_dir)?;
    run(config, run_dir, true, obs)
}

/// Resumes the run in `run_dir` when it has been started, else starts it with `config`.
pub fn start_or_resume(
    config: &TrainConfig,
    run_dir: &Path,
    obs: &dyn Observer,
) -> Result<Outcome> {
    if run_dir.join(CONFIG_FILE).is_file() {
        resume(run_dir, obs)
    } else {
        start(config, run_dir, obs)
    }
}

/// A run's `train.json`, checked like flags.
pub fn read_config(run_dir: &Path) -> Result<TrainConfig> {
    let p = run_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| FileError::at(&p, format!("cannot resume, no run here ({e})")))?;
    let c = serde_json::from_str::<TrainConfig>(&text)
        .map_err(|e| FileError::at(&p, format!("invalid run config: {e}")))?;
    c.check().map_err(|e| FileError::at(&p, e))?;
    Ok(c)
}

fn run(config: TrainConfig, run_dir: &Path, resume: bool, obs: &dyn Observer) -> Result<Outcome> {
    let started = Instant::now();
    let n_classes = crate::CLASSES.len();
    let device = config.backend.device_for(config.device)?;
    let train_device = device.clone().autodiff();
    // Model, optimizer and state: fresh, or from the checkpoint (first, so a missing weight
    // file fails before any feature extraction).
    let ckpt = run_dir.join(CHECKPOINT_DIR);
    // A crash between the two renames of `save_checkpoint` leaves only the previous one.
    let old = ckpt.with_extension("old");
    if !ckpt.exists() && old.join("state.json").is_file() {
        std::fs::rename(&old, &ckpt)?;
    }
    let (mut model, mut optim, mut state) = if resume && ckpt.join("state.json").is_file() {
        let state: CheckpointState =
            serde_json::from_slice(&std::fs::read(ckpt.join("state.json"))?)?;
        let mut model = Model::new(config.arch, n_classes, &train_device);
        let mut store = BurnpackStore::from_file(ckpt.join("model.bpk"));
        model
            .load_from(&mut store)
            .map_err(|e| FileError::at(&ckpt.join("model.bpk"), e))?;
        let record = OptimizerRecord::load(ckpt.join("optim.bpk"))
            .map_err(|e| FileError::at(&ckpt.join("optim.bpk"), format!("{e:?}")))?;
        let optim = make_optimizer(&config).load_record(record);
        obs.message(&format!("resuming after epoch {}", state.epochs_done));
        (model, optim, state)
    } else {
        if resume {
            obs.message("no checkpoint yet: starting from the beginning");
        }
        let init: Init = config.init.parse()?;
        let guard = backend_rng();
        train_device.seed(config.seed);
        let model = build_model(config.arch, n_classes, &init, &train_device, &|d, t| {
            obs.download(d, t)
        });
        if let Ok(m) = &model {
            m.materialize();
        }
        drop(guard);
        let model = model?;
        let state = CheckpointState {
            epochs_done: 0,
            steps_done: 0,
            early: EarlyStopping::new(config.recipe.patience),
            log: Vec::new(),
            stopped: false,
        };
        (model, make_optimizer(&config), state)
    };
    let data = load_run_data(&config, obs)?;
    let train_windows = windows_of(&data.train, Windowing::training());
    let steps_per_epoch = train_windows.len().div_ceil(config.recipe.batch_size);
    let schedule = Schedule::new(
        config.recipe.lr,
        config.recipe.warmup_epochs,
        config.recipe.max_epochs,
        steps_per_epoch,
    );
    obs.message(&format!(
        "{} on {}: {} training clips ({} windows, {} batches of {} per epoch), {} validation clips",
        config.arch,
        config.backend,
        data.train.len(),
        train_windows.len(),
        steps_per_epoch,
        config.recipe.batch_size,
        data.valid.len()
    ));

    // Each training clip's windows, where mixture partners are drawn from.
    let clip_starts: Vec<Vec<usize>> = data
        .train
        .iter()
        .map(|(f, _)| Windowing::training().starts(f.frames()))
        .collect();
    let mut scheduler = schedule.scheduler();
    for _ in 0..state.steps_done {
        scheduler.step();
    }

    while !state.stopped && state.epochs_done < config.recipe.max_epochs {
        if state.epochs_done > 0 && obs.interrupt(state.epochs_done) {
            return Ok(Outcome::Interrupted {
                epochs_done: state.epochs_done,
            });
        }
        let epoch = state.epochs_done + 1;
        let t0 = Instant::now();
        let mut order = train_windows.clone();
        Rng::derive(config.seed, epoch as u64).shuffle(&mut order);
        // Mixtures come from their own per-epoch stream: a resumed epoch draws the same ones.
        let examples: Vec<Mixture> = match &config.mix {
            Some(m) => mix::training_examples(
                &order,
                &data.train_info,
                &clip_starts,
                m,
                &mut Rng::derive(config.seed ^ MIX_STREAM, epoch as u64),
            ),
            None => order
                .iter()
                .map(|&(c, s)| Mixture::single(c, s, data.train_info[c].label))
                .collect(),
        };
        obs.epoch_start(epoch, config.recipe.max_epochs, steps_per_epoch);
        let mut loss_sum = 0.0;
        let mut lr = 0.0;
        for (b, batch) in examples.chunks(config.recipe.batch_size).enumerate() {
            let (x, y) = batch_tensors(&data.train, batch, n_classes, &train_device);
            let lr_now = scheduler.step();
            lr = lr_now.base();
            let (stepped, l) = crate::model::on_kernel_pool(&train_device, || {
                // Dropout draws from the backend's generator too.
                let logits = match model {
                    Model::Han(_) => {
                        let _guard = backend_rng();
                        model.forward(x)
                    }
                    Model::ResNet(_) => model.forward(x),
                };
                let loss = bce_with_logits(logits, y);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                (optim.step(lr_now, model, grads), scalar(loss))
            });
            model = stepped;
            if !l.is_finite() {
                // Fail fast: a non-finite loss poisons every later step and every checkpoint.
                let mut clips: Vec<String> = batch
                    .iter()
                    .flat_map(|m| &m.sources)
                    .map(|&(c, _)| data.train_paths[c].display().to_string())
                    .collect();
                clips.sort();
                clips.dedup();
                fail!(
                    "epoch {epoch}, batch {}: the training loss is {l}; training stops (the last \
                     checkpoint and best model are kept). Try a lower --lr; the batch's clips: {}",
                    b + 1,
                    clips.join(", ")
                );
            }
            loss_sum += l * batch.len() as f64;
            state.steps_done += 1;
            obs.batch(b + 1, l);
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let (val_loss, val_f1) = validate(&model, &data.valid, &device, config.recipe.batch_size);
        if !val_loss.is_finite() {
            fail!(
                "epoch {epoch}: the validation loss is {val_loss}; training stops (the last checkpoint and best model are kept)"
            );
        }
        let log = EpochLog {
            epoch,
            lr,
            train_loss: loss_sum / train_windows.len() as f64,
            val_loss,
            val_micro_f1: val_f1,
            seconds: t0.elapsed().as_secs_f64(),
            samples_per_s: train_windows.len() as f64 / train_secs,
        };
        obs.epoch_end(&log);
        state.log.push(log);
        state.epochs_done = epoch;
        if state.early.update(epoch, val_loss) {
            save_best(&config, run_dir, &model, epoch)?;
        }
        state.stopped = state.early.should_stop();
        write_log(run_dir, &state.log)?;
        save_checkpoint(&ckpt, &model, &optim, &state)?;
    }

    // The best model: tune thresholds on the validation clips and write the final bundle.
    let bundle_dir = run_dir.join(MODEL_DIR);
    let (best, mut bundle) = crate::model::bundle::load_bundle(&bundle_dir, &device)?;
    obs.message(&format!(
        "tuning thresholds on the validation clips and on {} validation mixtures",
        config.calibration.mixtures
    ));
    let (thresholds, thresholds_s2) = tune_all_thresholds(
        &best.clone().fold_batchnorm(),
        &data,
        &config.calibration,
        config.seed,
        &device,
        config.recipe.batch_size,
    );
    bundle.thresholds = thresholds.clone();
    bundle.thresholds_s2 = Some(thresholds_s2);
    bundle.provenance.epochs = state.epochs_done;
    save_bundle(&bundle_dir, &best, &bundle)?;
    let summary = TrainSummary {
        epochs: state.epochs_done,
        best_epoch: state.early.best_epoch,
        best_val_loss: state.early.best_loss,
        early_stopped: state.stopped,
        train_windows: train_windows.len(),
        val_clips: data.valid.len(),
        thresholds,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_atomic(
        &run_dir.join(SUMMARY_FILE),
        &serde_json::to_vec_pretty(&summary)?,
    )?;
    // Everything else is saved by now; a plot that cannot be written still fails the command.
    let losses: Vec<crate::report::EpochLosses> = state
        .log
        .iter()
        .map(|l| crate::report::EpochLosses {
            epoch: l.epoch,
            train: l.train_loss,
            valid: l.val_loss,
        })
        .collect();
    crate::report::plot_losses(&run_dir.join("loss.png"), &losses)
        .map_err(|e| Error::Invalid(format!("loss plot not written: {e}")))?;
    Ok(Outcome::Finished(summary))
}

/// Every clip's window scores (analysis windows, as test clips are scored).
fn score_clips(
    model: &Model,
    clips: &[(ClipFeatures, Vec<usize>)],
    device: &Device,
    batch_size: usize,
) -> Vec<Vec<Vec<f32>>> {
    clips
        .iter()
        .map(|(f, _)| score_windows(model, f, Windowing::analysis(), device, batch_size))
        .collect()
}

/// The best global and per-class thresholds for clips' window scores under an aggregation.
fn best_thresholds(
    windows: &[Vec<Vec<f32>>],
    clips: &[(ClipFeatures, Vec<usize>)],
    aggregation: Aggregation,
) -> (f32, Vec<f32>) {
    let n = crate::CLASSES.len();
    let scores: Vec<Vec<f32>> = windows
        .iter()
        .map(|w| metrics::aggregate(w, aggregation))
        .collect();
    let labels: Vec<Vec<usize>> = clips.iter().map(|(_, l)| l.clone()).collect();
    let (global, _) = metrics::best_global_threshold(&scores, &labels, n);
    let per_class = metrics::best_per_class_thresholds(&scores, &labels, n, global);
    (global, per_class)
}

/// The seeded calibration examples of `calibration`, built from the validation clips only.
pub fn calibration_clips(
    data: &RunData,
    calibration: &CalibrationConfig,
    seed: u64,
) -> Vec<(ClipFeatures, Vec<usize>)> {
    let offset = FeatureSettings::default().log_offset;
    mix::calibration_set(&data.valid_info, calibration, seed)
        .iter()
        .map(|m| {
            let parts: Vec<&ClipFeatures> =
                m.sources.iter().map(|&(c, _)| &data.valid[c].0).collect();
            (mix::mix_clips(&parts, &m.weights, offset), m.labels.clone())
        })
        .collect()
}

/// Thresholds for s1 and for s2, each tuned on the single validation clips and on the validation
/// mixtures of `calibration`.
pub fn tune_all_thresholds(
    model: &Model,
    data: &RunData,
    calibration: &CalibrationConfig,
    seed: u64,
    device: &Device,
    batch_size: usize,
) -> (Thresholds, Thresholds) {
    let mixtures = calibration_clips(data, calibration, seed);
    let single_windows = score_clips(model, &data.valid, device, batch_size);
    let mixture_windows = score_clips(model, &mixtures, device, batch_size);
    let tune = |aggregation| {
        let (global, per_class) = best_thresholds(&single_windows, &data.valid, aggregation);
        let (m_global, m_per_class) = best_thresholds(&mixture_windows, &mixtures, aggregation);
        Thresholds {
            global,
            per_class: Some(per_class),
            source: "validation-tuned".into(),
            mixture: Some(MixtureThresholds {
                global: m_global,
                per_class: m_per_class,
                calibration: calibration.clone(),
                seed,
            }),
        }
    };
    (tune(Aggregation::S1), tune(Aggregation::S2))
}

fn save_best(config: &TrainConfig, run_dir: &Path, model: &Model, epoch: usize) -> Result<()> {
    let mut bundle = BundleConfig::new(config.arch, config.channels);
    bundle.provenance = Provenance {
        data: config.data.display().to_string(),
        init: config.init.clone(),
        seed: config.seed,
        epochs: epoch,
        best_epoch: epoch,
        instrec_version: env!("CARGO_PKG_VERSION").into(),
    };
    save_bundle(&run_dir.join(MODEL_DIR), &model.valid(), &bundle)?;
    Ok(())
}

fn write_log(run_dir: &Path, log: &[EpochLog]) -> Result<()> {
    let mut text = String::new();
    for l in log {
        text.push_str(&serde_json::to_string(l)?);
        text.push('\n');
    }
    write_atomic(&run_dir.join(LOG_FILE), text.as_bytes())?;
    Ok(())
}

/// Writes the checkpoint into a fresh folder and swaps it in, so a crash leaves either the old
/// checkpoint or the new one, never a mixture.
fn save_checkpoint(
    dir: &Path,
    model: &Model,
    optim: &ModuleOptimizer,
    state: &CheckpointState,
) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    let old = dir.with_extension("old");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut store = BurnpackStore::from_file(tmp.join("model.bpk")).overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| FileError::at(&tmp.join("model.bpk"), e))?;
    optim
        .to_record()
        .save(tmp.join("optim.bpk"))
        .map_err(|e| FileError::at(&tmp.join("optim.bpk"), format!("{e:?}")))?;
    write_atomic(&tmp.join("state.json"), &serde_json::to_vec(state)?)?;
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&tmp, dir)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_waits_patience_epochs_after_the_best() {
        let mut e = EarlyStopping::new(2);
        assert!(e.update(1, 1.0));
        assert!(e.update(2, 0.8));
        assert!(!e.update(3, 0.9));
        assert!(!e.should_stop());
        assert!(!e.update(4, 0.8)); // equal is not better
        assert!(e.should_stop());
        assert_eq!((e.best_epoch, e.best_loss), (2, 0.8));
        let mut e = EarlyStopping::new(2);
        e.update(1, 1.0);
        e.update(2, 1.1);
        assert!(e.update(3, 0.5));
        assert_eq!(e.wait, 0);
    }
}
