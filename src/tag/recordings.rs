//! How a bundle does on real recordings, as a user's `instrec tag` would run it (its default
//! aggregation and thresholds): solo recordings named `CLASS__anything.ext` give the top-1
//! accuracy per class; seeded mixtures of 2–3 of them (different classes, each scaled to the same
//! loudness, then by a random gain) give the label ranking average precision and micro P/R/F1.
//! Mixtures are summed waveforms at 22,050 Hz, cut to the shortest part. Per class the labels
//! found and invented, and a threshold swept on the mixtures (labelled an oracle), tell a ranking
//! failure from a threshold one.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::audio::{Audio, Channel, Level, TARGET_RATE, decode_file, resample, select_channel};
use crate::error::{FileError, Result, fail};
use crate::eval::metrics::{self, Aggregation, Prf, aggregate, lrap};
use crate::eval::score_windows;
use crate::features::{ClipFeatures, MelExtractor};
use crate::util::Rng;
use crate::walk::{WalkOptions, walk};

use super::tagger::Tagger;

/// How the mixtures are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordingOptions {
    pub mixtures: usize,
    /// Instruments per mixture: 2..=this.
    pub max_sources: usize,
    /// Each part's gain range in dB after loudness matching.
    pub gain_db: [f64; 2],
    pub seed: u64,
    /// How the folder is walked (symbolic links, hidden entries).
    pub walk: WalkOptions,
}

impl Default for RecordingOptions {
    fn default() -> Self {
        Self {
            mixtures: 200,
            max_sources: 3,
            gain_db: [-6.0, 0.0],
            seed: 1,
            walk: WalkOptions::default(),
        }
    }
}

/// One solo recording's result.
#[derive(Debug, Clone, Serialize)]
pub struct Solo {
    #[serde(with = "crate::util::path_json")]
    pub path: PathBuf,
    pub class: String,
    /// The class scored highest.
    pub top1: String,
    /// The classes at or above their threshold, best first.
    pub predicted: Vec<String>,
    /// The clip score of every class, in the bundle's class order (as `tag` reports them).
    pub scores: Vec<f32>,
}

/// Top-1 accuracy of one class's solos.
#[derive(Debug, Clone, Serialize)]
pub struct ClassTop1 {
    pub class: String,
    pub correct: usize,
    pub of: usize,
}

/// One class's decisions over the mixtures.
#[derive(Debug, Clone, Serialize)]
pub struct ClassCounts {
    pub class: String,
    #[serde(flatten)]
    pub counts: metrics::Counts,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingReport {
    pub solos: Vec<Solo>,
    pub per_class: Vec<ClassTop1>,
    /// Over all solos.
    pub solo_top1: f64,
    /// Mean over the classes that have solos.
    pub solo_top1_class_mean: f64,
    pub mixtures: usize,
    /// Most recordings in one mixture.
    pub max_sources: usize,
    pub mixture_lrap: f64,
    pub mixture_micro: Prf,
    /// Mean labels and predictions per mixture.
    pub mixture_labels: f64,
    pub mixture_predicted: f64,
    /// Diagnostic, never a default: the one threshold swept on these mixtures that maximises their
    /// micro-F1 (what a better threshold alone could give), and that F1.
    pub mixture_oracle_threshold: f32,
    pub mixture_oracle_f1: f64,
    /// Per class, at the default thresholds: which classes the mixtures miss or invent.
    pub mixture_per_class: Vec<ClassCounts>,
    /// The aggregation and thresholds applied (the bundle's default unless overridden).
    pub aggregation: Aggregation,
    pub thresholds: Vec<f32>,
    /// Whether quiet recordings were raised as `tag` raises quiet files, and how many solos were.
    pub boost_quiet: bool,
    pub solos_raised: usize,
}

impl RecordingReport {
    /// A Markdown summary.
    pub fn markdown(&self, dir: &Path) -> String {
        let mut s = format!(
            "# Real recordings: {}\n\n{} solos, top-1 {:.3} (class mean {:.3})\n\n| class | top-1 |\n|---|---|\n",
            dir.display(),
            self.solos.len(),
            self.solo_top1,
            self.solo_top1_class_mean
        );
        for c in &self.per_class {
            s.push_str(&format!("| {} | {}/{} |\n", c.class, c.correct, c.of));
        }
        if self.solos_raised > 0 {
            s.push_str(&format!(
                "\n{} quiet solo(s) raised before tagging, as `tag` raises quiet files\n",
                self.solos_raised
            ));
        }
        s.push_str(&format!(
            "\n{} mixtures of 2–{} solos: LRAP {:.3}; micro P {:.3}, R {:.3}, F1 {:.3} with {} at the default thresholds ({:.2} labels, {:.2} predicted per mixture)\n",
            self.mixtures,
            self.max_sources,
            self.mixture_lrap,
            self.mixture_micro.precision,
            self.mixture_micro.recall,
            self.mixture_micro.f1,
            self.aggregation,
            self.mixture_labels,
            self.mixture_predicted
        ));
        s.push_str(&format!(
            "\nOracle (swept on these mixtures, labelled, not a default): threshold {:.2}, micro-F1 {:.3}\n\n| class | in mixtures | found | invented |\n|---|---|---|---|\n",
            self.mixture_oracle_threshold, self.mixture_oracle_f1
        ));
        for c in self
            .mixture_per_class
            .iter()
            .filter(|c| c.counts.support() + c.counts.fp > 0)
        {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                c.class,
                c.counts.support(),
                c.counts.tp,
                c.counts.fp
            ));
        }
        s
    }
}

/// The class of a file named `CLASS__anything`, among the bundle's classes.
fn class_of(path: &Path, classes: &[String]) -> Option<usize> {
    let name = path.file_name()?.to_str()?;
    let (code, _) = name.split_once("__")?;
    classes.iter().position(|c| c == code)
}

/// Evaluates `tagger` on the solo recordings in `dir` and on mixtures of them.
pub fn evaluate_recordings(
    tagger: &Tagger,
    dir: &Path,
    opts: &RecordingOptions,
) -> Result<RecordingReport> {
    let classes = &tagger.config.classes;
    let walked = walk(dir, opts.walk);
    // A link loop is walked once and is no reason to stop; an unreadable entry is.
    if let Some(p) = walked.problems.iter().find(|p| !p.is_loop) {
        fail!("{p}");
    }
    let skipped = walked
        .skipped_summary()
        .map(|s| format!("; skipped {s}"))
        .unwrap_or_default();
    let files: Vec<(PathBuf, usize)> = walked
        .files
        .into_iter()
        .filter_map(|p| class_of(&p, classes).map(|c| (p, c)))
        .collect();
    if files.is_empty() {
        fail!(
            "{}: no recordings named CLASS__NAME (CLASS one of {}){skipped}",
            dir.display(),
            classes.join(", ")
        );
    }
    // Every recording at the model's rate, once: solos are scored from it and mixtures made of it.
    let extractor = MelExtractor::new(tagger.config.features.clone());
    let audio: Vec<Audio> = files
        .iter()
        .map(|(p, _)| decode_file(p).map(at_model_rate))
        .collect::<std::result::Result<_, FileError>>()?;
    let mut solos = Vec::new();
    let mut per_class: Vec<ClassTop1> = classes
        .iter()
        .map(|c| ClassTop1 {
            class: c.clone(),
            correct: 0,
            of: 0,
        })
        .collect();
    let mut solos_raised = 0;
    for ((path, class), a) in files.iter().zip(&audio) {
        let (scores, raised) = clip_scores(tagger, &extractor, a);
        solos_raised += usize::from(raised);
        let top = argmax(&scores);
        per_class[*class].of += 1;
        per_class[*class].correct += usize::from(top == *class);
        solos.push(Solo {
            path: path.clone(),
            class: classes[*class].clone(),
            top1: classes[top].clone(),
            predicted: tagger
                .predominant(&scores)
                .into_iter()
                .map(|(c, _)| c)
                .collect(),
            scores,
        });
    }
    per_class.retain(|c| c.of > 0);
    let correct: usize = per_class.iter().map(|c| c.correct).sum();
    let class_mean = per_class
        .iter()
        .map(|c| c.correct as f64 / c.of as f64)
        .sum::<f64>()
        / per_class.len() as f64;

    // Mixtures of recordings of different classes.
    let mut rng = Rng::derive(opts.seed, 0x7265_616c);
    let present: Vec<usize> = {
        let mut v: Vec<usize> = files.iter().map(|(_, c)| *c).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    if present.len() >= 2 {
        for _ in 0..opts.mixtures {
            let k = rng.range(2, opts.max_sources.min(present.len()) + 1);
            let mut chosen_classes = present.clone();
            rng.shuffle(&mut chosen_classes);
            chosen_classes.truncate(k);
            let parts: Vec<usize> = chosen_classes
                .iter()
                .map(|&c| {
                    let of_class: Vec<usize> =
                        (0..files.len()).filter(|&i| files[i].1 == c).collect();
                    of_class[rng.range(0, of_class.len())]
                })
                .collect();
            let mix = mixture(
                &parts.iter().map(|&i| &audio[i]).collect::<Vec<_>>(),
                opts,
                &mut rng,
            );
            scores.push(clip_scores(tagger, &extractor, &mix).0);
            let mut l = chosen_classes;
            l.sort_unstable();
            labels.push(l);
        }
    }
    let counts = metrics::evaluate(&scores, &labels, &tagger.thresholds);
    let (oracle_threshold, oracle_f1) =
        metrics::best_global_threshold(&scores, &labels, classes.len());
    let n = scores.len().max(1) as f64;
    let predicted_count: usize = scores.iter().map(|s| tagger.predominant(s).len()).sum();
    Ok(RecordingReport {
        solo_top1: correct as f64 / solos.len() as f64,
        solo_top1_class_mean: class_mean,
        solos,
        per_class,
        mixtures: scores.len(),
        max_sources: opts.max_sources,
        mixture_lrap: lrap(&scores, &labels),
        mixture_micro: counts.micro,
        mixture_labels: labels.iter().map(Vec::len).sum::<usize>() as f64 / n,
        mixture_predicted: predicted_count as f64 / n,
        mixture_oracle_threshold: oracle_threshold,
        mixture_oracle_f1: oracle_f1.max(0.0),
        mixture_per_class: classes
            .iter()
            .zip(&counts.counts)
            .map(|(c, k)| ClassCounts {
                class: c.clone(),
                counts: *k,
            })
            .collect(),
        aggregation: tagger.aggregation,
        thresholds: tagger.thresholds.clone(),
        boost_quiet: tagger.boost_quiet,
        solos_raised,
    })
}

/// The recording at the model's sample rate, every channel kept.
fn at_model_rate(a: Audio) -> Audio {
    if a.sample_rate == TARGET_RATE {
        return a;
    }
    Audio {
        channels: a
            .channels
            .iter()
            .map(|c| resample(c, a.sample_rate, TARGET_RATE))
            .collect(),
        sample_rate: TARGET_RATE,
    }
}

/// A clip's scores as `tag` aggregates them, and whether it was raised first: a quiet clip is
/// raised by [`Tagger::boost_at`], its level measured on the first source the model takes, at
/// the model's rate, as `tag` measures a file.
fn clip_scores(tagger: &Tagger, extractor: &MelExtractor, a: &Audio) -> (Vec<f32>, bool) {
    let source = tagger.config.channels.sources()[0];
    let gain_db = tagger
        .boost_at(|| Level::of(&select_channel(&a.channels, source)))
        .unwrap_or(0.0);
    let raised;
    let a = if gain_db > 0.0 {
        let g = 10f64.powf(gain_db / 20.0) as f32;
        raised = Audio {
            sample_rate: a.sample_rate,
            channels: a
                .channels
                .iter()
                .map(|c| c.iter().map(|v| v * g).collect())
                .collect(),
        };
        &raised
    } else {
        a
    };
    let clip = ClipFeatures::extract(extractor, a, tagger.config.channels);
    let windows = score_windows(
        &tagger.model,
        &clip,
        tagger.windowing,
        tagger.device(),
        tagger.batch_size,
    );
    (aggregate(&windows, tagger.aggregation), gain_db > 0.0)
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0)
}

/// The parts summed after matching their loudness (RMS of the mono mean) and applying a random
/// gain each; as long as the shortest part; stereo when every part is.
fn mixture(parts: &[&Audio], opts: &RecordingOptions, rng: &mut Rng) -> Audio {
    let len = parts.iter().map(|a| a.len()).min().unwrap_or(0);
    let channels = if parts.iter().all(|a| a.channels.len() >= 2) {
        2
    } else {
        1
    };
    let mut out = vec![vec![0f32; len]; channels];
    for a in parts {
        let mono = crate::audio::select_channel(&a.channels, Channel::Mono);
        let rms = (mono[..len].iter().map(|v| (*v as f64).powi(2)).sum::<f64>()
            / len.max(1) as f64)
            .sqrt()
            .max(1e-6);
        let db = opts.gain_db[0] + rng.f64() * (opts.gain_db[1] - opts.gain_db[0]);
        let gain = (0.1 * 10f64.powf(db / 20.0) / rms) as f32;
        for (c, out_c) in out.iter_mut().enumerate() {
            let src: &[f32] = if channels == 1 { &mono } else { &a.channels[c] };
            for (o, v) in out_c.iter_mut().zip(&src[..len]) {
                *o += gain * v;
            }
        }
    }
    Audio {
        sample_rate: TARGET_RATE,
        channels: out,
    }
}
