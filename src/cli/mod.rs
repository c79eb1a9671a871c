//! The command line's flags: the clap definitions ([`Cli`] and the subcommands' argument structs in
//! [`args`]), and their mapping onto the library's option types ([`options`]). The handlers in
//! `main.rs` only dispatch on them.

mod args;
pub mod options;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use instrec::backend::{Backend, DeviceSpec};
use instrec::model::Arch;

pub use args::*;

/// Predominant instrument recognition in polyphonic music (IRMAS's 11 instruments), after Zhong,
/// Saito & Minematsu, "Fine-tuning ImageNet pre-trained models to be transferred for predominant
/// instrument recognition in polyphonic music".
#[derive(Parser, Debug)]
#[command(name = "instrec", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    /// Write instrec's own sung-vowel sample library (SFZ and WAV notes; CC0).
    ///
    /// Four voice types (bass, tenor, alto, soprano), sung vowels and voiced-consonant onsets from
    /// a glottal source and formant resonators, for the voice class, where no open sample library
    /// of sung vowels exists. Seeded: the same seed writes the same bytes.
    SynthVoices(SynthVoicesArgs),
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
    /// Write a compact copy of a bundle: conv and linear weights as half floats.
    ///
    /// BatchNorm statistics and biases stay f32; the config records the training corpus's
    /// libraries with their licences. This is how models/default, the built-in model, is made.
    Pack(PackArgs),
    /// Print the backends compiled into this binary.
    Backends,
}

#[derive(Subcommand, Debug)]
pub enum DatasetCommand {
    /// Counts per class, labels per test clip, genre and drum tags, files that could not be used,
    /// and the differences from the official IRMAS counts.
    Check {
        /// The folder holding IRMAS-TrainingData/ and/or IRMAS-TestingData-Part{1,2,3}/.
        dir: PathBuf,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Download a data set, check every file's MD5, unpack it, then check the data set.
    ///
    /// Resumable: an interrupted run (Ctrl-C, kill, a cut connection) goes on where it stopped;
    /// a file whose MD5 is wrong is kept aside as NAME.corrupt and never unpacked. Files go to
    /// DIR/downloads/, their contents into DIR (the layout `dataset check` and the experiment
    /// configs read).
    Download {
        /// `irmas` (Zenodo record 1290750, four zips, over 3 GB), or a manifest TOML (name,
        /// and per file: name, url, md5).
        dataset: String,
        /// Target folder (created if needed), e.g. data/IRMAS.
        #[arg(long)]
        to: PathBuf,
        /// Fetch every file from BASE/NAME instead of the manifest's URLs (a mirror).
        #[arg(long, value_name = "BASE")]
        mirror: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
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
        #[arg(value_parser = instrec::check::flag::batch, long, default_value_t = instrec::train::PAPER.batch_size)]
        batch: usize,
        /// Timed steps (after one warm-up step).
        #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 5)]
        steps: usize,
        /// Time burn's own Adam where training would use flex's one-pass Adam or LibTorch's
        /// fused one.
        #[arg(long)]
        burn_adam: bool,
        /// The training step's arithmetic, as `train --precision` (bf16 needs --backend tch).
        #[arg(long, default_value = "fp32")]
        precision: instrec::backend::Precision,
    },
    /// Time to list a folder as `tag` does (walk rules, default extensions), best of RUNS.
    Walk {
        /// The folder.
        dir: PathBuf,
        #[command(flatten)]
        walk: WalkArgs,
        /// Timed runs.
        #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 3)]
        runs: usize,
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
pub struct Compute {
    /// Compute backend: flex (pure Rust CPU, default), tch (LibTorch) or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// cpu, or cuda:N for GPU N (with --backend tch, or cuda); default: cpu (cuda:0 for cuda).
    #[arg(long)]
    pub device: Option<DeviceSpec>,
}

impl Compute {
    pub fn device(&self) -> Result<burn::tensor::Device> {
        Ok(self.backend.device_for(self.device)?)
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

/// `K/N` with 1 ≤ K ≤ N.
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
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
