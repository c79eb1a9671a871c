//! Real music collections: file names that are not UTF-8, symbolic-link loops, hidden files and
//! macOS resource forks, unreadable entries and formats instrec does not decode — for `tag`
//! (single runs and libraries, with resume and shards) and `dataset check`.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use common::{WavFormat, instrec, json_lines, random_bundle, stderr, wav_bytes};

/// 1 s of a tone at 22,050 Hz (long enough to tag).
fn tone(freq: f32) -> Vec<u8> {
    let x: Vec<f32> = (0..22_050)
        .map(|i| 0.3 * (i as f32 * freq * std::f32::consts::TAU / 22_050.0).sin())
        .collect();
    wav_bytes(1, 22_050, WavFormat::I16, &x)
}

/// `café.wav` with its name in Latin-1: the byte 0xE9 alone is not UTF-8.
fn latin1_name(dir: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9.wav"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A library: two plain files, a Latin-1 name, a resource fork, a hidden folder, and a link
/// back to the top.
fn messy_library(root: &Path) -> PathBuf {
    let lib = root.join("lib");
    std::fs::create_dir_all(lib.join("sub")).unwrap();
    std::fs::create_dir_all(lib.join(".hidden")).unwrap();
    std::fs::write(lib.join("a.wav"), tone(220.0)).unwrap();
    std::fs::write(lib.join("sub/b.wav"), tone(440.0)).unwrap();
    std::fs::write(lib.join(".hidden/c.wav"), tone(330.0)).unwrap();
    std::fs::write(lib.join("._a.wav"), b"\x00\x05\x16\x07AppleDouble").unwrap();
    std::fs::write(latin1_name(&lib), tone(550.0)).unwrap();
    std::os::unix::fs::symlink("..", lib.join("sub/loop")).unwrap();
    lib
}

/// The path of a JSON line: its text, or its raw bytes from base64.
fn line_path(v: &serde_json::Value) -> Vec<u8> {
    match &v["path"] {
        serde_json::Value::String(t) => t.as_bytes().to_vec(),
        o => base64::engine::general_purpose::STANDARD
            .decode(o["bytes"].as_str().expect("bytes"))
            .unwrap(),
    }
}

#[test]
fn a_library_run_tags_a_non_utf8_name_skips_hidden_files_and_does_not_walk_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let lib = messy_library(dir.path());
    let bundle = random_bundle(&dir.path().join("bundle"));
    let out = dir.path().join("tags.jsonl");
    let o = instrec(&["tag", s(&lib), "--model", s(&bundle), "--out", s(&out)]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.contains("skipped 2 hidden") && e.contains("1 symbolic link"),
        "{e}"
    );
    let lines = json_lines(&out);
    let mut paths: Vec<Vec<u8>> = lines.iter().map(line_path).collect();
    paths.sort();
    let base = {
        use std::os::unix::ffi::OsStrExt;
        lib.as_os_str().as_bytes().to_vec()
    };
    let mut want: Vec<Vec<u8>> = [&b"/a.wav"[..], b"/caf\xe9.wav", b"/sub/b.wav"]
        .iter()
        .map(|n| [&base[..], n].concat())
        .collect();
    want.sort();
    assert_eq!(paths, want);
    assert!(
        lines
            .iter()
            .all(|l| l["error"].is_null() && l["scores"].is_object())
    );
    // The Latin-1 name is written as its bytes, losslessly.
    assert!(
        lines.iter().any(|l| l["path"]["bytes"].is_string()),
        "{lines:?}"
    );
    // A resume finds every file, the Latin-1 one included, and tags none again.
    let o = instrec(&[
        "tag",
        s(&lib),
        "--model",
        s(&bundle),
        "--out",
        s(&out),
        "--resume",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 files tagged"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(json_lines(&out).len(), 3);
}

#[test]
fn csv_and_shards_handle_a_non_utf8_name() {
    let dir = tempfile::tempdir().unwrap();
    let lib = messy_library(dir.path());
    let bundle = random_bundle(&dir.path().join("bundle"));
    // Two shards together hold every file once, the Latin-1 one included.
    let mut rows = Vec::new();
    for k in ["1/2", "2/2"] {
        let out = dir.path().join(format!("part{}.csv", &k[..1]));
        let run = |resume: bool| {
            let mut args = vec!["tag", s(&lib), "--model", s(&bundle), "--out", s(&out)];
            args.extend(["--shard", k]);
            if resume {
                args.push("--resume");
            }
            instrec(&args)
        };
        let o = run(false);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = run(true);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("0 files tagged"),
            "a resumed shard tags nothing again: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("path,path_base64,size,"));
        rows.extend(lines.map(str::to_owned));
    }
    assert_eq!(rows.len(), 3, "{rows:?}");
    let latin = rows
        .iter()
        .find(|r| r.contains('\u{fffd}'))
        .expect("the lossy name");
    let raw = latin.split(',').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap();
    assert!(bytes.ends_with(b"/caf\xe9.wav"), "{latin}");
    assert!(
        rows.iter()
            .filter(|r| !r.contains('\u{fffd}'))
            .all(|r| r.split(',').nth(1) == Some(""))
    );
}

#[test]
fn single_runs_report_a_non_utf8_name_in_json_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let lib = messy_library(dir.path());
    let bundle = random_bundle(&dir.path().join("bundle"));
    let latin = latin1_name(&lib);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_instrec"))
        .arg("tag")
        .arg(&latin)
        .args(["--model", s(&bundle), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let b = v["files"][0]["path"]["bytes"].as_str().unwrap();
    let raw = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
    assert!(raw.ends_with(b"/caf\xe9.wav"));
}

#[test]
fn follow_walks_links_reports_a_loop_once_and_hidden_includes_forks() {
    let dir = tempfile::tempdir().unwrap();
    let lib = messy_library(dir.path());
    // A link to a file elsewhere: taken only with --follow.
    let outside = dir.path().join("outside.wav");
    std::fs::write(&outside, tone(660.0)).unwrap();
    std::os::unix::fs::symlink(&outside, lib.join("linked.wav")).unwrap();
    let bundle = random_bundle(&dir.path().join("bundle"));
    let o = instrec(&["tag", s(&lib), "--model", s(&bundle), "--follow"]);
    let (out, e) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert_eq!(e.matches("symbolic link loop").count(), 1, "{e}");
    assert!(e.contains("sub/loop"), "{e}");
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("linked.wav"), "{out}");
    // --hidden takes the hidden folder's file and the fork, which is not audio: a failure.
    let o = instrec(&["tag", s(&lib), "--model", s(&bundle), "--hidden"]);
    let (out, e) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(out.contains(".hidden/c.wav"), "{out}");
    assert!(e.contains("._a.wav: not a recognised audio file"), "{e}");
    // a, café, sub/b, .hidden/c and the fork; the link to a file is not followed here.
    assert!(e.contains("1 of 5 file(s) failed"), "{e}");
}

#[test]
fn unreadable_entries_and_unsupported_formats_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("a.wav"), tone(220.0)).unwrap();
    std::fs::write(lib.join("song.opus"), b"OggS not really").unwrap();
    std::fs::write(lib.join("song.wma"), b"0&\xb2u not really").unwrap();
    // A link to nothing and a link to itself: neither can be read, even by root.
    std::os::unix::fs::symlink(dir.path().join("gone"), lib.join("dangling.wav")).unwrap();
    std::os::unix::fs::symlink("self", lib.join("self")).unwrap();
    let bundle = random_bundle(&dir.path().join("bundle"));
    let o = instrec(&["tag", s(&lib), "--model", s(&bundle), "--follow"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("song.opus: format not supported: opus"), "{e}");
    assert!(e.contains("song.wma: format not supported: wma"), "{e}");
    assert!(e.contains("dangling.wav: "), "{e}");
    assert!(e.contains("lib/self: "), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("a.wav"),
        "the readable file is still tagged"
    );
    // A library run counts the entries the walk could not read beside the files that failed.
    let log = dir.path().join("tags.jsonl");
    let o = instrec(&[
        "tag",
        s(&lib),
        "--model",
        s(&bundle),
        "--follow",
        "--out",
        s(&log),
    ]);
    let (out, e) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(out.contains("2 failed; 2 more could not be read"), "{out}");
    assert!(e.contains("4 of 5 file(s) failed"), "{e}");
}

#[test]
fn dataset_check_does_not_walk_a_link_loop_or_count_hidden_clips() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let part = root.join("IRMAS-TestingData-Part1/Part1");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("clip-1.wav"), tone(220.0)).unwrap();
    std::fs::write(part.join("clip-1.txt"), "pia\n").unwrap();
    std::fs::write(part.join("._clip-1.wav"), b"fork").unwrap();
    std::os::unix::fs::symlink("..", part.join("loop")).unwrap();
    let o = instrec(&["dataset", "check", s(root), "--follow"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("symbolic link loop"), "{out}");
    assert!(!out.contains("loop/Part1"), "the loop is not walked: {out}");
    // Without --follow the link is not taken, and that is said.
    let o = instrec(&["dataset", "check", s(root)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("loop/"), "{out}");
    assert!(out.contains("1 symbolic link(s) not followed"), "{out}");
    assert!(!out.contains("._clip-1"), "{out}");
}
