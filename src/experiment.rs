//! Experiment grids (architectures × initialisations × channel modes × mixing × seeds), run one
//! after another, skipping finished runs and resuming interrupted ones, then summarised as mean ±
//! sd over seeds in the layout of the paper's Tables 1 and 2, for each threshold source and
//! aggregation asked for.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, DeviceSpec};
use crate::data::mix::{CalibrationConfig, MixConfig};
use crate::error::FileError;
use crate::error::Result;
use crate::eval::metrics::{Aggregation, Metrics};
use crate::eval::{EvalOptions, EvalReport, ThresholdKind};
use crate::features::ChannelMode;
use crate::model::Arch;
use crate::train::{Recipe, TrainConfig};
use crate::util::write_atomic;

fn default_seeds() -> Vec<u64> {
    vec![1, 2, 3]
}

fn default_mix() -> Vec<bool> {
    vec![false]
}

fn default_thresholds() -> Vec<ThresholdSource> {
    vec![ThresholdSource::default()]
}

fn default_aggregations() -> Vec<Aggregation> {
    vec![Aggregation::default()]
}

/// Where a table row's tuned thresholds come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdSource {
    /// Tuned on the single validation clips (the paper's way).
    #[default]
    Single,
    /// Calibrated on validation mixtures of 1–3 instruments.
    Mixtures,
}

impl ThresholdSource {
    /// The evaluation rows of the global and the per-class thresholds.
    pub fn kinds(self) -> (ThresholdKind, ThresholdKind) {
        match self {
            Self::Single => (ThresholdKind::TunedGlobal, ThresholdKind::TunedPerClass),
            Self::Mixtures => (ThresholdKind::MixtureGlobal, ThresholdKind::MixturePerClass),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Single => "validation clips",
            Self::Mixtures => "validation mixtures",
        }
    }
}

/// `CONFIG.toml` of `instrec experiment`. Relative paths are relative to the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub name: String,
    /// The IRMAS-layout data set.
    pub data: PathBuf,
    /// Where the runs and tables go.
    pub out: PathBuf,
    pub archs: Vec<Arch>,
    /// `imagenet`, `imagenet-v2`, `random`, or a weights file, bundle or run directory.
    pub inits: Vec<String>,
    pub channels: Vec<ChannelMode>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Axis: the paper's recipe (`false`) and/or mixing augmentation (`true`).
    #[serde(default = "default_mix")]
    pub mix: Vec<bool>,
    /// Settings of the runs with mixing.
    #[serde(default)]
    pub mixing: MixConfig,
    /// How every run's validation mixtures are built.
    #[serde(default)]
    pub calibration: CalibrationConfig,
    /// Rows per run: the tuned thresholds of the validation clips and/or of the validation
    /// mixtures (no retraining: both are in every bundle).
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<ThresholdSource>,
    /// Rows per run: s1 and/or s2 aggregation (each evaluated, with thresholds tuned for it).
    #[serde(default = "default_aggregations")]
    pub aggregations: Vec<Aggregation>,
    /// `[train]`: the hyper-parameters that differ from the paper's.
    #[serde(default)]
    pub train: Recipe,
    /// When present and `data` holds no data set yet, render a synthetic corpus there first.
    #[serde(default)]
    pub synth: Option<SynthSection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSection {
    pub train_per_class: usize,
    pub test_clips: usize,
    #[serde(default)]
    pub seed: u64,
}

impl ExperimentConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError::at(path, e))?;
        let mut c: Self = toml::from_str(&text)
            .map_err(|e| FileError::at(path, format!("invalid experiment config: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if c.data.is_relative() {
            c.data = base.join(&c.data);
        }
        if c.out.is_relative() {
            c.out = base.join(&c.out);
        }
        // The same rules as the flags, before any run starts.
        let bad = |e: String| FileError::at(path, e);
        c.mixing.check().map_err(|e| bad(format!("[mixing] {e}")))?;
        c.calibration
            .check()
            .map_err(|e| bad(format!("[calibration] {e}")))?;
        if let Some((_, run)) = c.runs(Backend::Flex, None, Path::new(".")).first() {
            run.check().map_err(|e| bad(format!("[train] {e}")))?;
        }
        if let Some(s) = &c.synth {
            crate::check::count("[synth] train_per_class", s.train_per_class)
                .map_err(|e| bad(e.to_string()))?;
            crate::check::count("[synth] test_clips", s.test_clips)
                .map_err(|e| bad(e.to_string()))?;
        }
        if c.runs(Backend::Flex, None, Path::new(".")).is_empty()
            || c.thresholds.is_empty()
            || c.aggregations.is_empty()
        {
            return Err(bad(
                "the grid has no runs (archs, inits, channels, mix, seeds, thresholds and aggregations must each list one)".into(),
            )
            .into());
        }
        Ok(c)
    }

    /// Every run of the grid, in order.
    pub fn runs(
        &self,
        backend: Backend,
        device: Option<DeviceSpec>,
        cache_dir: &Path,
    ) -> Vec<(String, TrainConfig)> {
        let mut v = Vec::new();
        for &arch in &self.archs {
            for init in &self.inits {
                if arch == Arch::Han && init.starts_with("imagenet") {
                    continue;
                }
                for (&ch, &mix) in self
                    .channels
                    .iter()
                    .flat_map(|c| self.mix.iter().map(move |m| (c, m)))
                {
                    for &seed in &self.seeds {
                        let mut t = TrainConfig::paper(self.data.clone(), arch, init, ch, seed);
                        t.mix = mix.then(|| self.mixing.clone());
                        t.calibration = self.calibration.clone();
                        t.recipe = self.train;
                        t.backend = backend;
                        t.device = device;
                        t.cache_dir = cache_dir.to_path_buf();
                        let init_name = Path::new(init)
                            .file_stem()
                            .map_or(init.clone(), |s| s.to_string_lossy().into_owned());
                        let name = format!(
                            "{}-{}-{}{}-seed{}",
                            arch,
                            init_name,
                            ch,
                            if mix { "-mix" } else { "" },
                            seed
                        );
                        v.push((name, t));
                    }
                }
            }
        }
        v
    }
}

/// Mean and sample standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    (m, sd)
}

/// One row of the results table: a grid cell averaged over its seeds, for one threshold source
/// and aggregation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub arch: Arch,
    pub init: String,
    pub channels: ChannelMode,
    #[serde(default)]
    pub mix: bool,
    #[serde(default)]
    pub thresholds: ThresholdSource,
    #[serde(default)]
    pub aggregation: Aggregation,
    pub seeds: Vec<u64>,
    /// (mean, sd) of micro precision, recall, F1 with the tuned global threshold.
    pub precision: (f64, f64),
    pub recall: (f64, f64),
    pub f1: (f64, f64),
    /// (mean, sd) of micro-F1 with the tuned per-class thresholds.
    #[serde(default)]
    pub f1_per_class: (f64, f64),
    /// (mean, sd) of micro-F1 with the test-oracle threshold and with 0.5.
    pub f1_oracle: (f64, f64),
    pub f1_fixed: (f64, f64),
    pub epochs: (f64, f64),
}

/// One evaluated run: its config, its report for each aggregation, and its epochs.
pub struct RunResult {
    pub config: TrainConfig,
    pub reports: Vec<EvalReport>,
    pub epochs: usize,
}

/// Groups the runs' evaluation reports by grid cell, threshold source and aggregation.
pub fn table(
    runs: &[RunResult],
    sources: &[ThresholdSource],
    aggregations: &[Aggregation],
) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut cells: Vec<(Arch, String, ChannelMode, bool)> = Vec::new();
    for r in runs {
        let c = &r.config;
        let key = (c.arch, c.init.clone(), c.channels, c.mix.is_some());
        if !cells.contains(&key) {
            cells.push(key);
        }
    }
    for (arch, init, channels, mix) in cells {
        let of: Vec<&RunResult> = runs
            .iter()
            .filter(|r| {
                let c = &r.config;
                c.arch == arch && c.init == init && c.channels == channels && c.mix.is_some() == mix
            })
            .collect();
        for &aggregation in aggregations {
            for &source in sources {
                let pick = |kind: ThresholdKind, f: fn(&Metrics) -> f64| -> (f64, f64) {
                    let v: Vec<f64> = of
                        .iter()
                        .filter_map(|r| {
                            let report = r.reports.iter().find(|e| e.aggregation == aggregation)?;
                            report.result(kind).map(|t| f(&t.metrics))
                        })
                        .collect();
                    mean_sd(&v)
                };
                let (global, per_class) = source.kinds();
                rows.push(Row {
                    arch,
                    init: init.clone(),
                    channels,
                    mix,
                    thresholds: source,
                    aggregation,
                    seeds: of.iter().map(|r| r.config.seed).collect(),
                    precision: pick(global, |m| m.micro.precision),
                    recall: pick(global, |m| m.micro.recall),
                    f1: pick(global, |m| m.micro.f1),
                    f1_per_class: pick(per_class, |m| m.micro.f1),
                    f1_oracle: pick(ThresholdKind::Oracle, |m| m.micro.f1),
                    f1_fixed: pick(ThresholdKind::Fixed, |m| m.micro.f1),
                    epochs: mean_sd(&of.iter().map(|r| r.epochs as f64).collect::<Vec<_>>()),
                });
            }
        }
    }
    rows
}

fn pm(v: (f64, f64)) -> String {
    format!("{:.3} ± {:.3}", v.0, v.1)
}

/// The table as Markdown, with the paper's columns (micro P, R, F1) and the honest context.
/// Columns for mixing, threshold source and aggregation appear when the grid varies them.
pub fn markdown(name: &str, rows: &[Row]) -> String {
    let varies = |f: &dyn Fn(&Row) -> String| rows.iter().any(|r| f(r) != f(&rows[0]));
    let show_mix = varies(&|r| r.mix.to_string());
    let show_source = varies(&|r| r.thresholds.name().to_string());
    let show_agg = varies(&|r| format!("{:?}", r.aggregation));
    let mut s = format!(
        "## {name}\n\nMicro-averaged over the test clips; mean ± sd over seeds. P/R/F1 use the global threshold tuned on the validation split{}; \"F1 per class\" uses the per-class thresholds tuned there; \"F1 oracle\" picks the best single threshold on the test set itself (as the authors' code reports); \"F1 @0.5\" uses 0.5.\n\n",
        if show_source {
            " (on its single clips, the paper's way, or on seeded mixtures of 1–3 of them)"
        } else {
            ""
        }
    );
    let mut head = "| model | pretrained | channels |".to_string();
    if show_mix {
        head.push_str(" training |");
    }
    if show_source {
        head.push_str(" thresholds tuned on |");
    }
    if show_agg {
        head.push_str(" aggregation |");
    }
    head.push_str(
        " seeds | precision | recall | F1 | F1 per class | F1 oracle | F1 @0.5 | epochs |\n",
    );
    let columns = head.matches('|').count() - 1;
    s.push_str(&head);
    s.push_str(&"|---".repeat(columns));
    s.push_str("|\n");
    for r in rows {
        let pre = if r.init.starts_with("imagenet") {
            "Y"
        } else {
            "N"
        };
        s.push_str(&format!(
            "| {} | {pre} ({}) | {} |",
            r.arch, r.init, r.channels
        ));
        if show_mix {
            s.push_str(if r.mix { " --mix |" } else { " paper |" });
        }
        if show_source {
            s.push_str(&format!(" {} |", r.thresholds.name()));
        }
        if show_agg {
            s.push_str(&format!(" {:?} |", r.aggregation).to_lowercase());
        }
        s.push_str(&format!(
            " {} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
            r.seeds.len(),
            pm(r.precision),
            pm(r.recall),
            pm(r.f1),
            pm(r.f1_per_class),
            pm(r.f1_oracle),
            pm(r.f1_fixed),
            r.epochs.0
        ));
    }
    s
}

/// Hooks for the CLI's progress display.
pub trait ExperimentObserver: Sync {
    fn run_start(&self, _index: usize, _total: usize, _name: &str, _skipped: bool) {}
    /// Clips of the synthetic corpus rendered so far, of `total`.
    fn rendering(&self, _done: usize, _total: usize) {}
    fn train_observer(&self) -> &dyn crate::train::Observer;
}

/// Renders the synthetic corpus `opts` unless a complete one of these settings is there (a
/// killed render is redone); returns whether it rendered.
pub fn ensure_corpus(
    opts: &crate::data::synth::SynthOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<bool> {
    use crate::data::soundfont::{find_soundfont, load_soundfont};
    let sf = load_soundfont(&find_soundfont(None)?)?;
    if !crate::data::synth::needs_render(&opts.out, &sf, opts) {
        return Ok(false);
    }
    crate::data::synth::render_corpus(&sf, opts, progress)?;
    Ok(true)
}

/// Where a run's report for an aggregation goes: s1's in `RUN/eval` (as before aggregations were
/// an axis), s2's in `RUN/eval-s2`.
pub fn eval_dir(run_dir: &Path, aggregation: Aggregation) -> PathBuf {
    match aggregation {
        Aggregation::S1 => run_dir.join("eval"),
        Aggregation::S2 => run_dir.join("eval-s2"),
    }
}

/// Whether a run is trained and evaluated for every aggregation.
pub fn is_done(run_dir: &Path, aggregations: &[Aggregation]) -> bool {
    run_dir.join(crate::train::SUMMARY_FILE).is_file()
        && aggregations
            .iter()
            .all(|&a| eval_dir(run_dir, a).join("report.json").is_file())
}

/// One run of a grid: trained (or resumed, or left as it is when finished) and evaluated on its
/// data's test clips with each aggregation (a report already there is read, not redone).
pub fn train_and_evaluate(
    tc: &TrainConfig,
    run_dir: &Path,
    aggregations: &[Aggregation],
    cache_dir: &Path,
    obs: &dyn crate::train::Observer,
) -> Result<RunResult> {
    let summary_path = run_dir.join(crate::train::SUMMARY_FILE);
    if !summary_path.is_file() {
        crate::train::start_or_resume(tc, run_dir, obs)?;
    }
    let read =
        |p: &Path| -> Result<Vec<u8>> { Ok(std::fs::read(p).map_err(|e| FileError::at(p, e))?) };
    let device = tc.backend.device_for(tc.device)?;
    let mut reports = Vec::new();
    for &aggregation in aggregations {
        let dir = eval_dir(run_dir, aggregation);
        let path = dir.join("report.json");
        if !path.is_file() {
            let report = crate::eval::evaluate(
                &run_dir.join(crate::train::MODEL_DIR),
                &tc.data,
                &EvalOptions {
                    batch_size: tc.recipe.batch_size,
                    aggregation: Some(aggregation),
                    ..EvalOptions::paper(cache_dir.to_path_buf())
                },
                &device,
                &|_, _| {},
            )?;
            crate::eval::write_report(&report, &dir)?;
        }
        reports.push(
            serde_json::from_slice::<EvalReport>(&read(&path)?)
                .map_err(|e| FileError::at(&path, e))?,
        );
    }
    let summary: crate::train::TrainSummary = serde_json::from_slice(&read(&summary_path)?)
        .map_err(|e| FileError::at(&summary_path, e))?;
    Ok(RunResult {
        config: tc.clone(),
        reports,
        epochs: summary.epochs,
    })
}

/// Runs (or resumes, or skips) every run of the grid, evaluates each, and writes
/// `OUT/results.md` and `OUT/results.json`. Returns the rows.
pub fn run_experiment(
    config: &ExperimentConfig,
    backend: Backend,
    device: Option<DeviceSpec>,
    cache_dir: &Path,
    obs: &dyn ExperimentObserver,
) -> Result<Vec<Row>> {
    std::fs::create_dir_all(&config.out)?;
    if let Some(s) = &config.synth {
        let opts = crate::data::synth::SynthOptions {
            out: config.data.clone(),
            train_per_class: s.train_per_class,
            test_clips: s.test_clips,
            seed: s.seed,
        };
        if ensure_corpus(&opts, &|done, total| obs.rendering(done, total))? {
            obs.train_observer().message(&format!(
                "rendered the synthetic corpus into {}",
                config.data.display()
            ));
        }
    }
    let runs = config.runs(backend, device, cache_dir);
    let mut results = Vec::new();
    for (i, (name, tc)) in runs.iter().enumerate() {
        let dir = config.out.join(name);
        obs.run_start(i + 1, runs.len(), name, is_done(&dir, &config.aggregations));
        results.push(train_and_evaluate(
            tc,
            &dir,
            &config.aggregations,
            cache_dir,
            obs.train_observer(),
        )?);
    }
    let rows = table(&results, &config.thresholds, &config.aggregations);
    write_atomic(
        &config.out.join("results.md"),
        markdown(&config.name, &rows).as_bytes(),
    )?;
    write_atomic(
        &config.out.join("results.json"),
        &serde_json::to_vec_pretty(&rows)?,
    )?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd() {
        let (m, sd) = mean_sd(&[0.6, 0.7, 0.8]);
        assert!((m - 0.7).abs() < 1e-12);
        assert!((sd - 0.1).abs() < 1e-12);
        assert_eq!(mean_sd(&[0.5]), (0.5, 0.0));
    }

    #[test]
    fn shipped_grids_parse_and_expand() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let t1 = ExperimentConfig::load(&root.join("table1.toml")).unwrap();
        // Table 1: ResNet50, ImageNet, three channel modes, three seeds.
        assert_eq!(t1.runs(Backend::Flex, None, Path::new("/tmp")).len(), 9);
        let t2 = ExperimentConfig::load(&root.join("table2.toml")).unwrap();
        // Table 2: Han (random only) + ResNet18/50 × {imagenet, random}, duplication, 3 seeds.
        assert_eq!(t2.runs(Backend::Flex, None, Path::new("/tmp")).len(), 15);
        // Mixing: the paper's recipe and --mix, 3 seeds each; mixing runs carry the [mixing]
        // settings, and every run the [calibration] ones.
        let m = ExperimentConfig::load(&root.join("mixing.toml")).unwrap();
        let runs = m.runs(Backend::Flex, None, Path::new("/tmp"));
        assert_eq!(runs.len(), 6);
        assert_eq!(runs.iter().filter(|(_, c)| c.mix.is_some()).count(), 3);
        assert!(
            runs.iter()
                .all(|(n, c)| n.ends_with(&format!("seed{}", c.seed))
                    && n.contains("-mix-") == c.mix.is_some())
        );
        assert_eq!(
            m.thresholds,
            [ThresholdSource::Single, ThresholdSource::Mixtures]
        );
        assert_eq!(m.aggregations, [Aggregation::S1, Aggregation::S2]);
        assert_eq!(
            m.synth.as_ref().map(|s| (s.train_per_class, s.test_clips)),
            Some((40, 100))
        );
        let s = ExperimentConfig::load(&root.join("synthetic.toml")).unwrap();
        assert!(s.synth.is_some());
        assert!(
            s.runs(Backend::Flex, None, Path::new("/tmp"))
                .iter()
                .all(|(_, c)| c.recipe.max_epochs <= 20)
        );
    }
}
