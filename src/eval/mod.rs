//! Evaluation on the IRMAS test set (paper Sections 4.4–4.5): 1-s windows with 50 % overlap,
//! window sigmoids aggregated per clip (s1 or s2), thresholds, micro / macro / per-class
//! precision, recall and F1.
//!
//! Four kinds of threshold are reported, always labelled:
//! - `fixed`: a given value (0.5 by default);
//! - `validation-tuned`: chosen on the held-out validation split at the end of training (global,
//!   and per class) — the honest headline number;
//! - `mixture-calibrated`: chosen on seeded mixtures of 1–3 validation clips (global, and per
//!   class), for test music with several predominant instruments (beyond the paper);
//! - `test-oracle`: the single threshold that maximises micro-F1 on the test set itself, as the
//!   authors' code reports; optimistic by construction.

pub mod metrics;

use std::path::{Path, PathBuf};

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::CLASSES;
use crate::data::{Irmas, cache};
use crate::features::{ClipFeatures, Windowing};
use crate::model::Model;
use crate::model::bundle::{BundleConfig, Thresholds, load_bundle};
use crate::util::write_atomic;
use crate::walk::WalkOptions;
use metrics::{Aggregation, Metrics};

use crate::error::{Error, Result, fail};

/// Sigmoid scores of a batch of logits, one `Vec` per row.
pub fn sigmoid_scores(logits: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, n] = logits.dims();
    let v = sigmoid(logits)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 scores");
    v.chunks(n).map(<[f32]>::to_vec).collect()
}

/// The sigmoid scores of every window of a clip, in batches, in eval mode.
pub fn score_windows(
    model: &Model,
    clip: &ClipFeatures,
    windowing: Windowing,
    device: &Device,
    batch_size: usize,
) -> Vec<Vec<f32>> {
    let starts = windowing.starts(clip.frames());
    let silence = crate::features::FeatureSettings::default().silence();
    let n_mels = clip.mels[0].n_mels;
    let mut out = Vec::with_capacity(starts.len());
    for chunk in starts.chunks(batch_size.max(1)) {
        let mut x = Vec::with_capacity(chunk.len() * 3 * windowing.length * n_mels);
        for &s in chunk {
            x.extend(clip.input(s, windowing.length, silence));
        }
        out.extend(score_inputs(model, x, windowing.length, n_mels, device));
    }
    out
}

/// The sigmoid scores of window inputs laid end to end (`[n, 3, length, n_mels]`), one forward
/// pass in eval mode.
pub fn score_inputs(
    model: &Model,
    x: Vec<f32>,
    length: usize,
    n_mels: usize,
    device: &Device,
) -> Vec<Vec<f32>> {
    let n = x.len() / (3 * length * n_mels);
    if n == 0 {
        return Vec::new();
    }
    let t = Tensor::<4>::from_data(TensorData::new(x, [n, 3, length, n_mels]), device);
    sigmoid_scores(model.forward(t))
}

/// Where a set of thresholds comes from; every result is labelled with one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThresholdKind {
    #[serde(rename = "fixed")]
    Fixed,
    /// The bundle's global threshold, tuned on the validation split.
    #[serde(rename = "validation-tuned (global)")]
    TunedGlobal,
    #[serde(rename = "validation-tuned (per class)")]
    TunedPerClass,
    /// Tuned on validation mixtures (1–3 instruments) instead of single clips.
    #[serde(rename = "mixture-calibrated (global)")]
    MixtureGlobal,
    #[serde(rename = "mixture-calibrated (per class)")]
    MixturePerClass,
    /// The best single threshold on the test set itself: optimistic by construction.
    #[serde(rename = "test-oracle")]
    Oracle,
}

impl std::fmt::Display for ThresholdKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fixed => "fixed",
            Self::TunedGlobal => "validation-tuned (global)",
            Self::TunedPerClass => "validation-tuned (per class)",
            Self::MixtureGlobal => "mixture-calibrated (global)",
            Self::MixturePerClass => "mixture-calibrated (per class)",
            Self::Oracle => "test-oracle",
        })
    }
}

/// One set of thresholds and the metrics they give.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub kind: ThresholdKind,
    pub thresholds: Vec<f32>,
    pub metrics: Metrics,
}

/// One test clip's labels and aggregated scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "ClipScoreRepr")]
pub struct ClipScore {
    pub path: PathBuf,
    pub labels: Vec<usize>,
    pub scores: Vec<f32>,
}

/// Reports written before [`ClipScore`] had names hold `[path, labels, scores]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ClipScoreRepr {
    Named {
        path: PathBuf,
        labels: Vec<usize>,
        scores: Vec<f32>,
    },
    Tuple(PathBuf, Vec<usize>, Vec<f32>),
}

impl From<ClipScoreRepr> for ClipScore {
    fn from(r: ClipScoreRepr) -> Self {
        let (path, labels, scores) = match r {
            ClipScoreRepr::Named {
                path,
                labels,
                scores,
            } => (path, labels, scores),
            ClipScoreRepr::Tuple(p, l, s) => (p, l, s),
        };
        Self {
            path,
            labels,
            scores,
        }
    }
}

/// The result of evaluating a model on a test set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub model: PathBuf,
    pub data: PathBuf,
    pub aggregation: Aggregation,
    pub window_hop: usize,
    pub clips: usize,
    pub skipped: Vec<String>,
    pub results: Vec<ThresholdResult>,
    /// Best micro-F1 of any constant prediction, for reference.
    pub constant_baseline_f1: f64,
    /// Per clip: path, labels, aggregated scores.
    pub clip_scores: Vec<ClipScore>,
}

impl EvalReport {
    pub fn result(&self, kind: ThresholdKind) -> Option<&ThresholdResult> {
        self.results.iter().find(|r| r.kind == kind)
    }
}

pub struct EvalOptions {
    /// `None`: the bundle's own, as `tag` uses it (s1 unless it was packed with another).
    pub aggregation: Option<Aggregation>,
    pub fixed_threshold: f32,
    pub hop: usize,
    pub batch_size: usize,
    pub cache_dir: PathBuf,
    /// How the test folders are walked (symbolic links, hidden entries).
    pub walk: WalkOptions,
}

impl EvalOptions {
    /// The paper's evaluation: s1, 50 %-overlap windows, 0.5 as the fixed threshold.
    pub fn paper(cache_dir: PathBuf) -> Self {
        Self {
            aggregation: Some(Aggregation::S1),
            fixed_threshold: 0.5,
            hop: Windowing::analysis().hop,
            batch_size: 64,
            cache_dir,
            walk: WalkOptions::default(),
        }
    }
}

/// Scores every test clip of `data` with the bundle in `model_dir` and computes the metrics.
pub fn evaluate(
    model_dir: &Path,
    data: &Path,
    opts: &EvalOptions,
    device: &Device,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<EvalReport> {
    crate::check::hop("hop", opts.hop)?;
    crate::check::batch("batch_size", opts.batch_size)?;
    crate::check::threshold("fixed threshold", opts.fixed_threshold)?;
    let (model, config) = load_bundle(model_dir, device)?;
    let model = model.fold_batchnorm();
    let aggregation = opts
        .aggregation
        .unwrap_or(config.aggregation.unwrap_or_default());
    let set = Irmas::read_with(data, opts.walk)?;
    if set.test.is_empty() {
        fail!(
            "{}: no test clips (IRMAS-TestingData-Part*/)",
            data.display()
        );
    }
    // Use the same cache as training (its key covers training and test files).
    let files = set.all_files();
    // Only the test clips' features are held in memory.
    let wanted: std::collections::HashSet<&Path> =
        set.test.iter().map(|c| c.path.as_path()).collect();
    let (features, _) = cache::prepare_subset(
        &files,
        &config.features,
        config.channels,
        &opts.cache_dir,
        &|_, _| {},
        &|p| wanted.contains(p),
    )?;
    let windowing = Windowing {
        hop: opts.hop,
        ..Windowing::analysis()
    };
    let mut clip_scores = Vec::new();
    let mut skipped: Vec<String> = set.issues.iter().map(|i| i.to_string()).collect();
    for (i, clip) in set.test.iter().enumerate() {
        match features.get(&clip.path) {
            Some(f) => {
                let w = score_windows(&model, f, windowing, device, opts.batch_size);
                clip_scores.push(ClipScore {
                    path: clip.path.clone(),
                    labels: clip.labels.clone(),
                    scores: metrics::aggregate(&w, aggregation),
                });
            }
            None => skipped.push(
                features
                    .failures
                    .iter()
                    .find(|f| f.path == clip.path)
                    .map_or_else(
                        || format!("{}: could not be decoded", clip.path.display()),
                        |f| f.to_string(),
                    ),
            ),
        }
        progress(i + 1, set.test.len());
    }
    // A report over no clip would be all zeros: an error, not a result.
    if clip_scores.is_empty() {
        fail!(
            "{}: none of the {} test clips could be scored ({})",
            data.display(),
            set.test.len(),
            skipped.first().map_or("", String::as_str)
        );
    }
    let report = score_report(
        model_dir,
        data,
        &config,
        opts,
        aggregation,
        clip_scores,
        skipped,
    );
    Ok(report)
}

/// A bundle's thresholds for an aggregation. Bundles from before s2 had thresholds of its own
/// give their s1 ones, as they always did.
pub fn thresholds_for(config: &BundleConfig, aggregation: Aggregation) -> &Thresholds {
    match aggregation {
        Aggregation::S1 => &config.thresholds,
        Aggregation::S2 => config.thresholds_s2.as_ref().unwrap_or(&config.thresholds),
    }
}

fn score_report(
    model_dir: &Path,
    data: &Path,
    config: &BundleConfig,
    opts: &EvalOptions,
    aggregation: Aggregation,
    clip_scores: Vec<ClipScore>,
    skipped: Vec<String>,
) -> EvalReport {
    let n = config.classes.len();
    let scores: Vec<Vec<f32>> = clip_scores.iter().map(|c| c.scores.clone()).collect();
    let labels: Vec<Vec<usize>> = clip_scores.iter().map(|c| c.labels.clone()).collect();
    let mut results = Vec::new();
    let mut add = |kind: ThresholdKind, t: Vec<f32>| {
        let m = metrics::evaluate(&scores, &labels, &t);
        results.push(ThresholdResult {
            kind,
            thresholds: t,
            metrics: m,
        });
    };
    add(ThresholdKind::Fixed, vec![opts.fixed_threshold; n]);
    let tuned = thresholds_for(config, aggregation);
    if tuned.source == "validation-tuned" {
        add(ThresholdKind::TunedGlobal, vec![tuned.global; n]);
        if let Some(p) = &tuned.per_class {
            add(ThresholdKind::TunedPerClass, p.clone());
        }
    }
    if let Some(m) = &tuned.mixture {
        add(ThresholdKind::MixtureGlobal, vec![m.global; n]);
        add(ThresholdKind::MixturePerClass, m.per_class.clone());
    }
    let (oracle, _) = metrics::best_global_threshold(&scores, &labels, n);
    add(ThresholdKind::Oracle, vec![oracle; n]);
    EvalReport {
        model: model_dir.to_path_buf(),
        data: data.to_path_buf(),
        aggregation,
        window_hop: opts.hop,
        clips: clip_scores.len(),
        skipped,
        results,
        constant_baseline_f1: metrics::best_constant_micro_f1(&labels, n),
        clip_scores,
    }
}

/// The report as Markdown.
pub fn markdown(r: &EvalReport) -> String {
    let mut s = format!(
        "# Evaluation\n\nModel `{}` on `{}`: {} test clips, windows of 43 frames with hop {}, aggregation {:?}.\n\n",
        r.model.display(),
        r.data.display(),
        r.clips,
        r.window_hop,
        r.aggregation
    );
    s.push_str("| thresholds | threshold | P (micro) | R (micro) | F1 (micro) | F1 (macro) |\n|---|---|---|---|---|---|\n");
    for t in &r.results {
        let th = if t.thresholds.windows(2).all(|w| w[0] == w[1]) {
            format!("{:.2}", t.thresholds[0])
        } else {
            "per class".to_string()
        };
        s.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            t.kind,
            th,
            t.metrics.micro.precision,
            t.metrics.micro.recall,
            t.metrics.micro.f1,
            t.metrics.macro_avg.f1
        ));
    }
    s.push_str(&format!(
        "\nBest constant prediction: micro-F1 {:.3}. The test-oracle row picks its threshold on the test set itself and is optimistic by construction.\n",
        r.constant_baseline_f1
    ));
    let main = r
        .result(ThresholdKind::TunedGlobal)
        .or_else(|| r.result(ThresholdKind::Fixed))
        .expect("fixed is always there");
    s.push_str(&format!(
        "\n## Per class ({})\n\n| class | support | P | R | F1 | threshold |\n|---|---|---|---|---|---|\n",
        main.kind
    ));
    for (k, c) in CLASSES.iter().enumerate() {
        let p = &main.metrics.per_class[k];
        s.push_str(&format!(
            "| {c} | {} | {:.3} | {:.3} | {:.3} | {:.2} |\n",
            main.metrics.counts[k].support(),
            p.precision,
            p.recall,
            p.f1,
            main.thresholds[k]
        ));
    }
    if !r.skipped.is_empty() {
        s.push_str(&format!("\n{} file(s) skipped:\n\n", r.skipped.len()));
        for k in &r.skipped {
            s.push_str(&format!("- {k}\n"));
        }
    }
    s
}

/// Writes `report.json`, `report.md`, `per_class_f1.png` and `pr_curve.png` into `dir`.
pub fn write_report(r: &EvalReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let [json, md, bar, pr] = report_files(dir);
    write_atomic(&json, &serde_json::to_vec_pretty(r)?)?;
    write_atomic(&md, markdown(r).as_bytes())?;
    let main = r
        .result(ThresholdKind::TunedGlobal)
        .or_else(|| r.result(ThresholdKind::Fixed))
        .expect("fixed is always there");
    let f1: Vec<f64> = main.metrics.per_class.iter().map(|p| p.f1).collect();
    let scores: Vec<Vec<f32>> = r.clip_scores.iter().map(|c| c.scores.clone()).collect();
    let labels: Vec<Vec<usize>> = r.clip_scores.iter().map(|c| c.labels.clone()).collect();
    let curve: Vec<(f64, f64)> = metrics::threshold_grid()
        .map(|t| {
            let m = metrics::evaluate(&scores, &labels, &vec![t; CLASSES.len()]);
            (m.micro.recall, m.micro.precision)
        })
        .collect();
    // The numbers are saved by now; a plot that cannot be written still fails the command.
    crate::report::plot_per_class(&bar, &f1, &main.kind.to_string())
        .and_then(|_| crate::report::plot_pr(&pr, &curve))
        .map_err(|e| Error::Invalid(format!("plots not written: {e}")))?;
    Ok(vec![json, md, bar, pr])
}

/// The files [`write_report`] writes into `dir`: `report.json`, `report.md`,
/// `per_class_f1.png`, `pr_curve.png`.
pub fn report_files(dir: &Path) -> [PathBuf; 4] {
    [
        "report.json",
        "report.md",
        "per_class_f1.png",
        "pr_curve.png",
    ]
    .map(|f| dir.join(f))
}

#[cfg(test)]
mod clip_score_tests {
    use super::ClipScore;

    #[test]
    fn clip_scores_read_both_layouts() {
        let named: ClipScore =
            serde_json::from_str(r#"{"path":"a.wav","labels":[1],"scores":[0.5]}"#).unwrap();
        let tuple: ClipScore = serde_json::from_str(r#"["a.wav",[1],[0.5]]"#).unwrap();
        for c in [named, tuple] {
            assert_eq!(
                (c.path.to_str(), c.labels, c.scores),
                (Some("a.wav"), vec![1], vec![0.5])
            );
        }
    }
}
