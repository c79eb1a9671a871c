//! Clip-level aggregation (Han et al.'s s1 and s2), thresholds, and precision / recall / F1
//! (paper Section 4.5: micro-averaged; macro and per-class as well).

use serde::{Deserialize, Serialize};

pub use crate::model::bundle::Aggregation;

/// Aggregates `windows` (each a score per class) into one score per class.
pub fn aggregate(windows: &[Vec<f32>], how: Aggregation) -> Vec<f32> {
    assert!(!windows.is_empty(), "a clip has at least one window");
    let n = windows[0].len();
    let mut sum = vec![0f64; n];
    for w in windows {
        for (s, v) in sum.iter_mut().zip(w) {
            *s += *v as f64;
        }
    }
    match how {
        Aggregation::S1 => sum
            .iter()
            .map(|s| (s / windows.len() as f64) as f32)
            .collect(),
        Aggregation::S2 => {
            let max = sum.iter().copied().fold(f64::MIN, f64::max);
            if max <= 0.0 {
                return vec![0.0; n];
            }
            sum.iter().map(|s| (s / max) as f32).collect()
        }
    }
}

/// Precision, recall and F1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl Prf {
    /// From counts; a ratio with a zero denominator is 0 (scikit-learn's `zero_division=0`).
    pub fn from_counts(tp: usize, fp: usize, fn_: usize) -> Self {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, tp + fn_);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Self {
            precision,
            recall,
            f1,
        }
    }
}

/// True/false positives and false negatives of one class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Counts {
    /// Records one clip's decision for the class.
    pub fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => {}
        }
    }

    /// Clips labelled with the class.
    pub fn support(&self) -> usize {
        self.tp + self.fn_
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Pooled over classes (the paper's headline).
    pub micro: Prf,
    /// The unweighted mean of the per-class values over the classes with at least one positive.
    pub macro_avg: Prf,
    pub per_class: Vec<Prf>,
    pub counts: Vec<Counts>,
}

/// Per-class counts of predictions `score >= threshold[class]` against the label sets.
pub fn count(scores: &[Vec<f32>], labels: &[Vec<usize>], thresholds: &[f32]) -> Vec<Counts> {
    assert_eq!(scores.len(), labels.len());
    let n = thresholds.len();
    let mut c = vec![Counts::default(); n];
    for (s, l) in scores.iter().zip(labels) {
        for k in 0..n {
            c[k].add(s[k] >= thresholds[k], l.contains(&k));
        }
    }
    c
}

pub fn metrics_from_counts(counts: Vec<Counts>) -> Metrics {
    let tp = counts.iter().map(|c| c.tp).sum();
    let fp = counts.iter().map(|c| c.fp).sum();
    let fn_ = counts.iter().map(|c| c.fn_).sum();
    let per_class: Vec<Prf> = counts
        .iter()
        .map(|c| Prf::from_counts(c.tp, c.fp, c.fn_))
        .collect();
    let with_support: Vec<&Prf> = per_class
        .iter()
        .zip(&counts)
        .filter(|(_, c)| c.support() > 0)
        .map(|(p, _)| p)
        .collect();
    let mean = |f: fn(&Prf) -> f64| {
        if with_support.is_empty() {
            0.0
        } else {
            with_support.iter().map(|p| f(p)).sum::<f64>() / with_support.len() as f64
        }
    };
    Metrics {
        micro: Prf::from_counts(tp, fp, fn_),
        macro_avg: Prf {
            precision: mean(|p| p.precision),
            recall: mean(|p| p.recall),
            f1: mean(|p| p.f1),
        },
        per_class,
        counts,
    }
}

pub fn evaluate(scores: &[Vec<f32>], labels: &[Vec<usize>], thresholds: &[f32]) -> Metrics {
    metrics_from_counts(count(scores, labels, thresholds))
}

/// The candidate thresholds of a sweep: 0.01, 0.02, ..., 0.99.
pub fn threshold_grid() -> impl Iterator<Item = f32> {
    (1..100).map(|i| i as f32 / 100.0)
}

/// The single threshold (on the grid) that maximises micro-F1; ties go to the lowest.
pub fn best_global_threshold(
    scores: &[Vec<f32>],
    labels: &[Vec<usize>],
    n_classes: usize,
) -> (f32, f64) {
    let mut best = (0.5, -1.0);
    for t in threshold_grid() {
        let f1 = evaluate(scores, labels, &vec![t; n_classes]).micro.f1;
        if f1 > best.1 {
            best = (t, f1);
        }
    }
    best
}

/// Per class, the threshold (on the grid) that maximises that class's F1; a class without
/// positives keeps `fallback`.
pub fn best_per_class_thresholds(
    scores: &[Vec<f32>],
    labels: &[Vec<usize>],
    n_classes: usize,
    fallback: f32,
) -> Vec<f32> {
    (0..n_classes)
        .map(|k| {
            let positives = labels.iter().filter(|l| l.contains(&k)).count();
            if positives == 0 {
                return fallback;
            }
            let mut best = (fallback, -1.0);
            for t in threshold_grid() {
                let mut c = Counts::default();
                for (s, l) in scores.iter().zip(labels) {
                    c.add(s[k] >= t, l.contains(&k));
                }
                let f1 = Prf::from_counts(c.tp, c.fp, c.fn_).f1;
                if f1 > best.1 {
                    best = (t, f1);
                }
            }
            best.0
        })
        .collect()
}

/// The best micro-F1 any constant prediction (the same label set for every clip) reaches: the
/// baseline a model must beat to have learned anything. Tries every label set that predicts the
/// k most frequent classes, k = 0..n (the optimum among constant predictors for micro-F1 is of
/// this form).
pub fn best_constant_micro_f1(labels: &[Vec<usize>], n_classes: usize) -> f64 {
    let mut freq: Vec<(usize, usize)> = (0..n_classes)
        .map(|k| (labels.iter().filter(|l| l.contains(&k)).count(), k))
        .collect();
    freq.sort_by(|a, b| b.cmp(a));
    let mut best = 0.0f64;
    for k in 0..=n_classes {
        let set: Vec<usize> = freq[..k].iter().map(|&(_, c)| c).collect();
        let scores: Vec<Vec<f32>> = labels
            .iter()
            .map(|_| {
                (0..n_classes)
                    .map(|c| if set.contains(&c) { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        best = best.max(evaluate(&scores, labels, &vec![0.5; n_classes]).micro.f1);
    }
    best
}

/// Label ranking average precision (scikit-learn's `label_ranking_average_precision_score`):
/// for each clip and each of its labels, the share of the classes ranked at or above that label
/// that are labels too; averaged over a clip's labels, then over clips. Ties count against
/// (a class tied with a label ranks at or above it). Clips without labels count 1, as there.
pub fn lrap(scores: &[Vec<f32>], labels: &[Vec<usize>]) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    let mut total = 0.0;
    for (s, l) in scores.iter().zip(labels) {
        if l.is_empty() || l.len() == s.len() {
            total += 1.0;
            continue;
        }
        let mut clip = 0.0;
        for &k in l {
            let at_or_above = s.iter().filter(|&&v| v >= s[k]).count();
            let labels_at_or_above = l.iter().filter(|&&j| s[j] >= s[k]).count();
            clip += labels_at_or_above as f64 / at_or_above as f64;
        }
        total += clip / l.len() as f64;
    }
    total / scores.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s1_is_the_mean_and_s2_the_sum_over_its_max() {
        let w = vec![vec![0.2, 0.8, 0.0], vec![0.4, 0.6, 0.0]];
        let s1 = aggregate(&w, Aggregation::S1);
        assert!((s1[0] - 0.3).abs() < 1e-6 && (s1[1] - 0.7).abs() < 1e-6 && s1[2] == 0.0);
        let s2 = aggregate(&w, Aggregation::S2);
        assert!((s2[0] - 0.6 / 1.4).abs() < 1e-6 && (s2[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn micro_macro_and_per_class_against_hand_counts() {
        // 3 classes, 4 clips. Class 2 has no positives and is never predicted.
        let labels = vec![vec![0], vec![0, 1], vec![1], vec![0]];
        let scores = vec![
            vec![0.9, 0.1, 0.0], // tp0
            vec![0.2, 0.7, 0.1], // fn0, tp1
            vec![0.6, 0.4, 0.0], // fp0, fn1
            vec![0.8, 0.9, 0.3], // tp0, fp1
        ];
        let m = evaluate(&scores, &labels, &[0.5; 3]);
        assert_eq!(
            m.counts[0],
            Counts {
                tp: 2,
                fp: 1,
                fn_: 1
            }
        );
        assert_eq!(
            m.counts[1],
            Counts {
                tp: 1,
                fp: 1,
                fn_: 1
            }
        );
        assert_eq!(m.counts[2], Counts::default());
        // micro: tp 3, fp 2, fn 2 → P = R = F1 = 0.6.
        assert!((m.micro.precision - 0.6).abs() < 1e-12);
        assert!((m.micro.recall - 0.6).abs() < 1e-12);
        assert!((m.micro.f1 - 0.6).abs() < 1e-12);
        // Class 0: P 2/3, R 2/3; class 1: P 1/2, R 1/2. Class 2 (no positives) is left out of
        // the macro mean and scores 0.
        assert!((m.per_class[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].f1 - 0.5).abs() < 1e-12);
        assert_eq!(
            m.per_class[2],
            Prf {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0
            }
        );
        assert!((m.macro_avg.f1 - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
        // A false positive on the class without positives lowers micro precision.
        let m = evaluate(&scores, &labels, &[0.5, 0.5, 0.25]);
        assert_eq!(
            m.counts[2],
            Counts {
                tp: 0,
                fp: 1,
                fn_: 0
            }
        );
        assert!((m.micro.precision - 0.5).abs() < 1e-12);
    }

    #[test]
    fn sweeps_find_the_best_thresholds() {
        let labels = vec![vec![0], vec![1], vec![0, 1]];
        let scores = vec![vec![0.35, 0.1], vec![0.2, 0.45], vec![0.4, 0.5]];
        let (t, f1) = best_global_threshold(&scores, &labels, 2);
        assert_eq!(f1, 1.0);
        assert!(t > 0.2 && t <= 0.35, "{t}");
        let per = best_per_class_thresholds(&scores, &labels, 2, 0.5);
        assert!(per[0] > 0.2 && per[0] <= 0.35);
        assert!(per[1] > 0.1 && per[1] <= 0.45);
    }

    #[test]
    fn constant_baseline_picks_the_best_fixed_label_set() {
        // Class 0 on every clip: predicting {0} always gives F1 = 2·(3/3·3/4)/(1+3/4).
        let labels = vec![vec![0], vec![0], vec![0, 1], vec![1, 2]];
        let f = best_constant_micro_f1(&labels, 3);
        let p = 3.0 / 4.0;
        let r = 3.0 / 6.0;
        let expected_0: f64 = 2.0 * p * r / (p + r);
        // Predicting {0, 1}: tp 5, fp 3, fn 1 → P 5/8, R 5/6.
        let (p2, r2) = (5.0 / 8.0, 5.0 / 6.0);
        let expected_01 = 2.0 * p2 * r2 / (p2 + r2);
        assert!((f - expected_0.max(expected_01)).abs() < 1e-12, "{f}");
    }

    /// scikit-learn's documented example, ties, and clips with no or all labels.
    #[test]
    fn lrap_follows_scikit_learn() {
        let scores = vec![vec![0.75, 0.5, 1.0], vec![1.0, 0.2, 0.1]];
        let labels = vec![vec![0], vec![2]];
        assert!((lrap(&scores, &labels) - 5.0 / 12.0).abs() < 1e-12);
        // A label tied with another class ranks below it: 1/2.
        assert!((lrap(&[vec![0.5, 0.5]], &[vec![0]]) - 0.5).abs() < 1e-12);
        assert_eq!(lrap(&[vec![0.1, 0.9]], &[vec![]]), 1.0);
        assert_eq!(lrap(&[vec![0.1, 0.9]], &[vec![0, 1]]), 1.0);
        // Two labels ranked first and third of three: (1/1 + 2/3) / 2.
        let v = lrap(&[vec![0.9, 0.5, 0.2]], &[vec![0, 2]]);
        assert!((v - 5.0 / 6.0).abs() < 1e-12, "{v}");
    }
}
