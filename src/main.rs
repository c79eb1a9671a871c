//! The `instrec` command line: argument parsing and printing over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use instrec::CLASSES;
use instrec::audio::{self, Channel};
use instrec::backend::Backend;
use instrec::bench;
use instrec::data::{Irmas, cache, synth};
use instrec::features::{ChannelMode, FeatureSettings, MelExtractor};
use instrec::model::import::Head;
use instrec::model::{Arch, Model};
use instrec::npy::NpyArray;

/// Predominant instrument recognition in polyphonic music (IRMAS's 11 instruments), after Zhong,
/// Saito & Minematsu, "Fine-tuning ImageNet pre-trained models to be transferred for predominant
/// instrument recognition in polyphonic music".
#[derive(Parser, Debug)]
#[command(name = "instrec", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compute the paper's log-mel spectrogram of an audio file and write it as a float32 .npy
    /// of shape [128, frames] (torchaudio's layout): mono/left/right → 22,050 Hz → 2048-point
    /// STFT, hop 512, periodic Hann, center=True (reflect) → power → 128 HTK mel bands
    /// (0–11,025 Hz, no normalisation) → ln(mel + 1e-6).
    Features(FeaturesArgs),
    /// Measure throughput.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Eval-mode forward pass of a ResNet over a float32 .npy batch [batch, 3, frames, mels],
    /// writing the logits (or the pooled features before the head) as .npy. A diagnostic for
    /// checking ported weights against PyTorch.
    Forward(ForwardArgs),
    /// Inspect an IRMAS-layout data set.
    Dataset {
        #[command(subcommand)]
        what: DatasetCommand,
    },
    /// Extract every clip's log-mel(s) of an IRMAS-layout data set once, in parallel, into the
    /// feature cache (keyed by the feature settings and the file list; a second run does nothing).
    Prepare(PrepareArgs),
    /// Render a synthetic corpus in the IRMAS layout and format (44.1 kHz 16-bit stereo WAV) from
    /// a General-MIDI SoundFont.
    Synth(SynthArgs),
    /// Print the backends compiled into this binary.
    Backends,
}

#[derive(Subcommand, Debug)]
enum DatasetCommand {
    /// Counts per class, labels per test clip, genre and drum tags, files that could not be used,
    /// and the differences from the official IRMAS counts.
    Check {
        /// The folder holding IRMAS-TrainingData/ and/or IRMAS-TestingData-Part{1,2,3}/.
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct PrepareArgs {
    /// The folder holding IRMAS-TrainingData/ and/or IRMAS-TestingData-Part{1,2,3}/.
    #[arg(long)]
    data: PathBuf,
    /// Channel conversion the features are for: dup and zero need the mono log-mel, stereo also
    /// the left and right ones.
    #[arg(long, default_value = "dup")]
    channels: ChannelMode,
    /// Cache folder (default: $INSTREC_CACHE, else ~/.cache/instrec).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SynthArgs {
    /// Output folder (IRMAS-TrainingData/ and IRMAS-TestingData-Part{1,2,3}/ are made in it).
    #[arg(long)]
    out: PathBuf,
    /// General-MIDI SoundFont (default: $INSTREC_SOUNDFONT, else Debian's fluid-soundfont-gm).
    #[arg(long)]
    soundfont: Option<PathBuf>,
    /// Training clips (3 s) per instrument.
    #[arg(long, default_value_t = 30)]
    train_per_class: usize,
    /// Test clips (5–20 s, 1–3 predominant instruments).
    #[arg(long, default_value_t = 60)]
    test_clips: usize,
    /// Seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug)]
struct ForwardArgs {
    /// Architecture: resnet18, resnet50 or han.
    #[arg(long)]
    arch: Arch,
    /// Weights: a torchvision .pth state dict (the head included), an instrec .safetensors file
    /// or a model bundle directory.
    #[arg(long)]
    weights: PathBuf,
    /// Input batch, float32 .npy of shape [batch, 3, frames, mels].
    #[arg(long)]
    input: PathBuf,
    /// Output .npy: [batch, num_classes] logits, or [batch, 512|2048] with --pooled.
    #[arg(long)]
    out: PathBuf,
    /// Outputs of the head in the weights file (1000 for torchvision's ImageNet files).
    #[arg(long, default_value_t = 1000)]
    num_classes: usize,
    /// Write the globally average-pooled features before the head instead of the logits.
    #[arg(long)]
    pooled: bool,
    /// Compute backend: flex (pure Rust, default), tch (LibTorch) or cuda.
    #[arg(long, default_value = "flex")]
    backend: Backend,
}

#[derive(Args, Debug)]
struct FeaturesArgs {
    /// Audio file (WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...; any rate and channel count). Without
    /// it, the example clip bundled in the binary is used.
    audio: Option<PathBuf>,
    /// Where to write the .npy (written atomically).
    #[arg(long, short)]
    out: PathBuf,
    /// Which signal: mono (mean of all channels), left (channel 0) or right (channel 1); a mono
    /// file repeats its one channel.
    #[arg(long, default_value = "mono")]
    channel: Channel,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Decode + resample + log-mel throughput, in seconds of audio per second, on one thread and
    /// on all threads.
    Features {
        /// Audio file to process repeatedly (default: the bundled 3-s 44.1 kHz stereo FLAC clip).
        #[arg(long)]
        audio: Option<PathBuf>,
        /// How many times to process the clip per measurement.
        #[arg(long, default_value_t = 64)]
        clips: usize,
        /// Threads for the parallel measurement (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Training (forward + BCE + backward + Adam step) and inference samples/s of a model on
    /// random 3×43×128 windows.
    Model {
        /// Architecture: resnet18, resnet50 or han.
        #[arg(long, default_value = "resnet18")]
        arch: Arch,
        /// Compute backend: flex (pure Rust, default), tch (LibTorch) or cuda.
        #[arg(long, default_value = "flex")]
        backend: Backend,
        /// Batch size (the paper's 64).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Timed steps (after one warm-up step).
        #[arg(long, default_value_t = 5)]
        steps: usize,
    },
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`instrec ... | head`) instead of panicking.
    // SAFETY: setting a signal disposition to its default at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INSTREC_LOG")
                .unwrap_or_else(|_| "warn,symphonia=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Features(args) => features(args),
        Command::Bench { what } => match what {
            BenchCommand::Features {
                audio,
                clips,
                threads,
            } => bench_features(audio, clips, threads),
            BenchCommand::Model {
                arch,
                backend,
                batch,
                steps,
            } => {
                let device = backend.device().map_err(anyhow::Error::msg)?;
                println!(
                    "{arch} on {}, batch {batch}, {steps} timed steps",
                    backend.name()
                );
                let r = bench::bench_model(arch, &device, batch, steps);
                println!("train: {:>8.1} samples/s", r.train_samples_per_s);
                println!("infer: {:>8.1} samples/s", r.infer_samples_per_s);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Forward(args) => forward(args),
        Command::Dataset {
            what: DatasetCommand::Check { dir },
        } => dataset_check(&dir),
        Command::Prepare(args) => prepare(args),
        Command::Synth(args) => synth(args),
        Command::Backends => {
            for b in Backend::available() {
                println!("{}", b.name());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn features(args: FeaturesArgs) -> Result<ExitCode> {
    let (decoded, name) = match &args.audio {
        Some(p) => (audio::decode_file(p)?, p.display().to_string()),
        None => (
            audio::decode_bytes(instrec::EXAMPLE_CLIP.to_vec(), Some("flac"), "example clip")?,
            "bundled example clip".to_string(),
        ),
    };
    let extractor = MelExtractor::new(FeatureSettings::default());
    let mel = extractor.log_mel_of(&decoded, args.channel);
    NpyArray::new(vec![mel.n_mels, mel.frames], mel.data)
        .write(&args.out)
        .with_context(|| "writing the features")?;
    eprintln!(
        "{name}: {:.3} s, {} Hz, {} channel(s) → {} [{} mels × {} frames, {:?}]",
        decoded.duration_s(),
        decoded.sample_rate,
        decoded.channels.len(),
        args.out.display(),
        mel.n_mels,
        mel.frames,
        args.channel
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_features(
    audio: Option<PathBuf>,
    clips: usize,
    threads: Option<usize>,
) -> Result<ExitCode> {
    let (bytes, ext, name) = match &audio {
        Some(p) => (
            std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?,
            p.extension().and_then(|e| e.to_str()).map(str::to_owned),
            p.display().to_string(),
        ),
        None => (
            instrec::EXAMPLE_CLIP.to_vec(),
            Some("flac".to_owned()),
            "bundled 3-s 44.1 kHz stereo FLAC".to_owned(),
        ),
    };
    let all =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("decode + resample to 22,050 Hz + log-mel of {name}, {clips} clips per run");
    let mut counts = vec![1];
    if all > 1 {
        counts.push(all);
    }
    for t in counts {
        let r = bench::bench_features(&bytes, ext.as_deref(), clips, t)?;
        println!(
            "threads {:>2}: {:>9.1} audio-s/s  ({:.1} s of audio in {:.3} s)",
            r.threads,
            r.realtime_factor(),
            r.audio_seconds,
            r.wall_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn forward(args: ForwardArgs) -> Result<ExitCode> {
    use burn::tensor::{Tensor, TensorData};
    let device = args.backend.device().map_err(anyhow::Error::msg)?;
    let input = NpyArray::read(&args.input)?;
    let shape: [usize; 4] = input.shape.clone().try_into().map_err(|_| {
        anyhow::anyhow!(
            "{}: expected a 4-D array [batch, 3, frames, mels], got shape {:?}",
            args.input.display(),
            input.shape
        )
    })?;
    if shape[1] != 3 {
        anyhow::bail!(
            "{}: expected 3 channels, got {}",
            args.input.display(),
            shape[1]
        );
    }
    let model = Model::new(args.arch, args.num_classes, &device);
    let model = instrec::model::load_into(model, &args.weights, Head::Load)?;
    let x = Tensor::<4>::from_data(TensorData::new(input.data, shape), &device);
    let y = match (&model, args.pooled) {
        (Model::ResNet(r), true) => r.features(x),
        (Model::Han(_), true) => anyhow::bail!("--pooled is only defined for ResNets"),
        (m, false) => m.forward(x),
    };
    let dims = y.dims().to_vec();
    let data = y
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    NpyArray::new(dims.clone(), data).write(&args.out)?;
    eprintln!(
        "{} → {} {:?}",
        args.input.display(),
        args.out.display(),
        dims
    );
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on stderr for `total` items.
fn progress_bar(total: usize, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn dataset_check(dir: &std::path::Path) -> Result<ExitCode> {
    let set = Irmas::read(dir).map_err(anyhow::Error::msg)?;
    println!("IRMAS-layout data set at {}", dir.display());
    let train = set.train_counts();
    let test = set.test_label_counts();
    println!("\n{:<6} {:>10} {:>12}", "class", "training", "test labels");
    for (i, c) in CLASSES.iter().enumerate() {
        println!("{c:<6} {:>10} {:>12}", train[i], test[i]);
    }
    println!(
        "{:<6} {:>10} {:>12}",
        "total",
        set.train.len(),
        test.iter().sum::<usize>()
    );
    println!("\ntest clips: {}", set.test.len());
    for (n, count) in set.labels_per_test_clip() {
        println!("  with {n} label(s): {count}");
    }
    println!("\ngenre tags (training):");
    for (g, n) in set.genre_counts() {
        println!("  {g:<8} {n}");
    }
    let (dru, nod, none) = set.drum_counts();
    println!("drum tags (training): [dru] {dru}, [nod] {nod}, none {none}");
    let diffs = set.compare_with_official();
    if diffs.is_empty() {
        println!(
            "\nmatches the official IRMAS counts (6,705 training clips; 2,874 test clips, 4,917 labels)"
        );
    } else {
        println!(
            "\ndifferences from the official IRMAS counts ({}):",
            diffs.len()
        );
        for d in &diffs {
            println!("  {d}");
        }
    }
    if !set.issues.is_empty() {
        println!("\n{} file(s) could not be used:", set.issues.len());
        for i in &set.issues {
            println!("  {i}");
        }
    }
    Ok(if set.issues.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn prepare(args: PrepareArgs) -> Result<ExitCode> {
    let set = Irmas::read(&args.data).map_err(anyhow::Error::msg)?;
    for i in &set.issues {
        eprintln!("warning: {i}");
    }
    let files: Vec<PathBuf> = set
        .train
        .iter()
        .map(|c| c.path.clone())
        .chain(set.test.iter().map(|c| c.path.clone()))
        .collect();
    let dir = args.cache_dir.unwrap_or_else(cache::default_cache_dir);
    let pb = progress_bar(files.len(), "extracting log-mels");
    let start = std::time::Instant::now();
    let (cache, outcome) = cache::prepare(
        &files,
        &FeatureSettings::default(),
        args.channels,
        &dir,
        &|done, _| pb.set_position(done as u64),
    )?;
    pb.finish_and_clear();
    let verb = match &outcome {
        cache::CacheOutcome::Reused => "up to date, nothing to do".to_string(),
        cache::CacheOutcome::Built => "built".to_string(),
        cache::CacheOutcome::Rebuilt { reason } => format!("rebuilt ({reason})"),
    };
    println!(
        "{} clips ({} training, {} test), channels {}: cache {} in {:.1} s → {}",
        files.len(),
        set.train.len(),
        set.test.len(),
        args.channels.name(),
        verb,
        start.elapsed().as_secs_f64(),
        cache.path.display()
    );
    if !cache.failures.is_empty() {
        eprintln!("{} file(s) could not be decoded:", cache.failures.len());
        for f in &cache.failures {
            eprintln!("  {f}");
        }
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn synth(args: SynthArgs) -> Result<ExitCode> {
    let sf_path = synth::find_soundfont(args.soundfont.as_deref()).map_err(anyhow::Error::msg)?;
    let start = std::time::Instant::now();
    let sf = synth::load_soundfont(&sf_path).map_err(anyhow::Error::msg)?;
    let opts = synth::SynthOptions {
        out: args.out.clone(),
        train_per_class: args.train_per_class,
        test_clips: args.test_clips,
        seed: args.seed,
    };
    let total = args.train_per_class * CLASSES.len() + args.test_clips;
    let pb = progress_bar(total, "rendering");
    let report = synth::render_corpus(&sf, &opts, &|done, _| pb.set_position(done as u64))
        .map_err(anyhow::Error::msg)?;
    pb.finish_and_clear();
    println!(
        "{} training and {} test clips ({:.0} s of audio) rendered from {} in {:.1} s → {}",
        report.train_files,
        report.test_files,
        report.audio_seconds,
        sf_path.display(),
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
