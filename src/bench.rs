//! Throughput measurements, reported by `instrec bench`.

use std::time::Instant;

use rayon::prelude::*;

use crate::audio::{Channel, decode_bytes};
use crate::error::{Error, FileError};
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
) -> Result<FeatureBench, FileError> {
    let extractor = MelExtractor::new(FeatureSettings::default());
    let one = |_: usize| -> Result<f64, FileError> {
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
    let durations: Result<Vec<f64>, FileError> =
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
    /// The share of the training time spent in the optimizer step (the rest: forward, loss and
    /// backward), with the device synchronised between the two.
    pub optimizer_share: f64,
    /// Inference samples per second: eval-mode forward.
    pub infer_samples_per_s: f64,
}

/// Times `steps` training steps with `optim` (convolutions in `precision`) and `steps` inference
/// batches of `batch` random windows (after one untimed warm-up step each) on `device`.
pub fn bench_model(
    arch: crate::model::Arch,
    device: &burn::tensor::Device,
    batch: usize,
    steps: usize,
    mut optim: crate::train::RunOptimizer,
    precision: crate::backend::Precision,
) -> Result<ModelBench, Error> {
    use burn::module::Module;
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, Tensor};

    use crate::model::{Model, bce_with_logits};

    let train_device = device.clone().autodiff();
    let model = Model::new(arch, crate::CLASSES.len(), &train_device);
    let shape = [batch, 3, crate::features::WINDOW_FRAMES, 128];
    let x = Tensor::<4>::random(shape, Distribution::Normal(-8.0, 3.0), &train_device);
    let y = Tensor::<2>::random(
        [batch, crate::CLASSES.len()],
        Distribution::Bernoulli(0.2),
        &train_device,
    );
    // The model after `n` steps, with (total seconds, optimizer seconds). It moves through each
    // step, as in training, so that nothing else holds its tensors.
    let mut time_train = |mut model: Model, n: usize| -> Result<(Model, f64, f64), Error> {
        let (start, mut optimizer) = (Instant::now(), 0.0);
        for _ in 0..n {
            let (loss, grads) = crate::model::with_precision(precision, || {
                let loss = bce_with_logits(model.forward(x.clone()), y.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                (loss, grads)
            });
            // A GPU runs asynchronously: wait for the backward pass before timing the step.
            let _ = train_device.sync();
            let t = Instant::now();
            model = optim.step(5e-4, model, grads)?;
            // Reading the loss waits for the step to finish.
            std::hint::black_box(loss.into_data());
            let _ = train_device.sync();
            optimizer += t.elapsed().as_secs_f64();
        }
        Ok((model, start.elapsed().as_secs_f64(), optimizer))
    };
    let (model, train, optimizer) = crate::model::on_kernel_pool(device, || {
        let (model, ..) = time_train(model, 1)?;
        time_train(model, steps)
    })?;

    let eval = model.valid().fold_batchnorm();
    let xi = Tensor::<4>::random(shape, Distribution::Normal(-8.0, 3.0), device);
    let time_infer = |n: usize| {
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(eval.forward(xi.clone()).into_data());
        }
        start.elapsed().as_secs_f64()
    };
    let infer = crate::model::on_kernel_pool(device, || {
        time_infer(1);
        time_infer(steps)
    });
    Ok(ModelBench {
        batch,
        train_samples_per_s: (batch * steps) as f64 / train,
        optimizer_share: optimizer / train,
        infer_samples_per_s: (batch * steps) as f64 / infer,
    })
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

/// What `instrec bench tag` measures: end-to-end tagging of a folder, through the parallel
/// pipeline and file by file.
#[derive(Debug, Clone)]
pub struct TagBench {
    pub files: usize,
    pub dir: std::path::PathBuf,
    pub arch: crate::model::Arch,
    pub threads: usize,
    /// The pipeline: audio seconds, wall seconds, failed files, most windows waiting.
    pub pipeline: (f64, f64, usize, usize),
    /// File by file: audio seconds, wall seconds.
    pub file_by_file: (f64, f64),
    pub peak_rss_mb: f64,
}

impl TagBench {
    pub fn text(&self, backend: &str) -> String {
        let (audio, wall, failed, waiting) = self.pipeline;
        let (audio1, wall1) = self.file_by_file;
        format!(
            "tagging {} files of {} with {} on {backend}\n\
             pipeline ({} decoding threads): {audio:.1} s of audio in {wall:.2} s = {:.1} audio-s/s ({failed} failed, at most {waiting} windows waiting)\n\
             file by file: {audio1:.1} s of audio in {wall1:.2} s = {:.1} audio-s/s\n\
             peak memory (RSS): {:.0} MB",
            self.files,
            self.dir.display(),
            self.arch,
            self.threads,
            audio / wall,
            audio1 / wall1,
            self.peak_rss_mb
        )
    }
}

/// Tags every test clip of `dir` with the bundle in `model_dir`: once through
/// [`crate::tag::Tagger::tag_many`] with `threads` decoding threads, once file by file.
/// Without `dir`, `clips` synthetic test clips are rendered (once) into the temporary folder;
/// without a model, a ResNet18 with random weights is used (speed does not depend on them).
pub fn bench_tag(
    dir: Option<std::path::PathBuf>,
    model_dir: Option<std::path::PathBuf>,
    clips: usize,
    threads: usize,
    device: &burn::tensor::Device,
) -> crate::error::Result<TagBench> {
    use crate::data::synth;
    use crate::model::{Arch, Model, bundle};
    let tmp = std::env::temp_dir();
    let dir = match dir {
        Some(d) => d,
        None => {
            // Test clips only: 1 training clip per class is the least synth renders.
            let opts = synth::SynthOptions {
                out: tmp.join(format!("instrec-bench-tag-{clips}")),
                train_per_class: 1,
                test_clips: clips,
                seed: 5,
            };
            let sf = crate::data::soundfont::load_soundfont(
                &crate::data::soundfont::SoundFontSource::Embedded,
            )?;
            if !synth::corpus_is_complete(&opts.out, &sf, &opts) {
                synth::render_corpus(&sf, &opts, &|_, _| {})?;
            }
            opts.out
        }
    };
    let model_dir = match model_dir {
        Some(m) => m,
        None => {
            let m = tmp.join(format!("instrec-bench-tag-model-{}", std::process::id()));
            bundle::save_bundle(
                &m,
                &Model::random(Arch::ResNet18, crate::CLASSES.len(), device),
                &bundle::BundleConfig::new(Arch::ResNet18, crate::features::ChannelMode::Dup),
            )?;
            m
        }
    };
    let tagger = crate::tag::Tagger::load(&model_dir, device)?;
    let files: Vec<std::path::PathBuf> =
        crate::tag::collect_audio_files(std::slice::from_ref(&dir))
            .into_iter()
            .filter(|p| {
                !p.components()
                    .any(|c| c.as_os_str() == crate::data::irmas::TRAIN_DIR)
            })
            .collect();
    let t0 = Instant::now();
    let stats = tagger.tag_many(&files, threads, &mut |_, _| {});
    let wall = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let audio_s: f64 = files
        .iter()
        .filter_map(|f| tagger.tag_file(f).ok())
        .map(|r| r.duration_s)
        .sum();
    Ok(TagBench {
        files: files.len(),
        dir,
        arch: tagger.config.arch,
        threads,
        pipeline: (stats.audio_s, wall, stats.failed, stats.max_waiting),
        file_by_file: (audio_s, t1.elapsed().as_secs_f64()),
        peak_rss_mb: peak_rss_mb(),
    })
}

/// How long listing a folder takes with `tag`'s walk rules and default extensions.
#[derive(Debug, Clone)]
pub struct WalkBench {
    pub files: usize,
    pub problems: usize,
    pub skipped_hidden: usize,
    pub skipped_links: usize,
    /// Best of the runs, in seconds.
    pub seconds: f64,
}

/// Lists `dir` `runs` times as `tag` would (default extensions, `opts`); the best time counts.
pub fn bench_walk(dir: &std::path::Path, opts: crate::walk::WalkOptions, runs: usize) -> WalkBench {
    let exts: Vec<String> = crate::tag::AUDIO_EXTENSIONS
        .iter()
        .map(|e| e.to_string())
        .collect();
    let mut best = f64::INFINITY;
    let mut last = crate::walk::Walked::default();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        last = crate::tag::collect_files_with(&[dir.to_path_buf()], &exts, opts);
        best = best.min(t.elapsed().as_secs_f64());
    }
    WalkBench {
        files: last.files.len(),
        problems: last.problems.len(),
        skipped_hidden: last.skipped_hidden,
        skipped_links: last.skipped_links,
        seconds: best,
    }
}
