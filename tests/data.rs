//! The IRMAS reader on the real sample and on malformed sets, the synthetic corpus, the split
//! and the feature cache.

mod common;

use std::path::{Path, PathBuf};

use instrec::CLASSES;
use instrec::audio::decode_file;
use instrec::data::cache::{CacheOutcome, prepare};
use instrec::data::irmas::class_index;
use instrec::data::soundfont::{SoundFontSource, find_soundfont, load_soundfont};
use instrec::data::synth::{SynthOptions, render_corpus};
use instrec::data::{Irmas, SplitMode, split_validation};
use instrec::features::{ChannelMode, FeatureSettings};

fn idx(code: &str) -> usize {
    class_index(code).unwrap()
}

#[test]
fn reads_the_real_irmas_sample_exactly() {
    let Some(shared) = common::shared() else {
        return;
    };
    let set = Irmas::read(&shared.join("irmas-sample")).unwrap();
    assert!(set.issues.is_empty(), "{:?}", set.issues);
    assert_eq!(set.train.len(), 1);
    let t = &set.train[0];
    assert_eq!(t.label, idx("cla"));
    assert_eq!(t.genre.as_deref(), Some("cla"));
    assert_eq!(t.drums, None);
    assert_eq!(t.song, "cla/[cla][cla]0189");
    assert_eq!(set.test.len(), 1);
    assert_eq!(set.test[0].labels, vec![idx("gel"), idx("voi")]);
    assert!(
        set.test[0]
            .path
            .ends_with("02 - And The Body Will Die-8.wav")
    );
    // Twenty-three count differences from the official set: 11 + 1 + 11.
    assert_eq!(set.compare_with_official().len(), 23);
}

fn touch(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn malformed_files_each_get_their_message_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let train = r.join("IRMAS-TrainingData");
    touch(&train.join("cel/[cel][cla]0001__1.wav"), b"x");
    touch(&train.join("cel/[cel][dru][pop_roc]0002__1.wav"), b"x");
    touch(&train.join("cel/no-brackets.wav"), b"x");
    touch(&train.join("cel/[vio][cla]0003__1.wav"), b"x");
    touch(&train.join("cel/notes.txt"), b"x");
    touch(&train.join("drums/[dru][cla]0001__1.wav"), b"x");
    let test = r.join("IRMAS-TestingData-Part2/Part2");
    touch(&test.join("good-1.wav"), b"x");
    touch(&test.join("good-1.txt"), b"pia\t\nsax\t\n");
    touch(&test.join("unknown-1.wav"), b"x");
    touch(&test.join("unknown-1.txt"), b"pia\nbanjo\n");
    touch(&test.join("nolabels-1.wav"), b"x");
    touch(&test.join("orphan-1.txt"), b"voi\n");
    touch(&test.join("empty-1.wav"), b"x");
    touch(&test.join("empty-1.txt"), b"\n\t\n");
    let set = Irmas::read(r).unwrap();
    assert_eq!(set.train.len(), 2);
    assert_eq!(set.train[1].drums, Some(true));
    assert_eq!(set.test.len(), 1);
    assert_eq!(set.test[0].labels, vec![idx("pia"), idx("sax")]);
    let msg = |needle: &str| -> String {
        set.issues
            .iter()
            .find(|i| i.path.to_string_lossy().contains(needle))
            .unwrap_or_else(|| panic!("no issue for {needle}: {:?}", set.issues))
            .to_string()
    };
    assert!(msg("no-brackets.wav").contains("unparseable name"));
    assert!(msg("[vio][cla]0003__1.wav").contains("folder is cel"));
    assert!(msg("notes.txt").contains("not a .wav"));
    assert!(msg("drums").contains("unknown instrument folder"));
    assert!(msg("unknown-1.txt").contains("'banjo'"));
    assert!(msg("nolabels-1.wav").contains("no label file"));
    assert!(msg("orphan-1.txt").contains("without its .wav"));
    assert!(msg("empty-1.txt").contains("lists no instrument"));
    assert_eq!(set.issues.len(), 8, "{:#?}", set.issues);
    // Not an IRMAS folder at all.
    let empty = tempfile::tempdir().unwrap();
    assert!(
        Irmas::read(empty.path())
            .unwrap_err()
            .reason
            .contains("not an IRMAS directory")
    );
}

fn render(dir: &Path, seed: u64, per_class: usize, test: usize) {
    let sf = load_soundfont(&find_soundfont(None).unwrap()).unwrap();
    let opts = SynthOptions {
        out: dir.to_path_buf(),
        train_per_class: per_class,
        test_clips: test,
        seed,
    };
    let r = render_corpus(&sf, &opts, &|_, _| {}).unwrap();
    assert_eq!(r.train_files, per_class * 11);
    assert_eq!(r.test_files, test);
}

#[test]
fn synthetic_corpus_reads_back_as_irmas_and_is_reproducible() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    render(a.path(), 5, 4, 6);
    render(b.path(), 5, 4, 6);
    render(c.path(), 6, 4, 6);

    let set = Irmas::read(a.path()).unwrap();
    assert!(set.issues.is_empty(), "{:?}", set.issues);
    assert_eq!(set.train_counts(), [4; 11]);
    assert_eq!(set.test.len(), 6);
    assert!(
        set.train
            .iter()
            .all(|t| t.drums.is_some() && t.genre.is_some())
    );
    for t in &set.train {
        let audio = decode_file(&t.path).unwrap();
        assert_eq!(
            (audio.sample_rate, audio.channels.len(), audio.len()),
            (44_100, 2, 132_300)
        );
        // The file name carries the label the reader reports.
        let name = t.path.file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(&format!("[{}]", CLASSES[t.label])));
    }
    for t in &set.test {
        assert!((1..=3).contains(&t.labels.len()));
        let audio = decode_file(&t.path).unwrap();
        assert!(
            (5.0..=20.0).contains(&audio.duration_s()),
            "{}",
            audio.duration_s()
        );
        assert!(
            audio.channels[0].iter().any(|&v| v.abs() > 0.05),
            "silent clip"
        );
    }

    // Same seed: byte-identical files. Another seed: different audio.
    let fa = common::all_files(a.path());
    let fb = common::all_files(b.path());
    assert_eq!(fa.len(), 4 * 11 + 2 * 6 + 1); // and instrec-synth.json
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(
            x.strip_prefix(a.path()).unwrap(),
            y.strip_prefix(b.path()).unwrap()
        );
        assert!(
            std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
            "{} differs",
            x.display()
        );
    }
    let fc = common::all_files(c.path());
    let same = fa
        .iter()
        .zip(&fc)
        .filter(|(x, y)| {
            x.extension().unwrap() == "wav"
                && std::fs::read(x).unwrap() == std::fs::read(y).unwrap()
        })
        .count();
    assert_eq!(same, 0, "another seed must give different audio");

    // The song split on the corpus: no song on both sides.
    let s = split_validation(&set.train, 0.25, 1, SplitMode::Song);
    let valid: std::collections::HashSet<&str> = s
        .valid
        .iter()
        .map(|&i| set.train[i].song.as_str())
        .collect();
    assert!(
        s.train
            .iter()
            .all(|&i| !valid.contains(set.train[i].song.as_str()))
    );
    assert!(!s.valid.is_empty());
}

#[test]
fn soundfont_errors_name_the_file() {
    let e = find_soundfont(Some(Path::new("/nonexistent/gm.sf2"))).unwrap_err();
    assert!(e.path.contains("/nonexistent/gm.sf2"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.sf2");
    std::fs::write(&junk, b"RIFF0000notasoundfont").unwrap();
    let e = load_soundfont(&SoundFontSource::File(junk))
        .map(|_| ())
        .unwrap_err();
    assert!(e.path.ends_with("junk.sf2"), "{e}");
}

/// Without --soundfont and $INSTREC_SOUNDFONT the built-in SoundFont renders the corpus, and a
/// named file is used as it is (here the built-in one unpacked to a file: the same bytes out).
#[test]
fn the_built_in_soundfont_is_the_default_and_a_file_can_replace_it() {
    assert!(
        std::env::var_os("INSTREC_SOUNDFONT").is_none(),
        "unset INSTREC_SOUNDFONT to run the tests"
    );
    assert_eq!(find_soundfont(None).unwrap(), SoundFontSource::Embedded);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gm.sf2");
    std::fs::write(&file, instrec::data::soundfont::embedded_bytes().unwrap()).unwrap();
    let from_file = find_soundfont(Some(&file)).unwrap();
    assert_eq!(from_file, SoundFontSource::File(file.clone()));
    let render_with = |source: &SoundFontSource, out: &Path| {
        let opts = SynthOptions {
            out: out.to_path_buf(),
            train_per_class: 1,
            test_clips: 1,
            seed: 5,
        };
        render_corpus(&load_soundfont(source).unwrap(), &opts, &|_, _| {}).unwrap();
        common::all_files(out)
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect::<Vec<_>>()
    };
    let a = render_with(&SoundFontSource::Embedded, &dir.path().join("a"));
    let b = render_with(&from_file, &dir.path().join("b"));
    assert_eq!(a.len(), 11 + 2 + 1); // and instrec-synth.json
    assert!(
        a == b,
        "the same SoundFont from a file rendered other bytes"
    );
}

/// No system SoundFont or font is looked up: the binary holds no such path, except in the built-in
/// model's record of the libraries it was trained from (data, never opened).
#[test]
fn the_binary_names_no_system_soundfont_or_font() {
    let mut bin = std::fs::read(env!("CARGO_BIN_EXE_instrec")).unwrap();
    let record = instrec::model::default::files().0.as_bytes();
    let at = bin
        .windows(record.len())
        .position(|w| w == record)
        .expect("the built-in model's config is in the binary");
    bin.drain(at..at + record.len());
    for needle in [
        "/usr/share/sounds",
        "/usr/share/fonts",
        "/usr/local/share/fonts",
        "/System/Library/Fonts",
        "FluidR3_GM.sf2",
    ] {
        assert!(
            !bin.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "the binary contains {needle}"
        );
    }
}

#[test]
fn feature_cache_reuses_rebuilds_and_detects_corruption() {
    let data = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    render(data.path(), 9, 1, 2);
    let set = Irmas::read(data.path()).unwrap();
    let mut files: Vec<PathBuf> = set.train.iter().map(|c| c.path.clone()).collect();
    files.extend(set.test.iter().map(|c| c.path.clone()));
    // One bad file among the good ones.
    let bad = data
        .path()
        .join("IRMAS-TrainingData/cel/[cel][nod][cla]9999__1.wav");
    std::fs::write(&bad, b"RIFF....WAVE").unwrap();
    files.push(bad.clone());
    let s = FeatureSettings::default();
    let noop = |_: usize, _: usize| {};

    let (first, o) = prepare(&files, &s, ChannelMode::Dup, cache_dir.path(), &noop).unwrap();
    assert_eq!(o, CacheOutcome::Built);
    assert_eq!(first.failures.len(), 1);
    assert_eq!(first.failures[0].path, bad);
    assert!(first.get(&files[0]).is_some());

    // Second run: read back, identical, no extraction (the progress callback is never called).
    let called = std::sync::atomic::AtomicBool::new(false);
    let (second, o) = prepare(&files, &s, ChannelMode::Dup, cache_dir.path(), &|_, _| {
        called.store(true, std::sync::atomic::Ordering::Relaxed)
    })
    .unwrap();
    assert_eq!(o, CacheOutcome::Reused);
    assert!(!called.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(second.failures, first.failures);
    for (a, b) in first.clips.iter().zip(&second.clips) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1.as_ref().map(|f| &f.mels), b.1.as_ref().map(|f| &f.mels));
    }

    // A subset: read from the same cache, only the kept clip in memory.
    let only = files[0].clone();
    let (sub, o) = instrec::data::cache::prepare_subset(
        &files,
        &s,
        ChannelMode::Dup,
        cache_dir.path(),
        &noop,
        &|p| p == only.as_path(),
    )
    .unwrap();
    assert_eq!(o, CacheOutcome::Reused);
    assert_eq!(
        sub.get(&files[0]).map(|f| &f.mels),
        first.get(&files[0]).map(|f| &f.mels)
    );
    assert!(sub.get(&files[1]).is_none());
    assert_eq!(sub.failures, first.failures);

    // A changed feature setting: a new key, a new build.
    let mut s64 = s.clone();
    s64.n_mels = 64;
    let (c64, o) = prepare(&files, &s64, ChannelMode::Dup, cache_dir.path(), &noop).unwrap();
    assert_eq!(o, CacheOutcome::Built);
    assert_eq!(c64.get(&files[0]).unwrap().mels[0].n_mels, 64);
    // Stereo needs three log-mels per clip: another cache.
    let (st, o) = prepare(&files, &s, ChannelMode::Stereo, cache_dir.path(), &noop).unwrap();
    assert_eq!(o, CacheOutcome::Built);
    assert_eq!(st.get(&files[0]).unwrap().mels.len(), 3);

    // A truncated cache file is detected and rebuilt.
    let bytes = std::fs::read(&first.path).unwrap();
    std::fs::write(&first.path, &bytes[..bytes.len() / 2]).unwrap();
    let (_, o) = prepare(&files, &s, ChannelMode::Dup, cache_dir.path(), &noop).unwrap();
    assert!(
        matches!(o, CacheOutcome::Rebuilt { ref reason } if reason.contains("checksum")),
        "{o:?}"
    );
    // A flipped byte too.
    let mut bytes = std::fs::read(&first.path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&first.path, &bytes).unwrap();
    let (_, o) = prepare(&files, &s, ChannelMode::Dup, cache_dir.path(), &noop).unwrap();
    assert!(matches!(o, CacheOutcome::Rebuilt { .. }), "{o:?}");

    // A changed file changes the key.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let wav = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &wav[..wav.len() - 1000]).unwrap();
    let (_, o) = prepare(&files, &s, ChannelMode::Dup, cache_dir.path(), &noop).unwrap();
    assert_eq!(o, CacheOutcome::Built);
}

/// Every WAV under `root` (path relative to it, bytes), sorted by path.
fn wav_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    common::all_files(root)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .map(|p| {
            (
                p.strip_prefix(root).unwrap().to_path_buf(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Renders a corpus from the built-in SoundFont alone into `out` and returns its file records.
fn render_embedded(
    out: &Path,
    train_per_class: usize,
    test_clips: usize,
    seed: u64,
    style: instrec::data::synth::Style,
) -> Vec<instrec::data::synth::FileRecord> {
    use instrec::data::library::Library;
    use instrec::data::synth::{file_records, render_corpus_with};
    let libraries = [Library::load(&SoundFontSource::Embedded).unwrap()];
    let opts = SynthOptions {
        out: out.to_path_buf(),
        train_per_class,
        test_clips,
        seed,
    };
    render_corpus_with(&libraries, style, &opts, &|_, _| {}).unwrap();
    file_records(out)
}

/// `Style::solo`: the songs drawn solo are recorded as such, named without drums and play no
/// accompaniment; every other file is the same bytes as in the corpus rendered without it.
#[test]
fn solo_songs_drop_the_accompaniment_and_leave_the_other_files_unchanged() {
    use instrec::data::synth::Style;
    let dir = tempfile::tempdir().unwrap();
    let render = |name: &str, solo: f64| {
        let out = dir.path().join(name);
        let style = Style {
            perform: true,
            solo,
            ..Default::default()
        };
        let records = render_embedded(&out, 4, 2, 5, style);
        (wav_files(&out), records)
    };
    let (band, band_records) = render("band", 0.0);
    let (mixed, records) = render("mixed", 0.5);
    assert!(band_records.iter().all(|r| !r.solo));
    let solo: Vec<&str> = records
        .iter()
        .filter(|r| r.solo)
        .map(|r| r.path.as_str())
        .collect();
    assert!(
        solo.len() > 5 && solo.len() < 40,
        "about half the 44 training clips are solo: {solo:?}"
    );
    assert!(solo.iter().all(|p| p.contains("[nod]")), "{solo:?}");
    assert_eq!(band.len(), mixed.len());
    // A solo song's files are its band twin's names with [nod] for [dru].
    let twin = |p: &Path| p.to_string_lossy().replace("[dru]", "[nod]");
    let band: std::collections::HashMap<String, &Vec<u8>> =
        band.iter().map(|(p, b)| (twin(p), b)).collect();
    // Share of the energy below ~150 Hz (one-pole low-pass), where the bass and kick were.
    let low_share = |wav: &[u8]| {
        let a = instrec::audio::decode_bytes(wav.to_vec(), Some("wav"), "clip").unwrap();
        let k = 1.0 - (-2.0 * std::f64::consts::PI * 150.0 / f64::from(a.sample_rate)).exp();
        let (mut y, mut low, mut all) = (0.0, 0.0, 1e-12);
        for &v in &a.channels[0] {
            y += k * (f64::from(v) - y);
            low += y * y;
            all += f64::from(v).powi(2);
        }
        low / all
    };
    let (mut solo_low, mut band_low) = (0.0, 0.0);
    for (path, bytes) in &mixed {
        let name = path.to_string_lossy();
        let band_bytes = band[&twin(path)];
        if solo.iter().any(|s| name == *s) {
            assert_ne!(bytes, band_bytes, "{name} is played solo, so it differs");
            solo_low += low_share(bytes);
            band_low += low_share(band_bytes);
        } else {
            assert!(bytes == band_bytes, "{name} is not solo: the same bytes");
        }
    }
    assert!(
        solo_low < 0.5 * band_low,
        "without bass and kick the solo clips keep less low energy: {solo_low} vs {band_low}"
    );
}

/// `Style::neutral_chords`: the chords under every accompanied file (recorded per file) are on a
/// program of no class, where without it some are a class's (piano, organ, nylon guitar) though
/// never one of the file's own predominant classes; solo files record none.
#[test]
fn neutral_chords_play_no_class_program_and_every_file_records_its_chords() {
    use instrec::data::synth::{PROGRAMS, Style};
    let dir = tempfile::tempdir().unwrap();
    let render = |name: &str, neutral_chords: bool| {
        let style = Style {
            solo: 0.3,
            neutral_chords,
            ..Default::default()
        };
        render_embedded(&dir.path().join(name), 3, 6, 9, style)
    };
    let class_of = |p: u8| PROGRAMS.iter().position(|c| c.contains(&p));
    for (neutral, records) in [
        (false, render("irmas", false)),
        (true, render("neutral", true)),
    ] {
        assert_eq!(records.len(), 3 * CLASSES.len() + 6);
        let mut class_chords = 0;
        for r in &records {
            assert_eq!(
                r.chords.is_none(),
                r.solo,
                "{}: chords recorded unless solo",
                r.path
            );
            let Some(chords) = r.chords else { continue };
            let own: Vec<Option<usize>> = r.programs.iter().map(|&p| class_of(p)).collect();
            assert!(
                !own.contains(&class_of(chords)) || class_of(chords).is_none(),
                "{r:?}"
            );
            class_chords += usize::from(class_of(chords).is_some());
        }
        if neutral {
            assert_eq!(class_chords, 0, "neutral chords play no class's program");
        } else {
            assert!(
                class_chords > 3,
                "IRMAS-like chords play piano, organ or guitar at times"
            );
        }
    }
}

/// `Style::counter_lines`: about that share of the accompanied songs carries an unlabelled line
/// of another class, recorded per file (class, library, 6–14 dB under the rest); solo songs
/// carry none; every file without one is the same bytes as in the corpus rendered without it,
/// and a second render gives the same bytes.
#[test]
fn counter_lines_are_another_class_recorded_per_file_and_leave_the_other_files_unchanged() {
    use instrec::data::synth::Style;
    let dir = tempfile::tempdir().unwrap();
    let render = |name: &str, counter_lines: f64| {
        let out = dir.path().join(name);
        // Plain melodies: the built-in SoundFont holds only the loud notes the corpus plays.
        let style = Style {
            solo: 0.2,
            counter_lines,
            ..Default::default()
        };
        let records = render_embedded(&out, 4, 2, 17, style);
        (wav_files(&out), records)
    };
    let (plain, plain_records) = render("plain", 0.0);
    let (counter, records) = render("counter", 0.5);
    assert!(plain_records.iter().all(|r| r.counter.is_none()));
    assert!(
        render("again", 0.5).0 == counter,
        "the same seed, the same bytes"
    );
    let plain: std::collections::HashMap<&Path, &Vec<u8>> =
        plain.iter().map(|(p, b)| (p.as_path(), b)).collect();
    let mut with = 0;
    for r in &records {
        let bytes = &counter
            .iter()
            .find(|(p, _)| *p == Path::new(&r.path))
            .unwrap()
            .1;
        let Some(c) = &r.counter else {
            assert!(
                *bytes == *plain[Path::new(&r.path)],
                "{}: no counter line, same bytes",
                r.path
            );
            continue;
        };
        with += 1;
        assert!(!r.solo, "{}: a solo song has no counter line", r.path);
        let own = Path::new(&r.path).parent().unwrap().file_name().unwrap();
        assert_ne!(own.to_string_lossy(), c.class, "{}: another class", r.path);
        assert!(CLASSES.contains(&c.class.as_str()));
        assert_eq!(c.library, 0, "the only library");
        assert!((6.0..=14.0).contains(&c.below_db), "{c:?}");
        assert!(
            *bytes != *plain[Path::new(&r.path)],
            "{}: the line is heard",
            r.path
        );
    }
    let accompanied = records
        .iter()
        .filter(|r| r.chords.is_some() && r.path.contains("Training"))
        .count();
    assert!(
        with > accompanied / 5 && with < accompanied * 4 / 5,
        "about half of {accompanied} accompanied training files: {with}"
    );
}

/// Several libraries and augmentation: the same seed gives the same bytes, every rendered file
/// has its source in the manifest, and each library is drawn.
#[test]
fn a_multi_library_augmented_corpus_is_deterministic_and_records_every_source() {
    use instrec::data::library::Library;
    use instrec::data::synth::{file_records, render_corpus_with};
    let lib = |name: &str| Library {
        name: name.into(),
        ..Library::load(&SoundFontSource::Embedded).unwrap()
    };
    let libraries = [lib("first"), lib("second")];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for d in &dirs {
        let opts = SynthOptions {
            out: d.path().join("c"),
            train_per_class: 2,
            test_clips: 4,
            seed: 21,
        };
        render_corpus_with(
            &libraries,
            instrec::data::synth::Style {
                augment: true,
                perform: true,
                ..Default::default()
            },
            &opts,
            &|_, _| {},
        )
        .unwrap();
    }
    let (a, b) = (
        wav_files(&dirs[0].path().join("c")),
        wav_files(&dirs[1].path().join("c")),
    );
    assert_eq!(a.len(), 2 * 11 + 4);
    assert!(a == b, "the same seed renders the same bytes");
    let records = file_records(&dirs[0].path().join("c"));
    let mut recorded: Vec<PathBuf> = records.iter().map(|r| PathBuf::from(&r.path)).collect();
    recorded.sort();
    let rendered: Vec<PathBuf> = a.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(recorded, rendered, "every rendered file has a record");
    assert!(records.iter().any(|r| r.library == 0) && records.iter().any(|r| r.library == 1));
    assert!(records.iter().all(|r| !r.programs.is_empty()));
    assert!(
        records
            .iter()
            .filter(|r| !r.augmentation.is_empty())
            .count()
            > 10
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dirs[0].path().join("c/instrec-synth.json")).unwrap(),
    )
    .unwrap();
    let libs = manifest["libraries"].as_array().unwrap();
    assert_eq!(libs.len(), 2);
    assert!(
        libs.iter()
            .all(|l| l["sha256"].as_str().unwrap().len() == 64)
    );
}

/// A library lacking a preset the corpus plays is named before anything renders (rustysynth
/// would play another preset in its place); the built-in SoundFont has them all.
#[test]
fn a_library_missing_a_preset_is_refused_by_name() {
    use instrec::data::library::Library;
    use instrec::data::synth::{NoteRange, PresetUse, missing_presets, presets_used};
    let lib = Library::load(&SoundFontSource::Embedded).unwrap();
    assert!(missing_presets(&lib.font, &presets_used()).is_empty());
    let odd = PresetUse {
        bank: 3,
        program: 99,
        notes: vec![NoteRange {
            keys: (60, 60),
            velocities: (100, 100),
        }],
    };
    assert_eq!(missing_presets(&lib.font, &[odd]), vec![(3, 99)]);
}

/// An SFZ instrument from a library list renders its class's lines beside a General-MIDI
/// SoundFont: the corpus is the same for the same seed, and the manifest records the list's
/// licences and sources, the SHA-256 of every file the instrument read, and which clips it played.
#[test]
fn an_sfz_instrument_from_a_library_list_plays_its_class_and_is_recorded() {
    use instrec::data::library::load_list;
    use instrec::data::synth::{
        PROGRAMS, Style, file_records, library_records, render_corpus_with,
    };
    let d = tempfile::tempdir().unwrap();
    let lib = d.path().join("lib");
    std::fs::create_dir_all(lib.join("samples")).unwrap();
    std::fs::write(
        lib.join("gm.sf2"),
        instrec::data::soundfont::embedded_bytes().unwrap(),
    )
    .unwrap();
    // A sampled "sax": saw-like tones at two root keys, two velocity layers.
    for (name, hz) in [("c4.wav", 261.63f32), ("c5.wav", 523.25)] {
        let x: Vec<f32> = (0..44_100)
            .map(|i| {
                let t = i as f32 / 44_100.0;
                (1..6)
                    .map(|h| (2.0 * std::f32::consts::PI * hz * h as f32 * t).sin() / h as f32)
                    .sum::<f32>()
                    * 0.2
            })
            .collect();
        instrec::audio::write_wav_i16(&lib.join("samples").join(name), 44_100, &[x]).unwrap();
    }
    std::fs::write(
        lib.join("sax.sfz"),
        "<control> default_path=samples/\n<global> ampeg_release=0.2 lfo01_freq=5\n\
         <group> lovel=1 hivel=80\n<region> sample=c4.wav lokey=48 hikey=66 pitch_keycenter=60\n\
         <region> sample=c5.wav lokey=67 hikey=84 pitch_keycenter=72\n\
         <group> lovel=81 hivel=127 volume=3\n<region> sample=c4.wav lokey=48 hikey=66 pitch_keycenter=60\n\
         <region> sample=c5.wav lokey=67 hikey=84 pitch_keycenter=72\n",
    )
    .unwrap();
    std::fs::write(
        lib.join("list.toml"),
        "[[library]]\npath = \"gm.sf2\"\nlicence = \"MIT\"\nsource = \"FluidR3_GM subset\"\n\n\
         [[library]]\npath = \"sax.sfz\"\nclass = \"sax\"\nlicence = \"CC0-1.0\"\nsource = \"test\"\n",
    )
    .unwrap();
    let libraries = load_list(&lib.join("list.toml"), |c| PROGRAMS[c].to_vec()).unwrap();
    assert_eq!(libraries[1].keys, Some((48, 84)));
    let style = Style {
        augment: true,
        perform: true,
        ..Default::default()
    };
    let render = |out: &Path| {
        let opts = SynthOptions {
            out: out.to_path_buf(),
            train_per_class: 4,
            test_clips: 3,
            seed: 5,
        };
        render_corpus_with(&libraries, style, &opts, &|_, _| {}).unwrap();
    };
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    render(&a);
    render(&b);
    let sax_files: Vec<_> = file_records(&a)
        .into_iter()
        .filter(|r| r.path.contains("/sax/"))
        .collect();
    assert_eq!(sax_files.len(), 4);
    for r in file_records(&a) {
        assert_eq!(
            std::fs::read(a.join(&r.path)).unwrap(),
            std::fs::read(b.join(&r.path)).unwrap(),
            "{} differs between two renders of one seed",
            r.path
        );
        if !r.path.contains("/sax/") && r.path.contains("TrainingData") {
            assert!(
                r.line_libraries.is_empty(),
                "{}: only sax has its own instrument",
                r.path
            );
        }
    }
    assert!(
        sax_files.iter().any(|r| r.line_libraries == [1]),
        "some sax clips are played by the SFZ instrument: {sax_files:?}"
    );
    let libs = library_records(&a);
    assert_eq!(libs[1].class.as_deref(), Some("sax"));
    assert_eq!(libs[1].licence.as_deref(), Some("CC0-1.0"));
    let files: Vec<&str> = libs[1].files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(files, ["sax.sfz", "samples/c4.wav", "samples/c5.wav"]);
    assert!(libs[1].files.iter().all(|f| f.sha256.len() == 64));
    assert_eq!(libs[0].licence.as_deref(), Some("MIT"));
}
