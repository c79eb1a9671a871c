//! `instrec demo`: the whole pipeline on a small synthetic corpus, with the experiment runner's
//! steps (render if missing, train or resume or keep, evaluate), then one test clip tagged.

use std::path::PathBuf;

use crate::backend::{Backend, DeviceSpec};
use crate::data::synth::SynthOptions;
use crate::error::{Error, Result};
use crate::eval::metrics::Aggregation;
use crate::eval::{ClipScore, EvalReport};
use crate::experiment::{ExperimentObserver, ensure_corpus, eval_dir, train_and_evaluate};
use crate::features::ChannelMode;
use crate::model::Arch;
use crate::tag::{TagResult, Tagger};
use crate::train::TrainConfig;

/// The demo's settings: its folder, the corpus size and the training length.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: PathBuf,
    pub train_per_class: usize,
    pub test_clips: usize,
    pub epochs: usize,
    pub backend: Backend,
    pub device: Option<DeviceSpec>,
}

/// The demo's defaults: training clips per class, test clips and epochs.
pub const TRAIN_PER_CLASS: usize = 24;
pub const TEST_CLIPS: usize = 40;
pub const EPOCHS: usize = 8;

/// The corpus's seed: the same demo everywhere.
const CORPUS_SEED: u64 = 2024;

impl DemoOptions {
    pub fn corpus(&self) -> SynthOptions {
        SynthOptions {
            out: self.dir.join("data"),
            train_per_class: self.train_per_class,
            test_clips: self.test_clips,
            seed: CORPUS_SEED,
        }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The paper's recipe shortened: ResNet18 from random weights (no ImageNet download), one
    /// warm-up epoch, no early stop.
    pub fn train_config(&self) -> TrainConfig {
        let mut c = TrainConfig::paper(
            self.corpus().out,
            Arch::ResNet18,
            "random",
            ChannelMode::Dup,
            1,
        );
        c.recipe.max_epochs = self.epochs;
        c.recipe.warmup_epochs = 1;
        c.recipe.patience = self.epochs;
        c.backend = self.backend;
        c.device = self.device;
        c.cache_dir = self.dir.join("cache");
        c
    }
}

/// What the demo made.
pub struct Demo {
    pub report: EvalReport,
    /// The clip tagged, its labels and scores, and what tagging found.
    pub clip: ClipScore,
    pub tagged: TagResult,
    /// What the built-in model (trained on open sample libraries) finds in the same clip.
    pub builtin: TagResult,
    /// Every file written: reports, plots, the timeline.
    pub written: Vec<PathBuf>,
}

/// Runs the demo; each step reports through `obs`, and what is already there (corpus, trained
/// model, report) is kept.
pub fn run(opts: &DemoOptions, obs: &dyn ExperimentObserver) -> Result<Demo> {
    let say = |t: &str| obs.train_observer().message(t);
    let corpus = opts.corpus();
    say(&format!(
        "[1/5] the synthetic IRMAS-format corpus ({} training clips per instrument, {} test clips) in {}",
        opts.train_per_class,
        opts.test_clips,
        corpus.out.display()
    ));
    ensure_corpus(&corpus, &|done, total| obs.rendering(done, total))?;
    let config = opts.train_config();
    let run = opts.run_dir();
    say(&format!(
        "[2/5] ResNet18 from random weights (ImageNet weights are not needed for the demo), {} epochs, in {}",
        opts.epochs,
        run.display()
    ));
    let result = train_and_evaluate(
        &config,
        &run,
        &[Aggregation::S1],
        &config.cache_dir,
        obs.train_observer(),
    )?;
    say("[3/5] evaluated on the synthetic test clips");
    let report = result
        .reports
        .into_iter()
        .next()
        .expect("one report per aggregation");
    let mut written = crate::eval::report_files(&eval_dir(&run, Aggregation::S1)).to_vec();
    say("[4/5] tagging one test clip");
    let device = config.backend.device_for(config.device)?;
    let tagger = Tagger::load(&run.join(crate::train::MODEL_DIR), &device)?;
    let clip = report
        .clip_scores
        .first()
        .cloned()
        .ok_or_else(|| Error::Invalid("no test clip could be scored".into()))?;
    let tagged = tagger.tag_file(&clip.path)?;
    let timeline = run.join("timeline.png");
    crate::report::plot_timeline(&timeline, "demo clip", &tagged.timeline_windows())
        .map_err(|e| Error::Invalid(format!("timeline not written: {e}")))?;
    written.extend([run.join("loss.png"), timeline]);
    say("[5/5] the same clip through the built-in model (MODEL.md), as `instrec tag` runs it");
    let builtin = Tagger::load_default(&device)?.tag_file(&clip.path)?;
    Ok(Demo {
        report,
        clip,
        tagged,
        builtin,
        written,
    })
}
