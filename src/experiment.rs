//! Experiment grids (architectures × initialisations × channel modes × seeds), run one after
//! another, skipping finished runs and resuming interrupted ones, then summarised as mean ± sd
//! over seeds in the layout of the paper's Tables 1 and 2.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::data::SplitMode;
use crate::eval::{EvalOptions, EvalReport};
use crate::features::ChannelMode;
use crate::model::Arch;
use crate::train::{OptimizerKind, TrainConfig};
use crate::util::write_atomic;

fn default_seeds() -> Vec<u64> {
    vec![1, 2, 3]
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
    /// `imagenet`, `imagenet-v2`, `random` or a weights file.
    pub inits: Vec<String>,
    pub channels: Vec<ChannelMode>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub train: TrainOverrides,
    /// When present and `data` holds no data set yet, render a synthetic corpus there first.
    #[serde(default)]
    pub synth: Option<SynthSection>,
}

/// Training settings that differ from the paper's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOverrides {
    pub batch_size: Option<usize>,
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
    pub optimizer: Option<OptimizerKind>,
    pub warmup_epochs: Option<usize>,
    pub max_epochs: Option<usize>,
    pub patience: Option<usize>,
    pub val_fraction: Option<f64>,
    pub split: Option<SplitMode>,
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
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let mut c: Self = toml::from_str(&text)
            .with_context(|| format!("{}: invalid experiment config", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if c.data.is_relative() {
            c.data = base.join(&c.data);
        }
        if c.out.is_relative() {
            c.out = base.join(&c.out);
        }
        // The same rules as the flags, before any run starts.
        let bad = |e: String| anyhow::anyhow!("{}: {e}", path.display());
        if let Some((_, run)) = c.runs(Backend::Flex, Path::new(".")).first() {
            run.check().map_err(|e| bad(format!("[train] {e}")))?;
        }
        if let Some(s) = &c.synth {
            crate::check::count("[synth] train_per_class", s.train_per_class).map_err(bad)?;
            crate::check::count("[synth] test_clips", s.test_clips).map_err(bad)?;
        }
        if c.runs(Backend::Flex, Path::new(".")).is_empty() {
            return Err(bad(
                "the grid has no runs (archs, inits, channels and seeds must each list one)".into(),
            ));
        }
        Ok(c)
    }

    /// Every run of the grid, in order.
    pub fn runs(&self, backend: Backend, cache_dir: &Path) -> Vec<(String, TrainConfig)> {
        let mut v = Vec::new();
        for &arch in &self.archs {
            for init in &self.inits {
                if arch == Arch::Han && init.starts_with("imagenet") {
                    continue;
                }
                for &ch in &self.channels {
                    for &seed in &self.seeds {
                        let mut t = TrainConfig::paper(self.data.clone(), arch, init, ch, seed);
                        let o = &self.train;
                        t.batch_size = o.batch_size.unwrap_or(t.batch_size);
                        t.lr = o.lr.unwrap_or(t.lr);
                        t.weight_decay = o.weight_decay.unwrap_or(t.weight_decay);
                        t.optimizer = o.optimizer.unwrap_or(t.optimizer);
                        t.warmup_epochs = o.warmup_epochs.unwrap_or(t.warmup_epochs);
                        t.max_epochs = o.max_epochs.unwrap_or(t.max_epochs);
                        t.patience = o.patience.unwrap_or(t.patience);
                        t.val_fraction = o.val_fraction.unwrap_or(t.val_fraction);
                        t.split = o.split.unwrap_or(t.split);
                        t.backend = backend;
                        t.cache_dir = cache_dir.to_path_buf();
                        let init_name = Path::new(init)
                            .file_stem()
                            .map_or(init.clone(), |s| s.to_string_lossy().into_owned());
                        let name =
                            format!("{}-{}-{}-seed{}", arch.name(), init_name, ch.name(), seed);
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

/// One row of the results table: a grid cell averaged over its seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub arch: Arch,
    pub init: String,
    pub channels: ChannelMode,
    pub seeds: Vec<u64>,
    /// (mean, sd) of micro precision, recall, F1 with validation-tuned global thresholds.
    pub precision: (f64, f64),
    pub recall: (f64, f64),
    pub f1: (f64, f64),
    /// (mean, sd) of micro-F1 with the test-oracle threshold and with 0.5.
    pub f1_oracle: (f64, f64),
    pub f1_fixed: (f64, f64),
    pub epochs: (f64, f64),
}

/// Groups the runs' evaluation reports by grid cell.
pub fn table(runs: &[(TrainConfig, EvalReport, usize)]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut cells: Vec<(Arch, String, ChannelMode)> = Vec::new();
    for (c, _, _) in runs {
        let key = (c.arch, c.init.clone(), c.channels);
        if !cells.contains(&key) {
            cells.push(key);
        }
    }
    for (arch, init, channels) in cells {
        let of: Vec<&(TrainConfig, EvalReport, usize)> = runs
            .iter()
            .filter(|(c, _, _)| c.arch == arch && c.init == init && c.channels == channels)
            .collect();
        use crate::eval::ThresholdKind;
        let pick =
            |kind: ThresholdKind, f: fn(&crate::eval::metrics::Metrics) -> f64| -> (f64, f64) {
                let v: Vec<f64> = of
                    .iter()
                    .filter_map(|(_, r, _)| r.result(kind).map(|t| f(&t.metrics)))
                    .collect();
                mean_sd(&v)
            };
        let tuned = ThresholdKind::TunedGlobal;
        rows.push(Row {
            arch,
            init: init.clone(),
            channels,
            seeds: of.iter().map(|(c, _, _)| c.seed).collect(),
            precision: pick(tuned, |m| m.micro.precision),
            recall: pick(tuned, |m| m.micro.recall),
            f1: pick(tuned, |m| m.micro.f1),
            f1_oracle: pick(ThresholdKind::Oracle, |m| m.micro.f1),
            f1_fixed: pick(ThresholdKind::Fixed, |m| m.micro.f1),
            epochs: mean_sd(&of.iter().map(|(_, _, e)| *e as f64).collect::<Vec<_>>()),
        });
    }
    rows
}

fn pm(v: (f64, f64)) -> String {
    format!("{:.3} ± {:.3}", v.0, v.1)
}

/// The table as Markdown, with the paper's columns (micro P, R, F1) and the honest context.
pub fn markdown(name: &str, rows: &[Row]) -> String {
    let mut s = format!(
        "## {name}\n\nMicro-averaged over the test clips; mean ± sd over seeds. P/R/F1 use the threshold tuned on the validation split; \"F1 oracle\" picks the best single threshold on the test set itself (as the authors' code reports); \"F1 @0.5\" uses 0.5.\n\n"
    );
    s.push_str("| model | pretrained | channels | seeds | precision | recall | F1 | F1 oracle | F1 @0.5 | epochs |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let pre = if r.init.starts_with("imagenet") {
            "Y"
        } else {
            "N"
        };
        s.push_str(&format!(
            "| {} | {pre} ({}) | {} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
            r.arch,
            r.init,
            r.channels.name(),
            r.seeds.len(),
            pm(r.precision),
            pm(r.recall),
            pm(r.f1),
            pm(r.f1_oracle),
            pm(r.f1_fixed),
            r.epochs.0
        ));
    }
    s
}

/// Hooks for the CLI's progress display.
pub trait ExperimentObserver {
    fn run_start(&self, _index: usize, _total: usize, _name: &str, _skipped: bool) {}
    fn train_observer(&self) -> &dyn crate::train::Observer;
}

/// Runs (or resumes, or skips) every run of the grid, evaluates each, and writes
/// `OUT/results.md` and `OUT/results.json`. Returns the rows.
pub fn run_experiment(
    config: &ExperimentConfig,
    backend: Backend,
    cache_dir: &Path,
    obs: &dyn ExperimentObserver,
) -> Result<Vec<Row>> {
    std::fs::create_dir_all(&config.out)?;
    if let Some(s) = &config.synth {
        let sf = crate::data::soundfont::load_soundfont(
            &crate::data::soundfont::find_soundfont(None).map_err(anyhow::Error::msg)?,
        )
        .map_err(anyhow::Error::msg)?;
        let opts = crate::data::synth::SynthOptions {
            out: config.data.clone(),
            train_per_class: s.train_per_class,
            test_clips: s.test_clips,
            seed: s.seed,
        };
        // Rendered unless a complete corpus of these settings is there (a killed render is redone).
        if crate::data::synth::needs_render(&config.data, &sf, &opts) {
            obs.train_observer().message(&format!(
                "rendering the synthetic corpus into {}",
                config.data.display()
            ));
            crate::data::synth::render_corpus(&sf, &opts, &|_, _| {})
                .map_err(anyhow::Error::msg)?;
        }
    }
    let runs = config.runs(backend, cache_dir);
    let device = backend.device().map_err(anyhow::Error::msg)?;
    let mut results = Vec::new();
    for (i, (name, tc)) in runs.iter().enumerate() {
        let dir = config.out.join(name);
        let report_path = dir.join("eval").join("report.json");
        let summary_path = dir.join(crate::train::SUMMARY_FILE);
        let done = summary_path.is_file() && report_path.is_file();
        obs.run_start(i + 1, runs.len(), name, done);
        if !done {
            if !summary_path.is_file() {
                let resume = dir.join(crate::train::CONFIG_FILE).is_file();
                crate::train::train(tc, &dir, resume, None, obs.train_observer())?;
            }
            let report = crate::eval::evaluate(
                &dir.join(crate::train::MODEL_DIR),
                &tc.data,
                &EvalOptions {
                    batch_size: tc.batch_size,
                    ..EvalOptions::paper(cache_dir.to_path_buf())
                },
                &device,
                &|_, _| {},
            )?;
            crate::eval::write_report(&report, &dir.join("eval"))?;
        }
        let read = |p: &Path| -> Result<Vec<u8>> {
            std::fs::read(p).with_context(|| p.display().to_string())
        };
        let report: EvalReport = serde_json::from_slice(&read(&report_path)?)
            .with_context(|| report_path.display().to_string())?;
        let summary: crate::train::TrainSummary = serde_json::from_slice(&read(&summary_path)?)
            .with_context(|| summary_path.display().to_string())?;
        results.push((tc.clone(), report, summary.epochs));
    }
    let rows = table(&results);
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
        assert_eq!(t1.runs(Backend::Flex, Path::new("/tmp")).len(), 9);
        let t2 = ExperimentConfig::load(&root.join("table2.toml")).unwrap();
        // Table 2: Han (random only) + ResNet18/50 × {imagenet, random}, duplication, 3 seeds.
        assert_eq!(t2.runs(Backend::Flex, Path::new("/tmp")).len(), 15);
        let s = ExperimentConfig::load(&root.join("synthetic.toml")).unwrap();
        assert!(s.synth.is_some());
        assert!(
            s.runs(Backend::Flex, Path::new("/tmp"))
                .iter()
                .all(|(_, c)| c.max_epochs <= 20)
        );
    }
}
