//! Range checks for the numeric settings, one rule each, shared by the CLI's flags, experiment
//! TOMLs, run configs and bundles' `config.json`: a bad value is refused before any work starts,
//! with a message that names the setting, instead of a panic or an unbounded allocation later.

use std::fmt::Display;

use crate::error::SettingError;

/// The analysis window, in frames: a hop above it would skip audio.
pub const MAX_HOP: usize = 43;
/// Batches above this would only exhaust memory.
pub const MAX_BATCH: usize = 4096;
/// Epochs, patience, clip counts, steps: far above any real use, small enough to allocate.
pub const MAX_COUNT: usize = 1_000_000;
/// Most instruments in one mixture: beyond IRMAS's 3, a few more are still music.
pub const MAX_MIX_SOURCES: usize = 6;

/// `v` within `lo..=hi`.
pub fn within<T: PartialOrd + Display + Copy>(
    what: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, SettingError> {
    if v < lo || v > hi {
        Err(SettingError::new(
            what,
            format!("be between {lo} and {hi}, got {v}"),
        ))
    } else {
        Ok(v)
    }
}

/// A finite `v` with `lo < v <= hi` (`lo` itself allowed when `lo_ok`).
pub fn real(what: &str, v: f64, lo: f64, hi: f64, lo_ok: bool) -> Result<f64, SettingError> {
    let low = if lo_ok { v >= lo } else { v > lo };
    if !v.is_finite() || !low || v > hi {
        let open = if lo_ok { "[" } else { "(" };
        Err(SettingError::new(
            what,
            format!("be a finite number in {open}{lo}, {hi}], got {v}"),
        ))
    } else {
        Ok(v)
    }
}

/// A learning rate: 0 < lr ≤ 10.
pub fn lr(what: &str, v: f64) -> Result<f64, SettingError> {
    real(what, v, 0.0, 10.0, false)
}

/// A weight decay: 0 ≤ wd ≤ 1.
pub fn weight_decay(what: &str, v: f64) -> Result<f64, SettingError> {
    real(what, v, 0.0, 1.0, true)
}

/// The validation share of each class: 0 < f ≤ 0.9 (training keeps at least a tenth).
pub fn val_fraction(what: &str, v: f64) -> Result<f64, SettingError> {
    real(what, v, 0.0, 0.9, false)
}

/// A decision threshold: finite, 0 ≤ t ≤ 1.
pub fn threshold(what: &str, t: f32) -> Result<f32, SettingError> {
    real(what, t as f64, 0.0, 1.0, true).map(|_| t)
}

/// Analysis windows overlap when the hop is below the window: 1 ≤ hop ≤ 43.
pub fn hop(what: &str, v: usize) -> Result<usize, SettingError> {
    within(what, v, 1, MAX_HOP)
}

pub fn batch(what: &str, v: usize) -> Result<usize, SettingError> {
    within(what, v, 1, MAX_BATCH)
}

/// Epochs, patience, steps, clip counts: at least 1.
pub fn count(what: &str, v: usize) -> Result<usize, SettingError> {
    within(what, v, 1, MAX_COUNT)
}

/// A count that may be 0.
pub fn count0(what: &str, v: usize) -> Result<usize, SettingError> {
    within(what, v, 0, MAX_COUNT)
}

/// A probability: 0 < p ≤ 1.
pub fn probability(what: &str, p: f64) -> Result<f64, SettingError> {
    real(what, p, 0.0, 1.0, false)
}

/// A share that may be zero: 0 ≤ p ≤ 1.
pub fn share01(what: &str, p: f64) -> Result<f64, SettingError> {
    real(what, p, 0.0, 1.0, true)
}

/// Instruments in one mixture: 2 ≤ n ≤ [`MAX_MIX_SOURCES`].
pub fn mix_sources(what: &str, n: usize) -> Result<usize, SettingError> {
    within(what, n, 2, MAX_MIX_SOURCES)
}

/// A gain range in dB: each end in −60…60, LOW ≤ HIGH.
pub fn db_range(what: &str, g: [f64; 2]) -> Result<[f64; 2], SettingError> {
    for v in g {
        real(what, v, -60.0, 60.0, true)?;
    }
    if g[0] > g[1] {
        return Err(SettingError::new(
            what,
            format!(
                "be a range LOW,HIGH with LOW <= HIGH, got {},{}",
                g[0], g[1]
            ),
        ));
    }
    Ok(g)
}

/// An augmentation's range in dB (± this much): 0 ≤ v ≤ 40.
pub fn db_bound(what: &str, v: f64) -> Result<f64, SettingError> {
    real(what, v, 0.0, 40.0, true)
}

/// A frequency warp's largest relative scaling: 0 ≤ v ≤ 0.3 (about ±4.5 semitones).
pub fn warp(what: &str, v: f64) -> Result<f64, SettingError> {
    real(what, v, 0.0, 0.3, true)
}

/// Masks per window: 0 ≤ n ≤ 16.
pub fn masks(what: &str, n: usize) -> Result<usize, SettingError> {
    within(what, n, 0, 16)
}

/// A relative share: finite, 0 ≤ s ≤ 10⁶.
pub fn share(what: &str, s: f64) -> Result<f64, SettingError> {
    real(what, s, 0.0, 1e6, true)
}

/// Clap value parsers: the flag's text through the rule (clap names the flag in its error).
pub mod flag {
    fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
        s.trim()
            .parse::<T>()
            .map_err(|_| format!("'{s}' is not a number"))
    }
    fn rule<T>(r: Result<T, super::SettingError>) -> Result<T, String> {
        // clap already names the flag: only the rule.
        r.map_err(|e| format!("must {}", e.rule))
    }
    /// One parser per numeric flag: the text as a number, then the rule of the same name.
    macro_rules! parsers {
        ($($name:ident -> $t:ty = $rule:ident;)*) => {$(
            pub fn $name(s: &str) -> Result<$t, String> {
                rule(super::$rule(stringify!($name), num(s)?))
            }
        )*};
    }
    parsers! {
        hop -> usize = hop;
        batch -> usize = batch;
        count -> usize = count;
        count0 -> usize = count0;
        threshold -> f32 = threshold;
        lr -> f64 = lr;
        weight_decay -> f64 = weight_decay;
        fraction -> f64 = val_fraction;
        probability -> f64 = probability;
        mix_sources -> usize = mix_sources;
        share -> f64 = share;
        share01 -> f64 = share01;
        db_bound -> f64 = db_bound;
        masks -> usize = masks;
        warp -> f64 = warp;
    }
    /// `LOW,HIGH` in dB.
    pub fn db_range(s: &str) -> Result<[f64; 2], String> {
        let (lo, hi) = s
            .split_once(',')
            .ok_or_else(|| format!("'{s}' is not a range LOW,HIGH in dB"))?;
        rule(super::db_range("g", [num(lo)?, num(hi)?]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_refuse_what_would_panic_or_poison() {
        assert!(hop("hop", 0).is_err() && hop("hop", 44).is_err() && hop("hop", 22).is_ok());
        assert!(batch("b", 0).is_err() && batch("b", 64).is_ok());
        assert!(threshold("t", f32::NAN).is_err() && threshold("t", 1.5).is_err());
        assert!(threshold("t", 0.0).is_ok() && threshold("t", 1.0).is_ok());
        assert!(flag::lr("-1").is_err() && flag::lr("0").is_err() && flag::lr("inf").is_err());
        assert!(flag::lr("5e-4").is_ok() && flag::weight_decay("0").is_ok());
        assert!(flag::fraction("1.5").is_err() && flag::fraction("0.15").is_ok());
        assert_eq!(
            flag::hop("0").unwrap_err(),
            "must be between 1 and 43, got 0"
        );
        assert_eq!(flag::batch("x").unwrap_err(), "'x' is not a number");
        assert_eq!(flag::db_range("-6,0"), Ok([-6.0, 0.0]));
        assert!(flag::db_range("0,-6").is_err() && flag::db_range("-6").is_err());
        assert!(flag::db_range("nan,0").is_err() && flag::probability("0").is_err());
        assert!(flag::mix_sources("1").is_err() && flag::mix_sources("3").is_ok());
    }
}
