//! Progress reports from a run: the CLI draws bars, tests ignore them.

use super::checkpoint::EpochLog;

/// Progress reports from [`super::start`] and [`super::resume`]; the CLI draws bars, tests ignore them.
pub trait Observer: Sync {
    fn message(&self, _text: &str) {}
    fn epoch_start(&self, _epoch: usize, _max_epochs: usize, _batches: usize) {}
    fn batch(&self, _done: usize, _loss: f64) {}
    fn epoch_end(&self, _log: &EpochLog) {}
    /// Bytes of a weight download so far, and the total when known.
    fn download(&self, _done: u64, _total: Option<u64>) {}
    /// Asked before each epoch after the first, once the last one's checkpoint is written:
    /// `true` ends the call there with [`super::Outcome::Interrupted`], and [`super::resume`] goes on exactly.
    fn interrupt(&self, _epochs_done: usize) -> bool {
        false
    }
}

/// An observer that reports nothing.
pub struct Quiet;
impl Observer for Quiet {}
