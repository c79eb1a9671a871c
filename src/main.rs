//! The `instrec` command line: argument parsing and printing over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use instrec::audio::{self, Channel};
use instrec::backend::Backend;
use instrec::bench;
use instrec::features::{FeatureSettings, MelExtractor};
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
    /// Print the backends compiled into this binary.
    Backends,
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
