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

/// Result of one model benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelBench {
    pub batch: usize,
    /// Training samples per second: forward + BCE + backward + Adam step.
    pub train_samples_per_s: f64,
    /// Inference samples per second: eval-mode forward.
    pub infer_samples_per_s: f64,
}

/// Times `steps` training steps and `steps` inference batches of `batch` random windows (after
/// one untimed warm-up step each) on `device`.
pub fn bench_model(
    arch: crate::model::Arch,
    device: &burn::tensor::Device,
    batch: usize,
    steps: usize,
) -> ModelBench {
    use burn::module::Module;
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Distribution, Tensor};

    use crate::model::{Model, bce_with_logits};

    let train_device = device.clone().autodiff();
    let mut model = Model::new(arch, crate::CLASSES.len(), &train_device);
    let mut optim = AdamConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(Some(WeightDecayConfig::new(5e-4)))
        .init();
    let shape = [batch, 3, crate::features::WINDOW_FRAMES, 128];
    let x = Tensor::<4>::random(shape, Distribution::Normal(-8.0, 3.0), &train_device);
    let y = Tensor::<2>::random(
        [batch, crate::CLASSES.len()],
        Distribution::Bernoulli(0.2),
        &train_device,
    );
    let mut time_train = |n: usize| {
        let start = Instant::now();
        for _ in 0..n {
            let loss = bce_with_logits(model.forward(x.clone()), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(5e-4, model.clone(), grads);
            // Reading the loss waits for the step to finish.
            std::hint::black_box(loss.into_data());
        }
        start.elapsed().as_secs_f64()
    };
    time_train(1);
    let train = time_train(steps);

    let eval = model.valid();
    let xi = Tensor::<4>::random(shape, Distribution::Normal(-8.0, 3.0), device);
    let time_infer = |n: usize| {
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(eval.forward(xi.clone()).into_data());
        }
        start.elapsed().as_secs_f64()
    };
    time_infer(1);
    let infer = time_infer(steps);
    ModelBench {
        batch,
        train_samples_per_s: (batch * steps) as f64 / train,
        infer_samples_per_s: (batch * steps) as f64 / infer,
    }
}

/// This process's peak resident memory so far, in MB (getrusage).
pub fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return f64::NAN;
    }
    u.ru_maxrss as f64 / 1024.0
}
