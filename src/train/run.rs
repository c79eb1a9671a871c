//! The training loop: a run is restored or started, trained one epoch at a time (a checkpoint
//! after each), then finished with thresholds tuned on validation data and the final bundle.

use std::path::Path;
use std::time::Instant;

use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::mix::{self, Mixture};
use crate::error::{Error, Result, fail};
use crate::eval::metrics::{self, Aggregation};
use crate::eval::sigmoid_scores;
use crate::features::{ClipFeatures, Windowing};
use crate::model::bundle::{Thresholds, save_bundle};
use crate::model::{Init, Model, backend_rng, build_model};
use crate::util::{Rng, write_atomic};

use super::checkpoint::{self, CheckpointState, EpochLog};
use super::config::{Loss, TrainConfig};
use super::data::{RunData, WindowRef, batch_tensors, load_run_data, windows_of};
use super::layout::{MODEL_DIR, SUMMARY_FILE};
use super::observer::Observer;
use super::schedule::Schedule;
use super::thresholds::tune_all_thresholds;

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

/// How a call to [`super::start`] or [`super::resume`] ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Trained to the end: the bundle in `RUN/model` has its thresholds.
    Finished(TrainSummary),
    /// The observer asked to stop after this many epochs; [`super::resume`] goes on from there.
    Interrupted { epochs_done: usize },
}

/// Salt of the mixing stream, apart from the shuffling stream of the same seed.
const MIX_STREAM: u64 = 0x6D69_7869_6E67;
/// Salt of the log-mel augmentation stream (`--spec-augment`).
const SPEC_AUGMENT_STREAM: u64 = 0x7370_6563_6175;

/// Validation loss (the training loss's mean over windows: the epoch it keeps is the one that
/// loss likes best) and clip-level micro-F1 (s1, threshold 0.5).
fn validate(
    model: &Model,
    valid: &[(ClipFeatures, Vec<usize>)],
    device: &Device,
    batch_size: usize,
    loss_kind: Loss,
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
        let (x, y) = batch_tensors(valid, batch, n_classes, device, None);
        let logits = eval.forward(x);
        loss_sum += scalar(loss_kind.of(logits.clone(), y)) * batch.len() as f64;
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

/// A run in progress: its model, optimizer and state, its data, and where the schedule stands.
struct Run<'a> {
    config: &'a TrainConfig,
    run_dir: &'a Path,
    obs: &'a dyn Observer,
    /// Inference device (validation, thresholds) and its autodiff twin (training).
    device: Device,
    train_device: Device,
    model: Model,
    optim: super::RunOptimizer,
    state: CheckpointState,
    data: RunData,
    train_windows: Vec<WindowRef>,
    /// Each training clip's windows, where mixture partners are drawn from.
    clip_starts: Vec<Vec<usize>>,
    scheduler: ModuleLrScheduler,
    steps_per_epoch: usize,
}

/// Trains the run in `run_dir` from its checkpoint (`resume`) or from the start, to the end or
/// until the observer interrupts.
pub(super) fn run(
    config: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    obs: &dyn Observer,
) -> Result<Outcome> {
    let started = Instant::now();
    let mut run = Run::restore_or_start(config, run_dir, resume, obs)?;
    while !run.state.stopped && run.state.epochs_done < config.recipe.max_epochs {
        if run.state.epochs_done > 0 && obs.interrupt(run.state.epochs_done) {
            return Ok(Outcome::Interrupted {
                epochs_done: run.state.epochs_done,
            });
        }
        run = run.epoch()?;
    }
    run.finish(started)
}

impl<'a> Run<'a> {
    /// The model, optimizer and state from the checkpoint, or fresh ones (first, so a missing
    /// weight file fails before any feature extraction); then the data and the schedule.
    fn restore_or_start(
        config: &'a TrainConfig,
        run_dir: &'a Path,
        resume: bool,
        obs: &'a dyn Observer,
    ) -> Result<Self> {
        let device = config.backend.device_for(config.device)?;
        let train_device = device.clone().autodiff();
        let restored = if resume {
            checkpoint::restore(config, run_dir, &train_device)?
        } else {
            None
        };
        let (model, optim, state) = match restored {
            Some((model, optim, state)) => {
                obs.message(&format!("resuming after epoch {}", state.epochs_done));
                (model, optim, state)
            }
            None => {
                if resume {
                    obs.message("no checkpoint yet: starting from the beginning");
                }
                let model = initial_model(config, &train_device, obs)?;
                let state = CheckpointState::new(config.recipe.patience);
                (model, config.optimizer(), state)
            }
        };
        let data = load_run_data(config, obs)?;
        let train_windows = windows_of(&data.train, Windowing::training());
        let steps_per_epoch = train_windows.len().div_ceil(config.recipe.batch_size);
        let schedule = Schedule::new(
            config.recipe.lr,
            config.recipe.warmup_epochs,
            config.recipe.max_epochs,
            steps_per_epoch,
        );
        obs.message(&format!(
            "{} on {}: {} training clips ({} windows, {} batches of {} per epoch), {} validation clips{}",
            config.arch,
            config.backend,
            data.train.len(),
            train_windows.len(),
            steps_per_epoch,
            config.recipe.batch_size,
            data.valid.len(),
            config
                .val_data
                .as_ref()
                .map_or(String::new(), |d| format!(" from {}", d.display()))
        ));
        let clip_starts = data
            .train
            .iter()
            .map(|(f, _)| Windowing::training().starts(f.frames()))
            .collect();
        let mut scheduler = schedule.scheduler();
        for _ in 0..state.steps_done {
            scheduler.step();
        }
        Ok(Self {
            config,
            run_dir,
            obs,
            device,
            train_device,
            model,
            optim,
            state,
            data,
            train_windows,
            clip_starts,
            scheduler,
            steps_per_epoch,
        })
    }

    /// This epoch's examples: the training windows shuffled, and mixed when the run mixes.
    /// Mixtures come from their own per-epoch stream: a resumed epoch draws the same ones.
    fn examples(&self, epoch: usize) -> Vec<Mixture> {
        let config = self.config;
        let mut order = self.train_windows.clone();
        Rng::derive(config.seed, epoch as u64).shuffle(&mut order);
        match &config.mix {
            Some(m) => {
                let mut examples = mix::training_examples(
                    &order,
                    &self.data.train_info,
                    &self.clip_starts,
                    m,
                    &mut Rng::derive(config.seed ^ MIX_STREAM, epoch as u64),
                );
                if m.match_level {
                    // Side by side: each mixture's levels take an exp per value of each source
                    // window (an IRMAS-scale epoch's worth is seconds on one thread).
                    let offset = crate::features::FeatureSettings::default().log_offset;
                    let train = &self.data.train;
                    examples.par_iter_mut().for_each(|e| {
                        let clip = |c: usize| &train[c].0;
                        mix::match_mixture(e, clip, crate::features::WINDOW_FRAMES, offset);
                    });
                }
                examples
            }
            None => order
                .iter()
                .map(|&(c, s)| Mixture::single(c, s, &self.data.train_info[c]))
                .collect(),
        }
    }

    /// One epoch: every batch, validation, the best model when it improved, the log and the
    /// checkpoint. The run is taken and given back, so that the model moves through each
    /// optimizer step and its tensors are updated in place.
    fn epoch(mut self) -> Result<Self> {
        let (config, n_classes) = (self.config, crate::CLASSES.len());
        let epoch = self.state.epochs_done + 1;
        let t0 = Instant::now();
        let examples = self.examples(epoch);
        // Its own per-epoch stream, so a resumed epoch augments its windows alike.
        let mut spec_rng = Rng::derive(config.seed ^ SPEC_AUGMENT_STREAM, epoch as u64);
        self.obs
            .epoch_start(epoch, config.recipe.max_epochs, self.steps_per_epoch);
        let mut loss_sum = 0.0;
        let mut lr = 0.0;
        for (b, batch) in examples.chunks(config.recipe.batch_size).enumerate() {
            let augment = config.spec_augment.as_ref().map(|a| (a, &mut spec_rng));
            let (x, y) = batch_tensors(
                &self.data.train,
                batch,
                n_classes,
                &self.train_device,
                augment,
            );
            let lr_now = self.scheduler.step();
            lr = lr_now.base();
            let model = self.model;
            let optim = &mut self.optim;
            let (precision, loss_kind) = (config.precision, config.loss);
            let (stepped, l) = crate::model::on_kernel_pool(&self.train_device, || {
                crate::model::with_precision(precision, || {
                    // Dropout draws from the backend's generator too.
                    let logits = match model {
                        Model::Han(_) => {
                            let _guard = backend_rng();
                            model.forward(x)
                        }
                        Model::ResNet(_) => model.forward(x),
                    };
                    let loss = loss_kind.of(logits, y);
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    (optim.step(lr_now, model, grads), scalar(loss))
                })
            });
            self.model = stepped?;
            if !l.is_finite() {
                // Fail fast: a non-finite loss poisons every later step and every checkpoint.
                let mut clips: Vec<String> = batch
                    .iter()
                    .flat_map(|m| &m.sources)
                    .map(|&(c, _)| self.data.train_paths[c].display().to_string())
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
            self.state.steps_done += 1;
            self.obs.batch(b + 1, l);
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let (val_loss, val_f1) = validate(
            &self.model,
            &self.data.valid,
            &self.device,
            config.recipe.batch_size,
            config.loss,
        );
        if !val_loss.is_finite() {
            fail!(
                "epoch {epoch}: the validation loss is {val_loss}; training stops (the last checkpoint and best model are kept)"
            );
        }
        let n_windows = self.train_windows.len() as f64;
        let log = EpochLog {
            epoch,
            lr,
            train_loss: loss_sum / n_windows,
            val_loss,
            val_micro_f1: val_f1,
            seconds: t0.elapsed().as_secs_f64(),
            samples_per_s: n_windows / train_secs,
        };
        self.obs.epoch_end(&log);
        let state = &mut self.state;
        state.log.push(log);
        state.epochs_done = epoch;
        if state.early.update(epoch, val_loss) {
            checkpoint::save_best(config, self.run_dir, &self.model, epoch)?;
        }
        state.stopped = state.early.should_stop();
        checkpoint::write_log(self.run_dir, &state.log)?;
        checkpoint::save_checkpoint(self.run_dir, &self.model, &self.optim, state)?;
        Ok(self)
    }

    /// The best model: thresholds tuned on the validation clips and mixtures, the final bundle,
    /// the summary and the loss plot.
    fn finish(self, started: Instant) -> Result<Outcome> {
        let (config, run_dir, state, data) = (self.config, self.run_dir, &self.state, &self.data);
        let bundle_dir = run_dir.join(MODEL_DIR);
        let (best, mut bundle) = crate::model::bundle::load_bundle(&bundle_dir, &self.device)?;
        self.obs.message(&format!(
            "tuning thresholds on the validation clips and on {} validation mixtures",
            config.calibration.mixtures
        ));
        let (thresholds, thresholds_s2) = tune_all_thresholds(
            &best.clone().fold_batchnorm(),
            data,
            &config.calibration,
            config.seed,
            &self.device,
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
            train_windows: self.train_windows.len(),
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
}

/// A new run's model: its initial weights from the run's seed (or the weights file it names).
fn initial_model(config: &TrainConfig, device: &Device, obs: &dyn Observer) -> Result<Model> {
    let init = match super::layout::init_bundle(&config.init) {
        Some(dir) => {
            // Its record is copied at every save: a config that does not read fails now.
            crate::model::bundle::init_provenance(&dir)?;
            Init::File(dir)
        }
        None => {
            let Ok(init) = config.init.parse::<Init>();
            init
        }
    };
    let guard = backend_rng();
    device.seed(config.seed);
    let model = build_model(config.arch, crate::CLASSES.len(), &init, device, &|d, t| {
        obs.download(d, t)
    });
    if let Ok(m) = &model {
        m.materialize();
    }
    drop(guard);
    model
}
