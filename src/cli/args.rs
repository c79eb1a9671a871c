//! The subcommands' arguments, as clap reads them; their defaults are the library's.

use std::path::PathBuf;

use clap::Args;

use instrec::audio::Channel;
use instrec::data::mix::{CalibrationConfig, MixConfig};
use instrec::data::spec_augment::SpecAugmentConfig;
use instrec::data::synth::SynthOptions;
use instrec::demo;
use instrec::features::ANALYSIS_HOP;
use instrec::features::ChannelMode;
use instrec::model::Arch;
use instrec::tag::AUDIO_EXTENSIONS;
use instrec::tag::recordings::RecordingOptions;
use instrec::train::PAPER;

use super::{Compute, parse_shard};

/// The library's audio extensions as `--extensions` writes them.
static EXTENSIONS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| AUDIO_EXTENSIONS.join(","));

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// IRMAS-layout data set (IRMAS-TrainingData/ inside).
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// resnet18, resnet50 or han.
    #[arg(long, default_value = "resnet18")]
    pub arch: Arch,
    /// imagenet (torchvision IMAGENET1K_V1), imagenet-v2 (ResNet50 only), random, or a .pth /
    /// .safetensors file / model bundle / run directory to start from (a bundle's provenance is
    /// kept in the new one's).
    #[arg(long, default_value = "imagenet")]
    pub init: String,
    /// Channel conversion: dup (mono ×3), zero (mono + two zero channels), stereo (mono, L, R).
    #[arg(long, default_value = "dup")]
    pub channels: ChannelMode,
    /// Seed of the weight init, the validation split and the shuffling.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run directory (train.json, log.jsonl, loss.png, checkpoint/, model/).
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Windows per batch.
    #[arg(value_parser = instrec::check::flag::batch, long, default_value_t = PAPER.batch_size)]
    pub batch_size: usize,
    /// Peak learning rate (reached at the end of the warm-up).
    #[arg(value_parser = instrec::check::flag::lr, long, default_value_t = PAPER.lr)]
    pub lr: f64,
    /// Weight decay.
    #[arg(value_parser = instrec::check::flag::weight_decay, long, default_value_t = PAPER.weight_decay)]
    pub weight_decay: f64,
    /// adam (L2 weight decay, as the paper's PyTorch code) or adamw.
    #[arg(long, default_value_t = PAPER.optimizer)]
    pub optimizer: instrec::train::OptimizerKind,
    /// Epochs of linear warm-up (then cosine annealing to 0 at the last epoch).
    #[arg(value_parser = instrec::check::flag::count0, long, default_value_t = PAPER.warmup_epochs)]
    pub warmup_epochs: usize,
    /// Maximum epochs.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = PAPER.max_epochs)]
    pub max_epochs: usize,
    /// Early-stopping patience (epochs without a lower validation loss).
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = PAPER.patience)]
    pub patience: usize,
    /// Fraction of each class's training clips held out for validation.
    #[arg(value_parser = instrec::check::flag::fraction, long, default_value_t = PAPER.val_fraction)]
    pub val_fraction: f64,
    /// Validate on the training clips of this IRMAS-layout corpus instead of a split of --data
    /// (beyond the paper): early stopping, the kept epoch and the thresholds then come from clips
    /// the run never trains on, e.g. rendered from sample libraries left out of training.
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub val_data: Option<PathBuf>,
    /// song (no song on both sides) or random.
    #[arg(long, default_value_t = PAPER.split)]
    pub split: instrec::data::SplitMode,
    #[command(flatten)]
    pub compute: Compute,
    /// fp32, or bf16 as PyTorch's autocast (bf16 convolutions, fp32 weights, BatchNorm, loss and
    /// Adam); bf16 needs --backend tch.
    #[arg(long, default_value = "fp32")]
    pub precision: instrec::backend::Precision,
    /// Feature cache folder (default: $INSTREC_CACHE, else ~/.cache/instrec).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub mixing: MixArgs,
    #[command(flatten)]
    pub walk: WalkArgs,
    /// Label the chords of a synthetic corpus's training clips too where an instrument of a class
    /// plays them (piano, organ, nylon guitar; read from its instrec-synth.json), beside the
    /// predominant line (beyond the paper; IRMAS labels only the predominant instrument).
    #[arg(long)]
    pub label_chords: bool,
    /// The training loss: bce (the paper's) or asl, the asymmetric loss (beyond the paper: easy
    /// negatives weigh less); the validation loss, early stopping and the kept epoch use it too.
    #[arg(long, default_value = "bce")]
    pub loss: instrec::train::Loss,
    /// Augment each training window in the log-mel domain (beyond the paper; off by default): a
    /// new level (±10 dB) and spectral colour (tilt and bumps, ±6 dB) every epoch, and
    /// SpecAugment's masks (two of up to 12 bands, two of up to 5 frames).
    #[arg(long)]
    pub spec_augment: bool,
    /// The level range of --spec-augment, ± this many dB (0: none).
    #[arg(value_parser = instrec::check::flag::db_bound, long, requires = "spec_augment", default_value_t = SpecAugmentConfig::default().level_db)]
    pub spec_level_db: f64,
    /// The colour range of --spec-augment (tilt and each bump), ± this many dB (0: none).
    #[arg(value_parser = instrec::check::flag::db_bound, long, requires = "spec_augment", default_value_t = SpecAugmentConfig::default().colour_db)]
    pub spec_colour_db: f64,
    /// Frequency masks per window with --spec-augment (each up to 12 bands).
    #[arg(value_parser = instrec::check::flag::masks, long, requires = "spec_augment", default_value_t = SpecAugmentConfig::default().freq_masks)]
    pub spec_freq_masks: usize,
    /// Time masks per window with --spec-augment (each up to 5 frames).
    #[arg(value_parser = instrec::check::flag::masks, long, requires = "spec_augment", default_value_t = SpecAugmentConfig::default().time_masks)]
    pub spec_time_masks: usize,
    /// With --spec-augment, scale each window's frequencies by one factor drawn from 1 ± this
    /// (0: none; at most 0.3).
    #[arg(value_parser = instrec::check::flag::warp, long, requires = "spec_augment", default_value_t = SpecAugmentConfig::default().warp)]
    pub spec_warp: f64,
}

/// How folders are walked (`tag`, `prepare`, `dataset check`, `train`, `evaluate`).
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct WalkArgs {
    /// Follow symbolic links inside folders (loops are detected and reported once); without
    /// it, links are skipped.
    #[arg(long)]
    pub follow: bool,
    /// Include hidden files and folders (names starting with '.', such as macOS '._*' files).
    #[arg(long)]
    pub hidden: bool,
}

/// Mixing augmentation and threshold calibration (beyond the paper).
#[derive(Args, Debug)]
pub struct MixArgs {
    /// Mixing augmentation (beyond the paper; off by default): a training window becomes, with
    /// probability --mix-prob, a mixture with windows of other instruments (summed mel power,
    /// labels = the union).
    #[arg(long)]
    pub mix: bool,
    /// Share of training windows that become mixtures (with --mix).
    #[arg(value_parser = instrec::check::flag::probability, long, requires = "mix", default_value_t = MixConfig::default().prob)]
    pub mix_prob: f64,
    /// Most instruments in one mixture, 2–6 (with --mix; the number is uniform in 2..=this).
    #[arg(value_parser = instrec::check::flag::mix_sources, long, requires = "mix", default_value_t = MixConfig::default().max_sources)]
    pub mix_sources: usize,
    /// Each source's gain range in dB, LOW,HIGH (with --mix); the powers are then scaled to sum
    /// to 1.
    #[arg(value_parser = instrec::check::flag::db_range, long, requires = "mix", default_value = "-6,0", allow_hyphen_values = true)]
    pub mix_gain_db: [f64; 2],
    /// Which clips join a window (with --mix): any other instrument, or one with the same genre
    /// tag or drum tag.
    #[arg(long, requires = "mix", default_value_t = MixConfig::default().partners)]
    pub mix_partners: instrec::data::mix::Partners,
    /// Bring each mixed window to the first one's mel power before its gain (with --mix), so the
    /// gains are the sources' relative levels, as in loudness-matched mixtures of recordings.
    #[arg(long, requires = "mix")]
    pub mix_match_level: bool,
    /// Validation examples that the mixture-calibrated thresholds are tuned on.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = CalibrationConfig::default().mixtures)]
    pub calib_mixtures: usize,
    /// Relative shares of calibration examples with 1, 2, 3, ... instruments (equal by default:
    /// nothing is assumed about the test set).
    #[arg(value_parser = instrec::check::flag::share, long, value_delimiter = ',', default_value = "1,1,1")]
    pub calib_shares: Vec<f64>,
    /// Each calibration source's gain range in dB, LOW,HIGH.
    #[arg(value_parser = instrec::check::flag::db_range, long, default_value = "-6,0", allow_hyphen_values = true)]
    pub calib_gain_db: [f64; 2],
    /// Loudness-match the calibration sources over their mixed frames before their gains.
    #[arg(long)]
    pub calib_match_level: bool,
}

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// A model bundle directory, or a run directory holding model/ (with --recordings, default:
    /// the built-in model, see MODEL.md).
    #[arg(long, required_unless_present = "recordings")]
    pub model: Option<PathBuf>,
    /// IRMAS-layout data set (IRMAS-TestingData-Part*/ inside).
    #[arg(
        long,
        required_unless_present = "recordings",
        conflicts_with = "recordings"
    )]
    pub data: Option<PathBuf>,
    /// Instead of --data: a folder of real solo recordings named CLASS__NAME.ext (e.g.
    /// vio__take1.wav): top-1 per class, and LRAP and micro-F1 at the bundle's default
    /// thresholds on seeded mixtures of 2–3 of them, as `tag` would score them (with --hop and
    /// --aggregation; --threshold does not apply).
    #[arg(long, value_name = "DIR")]
    pub recordings: Option<PathBuf>,
    /// With --recordings: how many mixtures.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = RecordingOptions::default().mixtures, requires = "recordings")]
    pub mixtures: usize,
    /// With --recordings: the mixtures' seed.
    #[arg(long, default_value_t = RecordingOptions::default().seed, requires = "recordings")]
    pub seed: u64,
    /// With --recordings: score quiet recordings as they are (`tag --no-boost-quiet`), not
    /// raised first as `tag` raises quiet files by default.
    #[arg(long, requires = "recordings")]
    pub no_boost_quiet: bool,
    /// s1 (mean of window sigmoids, the paper's) or s2 (sum divided by its maximum); default:
    /// the bundle's own, as `tag` uses it (s1 unless it was packed with another).
    #[arg(long)]
    pub aggregation: Option<instrec::eval::metrics::Aggregation>,
    /// The fixed threshold reported beside the tuned ones.
    #[arg(value_parser = instrec::check::flag::threshold, long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Hop between analysis windows in frames (22 = 50 % overlap of 43).
    #[arg(value_parser = instrec::check::flag::hop, long, default_value_t = ANALYSIS_HOP)]
    pub hop: usize,
    /// Where report.json, report.md, per_class_f1.png and pr_curve.png go (default: MODEL/eval).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub compute: Compute,
    /// Feature cache folder (default: $INSTREC_CACHE, else ~/.cache/instrec).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub walk: WalkArgs,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TagFormat {
    Table,
    Json,
    Csv,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// Audio files and/or directories (searched recursively for audio files).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// A model bundle directory, or a run directory holding model/ (default: the built-in model,
    /// trained on open-licence sample libraries; see MODEL.md).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// table: one line per file; json: scores, labels and the timeline; csv: one row per window.
    #[arg(long, value_enum, default_value = "table")]
    pub format: TagFormat,
    /// Write a PNG timeline (classes × time) here; with several files, FILE-STEM is appended.
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// One threshold for every class instead of the bundle's tuned ones.
    #[arg(value_parser = instrec::check::flag::threshold, long, conflicts_with = "tuned_on")]
    pub threshold: Option<f32>,
    /// Which of the bundle's tuned thresholds to use (default: mixtures when the bundle has
    /// them, else clips-per-class).
    #[arg(long, value_enum)]
    pub tuned_on: Option<instrec::tag::TunedOn>,
    /// s1 (mean of window sigmoids) or s2 (sum divided by its maximum), with the bundle's
    /// thresholds for it (default: the bundle's own aggregation, else s1).
    #[arg(long)]
    pub aggregation: Option<instrec::eval::metrics::Aggregation>,
    /// Hop between analysis windows in frames.
    #[arg(value_parser = instrec::check::flag::hop, long, default_value_t = ANALYSIS_HOP)]
    pub hop: usize,
    /// Tag quiet files as they are. By default a quiet file (RMS below −30 dBFS, where the
    /// built-in model hears worse) is raised toward −18.7 dBFS, its training clips' median, by at
    /// most 30 dB and with its peak at 0 dBFS at most, and tagged again (a second decoding pass
    /// for quiet files only); its level and gain are reported.
    #[arg(long)]
    pub no_boost_quiet: bool,
    /// The default since 2026-12-05: accepted, and does nothing more.
    #[arg(long, hide = true, conflicts_with = "no_boost_quiet")]
    pub boost_quiet: bool,
    #[command(flatten)]
    pub compute: Compute,
    /// For a whole library: write one JSON line per file to this file as each is done (path,
    /// size, mtime, duration, scores, predominant instruments, timeline), with a progress bar;
    /// a name ending in .csv gives one CSV row per file instead (no timeline).
    #[arg(long, value_name = "FILE.jsonl|FILE.csv")]
    pub out: Option<PathBuf>,
    /// With --out: go on with an existing output, skipping files already in it with the same
    /// size and modification time (a last line cut off by a crash is repaired).
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// With --out: tag only part K of N of the file list (a stable split by path hash), so N
    /// processes tag one library together; their outputs concatenate to one.
    #[arg(long, value_name = "K/N", value_parser = parse_shard, requires = "out")]
    pub shard: Option<(usize, usize)>,
    /// With --out: leave the per-window timeline out of each line.
    #[arg(long, requires = "out")]
    pub no_timeline: bool,
    /// With --out: threads that decode and make windows while the model scores (default: all
    /// cores).
    #[arg(long, value_parser = instrec::check::flag::count, requires = "out")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub walk: WalkArgs,
    /// File extensions searched for in directories (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = EXTENSIONS.as_str())]
    pub extensions: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PackArgs {
    /// A model bundle directory, or a run directory holding model/.
    #[arg(long)]
    pub model: PathBuf,
    /// Output bundle directory (models/default for the built-in model).
    #[arg(long)]
    pub out: PathBuf,
    /// The aggregation `tag` and `evaluate --recordings` use by default with this bundle
    /// (default: the bundle's own, else s1).
    #[arg(long)]
    pub aggregation: Option<instrec::eval::metrics::Aggregation>,
    /// Re-tune the thresholds (s1 and s2, clips and mixtures) on the training clips of this
    /// IRMAS-layout corpus, e.g. rendered from sample libraries the model never heard; the
    /// weights stay as they are.
    #[arg(long, value_name = "DIR")]
    pub calibrate_on: Option<PathBuf>,
    /// With --calibrate-on: the calibration mixtures' seed.
    #[arg(long, default_value_t = 1, requires = "calibrate_on")]
    pub calib_seed: u64,
    /// With --calibrate-on: calibration mixtures.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = CalibrationConfig::default().mixtures, requires = "calibrate_on")]
    pub calib_mixtures: usize,
    #[command(flatten)]
    pub compute: Compute,
    /// Feature cache folder (default: $INSTREC_CACHE, else ~/.cache/instrec).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A model bundle directory, or a run directory holding model/.
    #[arg(long)]
    pub model: PathBuf,
    /// Output file; its format: .pth (torch.save) or .safetensors.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// Experiment grid (see experiments/*.toml).
    pub config: PathBuf,
    #[command(flatten)]
    pub compute: Compute,
    /// Feature cache folder (default: $INSTREC_CACHE, else ~/.cache/instrec).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Working folder for the corpus, the run and the reports.
    #[arg(long, default_value = "instrec-demo")]
    pub dir: PathBuf,
    /// Training clips per instrument in the synthetic corpus.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = demo::TRAIN_PER_CLASS)]
    pub train_per_class: usize,
    /// Test clips in the synthetic corpus.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = demo::TEST_CLIPS)]
    pub test_clips: usize,
    /// Training epochs.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = demo::EPOCHS)]
    pub epochs: usize,
    #[command(flatten)]
    pub compute: Compute,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// The folder holding IRMAS-TrainingData/ and/or IRMAS-TestingData-Part{1,2,3}/.
    #[arg(long)]
    pub data: PathBuf,
    /// Channel conversion the features are for: dup and zero need the mono log-mel, stereo also
    /// the left and right ones.
    #[arg(long, default_value = "dup")]
    pub channels: ChannelMode,
    /// Cache folder (default: $INSTREC_CACHE, else ~/.cache/instrec).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub walk: WalkArgs,
}

#[derive(Args, Debug)]
pub struct SynthVoicesArgs {
    /// Output folder (bass.sfz, tenor.sfz, alto.sfz, soprano.sfz and their notes).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of every note's vibrato, breath, consonant and other random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output folder (IRMAS-TrainingData/ and IRMAS-TestingData-Part{1,2,3}/ are made in it).
    #[arg(long)]
    pub out: PathBuf,
    /// General-MIDI SoundFont (default: $INSTREC_SOUNDFONT, else the built-in FluidR3_GM subset).
    /// Repeat it to render from several libraries: each song or test clip from one, chosen by the
    /// seed; the manifest records every file's library and every library's SHA-256.
    #[arg(long)]
    pub soundfont: Vec<PathBuf>,
    /// A library list (TOML, `[[library]]` entries of path, licence, source and, for an SFZ
    /// instrument, its class): General-MIDI SoundFonts and instruments of one class rendered
    /// from together, every file's SHA-256 recorded in the manifest. Adds to --soundfont;
    /// repeat it to render from several lists, in order.
    #[arg(long)]
    pub libraries: Vec<PathBuf>,
    /// Pass every clip through a seeded recording chain: microphone/EQ colour, amplifier
    /// distortion (mostly electric guitar), compression, a room, band limits, a lossy codec,
    /// noise (each with its own probability; recorded per file in the manifest).
    #[arg(long)]
    pub augment: bool,
    /// Perform the predominant lines: phrases with legato, normal or staccato articulation,
    /// dynamics and expression swells, vibrato and scoops on sustained instruments, chords on
    /// keyboards and guitars (the default plays the plain melodies of earlier corpora).
    #[arg(long)]
    pub perform: bool,
    /// Share (0–1) of training songs played solo: the predominant line alone, without chords,
    /// bass or drums, as in a solo recording (the other songs' files stay the same bytes).
    #[arg(value_parser = instrec::check::flag::share01, long, default_value_t = 0.0)]
    pub solo: f64,
    /// Play the chords under the lines only on programs of no class (electric piano, harp, pad),
    /// never an unlabelled piano, organ or guitar. An experiment: trained from scratch it made
    /// real recordings worse (MODEL.md); the default keeps IRMAS's texture.
    #[arg(long)]
    pub neutral_chords: bool,
    /// Share (0–1) of accompanied training songs in which an instrument of another class plays
    /// a second line, unlabelled, 6–14 dB under the rest. An experiment: at 0.5, trained from
    /// scratch, it made real recordings worse (MODEL.md).
    #[arg(value_parser = instrec::check::flag::share01, long, default_value_t = 0.0)]
    pub counter_lines: f64,
    /// Training clips (3 s) per instrument.
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = SynthOptions::TRAIN_PER_CLASS)]
    pub train_per_class: usize,
    /// Test clips (5–20 s, 1–3 predominant instruments).
    #[arg(value_parser = instrec::check::flag::count0, long, default_value_t = SynthOptions::TEST_CLIPS)]
    pub test_clips: usize,
    /// Seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = SynthOptions::SEED)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// Architecture: resnet18, resnet50 or han.
    #[arg(long)]
    pub arch: Arch,
    /// Weights: a torchvision state dict as .pth or .safetensors (the head included), an instrec
    /// .safetensors file or a model bundle directory.
    #[arg(long)]
    pub weights: PathBuf,
    /// Input batch, float32 .npy of shape [batch, 3, frames, mels].
    #[arg(long)]
    pub input: PathBuf,
    /// Output .npy: [batch, num_classes] logits, or [batch, 512|2048] with --pooled.
    #[arg(long)]
    pub out: PathBuf,
    /// Outputs of the head in the weights file (1000 for torchvision's ImageNet files).
    #[arg(value_parser = instrec::check::flag::count, long, default_value_t = 1000)]
    pub num_classes: usize,
    /// Write the globally average-pooled features before the head instead of the logits.
    #[arg(long)]
    pub pooled: bool,
    #[command(flatten)]
    pub compute: Compute,
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// Audio file (WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...; any rate and channel count). Without
    /// it, the example clip bundled in the binary is used.
    pub audio: Option<PathBuf>,
    /// Where to write the .npy (written atomically).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Which signal: mono (mean of all channels), left (channel 0) or right (channel 1); a mono
    /// file repeats its one channel.
    #[arg(long, default_value = "mono")]
    pub channel: Channel,
}
