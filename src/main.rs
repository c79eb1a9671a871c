//! The `instrec` command line: argument parsing and printing over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use instrec::CLASSES;
use instrec::audio::{self, Channel};
use instrec::backend::{Backend, DeviceSpec};
use instrec::bench;
use instrec::data::mix::{CalibrationConfig, MixConfig};
use instrec::data::{Irmas, cache, synth};
use instrec::features::{ChannelMode, FeatureSettings};
use instrec::model::Arch;
use instrec::train::PAPER;

/// Predominant instrument recognition in polyphonic music (IRMAS's 11 instruments), after Zhong,
/// Saito & Minematsu, "Fine-tuning ImageNet pre-trained models to be transferred for predominant
/// instrument recognition in polyphonic music".
/// `println!` that returns an error naming stdout instead of panicking when the write fails
/// (a full disk, `> /dev/full`).
macro_rules! out {
    () => { out!("") };
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*).map_err(|e| anyhow::anyhow!("stdout: {e}"))?
    }};
}

#[derive(Parser, Debug)]
#[command(name = "instrec", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write an audio file's log-mel spectrogram as a float32 .npy [128, frames].
    ///
    /// The paper's features, as torchaudio computes them: mono/left/right → 22,050 Hz → 2048-point
    /// STFT, hop 512, periodic Hann, center=True (reflect) → power → 128 HTK mel bands
    /// (0–11,025 Hz, no normalisation) → ln(mel + 1e-6).
    Features(FeaturesArgs),
    /// Measure throughput.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Run a model over a .npy batch and write logits or pooled features.
    ///
    /// Eval-mode forward pass of a ResNet over a float32 .npy batch [batch, 3, frames, mels],
    /// writing the logits (or the pooled features before the head) as .npy. A diagnostic for
    /// checking ported weights against PyTorch.
    Forward(ForwardArgs),
    /// Inspect an IRMAS-layout data set.
    Dataset {
        #[command(subcommand)]
        what: DatasetCommand,
    },
    /// Extract every clip's log-mel(s) into the feature cache.
    ///
    /// Extracts every clip's log-mel(s) of an IRMAS-layout data set once, in parallel, into the
    /// feature cache (keyed by the feature settings and the file list; a second run does nothing).
    Prepare(PrepareArgs),
    /// Render a synthetic IRMAS-format corpus from a General-MIDI SoundFont.
    ///
    /// The IRMAS layout and format (44.1 kHz 16-bit stereo WAV), training clips of 3 s and test
    /// clips of 5–20 s with their .txt labels.
    Synth(SynthArgs),
    /// Train a model with the paper's recipe.
    ///
    /// Batch 64, Adam 5e-4 with weight decay 5e-4, 5-epoch
    /// linear warm-up then per-batch cosine annealing, ≤300 epochs, early stopping with patience 25
    /// on the validation loss, 15 % validation split. The best-validation-loss model is saved as
    /// a bundle in RUN_DIR/model with thresholds tuned on the validation split.
    Train(TrainArgs),
    /// Evaluate a model on the test clips of an IRMAS-layout data set.
    ///
    /// 50 %-overlap windows, s1 or s2 aggregation; micro, macro and per-class P/R/F1 with a fixed threshold,
    /// the validation-tuned thresholds (the headline) and the test-swept oracle (labelled).
    Evaluate(EvaluateArgs),
    /// Tag audio files or directories with the predominant instruments.
    ///
    /// Per file: the predominant instruments with their scores and a per-window timeline;
    /// directories are searched recursively. Unreadable files are reported and skipped; the exit status is
    /// non-zero if any failed.
    Tag(TagArgs),
    /// Run a grid of experiments and tabulate it like the paper's Tables 1 and 2.
    ///
    /// A TOML file gives architectures × init × channel modes × seeds; runs go one after another,
    /// skipping finished runs and resuming interrupted ones; then the tables (mean ± sd over
    /// seeds) in the layout of the paper's Tables 1 and 2.
    Experiment(ExperimentArgs),
    /// The whole pipeline in a few minutes: synthesise, train, evaluate, tag.
    ///
    /// With nothing but the SoundFont: render a small synthetic corpus, train ResNet18 briefly,
    /// evaluate it, tag one test clip.
    Demo(DemoArgs),
    /// Write a ResNet bundle's weights as a plain PyTorch state dict.
    ///
    /// The torchvision layout (`torchvision.models.resnet18(num_classes=11).load_state_dict(...)`
    /// takes it strictly): `.pth` as `torch.save` writes it, or `.safetensors`.
    Export(ExportArgs),
    /// Print the backends compiled into this binary.
    Backends,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// IRMAS-layout data set (IRMAS-TrainingData/ inside).
    #[arg(long, required_unless_present = "resume")]
    data: Option<PathBuf>,
    /// resnet18, resnet50 or han.
    #[arg(long, default_value = "resnet18")]
    arch: Arch,
    /// imagenet (torchvision IMAGENET1K_V1), imagenet-v2 (ResNet50 only), random, or a .pth /
    /// .safetensors file / model bundle to start from.
    #[arg(long, default_value = "imagenet")]
    init: String,
    /// Channel conversion: dup (mono ×3), zero (mono + two zero channels), stereo (mono, L, R).
    #[arg(long, default_value = "dup")]
    channels: ChannelMode,
    /// Seed of the weight init, the validation split and the shuffling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run directory (train.json, log.jsonl, loss.png, checkpoint/, model/).
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Continue the interrupted run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Windows per batch.
    #[arg(value_parser = instrec::check::flag::batch, long, default_value_t = PAPER.batch_size)]
    batch_size: usize,
    /// Peak learning rate (reached at the end of the warm-up).
    #[arg(value_parser = instrec::check::flag::lr, long, default_value_t = PAPER.lr)]
    lr: f64,
    /// Weight decay.
    #[arg(value_parser = instrec::check::flag::weight_decay, long, default_value_t = PAPER.weight_decay)]
    weight_decay: f64,
    /// adam (L2 weight decay, as the paper's PyTorch code) or adamw.
    #[arg(long, default_value_t = PAPER.optimizer)]
    optimizer: instrec::train::OptimizerKind,
    /// Epochs of linear warm-up (then cosine annealing to 0 at the last epoch).
    #[arg(value_parser = instrec::check::flag::count0, long, default_value_t = PAPER.warmup_epochs)]
    warmup_epochs: usize,
    /// Maximum epochs.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = PAPER.max_epochs)]
    max_epochs: usize,
    /// Early-stopping patience (epochs without a lower validation loss).
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = PAPER.patience)]
    patience: usize,
    /// Fraction of each class's training clips held out for validation.
    #[arg(value_parser = instrec::check::flag::fraction, long, default_value_t = PAPER.val_fraction)]
    val_fraction: f64,
    /// song (no song on both sides) or random.
    #[arg(long, default_value_t = PAPER.split)]
    split: instrec::data::SplitMode,
    #[command(flatten)]
    compute: Compute,
    /// Feature cache folder (default: $INSTREC_CACHE, else ~/.cache/instrec).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    mixing: MixArgs,
}

/// Mixing augmentation and threshold calibration (beyond the paper).
#[derive(Args, Debug)]
struct MixArgs {
    /// Mixing augmentation (beyond the paper; off by default): a training window becomes, with
    /// probability --mix-prob, a mixture with windows of other instruments (summed mel power,
    /// labels = the union).
    #[arg(long)]
    mix: bool,
    /// Share of training windows that become mixtures (with --mix).
    #[arg(value_parser = instrec::check::flag::probability, long, requires = "mix", default_value_t = MixConfig::default().prob)]
    mix_prob: f64,
    /// Most instruments in one mixture, 2–6 (with --mix; the number is uniform in 2..=this).
    #[arg(value_parser = instrec::check::flag::mix_sources, long, requires = "mix", default_value_t = MixConfig::default().max_sources)]
    mix_sources: usize,
    /// Each source's gain range in dB, LOW,HIGH (with --mix); the powers are then scaled to sum
    /// to 1.
    #[arg(value_parser = instrec::check::flag::db_range, long, requires = "mix", default_value = "-6,0", allow_hyphen_values = true)]
    mix_gain_db: [f64; 2],
    /// Which clips join a window (with --mix): any other instrument, or one with the same genre
    /// tag or drum tag.
    #[arg(long, requires = "mix", default_value_t = MixConfig::default().partners)]
    mix_partners: instrec::data::mix::Partners,
    /// Validation examples that the mixture-calibrated thresholds are tuned on.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = CalibrationConfig::default().mixtures)]
    calib_mixtures: usize,
    /// Relative shares of calibration examples with 1, 2, 3, ... instruments (equal by default:
    /// nothing is assumed about the test set).
    #[arg(value_parser = instrec::check::flag::share, long, value_delimiter = ',', default_value = "1,1,1")]
    calib_shares: Vec<f64>,
    /// Each calibration source's gain range in dB, LOW,HIGH.
    #[arg(value_parser = instrec::check::flag::db_range, long, default_value = "-6,0", allow_hyphen_values = true)]
    calib_gain_db: [f64; 2],
}

impl TrainArgs {
    /// The run these flags describe.
    fn config(&self, data: PathBuf) -> instrec::train::TrainConfig {
        let mut c = instrec::train::TrainConfig::paper(
            data,
            self.arch,
            &self.init,
            self.channels,
            self.seed,
        );
        c.recipe = instrec::train::Recipe {
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            optimizer: self.optimizer,
            warmup_epochs: self.warmup_epochs,
            max_epochs: self.max_epochs,
            patience: self.patience,
            val_fraction: self.val_fraction,
            split: self.split,
        };
        c.backend = self.compute.backend;
        c.device = self.compute.device;
        if let Some(d) = &self.cache_dir {
            c.cache_dir = d.clone();
        }
        self.mixing.apply(&mut c);
        c
    }
}

impl MixArgs {
    fn apply(&self, c: &mut instrec::train::TrainConfig) {
        c.mix = self.mix.then_some(MixConfig {
            prob: self.mix_prob,
            max_sources: self.mix_sources,
            gain_db: self.mix_gain_db,
            partners: self.mix_partners,
        });
        c.calibration = CalibrationConfig {
            mixtures: self.calib_mixtures,
            shares: self.calib_shares.clone(),
            gain_db: self.calib_gain_db,
        };
    }
}

#[derive(Args, Debug)]
struct EvaluateArgs {
    /// A model bundle directory, or a run directory holding model/.
    #[arg(long)]
    model: PathBuf,
    /// IRMAS-layout data set (IRMAS-TestingData-Part*/ inside).
    #[arg(long)]
    data: PathBuf,
    /// s1 (mean of window sigmoids, the paper's) or s2 (sum divided by its maximum).
    #[arg(long, default_value = "s1")]
    aggregation: instrec::eval::metrics::Aggregation,
    /// The fixed threshold reported beside the tuned ones.
    #[arg(value_parser = instrec::check::flag::threshold, long, default_value_t = 0.5)]
    threshold: f32,
    /// Hop between analysis windows in frames (22 = 50 % overlap of 43).
    #[arg(value_parser = instrec::check::flag::hop, long, default_value_t = 22)]
    hop: usize,
    /// Where report.json, report.md, per_class_f1.png and pr_curve.png go (default: MODEL/eval).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    compute: Compute,
    /// Feature cache folder (default: $INSTREC_CACHE, else ~/.cache/instrec).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TagFormat {
    Table,
    Json,
    Csv,
}

#[derive(Args, Debug)]
struct TagArgs {
    /// Audio files and/or directories (searched recursively for audio files).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// A model bundle directory, or a run directory holding model/.
    #[arg(long)]
    model: PathBuf,
    /// table: one line per file; json: scores, labels and the timeline; csv: one row per window.
    #[arg(long, value_enum, default_value = "table")]
    format: TagFormat,
    /// Write a PNG timeline (classes × time) here; with several files, FILE-STEM is appended.
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// One threshold for every class instead of the bundle's tuned ones.
    #[arg(value_parser = instrec::check::flag::threshold, long, conflicts_with = "tuned_on")]
    threshold: Option<f32>,
    /// Which of the bundle's tuned thresholds to use (default: mixtures when the bundle has
    /// them, else clips-per-class).
    #[arg(long, value_enum)]
    tuned_on: Option<instrec::tag::TunedOn>,
    /// Hop between analysis windows in frames.
    #[arg(value_parser = instrec::check::flag::hop, long, default_value_t = 22)]
    hop: usize,
    #[command(flatten)]
    compute: Compute,
    /// For a whole library: write one JSON line per file to this file as each is done (path,
    /// size, mtime, duration, scores, predominant instruments, timeline), with a progress bar;
    /// a name ending in .csv gives one CSV row per file instead (no timeline).
    #[arg(long, value_name = "FILE.jsonl|FILE.csv")]
    out: Option<PathBuf>,
    /// With --out: go on with an existing output, skipping files already in it with the same
    /// size and modification time (a last line cut off by a crash is repaired).
    #[arg(long, requires = "out")]
    resume: bool,
    /// With --out: tag only part K of N of the file list (a stable split by path hash), so N
    /// processes tag one library together; their outputs concatenate to one.
    #[arg(long, value_name = "K/N", value_parser = parse_shard, requires = "out")]
    shard: Option<(usize, usize)>,
    /// With --out: leave the per-window timeline out of each line.
    #[arg(long, requires = "out")]
    no_timeline: bool,
    /// With --out: threads that decode and make windows while the model scores (default: all
    /// cores).
    #[arg(long, value_parser = instrec::check::flag::count, requires = "out")]
    threads: Option<usize>,
    /// File extensions searched for in directories (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "wav,flac,ogg,mp3,m4a,aac,aif,aiff,oga"
    )]
    extensions: Vec<String>,
}

/// `K/N` with 1 ≤ K ≤ N.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s.split_once('/').ok_or("expected K/N, e.g. 2/8")?;
    let num = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("'{v}' is not a number"))
    };
    let (k, n) = (num(k)?, num(n)?);
    if n == 0 || k == 0 || k > n || n > instrec::check::MAX_COUNT {
        return Err(format!("must be K/N with 1 ≤ K ≤ N, got {k}/{n}"));
    }
    Ok((k, n))
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// A model bundle directory, or a run directory holding model/.
    #[arg(long)]
    model: PathBuf,
    /// Output file; its format: .pth (torch.save) or .safetensors.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct ExperimentArgs {
    /// Experiment grid (see experiments/*.toml).
    config: PathBuf,
    #[command(flatten)]
    compute: Compute,
    /// Feature cache folder (default: $INSTREC_CACHE, else ~/.cache/instrec).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Working folder for the corpus, the run and the reports.
    #[arg(long, default_value = "instrec-demo")]
    dir: PathBuf,
    /// Training clips per instrument in the synthetic corpus.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 24)]
    train_per_class: usize,
    /// Test clips in the synthetic corpus.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 40)]
    test_clips: usize,
    /// Training epochs.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 8)]
    epochs: usize,
    #[command(flatten)]
    compute: Compute,
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
    /// General-MIDI SoundFont (default: $INSTREC_SOUNDFONT, else the built-in FluidR3_GM subset).
    #[arg(long)]
    soundfont: Option<PathBuf>,
    /// Training clips (3 s) per instrument.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 30)]
    train_per_class: usize,
    /// Test clips (5–20 s, 1–3 predominant instruments).
    #[arg(value_parser = instrec::check::flag::count0, long, default_value_t = 60)]
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
    /// Weights: a torchvision state dict as .pth or .safetensors (the head included), an instrec
    /// .safetensors file or a model bundle directory.
    #[arg(long)]
    weights: PathBuf,
    /// Input batch, float32 .npy of shape [batch, 3, frames, mels].
    #[arg(long)]
    input: PathBuf,
    /// Output .npy: [batch, num_classes] logits, or [batch, 512|2048] with --pooled.
    #[arg(long)]
    out: PathBuf,
    /// Outputs of the head in the weights file (1000 for torchvision's ImageNet files).
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 1000)]
    num_classes: usize,
    /// Write the globally average-pooled features before the head instead of the logits.
    #[arg(long)]
    pooled: bool,
    #[command(flatten)]
    compute: Compute,
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
        #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 64)]
        clips: usize,
        /// Threads for the parallel measurement (default: all cores).
        #[arg(value_parser = instrec::check::flag::count, long)]
        threads: Option<usize>,
    },
    /// Training (forward + BCE + backward + Adam step) and inference samples/s of a model on
    /// random 3×43×128 windows.
    Model {
        /// Architecture: resnet18, resnet50 or han.
        #[arg(long, default_value = "resnet18")]
        arch: Arch,
        #[command(flatten)]
        compute: Compute,
        /// Batch size (the paper's 64).
        #[arg(value_parser = instrec::check::flag::batch, long, default_value_t = 64)]
        batch: usize,
        /// Timed steps (after one warm-up step).
        #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 5)]
        steps: usize,
    },
    /// End-to-end tagging throughput (decode → log-mel → windows → model → scores), in seconds
    /// of audio per second, with the library pipeline and file by file.
    Tag {
        /// Folder of audio files (default: CLIPS synthetic test clips of 5–20 s, rendered once
        /// into the system's temporary folder).
        dir: Option<PathBuf>,
        /// Model bundle (default: a randomly initialised ResNet18).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Synthetic clips to render when no folder is given.
        #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 100)]
        clips: usize,
        /// Decoding threads of the pipeline (default: all cores).
        #[arg(value_parser = instrec::check::flag::count, long)]
        threads: Option<usize>,
        #[command(flatten)]
        compute: Compute,
    },
}

/// Where models run: `--backend` and `--device`.
#[derive(clap::Args, Debug, Clone, Copy)]
struct Compute {
    /// Compute backend: flex (pure Rust CPU, default), tch (LibTorch) or cuda.
    #[arg(long, default_value = "flex")]
    backend: Backend,
    /// cpu, or cuda:N for GPU N (with --backend tch, or cuda); default: cpu (cuda:0 for cuda).
    #[arg(long)]
    device: Option<DeviceSpec>,
}

impl Compute {
    fn device(&self) -> Result<burn::tensor::Device> {
        self.backend
            .device_for(self.device)
            .map_err(anyhow::Error::msg)
    }
}

impl std::fmt::Display for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.device {
            Some(d) => write!(f, "{} on {d}", self.backend),
            None => write!(f, "{}", self.backend),
        }
    }
}

/// glibc hands large freed buffers back to the kernel, so each clip's multi-megabyte signals
/// were page-faulted and zeroed anew: a third of the front end's time (`perf`: exc_page_fault,
/// clear_page). Buffers up to 32 MB now stay in the heap, up to 256 MB of free heap is kept, in
/// one arena (with per-thread arenas these thresholds cost the model benchmark 15-20 %).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`instrec ... | head`) instead of panicking.
    // SAFETY: setting a signal disposition to its default at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory();
    // A decoder panic on a hostile file is turned into an error naming the file: no backtrace.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !instrec::audio::panic_is_contained() {
            default_hook(info)
        }
    }));
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
        Command::Export(args) => export_cmd(args),
        Command::Bench { what } => match what {
            BenchCommand::Features {
                audio,
                clips,
                threads,
            } => bench_features(audio, clips, threads),
            BenchCommand::Tag {
                dir,
                model,
                clips,
                threads,
                compute,
            } => bench_tag(dir, model, clips, threads, compute),
            BenchCommand::Model {
                arch,
                compute,
                batch,
                steps,
            } => {
                let device = compute.device()?;
                out!("{arch} on {compute}, batch {batch}, {steps} timed steps");
                let r = bench::bench_model(arch, &device, batch, steps);
                out!(
                    "train: {:>8.1} samples/s ({:.0} % of it in the optimizer step)",
                    r.train_samples_per_s,
                    100.0 * r.optimizer_share
                );
                out!("infer: {:>8.1} samples/s", r.infer_samples_per_s);
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Forward(args) => forward(args),
        Command::Dataset {
            what: DatasetCommand::Check { dir },
        } => dataset_check(&dir),
        Command::Prepare(args) => prepare(args),
        Command::Synth(args) => synth(args),
        Command::Train(args) => train_cmd(args),
        Command::Evaluate(args) => evaluate_cmd(args),
        Command::Tag(args) => tag_cmd(args),
        Command::Experiment(args) => experiment_cmd(args),
        Command::Demo(args) => demo_cmd(args),
        Command::Backends => {
            for b in Backend::available() {
                out!("{}", b);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn features(args: FeaturesArgs) -> Result<ExitCode> {
    let (stream, name) = match &args.audio {
        Some(p) => (audio::AudioStream::open(p)?, p.display().to_string()),
        None => (
            audio::AudioStream::from_bytes(
                instrec::EXAMPLE_CLIP.to_vec(),
                Some("flac"),
                "example clip",
            )?,
            "bundled example clip".to_string(),
        ),
    };
    let f = instrec::features::write_log_mel(stream, args.channel, &args.out)?;
    eprintln!(
        "{name}: {:.3} s, {} Hz, {} channel(s) → {} [{} mels × {} frames, {}]",
        f.seconds,
        f.sample_rate,
        f.channels,
        args.out.display(),
        f.n_mels,
        f.frames,
        args.channel
    );
    Ok(ExitCode::SUCCESS)
}

fn export_cmd(a: ExportArgs) -> Result<ExitCode> {
    let dir = bundle_dir(&a.model);
    let config = instrec::model::export::export_bundle(&dir, &a.out)?;
    out!(
        "{} ({}, {} classes) → {}",
        dir.display(),
        config.arch,
        config.classes.len(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_tag(
    dir: Option<PathBuf>,
    model: Option<PathBuf>,
    clips: usize,
    threads: Option<usize>,
    compute: Compute,
) -> Result<ExitCode> {
    let device = compute.device()?;
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let r = bench::bench_tag(
        dir,
        model.as_deref().map(bundle_dir),
        clips,
        threads,
        &device,
    )?;
    out!("{}", r.text(&compute.to_string()));
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
    out!("decode + resample to 22,050 Hz + log-mel of {name}, {clips} clips per run");
    let mut counts = vec![1];
    if all > 1 {
        counts.push(all);
    }
    for t in counts {
        let r = bench::bench_features(&bytes, ext.as_deref(), clips, t)?;
        out!(
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
    let device = args.compute.device()?;
    let dims = instrec::model::forward_npy(
        args.arch,
        args.num_classes,
        &args.weights,
        &args.input,
        &args.out,
        args.pooled,
        &device,
    )?;
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
    out!("{}", set.report(dir).trim_end());
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
    let files = set.all_files();
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
    out!(
        "{} clips ({} training, {} test), channels {}: cache {} in {:.1} s → {}",
        files.len(),
        set.train.len(),
        set.test.len(),
        args.channels,
        outcome,
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
    let sf_path = instrec::data::soundfont::find_soundfont(args.soundfont.as_deref())
        .map_err(anyhow::Error::msg)?;
    let start = std::time::Instant::now();
    let sf = instrec::data::soundfont::load_soundfont(&sf_path).map_err(anyhow::Error::msg)?;
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
    out!(
        "{} training and {} test clips ({:.0} s of audio) rendered from {} in {:.1} s → {}",
        report.train_files,
        report.test_files,
        report.audio_seconds,
        sf_path,
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Progress bars for training.
struct TrainBars {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl TrainBars {
    fn new() -> Self {
        Self {
            bar: std::sync::Mutex::new(None),
        }
    }
}

impl instrec::train::Observer for TrainBars {
    fn message(&self, text: &str) {
        match self.bar.lock().expect("lock").as_ref() {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }
    fn epoch_start(&self, epoch: usize, max_epochs: usize, batches: usize) {
        let pb = progress_bar(batches, &format!("epoch {epoch}/{max_epochs}"));
        *self.bar.lock().expect("lock") = Some(pb);
    }
    fn batch(&self, done: usize, loss: f64) {
        if let Some(b) = self.bar.lock().expect("lock").as_ref() {
            b.set_position(done as u64);
            b.set_message(format!("loss {loss:.4}"));
        }
    }
    fn download(&self, done: u64, total: Option<u64>) {
        let mut guard = self.bar.lock().expect("lock");
        let bar = guard.get_or_insert_with(|| {
            let pb = indicatif::ProgressBar::new(total.unwrap_or(0));
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "downloading ImageNet weights [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            pb
        });
        bar.set_position(done);
        if total == Some(done) {
            bar.finish_and_clear();
            *guard = None;
        }
    }
    fn epoch_end(&self, l: &instrec::train::EpochLog) {
        if let Some(b) = self.bar.lock().expect("lock").take() {
            b.finish_and_clear();
        }
        eprintln!(
            "epoch {:>3}  lr {:.2e}  train loss {:.4}  val loss {:.4}  val micro-F1 {:.3}  {:.1} s  {:.0} windows/s",
            l.epoch, l.lr, l.train_loss, l.val_loss, l.val_micro_f1, l.seconds, l.samples_per_s
        );
    }
}

fn train_cmd(a: TrainArgs) -> Result<ExitCode> {
    let bars = TrainBars::new();
    let (outcome, dir) = match (&a.resume, &a.data, &a.out) {
        (Some(dir), _, _) => (instrec::train::resume(dir, &bars)?, dir.clone()),
        (None, Some(data), Some(out)) => {
            let c = a.config(data.clone());
            (instrec::train::start(&c, out, &bars)?, out.clone())
        }
        _ => anyhow::bail!("give --data and --out, or --resume RUN_DIR"),
    };
    match outcome {
        instrec::train::Outcome::Finished(s) => out!("{}", s.text(&dir)),
        instrec::train::Outcome::Interrupted { epochs_done } => out!(
            "stopped after epoch {epochs_done}; continue with: instrec train --resume {}",
            dir.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// A run directory holding model/, or a bundle directory itself.
fn bundle_dir(p: &std::path::Path) -> PathBuf {
    let inner = p.join(instrec::train::MODEL_DIR);
    if inner.join(instrec::model::bundle::CONFIG_FILE).is_file() {
        inner
    } else {
        p.to_path_buf()
    }
}

fn evaluate_cmd(a: EvaluateArgs) -> Result<ExitCode> {
    let device = a.compute.device()?;
    let model = bundle_dir(&a.model);
    let opts = instrec::eval::EvalOptions {
        aggregation: a.aggregation,
        fixed_threshold: a.threshold,
        hop: a.hop,
        batch_size: 64,
        cache_dir: a.cache_dir.unwrap_or_else(cache::default_cache_dir),
    };
    let pb = progress_bar(0, "scoring test clips");
    let report = instrec::eval::evaluate(&model, &a.data, &opts, &device, &|done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })?;
    pb.finish_and_clear();
    let out = a.out.unwrap_or_else(|| model.join("eval"));
    let written = instrec::eval::write_report(&report, &out)?;
    out!("{}", instrec::eval::markdown(&report));
    for w in written {
        out!("wrote {}", w.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn tag_cmd(a: TagArgs) -> Result<ExitCode> {
    let device = a.compute.device()?;
    let mut tagger = instrec::tag::Tagger::load(&bundle_dir(&a.model), &device)?;
    tagger.windowing.hop = a.hop;
    if let Some(t) = a.threshold {
        tagger = tagger.with_threshold(t);
    }
    if let Some(which) = a.tuned_on {
        tagger = tagger
            .with_tuned(which)
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?;
    }
    let extensions: Vec<String> = a
        .extensions
        .iter()
        .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
        .collect();
    let files = instrec::tag::collect_files_with(&a.inputs, &extensions);
    if files.is_empty() {
        anyhow::bail!("no audio files found in the given paths");
    }
    if let Some(out) = &a.out {
        return tag_library(&tagger, files, out, &a);
    }
    let mut failures = Vec::new();
    let mut results = Vec::new();
    if matches!(a.format, TagFormat::Csv) {
        out!(
            "{}",
            instrec::tag::window_csv_header(&tagger.config.classes)
        );
    }
    for f in &files {
        match tagger.tag_file(f) {
            Ok(r) => {
                match a.format {
                    TagFormat::Table => out!("{}", r.table_line()),
                    TagFormat::Csv => {
                        for row in r.csv_rows() {
                            out!("{row}");
                        }
                    }
                    TagFormat::Json => {}
                }
                if let Some(t) = &a.timeline {
                    let path = instrec::tag::timeline_path(t, f, files.len() > 1);
                    // A requested output that cannot be written is a failure, not a warning.
                    if let Err(e) =
                        instrec::report::plot_timeline(&path, &r.title(), &r.timeline_windows())
                    {
                        let e = format!("timeline not written: {e}");
                        eprintln!("error: {e}");
                        failures.push(e);
                    }
                }
                results.push(r);
            }
            Err(e) => {
                eprintln!("error: {e}");
                failures.push(e.to_string());
            }
        }
    }
    if matches!(a.format, TagFormat::Json) {
        let report = instrec::tag::json_report(&tagger, &results, &failures);
        out!("{}", serde_json::to_string_pretty(&report)?);
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} of {} file(s) failed:", failures.len(), files.len());
        for f in &failures {
            eprintln!("  {f}");
        }
        Ok(ExitCode::from(2))
    }
}

/// `tag --out`: one flushed JSON line per file, resumable and shardable, with a progress bar.
fn tag_library(
    tagger: &instrec::tag::Tagger,
    files: Vec<PathBuf>,
    out: &std::path::Path,
    a: &TagArgs,
) -> Result<ExitCode> {
    let opts = instrec::tag::LibraryOptions {
        out: out.to_path_buf(),
        resume: a.resume,
        shard: a.shard,
        timeline: !a.no_timeline,
        threads: a
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files  {msg}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = std::time::Instant::now();
    let summary = instrec::tag::tag_library(tagger, files, &opts, &mut |p| {
        if let Some(e) = p.failure {
            pb.suspend(|| eprintln!("error: {e}"));
        }
        pb.set_length(p.of as u64);
        pb.set_position(p.done as u64);
        pb.set_message(format!(
            "{:.2} h of audio, {:.0} audio-s/s",
            p.audio_s / 3600.0,
            p.audio_s / start.elapsed().as_secs_f64().max(1e-9)
        ));
    })?;
    pb.finish_and_clear();
    out!("{}", summary.text(out));
    if summary.failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{} of {} file(s) failed:",
        summary.failures.len(),
        summary.attempted
    );
    for f in &summary.failures {
        eprintln!("  {f}");
    }
    Ok(ExitCode::from(2))
}

struct ExperimentBars {
    train: TrainBars,
    render: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl ExperimentBars {
    fn new() -> Self {
        Self {
            train: TrainBars::new(),
            render: std::sync::Mutex::new(None),
        }
    }

    /// Clears a bar still on screen.
    fn finish(&self) {
        if let Some(b) = self.render.lock().expect("lock").take() {
            b.finish_and_clear();
        }
    }
}

impl instrec::experiment::ExperimentObserver for ExperimentBars {
    fn rendering(&self, done: usize, total: usize) {
        let mut bar = self.render.lock().expect("lock");
        let b = bar.get_or_insert_with(|| progress_bar(total, "rendering"));
        b.set_position(done as u64);
        if done >= total {
            b.finish_and_clear();
            *bar = None;
        }
    }
    fn run_start(&self, index: usize, total: usize, name: &str, skipped: bool) {
        eprintln!(
            "[{index}/{total}] {name}{}",
            if skipped {
                ": finished earlier, skipped"
            } else {
                ""
            }
        );
    }
    fn train_observer(&self) -> &dyn instrec::train::Observer {
        &self.train
    }
}

fn experiment_cmd(a: ExperimentArgs) -> Result<ExitCode> {
    let config = instrec::experiment::ExperimentConfig::load(&a.config)?;
    let cache_dir = a.cache_dir.unwrap_or_else(cache::default_cache_dir);
    let obs = ExperimentBars::new();
    let rows = instrec::experiment::run_experiment(
        &config,
        a.compute.backend,
        a.compute.device,
        &cache_dir,
        &obs,
    )?;
    out!(
        "{}",
        instrec::experiment::markdown(&config.name, &rows).trim_end()
    );
    out!("\nwrote {}", config.out.join("results.md").display());
    Ok(ExitCode::SUCCESS)
}

fn demo_cmd(a: DemoArgs) -> Result<ExitCode> {
    let start = std::time::Instant::now();
    eprintln!("instrec demo: everything goes into {}", a.dir.display());
    let opts = instrec::demo::DemoOptions {
        dir: a.dir.clone(),
        train_per_class: a.train_per_class,
        test_clips: a.test_clips,
        epochs: a.epochs,
        backend: a.compute.backend,
        device: a.compute.device,
    };
    let obs = ExperimentBars::new();
    let demo = instrec::demo::run(&opts, &obs)?;
    obs.finish();
    out!();
    out!("{}", instrec::eval::markdown(&demo.report));
    out!(
        "tagged {}: {} (labelled: {})",
        demo.clip.path.display(),
        demo.tagged.predominant_text(),
        demo.clip
            .labels
            .iter()
            .map(|&k| CLASSES[k])
            .collect::<Vec<_>>()
            .join(", ")
    );
    for w in &demo.written {
        out!("wrote {}", w.display());
    }
    out!("demo finished in {:.0} s", start.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_config(flags: &[&str]) -> instrec::train::TrainConfig {
        let mut args = vec!["instrec", "train", "--data", "d", "--out", "o"];
        args.extend(flags);
        let Command::Train(a) = Cli::try_parse_from(args).unwrap().command else {
            panic!("not train")
        };
        a.config("d".into())
    }

    /// The flags' defaults are the library's: a run from bare flags is the paper's recipe, and
    /// `--mix` alone gives the default mixing and calibration.
    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let paper = instrec::train::TrainConfig::paper(
            "d".into(),
            Arch::ResNet18,
            "imagenet",
            ChannelMode::Dup,
            1,
        );
        assert_eq!(train_config(&[]), paper);
        let mixed = train_config(&["--mix"]);
        assert_eq!(mixed.mix, Some(MixConfig::default()));
        assert_eq!(mixed.calibration, CalibrationConfig::default());
    }

    /// Every training flag lands in its own setting.
    #[test]
    fn each_train_flag_sets_its_setting() {
        let c = train_config(&[
            "--arch",
            "han",
            "--init",
            "random",
            "--channels",
            "stereo",
            "--seed",
            "9",
            "--batch-size",
            "32",
            "--lr",
            "0.001",
            "--weight-decay",
            "0.01",
            "--optimizer",
            "adamw",
            "--warmup-epochs",
            "2",
            "--max-epochs",
            "40",
            "--patience",
            "7",
            "--val-fraction",
            "0.2",
            "--split",
            "random",
            "--cache-dir",
            "cc",
            "--mix",
            "--mix-prob",
            "0.3",
            "--mix-sources",
            "2",
            "--mix-gain-db=-3,0",
            "--mix-partners",
            "genre",
            "--calib-mixtures",
            "50",
            "--calib-shares",
            "1,2",
            "--calib-gain-db=-9,-1",
        ]);
        let want = instrec::train::Recipe {
            batch_size: 32,
            lr: 0.001,
            weight_decay: 0.01,
            optimizer: instrec::train::OptimizerKind::AdamW,
            warmup_epochs: 2,
            max_epochs: 40,
            patience: 7,
            val_fraction: 0.2,
            split: instrec::data::SplitMode::Random,
        };
        assert_eq!(c.recipe, want);
        assert_eq!(
            (c.arch, c.init.as_str(), c.channels, c.seed),
            (Arch::Han, "random", ChannelMode::Stereo, 9)
        );
        assert_eq!(c.cache_dir, PathBuf::from("cc"));
        assert_eq!(
            c.mix,
            Some(MixConfig {
                prob: 0.3,
                max_sources: 2,
                gain_db: [-3.0, 0.0],
                partners: instrec::data::mix::Partners::Genre,
            })
        );
        assert_eq!(
            c.calibration,
            CalibrationConfig {
                mixtures: 50,
                shares: vec![1.0, 2.0],
                gain_db: [-9.0, -1.0],
            }
        );
    }
}
