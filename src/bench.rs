//! Throughput measurements, reported by `instrec bench`.

use std::time::Instant;

use rayon::prelude::*;

use crate::audio::{AudioError, Channel, decode_bytes};
use crate::features::{FeatureSettings, MelExtractor};

/// Result of one feature-extraction benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FeatureBench {
    pub threads: usize,
    pub clips: usize,
    /// Seconds of audio processed (clips × clip duration).
    pub audio_seconds: f64,
    pub wall_seconds: f64,
}

impl FeatureBench {
    /// Seconds of audio processed per second of wall time.
    pub fn realtime_factor(&self) -> f64 {
        self.audio_seconds / self.wall_seconds
    }
}

/// Decodes `bytes` (a file in memory), resamples it to 22,050 Hz and computes its mono log-mel,
/// `clips` times, on a pool of `threads` threads.
pub fn bench_features(
    bytes: &[u8],
    ext: Option<&str>,
    clips: usize,
    threads: usize,
) -> Result<FeatureBench, AudioError> {
    let extractor = MelExtractor::new(FeatureSettings::default());
    let one = |_: usize| -> Result<f64, AudioError> {
        let audio = decode_bytes(bytes.to_vec(), ext, "benchmark clip")?;
        let mel = extractor.log_mel_of(&audio, Channel::Mono);
        std::hint::black_box(&mel);
        Ok(audio.duration_s())
    };
    // One untimed run to warm caches and check the clip decodes.
    one(0)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let start = Instant::now();
    let durations: Result<Vec<f64>, AudioError> =
        pool.install(|| (0..clips).into_par_iter().map(one).collect());
    let wall_seconds = start.elapsed().as_secs_f64();
    Ok(FeatureBench {
        threads,
        clips,
        audio_seconds: durations?.iter().sum(),
        wall_seconds,
    })
}
