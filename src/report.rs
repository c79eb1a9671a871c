//! PNG plots (plotters): loss curves, per-class F1, precision–recall, tag timelines. Text is drawn
//! with DejaVu Sans, built into the binary (`assets/DejaVuSans.ttf`, with its licence), or with the
//! TrueType font `$INSTREC_FONT` names; no system font is ever looked up.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::CLASSES;
use crate::error::{FileError, Reason};

/// DejaVu Sans (Bitstream Vera licence, `assets/DejaVuSans.LICENSE`), so plots need no system font.
pub const EMBEDDED_FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Where the plot font comes from: `$INSTREC_FONT` when set, else the embedded one.
pub fn font_source() -> Option<std::path::PathBuf> {
    std::env::var_os("INSTREC_FONT").map(std::path::PathBuf::from)
}

fn ensure_font() -> Result<(), Reason> {
    static FONT: OnceLock<Result<(), Reason>> = OnceLock::new();
    FONT.get_or_init(|| {
        let bytes: &'static [u8] = match font_source() {
            Some(p) => {
                let bytes = std::fs::read(&p)
                    .map_err(|e| format!("{} (from INSTREC_FONT): {e}", p.display()))?;
                Box::leak(bytes.into_boxed_slice())
            }
            None => EMBEDDED_FONT,
        };
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| {
            Reason::from("the plot font is not a readable TrueType font (INSTREC_FONT)")
        })
    })
    .clone()
}

fn err(e: impl std::fmt::Display) -> Reason {
    Reason(e.to_string())
}

/// Writes the PNG through a temporary file, so a failure leaves no half-written plot.
fn atomic_png(
    path: &Path,
    draw: impl FnOnce(&Path) -> Result<(), Reason>,
) -> Result<(), FileError> {
    ensure_font().map_err(|e| FileError::at(path, format!("no font to draw with: {e}")))?;
    let tmp = crate::util::prepare_target(path)
        .map_err(|e| FileError::at(path, e))?
        .with_extension("png");
    let r = draw(&tmp).and_then(|_| std::fs::rename(&tmp, path).map_err(err));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(|e| FileError::at(path, e))
}

/// One epoch's losses, for [`plot_losses`].
#[derive(Debug, Clone, Copy)]
pub struct EpochLosses {
    pub epoch: usize,
    pub train: f64,
    pub valid: f64,
}

/// One window of a timeline, for [`plot_timeline`]: its span and a score per class.
#[derive(Debug, Clone, Copy)]
pub struct TimelineWindow<'a> {
    pub start_s: f64,
    pub end_s: f64,
    pub scores: &'a [f32],
}

/// Training and validation loss per epoch.
pub fn plot_losses(path: &Path, log: &[EpochLosses]) -> Result<(), FileError> {
    if log.is_empty() {
        return Err(FileError::at(path, "no epochs to plot"));
    }
    atomic_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = log
            .iter()
            .flat_map(|l| [l.train, l.valid])
            .fold(0.0f64, f64::max)
            * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption("BCE loss per epoch", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..log.len() as f64 + 0.5, 0f64..max.max(1e-3))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .draw()
            .map_err(err)?;
        for (name, color, get) in [
            (
                "training",
                BLUE,
                (|l: &EpochLosses| l.train) as fn(&_) -> f64,
            ),
            ("validation", RED, |l| l.valid),
        ] {
            chart
                .draw_series(LineSeries::new(
                    log.iter().map(|l| (l.epoch as f64, get(l))),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)
    })
}

/// One F1 bar per class.
pub fn plot_per_class(path: &Path, f1: &[f64], what: &str) -> Result<(), FileError> {
    atomic_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (800, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("F1 per class ({what})"), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0..f1.len()).into_segmented(), 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => CLASSES.get(*i).unwrap_or(&"").to_string(),
                _ => String::new(),
            })
            .y_desc("F1")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(f1.iter().enumerate().map(|(i, &v)| {
                Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), v),
                    ],
                    BLUE.mix(0.7).filled(),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)
    })
}

/// Micro precision against micro recall over the threshold sweep.
pub fn plot_pr(path: &Path, points: &[(f64, f64)]) -> Result<(), FileError> {
    atomic_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (600, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "micro precision–recall (thresholds 0.01–0.99)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("recall")
            .y_desc("precision")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), RED.stroke_width(2)))
            .map_err(err)?;
        root.present().map_err(err)
    })
}

/// A heat map of the window scores of a tagged file: classes × time.
pub fn plot_timeline(
    path: &Path,
    title: &str,
    windows: &[TimelineWindow],
) -> Result<(), FileError> {
    if windows.is_empty() {
        return Err(FileError::at(path, "no windows"));
    }
    let end = windows.iter().map(|w| w.end_s).fold(0.0, f64::max);
    atomic_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..end, (0..CLASSES.len()).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("seconds")
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => CLASSES.get(*i).unwrap_or(&"").to_string(),
                _ => String::new(),
            })
            .draw()
            .map_err(err)?;
        // Windows overlap: draw each over its hop only (from its start to the next start).
        for (i, w) in windows.iter().enumerate() {
            let until = windows
                .get(i + 1)
                .map_or(w.end_s, |n| n.start_s.min(w.end_s));
            chart
                .draw_series(w.scores.iter().enumerate().map(|(k, &s)| {
                    let shade = (255.0 * (1.0 - s.clamp(0.0, 1.0))) as u8;
                    Rectangle::new(
                        [
                            (w.start_s, SegmentValue::Exact(k)),
                            (until, SegmentValue::Exact(k + 1)),
                        ],
                        RGBColor(shade, shade, 255).filled(),
                    )
                }))
                .map_err(err)?;
        }
        root.present().map_err(err)
    })
}
