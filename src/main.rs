//! The `instrec` command line: startup, dispatch, and the handlers that run each command over the
//! library and print its results. The flags live in [`cli`], the progress bars in [`progress`].

mod cli;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{BenchCommand, Cli, Command, Compute, DatasetCommand, TagFormat};
use instrec::CLASSES;
use instrec::audio;
use instrec::backend::Backend;
use instrec::bench;
use instrec::data::{Irmas, cache, synth};
use instrec::features::FeatureSettings;
use instrec::train::bundle_dir;
use instrec::util::all_cores;

/// `println!` that returns an error naming stdout instead of panicking when the write fails
/// (a full disk, `> /dev/full`).
macro_rules! out {
    () => { out!("") };
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*).map_err(|e| anyhow::anyhow!("stdout: {e}"))?
    }};
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
        Command::Pack(args) => pack_cmd(args),
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
            BenchCommand::Walk { dir, walk, runs } => {
                let r = bench::bench_walk(&dir, walk.options(), runs);
                out!(
                    "{}: {} audio files listed in {:.3} s (best of {runs}); {} problem(s), {} hidden and {} linked entries skipped",
                    dir.display(),
                    r.files,
                    r.seconds,
                    r.problems,
                    r.skipped_hidden,
                    r.skipped_links
                );
                Ok(ExitCode::SUCCESS)
            }
            BenchCommand::Model {
                arch,
                compute,
                batch,
                steps,
                burn_adam,
                precision,
            } => {
                precision.check(compute.backend)?;
                let device = compute.device()?;
                // The paper's optimizer, as `train` makes it for this backend.
                let fused = !burn_adam;
                let paper = instrec::train::PAPER;
                let optim = instrec::train::RunOptimizer::new(
                    paper.optimizer,
                    paper.weight_decay as f32,
                    fused,
                );
                let adam = match (fused, compute.backend) {
                    (false, _) => "burn's Adam",
                    (true, Backend::Tch) => "fused Adam",
                    (true, _) => "one-pass Adam",
                };
                // LibTorch training's layout (`model::channels_last`); flex keeps its own.
                #[cfg(feature = "tch")]
                let layout = match compute.backend {
                    Backend::Tch if instrec::model::channels_last::enabled() => ", channels-last",
                    Backend::Tch => ", NCHW",
                    _ => "",
                };
                #[cfg(not(feature = "tch"))]
                let layout = "";
                out!(
                    "{arch} on {compute}, batch {batch}, {steps} timed steps, {adam}, {precision}{layout}"
                );
                let r = bench::bench_model(arch, &device, batch, steps, optim, precision)?;
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
            what: DatasetCommand::Check { dir, walk },
        } => dataset_check(&dir, walk),
        Command::Dataset {
            what:
                DatasetCommand::Download {
                    dataset,
                    to,
                    mirror,
                },
        } => dataset_download(&dataset, &to, mirror.as_deref()),
        Command::Prepare(args) => prepare(args),
        Command::Synth(args) => synth(args),
        Command::SynthVoices(args) => synth_voices(args),
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

fn features(args: cli::FeaturesArgs) -> Result<ExitCode> {
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

fn pack_cmd(a: cli::PackArgs) -> Result<ExitCode> {
    let dir = bundle_dir(&a.model);
    // Checked before anything is written: a failed calibration would leave a packed bundle.
    if let Some(corpus) = a.calibrate_on.as_ref().filter(|c| !c.is_dir()) {
        anyhow::bail!("--calibrate-on {}: not a folder", corpus.display());
    }
    let mut config = instrec::model::bundle::pack_bundle(&dir, &a.out, a.aggregation)?;
    if let Some(corpus) = &a.calibrate_on {
        let calibration = instrec::data::mix::CalibrationConfig {
            mixtures: a.calib_mixtures,
            ..Default::default()
        };
        let device = a.compute.device()?;
        let cache = cli::options::cache_dir(&a.cache_dir);
        let bars = progress::TrainBars::new();
        config = instrec::train::recalibrate(
            &a.out,
            corpus,
            &calibration,
            a.calib_seed,
            &cache,
            &device,
            &bars,
        )?;
        let t = config.thresholds_s2.as_ref().unwrap_or(&config.thresholds);
        out!(
            "thresholds tuned on {}: s2 {:.2} on its clips, {:.2} on its mixtures",
            corpus.display(),
            t.global,
            t.mixture.as_ref().map_or(f32::NAN, |m| m.global)
        );
    }
    let size =
        std::fs::metadata(a.out.join(instrec::model::bundle::WEIGHTS_FILE)).map_or(0, |m| m.len());
    out!(
        "{} ({}, {} classes, {} training sources) → {} ({:.1} MB of weights)",
        dir.display(),
        config.arch,
        config.classes.len(),
        config.provenance.sources.len(),
        a.out.display(),
        size as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

fn export_cmd(a: cli::ExportArgs) -> Result<ExitCode> {
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
    let threads = threads.unwrap_or_else(all_cores);
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
    let all = threads.unwrap_or_else(all_cores);
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

fn forward(args: cli::ForwardArgs) -> Result<ExitCode> {
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

fn dataset_check(dir: &Path, walk: cli::WalkArgs) -> Result<ExitCode> {
    let set = Irmas::read_with(dir, walk.options())?;
    out!("{}", set.report(dir).trim_end());
    Ok(if set.issues.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn dataset_download(dataset: &str, to: &Path, mirror: Option<&str>) -> Result<ExitCode> {
    use instrec::data::download::{Manifest, download};
    let manifest = if dataset.eq_ignore_ascii_case("irmas") {
        Manifest::irmas()
    } else {
        let text = std::fs::read_to_string(dataset)
            .with_context(|| format!("{dataset}: not 'irmas' and not a readable manifest"))?;
        Manifest::parse(&text, dataset)?
    };
    let manifest = match mirror {
        Some(base) => manifest.with_mirror(base),
        None => manifest,
    };
    let bars = progress::DownloadBars::new();
    let outcomes = download(&manifest, to, &bars);
    bars.finish();
    for o in outcomes? {
        let how = if o.was_complete {
            "downloaded and checked before".to_string()
        } else if o.resumed_from > 0 {
            format!(
                "{} bytes fetched now, {} resumed from an earlier run",
                o.fetched, o.resumed_from
            )
        } else {
            format!("{} bytes fetched", o.fetched)
        };
        let unpacked = if o.unpacked {
            "unpacked"
        } else {
            "unpacked before"
        };
        out!(
            "{}: {} bytes, MD5 matches ({how}); {unpacked}",
            o.name,
            o.size
        );
    }
    out!();
    dataset_check(to, cli::WalkArgs::default())
}

fn prepare(args: cli::PrepareArgs) -> Result<ExitCode> {
    let set = Irmas::read_with(&args.data, args.walk.options())?;
    for i in &set.issues {
        eprintln!("warning: {i}");
    }
    let files = set.all_files();
    let dir = args.cache_dir.unwrap_or_else(cache::default_cache_dir);
    let pb = progress::items(files.len(), "extracting log-mels");
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
    Ok(finish(&cache.failures, files.len(), "could not be decoded"))
}

fn synth_voices(args: cli::SynthVoicesArgs) -> Result<ExitCode> {
    let files = instrec::data::voice::write_library(&args.out, args.seed)?;
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn synth(args: cli::SynthArgs) -> Result<ExitCode> {
    use instrec::data::library::Library;
    use instrec::data::soundfont::find_soundfont;
    let start = std::time::Instant::now();
    let sources = if args.soundfont.is_empty() && !args.libraries.is_empty() {
        Vec::new()
    } else if args.soundfont.is_empty() {
        vec![find_soundfont(None)?]
    } else {
        args.soundfont
            .iter()
            .map(|p| find_soundfont(Some(p)))
            .collect::<Result<_, _>>()?
    };
    let mut libraries = sources
        .iter()
        .map(Library::load)
        .collect::<Result<Vec<_>, _>>()?;
    for list in &args.libraries {
        libraries.extend(instrec::data::library::load_list(list, |c| {
            synth::PROGRAMS[c].to_vec()
        })?);
    }
    let opts = synth::SynthOptions {
        out: args.out.clone(),
        train_per_class: args.train_per_class,
        test_clips: args.test_clips,
        seed: args.seed,
    };
    let total = args.train_per_class * CLASSES.len() + args.test_clips;
    let pb = progress::items(total, "rendering");
    let style = synth::Style {
        augment: args.augment,
        perform: args.perform,
        solo: args.solo,
        neutral_chords: args.neutral_chords,
        counter_lines: args.counter_lines,
    };
    let report = synth::render_corpus_with(&libraries, style, &opts, &|done, _| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    let names: Vec<String> = libraries.iter().map(|l| l.name.clone()).collect();
    out!(
        "{} training and {} test clips ({:.0} s of audio) rendered from {}{} in {:.1} s → {}",
        report.train_files,
        report.test_files,
        report.audio_seconds,
        names.join(", "),
        match (args.augment, args.perform) {
            (true, true) => ", performed and augmented",
            (true, false) => ", augmented",
            (false, true) => ", performed",
            (false, false) => "",
        },
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
fn train_cmd(a: cli::TrainArgs) -> Result<ExitCode> {
    let bars = progress::TrainBars::new();
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

fn evaluate_cmd(a: cli::EvaluateArgs) -> Result<ExitCode> {
    let device = a.compute.device()?;
    let model = a.model.as_deref().map(bundle_dir);
    let (Some(data), Some(model)) = (&a.data, &model) else {
        return evaluate_recordings(&a, model.as_deref(), &device);
    };
    let opts = a.options();
    let pb = progress::items(0, "scoring test clips");
    let report = instrec::eval::evaluate(model, data, &opts, &device, &|done, total| {
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

/// `evaluate --recordings DIR`: the bundle as `tag` runs it, on real solos and mixtures of them.
fn evaluate_recordings(
    a: &cli::EvaluateArgs,
    model: Option<&Path>,
    device: &burn::tensor::Device,
) -> Result<ExitCode> {
    use instrec::tag::recordings::{RecordingOptions, evaluate_recordings};
    let dir = a
        .recordings
        .as_ref()
        .expect("clap requires --data or --recordings");
    let mut tagger =
        instrec::tag::Tagger::load_or_default(model, device)?.with_boost_quiet(!a.no_boost_quiet);
    tagger.windowing.hop = a.hop;
    if let Some(how) = a.aggregation {
        tagger = tagger.with_aggregation(how);
    }
    let opts = RecordingOptions {
        mixtures: a.mixtures,
        seed: a.seed,
        walk: a.walk.options(),
        ..Default::default()
    };
    let report = evaluate_recordings(&tagger, dir, &opts)?;
    let out = a.out.clone().unwrap_or_else(|| match model {
        Some(m) => m.join("eval-recordings"),
        None => PathBuf::from("eval-recordings"),
    });
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    let json = out.join("report.json");
    instrec::util::write_atomic(&json, &serde_json::to_vec_pretty(&report)?)
        .with_context(|| json.display().to_string())?;
    out!("{}", report.markdown(dir).trim_end());
    out!("wrote {}", json.display());
    Ok(ExitCode::SUCCESS)
}

fn tag_cmd(a: cli::TagArgs) -> Result<ExitCode> {
    let device = a.compute.device()?;
    let model = a.model.as_deref().map(bundle_dir);
    let mut tagger = instrec::tag::Tagger::load_or_default(model.as_deref(), &device)?
        .with_boost_quiet(!a.no_boost_quiet);
    tagger.windowing.hop = a.hop;
    if let Some(how) = a.aggregation {
        tagger = tagger.with_aggregation(how);
    }
    if let Some(t) = a.threshold {
        tagger = tagger.with_threshold(t);
    }
    if let Some(which) = a.tuned_on {
        let name = model.as_ref().map_or_else(
            || instrec::model::default::NAME.to_string(),
            |m| m.display().to_string(),
        );
        tagger = tagger
            .with_tuned(which)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    let walked = instrec::tag::collect_files_with(&a.inputs, &a.extension_list(), a.walk.options());
    let mut failures = walk_report(&walked);
    let unreadable = failures.len();
    let files = walked.files;
    if files.is_empty() {
        anyhow::bail!("no audio files found in the given paths");
    }
    if let Some(out) = &a.out {
        return tag_library(&tagger, files, out, &a, failures);
    }
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
    let quiet = results.iter().filter(|r| r.is_quiet()).count();
    quiet_note(quiet, results.len(), !a.no_boost_quiet);
    Ok(finish(&failures, files.len() + unreadable, "failed"))
}

/// Says on stderr that `quiet` of `of` tagged files lay below the quiet line, unless they were
/// raised (the default; `--no-boost-quiet` keeps them as they are).
fn quiet_note(quiet: usize, of: usize, boosted: bool) {
    if quiet > 0 && !boosted {
        eprintln!(
            "note: {quiet} of {of} files are quiet (RMS below {} dBFS), where the built-in model \
             hears worse; without --no-boost-quiet they are raised first",
            instrec::tag::QUIET_DBFS
        );
    }
}

/// `tag --out`: one flushed JSON line per file, resumable and shardable, with a progress bar.
fn tag_library(
    tagger: &instrec::tag::Tagger,
    files: Vec<PathBuf>,
    out: &Path,
    a: &cli::TagArgs,
    walk_failures: Vec<String>,
) -> Result<ExitCode> {
    let opts = a.library_options(out);
    let pb = progress::files();
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
    // Entries the walk could not read never reach the log, but they are failures of this run too.
    let unread = match walk_failures.len() {
        0 => String::new(),
        n => format!("; {n} more could not be read"),
    };
    out!("{}{unread}", summary.text(out));
    let tagged = summary.attempted - summary.failures.len();
    quiet_note(summary.quiet, tagged, !a.no_boost_quiet);
    let attempted = summary.attempted + walk_failures.len();
    let failures: Vec<String> = walk_failures.into_iter().chain(summary.failures).collect();
    Ok(finish(&failures, attempted, "failed"))
}

/// Reports what a folder walk could not do or left out, on stderr: a link loop as a warning
/// (its files are reached another way), skipped hidden entries and links as a note. Returns the
/// entries that could not be read, as failures.
fn walk_report(w: &instrec::walk::Walked) -> Vec<String> {
    let mut failures = Vec::new();
    for p in &w.problems {
        if p.is_loop {
            eprintln!("warning: {p}");
        } else {
            eprintln!("error: {p}");
            failures.push(p.to_string());
        }
    }
    if let Some(skipped) = w.skipped_summary() {
        eprintln!("note: skipped {skipped}");
    }
    failures
}

/// A batch command's exit: success, or the failures listed on stderr ("N of M file(s) failed:")
/// and exit status 2.
fn finish(failures: &[impl std::fmt::Display], of: usize, what: &str) -> ExitCode {
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("{} of {of} file(s) {what}:", failures.len());
    for f in failures {
        eprintln!("  {f}");
    }
    ExitCode::from(2)
}
fn experiment_cmd(a: cli::ExperimentArgs) -> Result<ExitCode> {
    let config = instrec::experiment::ExperimentConfig::load(&a.config)?;
    let cache_dir = a.cache_dir.unwrap_or_else(cache::default_cache_dir);
    let obs = progress::ExperimentBars::new();
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

fn demo_cmd(a: cli::DemoArgs) -> Result<ExitCode> {
    let start = std::time::Instant::now();
    eprintln!("instrec demo: everything goes into {}", a.dir.display());
    let opts = a.options();
    let obs = progress::ExperimentBars::new();
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
    out!(
        "built-in model on the same clip: {} (instrec tag FILE uses it; see MODEL.md)",
        demo.builtin.predominant_text()
    );
    for w in &demo.written {
        out!("wrote {}", w.display());
    }
    out!("demo finished in {:.0} s", start.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
