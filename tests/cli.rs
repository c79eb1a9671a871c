//! The `instrec` binary as a user runs it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{WavFormat, frontend_fixtures, instrec, stderr, wav_bytes};
use instrec::npy::NpyArray;

#[test]
fn features_writes_the_fixture_layout() {
    let dir = tempfile::tempdir().unwrap();
    let wav = frontend_fixtures().join("voice_22k.wav");
    let out = dir.path().join("voice.npy");
    let o = instrec(&[
        "features",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ours = NpyArray::read(&out).unwrap();
    let expected = NpyArray::read(&frontend_fixtures().join("voice_22k.logmel.npy")).unwrap();
    assert_eq!(ours.shape, expected.shape);
    let max = ours
        .data
        .iter()
        .zip(&expected.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max <= 1e-3, "max |Δ| {max}");
}

#[test]
fn features_left_and_right_differ_on_a_stereo_file() {
    let dir = tempfile::tempdir().unwrap();
    let wav = frontend_fixtures().join("chord_stereo_44k.wav");
    let mut outs = Vec::new();
    for ch in ["left", "right"] {
        let out = dir.path().join(format!("{ch}.npy"));
        let o = instrec(&[
            "features",
            wav.to_str().unwrap(),
            "--channel",
            ch,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        outs.push(NpyArray::read(&out).unwrap());
    }
    assert_eq!(outs[0].shape, outs[1].shape);
    assert_ne!(outs[0].data, outs[1].data);
}

#[test]
fn features_without_audio_uses_the_bundled_clip() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("example.npy");
    let o = instrec(&["features", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = NpyArray::read(&out).unwrap();
    assert_eq!(a.shape, vec![128, 130]);
}

/// Writes `bytes` to `name` in a temporary directory and runs `instrec features` on it.
fn run_bad(name: &str, bytes: Option<&[u8]>) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    if let Some(b) = bytes {
        std::fs::write(&path, b).unwrap();
    }
    let out = dir.path().join("out.npy");
    let o = instrec(&[
        "features",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !out.exists(),
        "{name}: no output may be written for bad input"
    );
    let e = stderr(&o);
    (o, e)
}

fn assert_clear_failure(name: &str, o: &Output, err: &str, reason: &str) {
    assert!(!o.status.success(), "{name}: should fail");
    assert!(!err.contains("panicked"), "{name}: panicked: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{name}: one line expected: {err}"
    );
    assert!(
        err.contains(name),
        "{name}: error does not name the file: {err}"
    );
    assert!(
        err.to_lowercase().contains(reason),
        "{name}: expected '{reason}' in: {err}"
    );
}

#[test]
fn bad_input_fails_with_one_clear_line() {
    let (o, e) = run_bad("missing.wav", None);
    assert_clear_failure("missing.wav", &o, &e, "no such file");

    let (o, e) = run_bad("empty.wav", Some(b""));
    assert_clear_failure("empty.wav", &o, &e, "empty");

    let (o, e) = run_bad(
        "notes.wav",
        Some(b"these are not the samples you are looking for\n"),
    );
    assert_clear_failure("notes.wav", &o, &e, "not");

    let good = wav_bytes(2, 44_100, WavFormat::I16, &vec![0.1; 2 * 44_100]);
    let (o, e) = run_bad("truncated.wav", Some(&good[..good.len() / 2]));
    assert_clear_failure("truncated.wav", &o, &e, "truncated");

    let (o, e) = run_bad("header-only.wav", Some(&good[..30]));
    assert_clear_failure("header-only.wav", &o, &e, "truncated");

    // A WAV whose format chunk says zero channels.
    let mut zero = good.clone();
    zero[22] = 0;
    zero[23] = 0;
    let (o, e) = run_bad("zero-channels.wav", Some(&zero));
    assert_clear_failure("zero-channels.wav", &o, &e, "channel");

    // A valid header with no samples at all.
    let nothing = wav_bytes(1, 22_050, WavFormat::I16, &[]);
    let (o, e) = run_bad("silent-nothing.wav", Some(&nothing));
    assert_clear_failure("silent-nothing.wav", &o, &e, "no audio");

    // A named pipe has no length and cannot be read twice: refused by name, never waited on.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.wav");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let o = instrec(&["tag", fifo.to_str().unwrap()]);
        let e = stderr(&o);
        assert!(!o.status.success(), "pipe.wav: should fail: {e}");
        assert!(
            e.contains("pipe.wav") && e.contains("not a regular file"),
            "{e}"
        );
    }
}

/// Every subcommand's help explains every one of its flags (a line with the flag and text).
#[test]
fn help_explains_every_flag() {
    let commands: &[&[&str]] = &[
        &["features"],
        &["bench", "features"],
        &["bench", "model"],
        &["bench", "tag"],
        &["forward"],
        &["dataset", "check"],
        &["prepare"],
        &["synth"],
        &["train"],
        &["evaluate"],
        &["tag"],
        &["export"],
        &["experiment"],
        &["demo"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = instrec(&args);
        assert!(o.status.success(), "{cmd:?}");
        let text = String::from_utf8_lossy(&o.stdout);
        let mut flags = 0;
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            // A flag ("-o, --out", "--mix"), not an entry of a possible-values list ("- mono: ...").
            let is_flag = t.starts_with("--")
                || (t.starts_with('-') && t[1..].starts_with(|c: char| c.is_ascii_alphabetic()));
            if is_flag && !t.contains("--help") && !t.contains("--version") {
                flags += 1;
                // Explained on the same line (short help) or the next (long help).
                let same_line = t.split_once("  ").is_some_and(|(_, r)| r.trim().len() > 10);
                let next_line = lines
                    .get(i + 1)
                    .is_some_and(|n| n.trim().len() > 10 && !n.trim_start().starts_with('-'));
                let explained = same_line || next_line;
                assert!(explained, "{cmd:?}: {t} is not explained:\n{text}");
            }
        }
        assert!(
            flags > 0 || cmd == &["dataset", "check"],
            "{cmd:?} lists no flags:\n{text}"
        );
    }
}

#[test]
fn bench_features_reports_throughput() {
    let o = instrec(&["bench", "features", "--clips", "4", "--threads", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    // One line per thread count, each with a positive rate.
    let rates: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("audio-s/s"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.replace(',', "").parse::<f64>().ok())
        })
        .collect();
    assert!(
        !rates.is_empty() && rates.iter().all(|&r| r > 0.0),
        "{text}"
    );
}

#[test]
fn a_device_the_backend_cannot_use_is_one_clear_error() {
    // flex is CPU-only; a malformed device is refused by the flag parser; with a GPU asked of a
    // binary without LibTorch, the message names the feature to build with.
    let o = instrec(&["bench", "model", "--device", "cuda:0", "--steps", "1"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("--device cuda:0") && e.contains("--backend tch"),
        "{e}"
    );
    let o = instrec(&["bench", "model", "--device", "gpu:7"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cpu, cuda or cuda:N"), "{}", stderr(&o));
    if !cfg!(feature = "tch") {
        let o = instrec(&["bench", "model", "--backend", "tch", "--device", "cuda:1"]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("--features tch"), "{}", stderr(&o));
    }
}

/// `instrec tag FILE` with no `--model` uses the built-in model: every class scored, nothing
/// fetched (no cache or home folder to read one from).
#[test]
fn tag_needs_no_model_flag() {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chord_stereo_44k.flac");
    let home = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_instrec"))
        .args(["tag", "--format", "json"])
        .arg(&clip)
        .env("HOME", home.path())
        .env("TORCH_HOME", home.path())
        .env("INSTREC_CACHE", home.path())
        .env("https_proxy", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["classes"].as_array().map_or(0, Vec::len), 11, "{v}");
    let scores = v["files"][0]["scores"].as_array().map_or(0, Vec::len);
    assert_eq!(scores, 11, "{v}");
    // The built-in model scores with its own aggregation, and says so.
    assert_eq!(v["aggregation"], "s2", "{v}");
    let top = v["files"][0]["scores"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .fold(f64::MIN, f64::max);
    assert!((top - 1.0).abs() < 1e-6, "{v}");
}

/// A quiet file is raised by default by the gain `boost_db` gives for its level as the model
/// takes it, and tagged exactly as the same samples multiplied by that gain; with
/// `--no-boost-quiet` it is reported as quiet with its level and tagged as it is; a file at a
/// normal level is neither flagged nor raised.
#[test]
fn tag_raises_quiet_files_unless_told_not_to() {
    use instrec::audio::{Channel, Level, decode_file, select_channel};
    use instrec::tag::{BOOST_MAX_DB, QUIET_DBFS, boost_db};
    // The gain rule: none at or above the quiet line, to the target, under the peak and the cap.
    let at = |rms_dbfs, peak_dbfs| {
        boost_db(Level {
            rms_dbfs,
            peak_dbfs,
        })
    };
    assert_eq!(at(QUIET_DBFS, -10.0), 0.0);
    assert!((at(-40.0, -25.0) - 21.3).abs() < 1e-9);
    assert!((at(-40.0, -12.0) - 12.0).abs() < 1e-9);
    assert_eq!(at(-100.0, -90.0), BOOST_MAX_DB);
    assert_eq!(at(-35.0, 3.0), 0.0);

    let dir = tempfile::tempdir().unwrap();
    let chord = decode_file(&frontend_fixtures().join("chord_stereo_44k.wav")).unwrap();
    let interleave = |scale: f32| -> Vec<f32> {
        (0..chord.len())
            .flat_map(|i| chord.channels.iter().map(move |c| c[i] * scale))
            .collect()
    };
    let write = |name: &str, samples: &[f32]| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            wav_bytes(2, chord.sample_rate, WavFormat::F32, samples),
        )
        .unwrap();
        path
    };
    let quiet = write("soft.wav", &interleave(10f32.powf(-30.0 / 20.0)));
    let level = Level::of(&select_channel(
        &decode_file(&quiet).unwrap().channels,
        Channel::Mono,
    ));
    assert!(level.rms_dbfs < QUIET_DBFS, "{level:?}");

    let tag = |args: &[&str], file: &Path| -> serde_json::Value {
        let mut all = vec!["tag", "--format", "json"];
        all.extend_from_slice(args);
        all.push(file.to_str().unwrap());
        let o = instrec(&all);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["files"][0].clone()
    };
    let plain = tag(&["--no-boost-quiet"], &quiet);
    let boosted = tag(&[], &quiet);
    // The flag of the releases before raising was the default still works, and changes nothing.
    assert_eq!(tag(&["--boost-quiet"], &quiet), boosted);
    // Levels as the model takes the file (after resampling): within a fraction of a dB of the
    // decoder's own measure, and so is the gain.
    let reported = plain["level_dbfs"].as_f64().unwrap();
    assert!(
        (reported - level.rms_dbfs).abs() < 0.5,
        "{reported} {level:?}"
    );
    assert_eq!(plain["gain_db"].as_f64(), Some(0.0));
    let gain_db = boosted["gain_db"].as_f64().unwrap();
    assert!(
        gain_db > 5.0 && (gain_db - boost_db(level)).abs() < 0.5,
        "{gain_db} {level:?}"
    );
    assert!((boosted["level_dbfs"].as_f64().unwrap() - reported).abs() < 1e-6);
    let g = 10f64.powf(gain_db / 20.0) as f32;
    let raised: Vec<f32> = interleave(10f32.powf(-30.0 / 20.0))
        .iter()
        .map(|v| v * g)
        .collect();
    let loud = write("raised.wav", &raised);
    let reference = tag(&[], &loud);
    assert_eq!(reference["gain_db"].as_f64(), Some(0.0));
    let scores = |v: &serde_json::Value| -> Vec<f64> {
        v["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect()
    };
    assert_eq!(scores(&boosted), scores(&reference));
    assert_ne!(scores(&plain), scores(&reference));
    // The table line and the run's note say so; a file at its own level says nothing.
    let o = instrec(&[
        "tag",
        "--no-boost-quiet",
        quiet.to_str().unwrap(),
        loud.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.contains(&format!("quiet: {reported:.1} dBFS]")),
        "{table}"
    );
    assert_eq!(table.matches("quiet").count(), 1, "{table}");
    assert!(
        stderr(&o).contains("1 of 2 files are quiet"),
        "{}",
        stderr(&o)
    );
    let o = instrec(&["tag", quiet.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.contains(&format!("raised {gain_db:.1} dB]")),
        "{table}"
    );
    assert!(!stderr(&o).contains("quiet"), "{}", stderr(&o));
    // A library run records both in each line and counts them in its summary; the quiet file,
    // made again with its gain in the pipeline, scores as tagged alone.
    let out = dir.path().join("tags.jsonl");
    let o = instrec(&[
        "tag",
        quiet.to_str().unwrap(),
        loud.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(summary.contains("1 quiet, 1 of them raised"), "{summary}");
    let lines = common::json_lines(&out);
    let soft = lines
        .iter()
        .find(|l| l["path"] == quiet.to_str().unwrap())
        .unwrap();
    assert!(
        (soft["gain_db"].as_f64().unwrap() - gain_db).abs() < 1e-9,
        "{soft}"
    );
    let alone = scores(&boosted);
    let close = instrec::CLASSES
        .iter()
        .zip(&alone)
        .all(|(c, b)| (soft["scores"][c].as_f64().unwrap() - b).abs() < 1e-5);
    assert!(close, "{soft} {boosted}");
    let other = lines
        .iter()
        .find(|l| l["path"] == loud.to_str().unwrap())
        .unwrap();
    assert!(other.get("gain_db").is_none() && other["level_dbfs"].as_f64().is_some());
}

/// A library list whose instruments are broken stops `synth` with one line naming the file (and
/// for SFZ, the line) and what is wrong; nothing is rendered.
#[test]
fn broken_sample_libraries_fail_with_one_clear_line() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("a.wav"),
        wav_bytes(1, 44_100, WavFormat::I16, &[0.1; 441]),
    )
    .unwrap();
    let cases: [(&str, &str, &str, &str); 5] = [
        (
            "odd.sfz",
            "<region> sample=a.wav\n<region> sample=a.wav wobble=1\n",
            "odd.sfz:2",
            "unknown sfz opcode 'wobble'",
        ),
        (
            "gone.sfz",
            "<region> sample=gone.wav\n",
            "gone.sfz:1",
            "sample file",
        ),
        (
            "empty.sfz",
            "<group> volume=-3\n",
            "empty.sfz",
            "no region plays",
        ),
        (
            "bad.pat",
            "GF1PATCH110\0",
            "bad.pat",
            "not a readable gus patch",
        ),
        (
            "bad.sf2",
            "RIFF....sfbk",
            "bad.sf2",
            "not a readable soundfont",
        ),
    ];
    for (name, text, names, reason) in cases {
        std::fs::write(d.path().join(name), text).unwrap();
        let class = if name.ends_with(".sf2") {
            ""
        } else {
            "class = \"vio\"\n"
        };
        let list = d.path().join("list.toml");
        std::fs::write(
            &list,
            format!(
                "[[library]]\npath = \"{name}\"\n{class}licence = \"MIT\"\nsource = \"test\"\n"
            ),
        )
        .unwrap();
        let out = d.path().join(format!("corpus-{name}"));
        let o = instrec(&[
            "synth",
            "--libraries",
            list.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--train-per-class",
            "1",
        ]);
        let e = stderr(&o);
        assert!(!o.status.success(), "{name}: should fail");
        assert_eq!(
            e.trim().lines().count(),
            1,
            "{name}: one line expected: {e}"
        );
        assert!(e.contains(names), "{name}: {e}");
        assert!(e.to_lowercase().contains(reason), "{name}: {e}");
        assert!(
            !out.join("IRMAS-TrainingData").exists(),
            "{name}: nothing rendered"
        );
    }
}

/// `synth --libraries` repeated renders from the lists in order: the same corpus, manifest
/// included, as one list holding both.
#[test]
fn several_library_lists_render_as_one() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(
        dir.join("gm.sf2"),
        instrec::data::soundfont::embedded_bytes().unwrap(),
    )
    .unwrap();
    let tone: Vec<f32> = (0..22_050).map(|i| (i as f32 * 0.06).sin() * 0.3).collect();
    instrec::audio::write_wav_i16(&dir.join("a.wav"), 44_100, &[tone]).unwrap();
    std::fs::write(
        dir.join("vio.sfz"),
        "<region> sample=a.wav lokey=40 hikey=100 pitch_keycenter=69\n",
    )
    .unwrap();
    let gm = "[[library]]\npath = \"gm.sf2\"\nlicence = \"MIT\"\nsource = \"test\"\n";
    let vio = "[[library]]\npath = \"vio.sfz\"\nclass = \"vio\"\nlicence = \"CC0-1.0\"\nsource = \"test\"\n";
    std::fs::write(dir.join("gm.toml"), gm).unwrap();
    std::fs::write(dir.join("vio.toml"), vio).unwrap();
    std::fs::write(dir.join("both.toml"), format!("{gm}\n{vio}")).unwrap();
    let render = |lists: &[&str], out: &str| {
        let mut args = vec!["synth", "--train-per-class", "2", "--test-clips", "2"];
        for l in lists {
            args.push("--libraries");
            args.push(l);
        }
        let out = dir.join(out);
        let out_s = out.to_str().unwrap().to_string();
        args.extend(["--perform", "--out", &out_s]);
        let o = instrec(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        out
    };
    let (g, v, b) = (
        dir.join("gm.toml"),
        dir.join("vio.toml"),
        dir.join("both.toml"),
    );
    let two = render(&[g.to_str().unwrap(), v.to_str().unwrap()], "two");
    let one = render(&[b.to_str().unwrap()], "one");
    let records = instrec::data::synth::file_records(&one);
    assert_eq!(records.len(), 2 * 11 + 2);
    assert!(
        records.iter().any(|r| r.line_libraries == [1]),
        "{records:?}"
    );
    for r in &records {
        assert_eq!(
            std::fs::read(one.join(&r.path)).unwrap(),
            std::fs::read(two.join(&r.path)).unwrap(),
            "{}",
            r.path
        );
    }
    assert_eq!(
        std::fs::read(one.join("instrec-synth.json")).unwrap(),
        std::fs::read(two.join("instrec-synth.json")).unwrap()
    );
}
