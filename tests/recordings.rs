//! `instrec evaluate --recordings`: solos named CLASS__NAME and seeded mixtures of them.

mod common;

use std::path::Path;

use common::{WavFormat, instrec, random_bundle, stderr, wav_bytes};

fn tone(freq: f32, rate: u32, seconds: f32) -> Vec<u8> {
    tone_at(0.3, freq, rate, seconds)
}

fn tone_at(amplitude: f32, freq: f32, rate: u32, seconds: f32) -> Vec<u8> {
    let n = (rate as f32 * seconds) as usize;
    let x: Vec<f32> = (0..n)
        .map(|i| amplitude * (i as f32 * freq * std::f32::consts::TAU / rate as f32).sin())
        .collect();
    wav_bytes(1, rate, WavFormat::F32, &x)
}

fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// `instrec evaluate --model BUNDLE --recordings REC --out OUT` and `more` flags.
fn evaluate(bundle: &Path, rec: &Path, out: &Path, more: &[&str]) -> std::process::Output {
    let mut args = vec![
        "evaluate",
        "--model",
        bundle.to_str().unwrap(),
        "--recordings",
        rec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(more);
    instrec(&args)
}

#[test]
fn recordings_give_top1_per_class_and_reproducible_mixture_scores() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    // Three classes at two sample rates; a file without a class prefix is left out.
    std::fs::write(rec.join("pia__a.wav"), tone(262.0, 44_100, 2.0)).unwrap();
    std::fs::write(rec.join("pia__b.wav"), tone(330.0, 22_050, 1.5)).unwrap();
    std::fs::write(rec.join("vio__c.wav"), tone(660.0, 16_000, 1.2)).unwrap();
    std::fs::write(rec.join("flu__d.wav"), tone(880.0, 48_000, 1.0)).unwrap();
    std::fs::write(rec.join("notes.wav"), tone(100.0, 22_050, 1.0)).unwrap();
    let bundle = random_bundle(&dir.path().join("bundle"));
    let run = |out: &str, seed: &str| {
        let out = dir.path().join(out);
        let o = evaluate(&bundle, &rec, &out, &["--mixtures", "25", "--seed", seed]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::read_to_string(out.join("report.json")).unwrap()
    };
    let (a, b) = (run("a", "1"), run("b", "1"));
    assert_eq!(a, b, "the same seed gives the same report");
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["solos"].as_array().unwrap().len(), 4);
    let per_class: Vec<(String, u64)> = v["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap().to_string(),
                c["of"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_class,
        [("flu".into(), 1), ("pia".into(), 2), ("vio".into(), 1)]
    );
    assert_eq!(v["mixtures"], 25);
    let lrap = v["mixture_lrap"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&lrap), "{lrap}");
    let labels = v["mixture_labels"].as_f64().unwrap();
    assert!((2.0..=3.0).contains(&labels), "{labels}");
    // Per class: the labels found and missed add up to every label, and give the micro recall.
    let counts = v["mixture_per_class"].as_array().unwrap();
    assert_eq!(counts.len(), 11);
    let sum = |k: &str| counts.iter().map(|c| c[k].as_u64().unwrap()).sum::<u64>() as f64;
    assert_eq!(sum("tp") + sum("fn"), (labels * 25.0).round());
    let recall = v["mixture_micro"]["recall"].as_f64().unwrap();
    assert!((recall - sum("tp") / (sum("tp") + sum("fn"))).abs() < 1e-9);
    // The oracle is labelled as swept on the mixtures: a grid threshold and an F1.
    let (t, f1) = (
        v["mixture_oracle_threshold"].as_f64().unwrap(),
        v["mixture_oracle_f1"].as_f64().unwrap(),
    );
    assert!(
        (0.01..=0.99).contains(&t) && (0.0..=1.0).contains(&f1),
        "{t} {f1}"
    );
    // Another seed draws other mixtures.
    let c = run("c", "2");
    assert_ne!(a, c);
}

#[test]
fn a_folder_without_named_recordings_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("song.wav"), tone(440.0, 22_050, 1.0)).unwrap();
    let bundle = random_bundle(&dir.path().join("bundle"));
    let o = evaluate(&bundle, dir.path(), &dir.path().join("out"), &[]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("no recordings named CLASS__NAME"), "{e}");
}

#[cfg(unix)]
#[test]
fn linked_recordings_are_named_in_the_error_and_read_with_follow() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::create_dir_all(&rec).unwrap();
    for (name, freq) in [("pia__a.wav", 262.0), ("vio__b.wav", 660.0)] {
        std::fs::write(store.join(name), tone(freq, 22_050, 1.0)).unwrap();
        std::os::unix::fs::symlink(store.join(name), rec.join(name)).unwrap();
    }
    // A link back to the folder: walked once with --follow, not a reason to stop.
    std::os::unix::fs::symlink(&rec, rec.join("loop")).unwrap();
    let bundle = random_bundle(&dir.path().join("bundle"));
    let out = dir.path().join("out");
    let run = |follow: bool| {
        let flags: &[&str] = if follow { &["--follow"] } else { &[] };
        evaluate(&bundle, &rec, &out, &[&["--mixtures", "5"], flags].concat())
    };
    let o = run(false);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("skipped 3 symbolic link(s) (--follow follows them)"),
        "{e}"
    );
    let o = run(true);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["solos"].as_array().unwrap().len(), 2);
}

#[test]
fn quiet_recordings_are_raised_as_tag_raises_them_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    std::fs::write(rec.join("vio__loud.wav"), tone(660.0, 22_050, 1.0)).unwrap();
    // A sine of amplitude 0.003: about −53 dBFS, far below the quiet line.
    std::fs::write(
        rec.join("pia__quiet.wav"),
        tone_at(0.003, 262.0, 22_050, 1.0),
    )
    .unwrap();
    let bundle = random_bundle(&dir.path().join("bundle"));
    // The quiet solo's class scores are those `tag` gives the file, raised or not.
    let tagged = |flags: &[&str]| -> Vec<f64> {
        let file = rec.join("pia__quiet.wav");
        let mut args = vec![
            "tag",
            "--model",
            bundle.to_str().unwrap(),
            "--format",
            "json",
        ];
        args.extend(flags);
        args.push(file.to_str().unwrap());
        let o = instrec(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        numbers(&v["files"][0]["scores"])
    };
    let raised = |flags: &[&str], out: &str| {
        let out = dir.path().join(out);
        let o = evaluate(&bundle, &rec, &out, &[&["--mixtures", "3"], flags].concat());
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        let quiet = v["solos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["class"] == "pia")
            .unwrap();
        let (scored, by_tag) = (numbers(&quiet["scores"]), tagged(flags));
        assert_eq!(scored.len(), by_tag.len());
        let close = scored
            .iter()
            .zip(&by_tag)
            .all(|(a, b)| (a - b).abs() < 1e-4);
        assert!(close, "{flags:?}: {scored:?} against tag's {by_tag:?}");
        (v["boost_quiet"].as_bool(), v["solos_raised"].as_u64())
    };
    assert_eq!(raised(&[], "a"), (Some(true), Some(1)));
    assert_eq!(raised(&["--no-boost-quiet"], "b"), (Some(false), Some(0)));
}
