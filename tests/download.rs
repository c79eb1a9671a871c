//! `instrec dataset download`: against a small HTTP server on 127.0.0.1 that this file starts,
//! serving zips made here — whole, cut off halfway, with a corrupt byte, slowly (to be killed).
//! Nothing here reaches outside the machine.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{WavFormat, instrec, stderr, wav_bytes};
use instrec::data::Irmas;
use instrec::data::download::{Manifest, Silent, download, md5_file};

/// How the server misbehaves.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// The first response for each file stops after half its body.
    cut_first: bool,
    /// Sleep this long between 16-KB pieces.
    throttle: Option<Duration>,
}

/// A loopback HTTP/1.1 server for `files` (name → bytes) with Range support. It serves at most
/// 64 connections and stops by itself after 120 s.
struct Server {
    base: String,
    /// Body bytes written to clients.
    served: Arc<AtomicU64>,
    /// Requests per file name.
    requests: Arc<Mutex<HashMap<String, usize>>>,
}

fn serve(files: HashMap<String, Vec<u8>>, faults: Faults) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(Mutex::new(HashMap::new()));
    let (s, r) = (served.clone(), requests.clone());
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let connections = AtomicUsize::new(0);
        while Instant::now() < deadline && connections.load(Ordering::Relaxed) < 64 {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            connections.fetch_add(1, Ordering::Relaxed);
            stream.set_nonblocking(false).unwrap();
            stream
                .set_write_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let (files, s, r) = (files.clone(), s.clone(), r.clone());
            std::thread::spawn(move || answer(stream, &files, faults, &s, &r));
        }
    });
    Server {
        base,
        served,
        requests,
    }
}

fn answer(
    mut stream: std::net::TcpStream,
    files: &HashMap<String, Vec<u8>>,
    faults: Faults,
    served: &AtomicU64,
    requests: &Mutex<HashMap<String, usize>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let name = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let mut from = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            from = v.trim().trim_end_matches('-').parse().unwrap_or(0);
        }
    }
    let nth = {
        let mut r = requests.lock().unwrap();
        let n = r.entry(name.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let Some(body) = files.get(&name) else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    if from >= body.len() && from > 0 {
        let _ =
            stream.write_all(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    let rest = &body[from..];
    let head = if from > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
            rest.len(),
            body.len() - 1,
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            rest.len()
        )
    };
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let send = if faults.cut_first && nth == 1 {
        &rest[..rest.len() / 2]
    } else {
        rest
    };
    for piece in send.chunks(16 * 1024) {
        if stream.write_all(piece).is_err() {
            return;
        }
        served.fetch_add(piece.len() as u64, Ordering::Relaxed);
        if let Some(t) = faults.throttle {
            std::thread::sleep(t);
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A zip of an IRMAS testing part with `clips` labelled clips (noise, so it does not compress
/// away).
fn testing_zip(part: usize, clips: usize) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let dir = format!("IRMAS-TestingData-Part{part}/Part{part}");
    z.add_directory(format!("IRMAS-TestingData-Part{part}/"), opts)
        .unwrap();
    let mut seed = 12345u32 + part as u32;
    for c in 0..clips {
        let x: Vec<f32> = (0..22_050)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 * 0.2 - 0.1
            })
            .collect();
        z.start_file(format!("{dir}/clip-{c}.wav"), opts).unwrap();
        z.write_all(&wav_bytes(1, 22_050, WavFormat::I16, &x))
            .unwrap();
        z.start_file(format!("{dir}/clip-{c}.txt"), opts).unwrap();
        z.write_all(b"pia\t\n").unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn md5(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    md5_file(&p).unwrap()
}

/// A manifest of `files` (name, MD5 of `good`) served from `base`.
fn manifest_toml(base: &str, files: &[(&str, &[u8])]) -> String {
    let mut t = "name = \"test\"\n".to_string();
    for (name, good) in files {
        t.push_str(&format!(
            "[[files]]\nname = \"{name}\"\nurl = \"{base}/{name}\"\nmd5 = \"{}\"\n",
            md5(good)
        ));
    }
    t
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Serves `served` as `p1.zip` and writes a manifest in `dir` that expects the MD5 of
/// `expected`; returns the server, the manifest and the target folder for
/// `instrec dataset download MANIFEST --to TARGET`.
fn one_file_setup(
    dir: &Path,
    served: Vec<u8>,
    expected: &[u8],
    faults: Faults,
) -> (Server, PathBuf, PathBuf) {
    let server = serve(HashMap::from([("p1.zip".to_string(), served)]), faults);
    let manifest = dir.join("m.toml");
    std::fs::write(
        &manifest,
        manifest_toml(&server.base, &[("p1.zip", expected)]),
    )
    .unwrap();
    (server, manifest, dir.join("data"))
}

#[test]
fn a_cut_connection_is_resumed_and_the_zips_unpack_into_the_irmas_layout() {
    let (a, b) = (testing_zip(1, 3), testing_zip(2, 2));
    let files = HashMap::from([
        ("p1.zip".to_string(), a.clone()),
        ("p2.zip".to_string(), b.clone()),
    ]);
    let server = serve(
        files,
        Faults {
            cut_first: true,
            ..Default::default()
        },
    );
    let m = Manifest::parse(
        &manifest_toml(&server.base, &[("p1.zip", &a), ("p2.zip", &b)]),
        "test",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = download(&m, dir.path(), &Silent).unwrap();
    // Each file came in two requests: half, then the rest by range; no byte twice.
    assert_eq!(
        server.served.load(Ordering::Relaxed),
        (a.len() + b.len()) as u64
    );
    assert_eq!(server.requests.lock().unwrap()["p1.zip"], 2);
    assert_eq!(out[0].fetched, a.len() as u64);
    assert!(out.iter().all(|o| o.unpacked && !o.was_complete));
    let set = Irmas::read(dir.path()).unwrap();
    assert_eq!(set.test.len(), 5, "{:?}", set.issues);
    assert!(set.issues.is_empty(), "{:?}", set.issues);
    assert!(!dir.path().join(".unpack-p1.zip.tmp").exists());
    // A second run fetches nothing and unpacks nothing, even when the marker of the MD5 check
    // was lost (a run killed between the rename and the marker): the file is checked again.
    std::fs::remove_file(dir.path().join("downloads/p1.zip.md5-ok")).unwrap();
    let again = download(&m, dir.path(), &Silent).unwrap();
    assert!(
        again
            .iter()
            .all(|o| o.was_complete && !o.unpacked && o.fetched == 0)
    );
    assert_eq!(server.requests.lock().unwrap()["p1.zip"], 2);
}

#[test]
fn a_partial_file_left_by_a_killed_run_is_continued_by_range() {
    let a = testing_zip(1, 4);
    let server = serve(
        HashMap::from([("p1.zip".to_string(), a.clone())]),
        Faults::default(),
    );
    let m = Manifest::parse(&manifest_toml(&server.base, &[("p1.zip", &a)]), "test").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let kept = a.len() * 2 / 5;
    std::fs::write(downloads.join("p1.zip.part"), &a[..kept]).unwrap();
    let out = download(&m, dir.path(), &Silent).unwrap();
    assert_eq!(out[0].resumed_from, kept as u64);
    assert_eq!(out[0].fetched, (a.len() - kept) as u64);
    assert_eq!(
        server.served.load(Ordering::Relaxed),
        (a.len() - kept) as u64
    );
    assert_eq!(md5_file(&downloads.join("p1.zip")).unwrap(), md5(&a));
}

#[test]
fn a_corrupt_byte_is_refused_kept_aside_and_never_unpacked() {
    let a = testing_zip(1, 2);
    let mut bad = a.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    let dir = tempfile::tempdir().unwrap();
    let (_server, manifest, to) = one_file_setup(dir.path(), bad, &a, Faults::default());
    let o = instrec(&["dataset", "download", s(&manifest), "--to", s(&to)]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("p1.zip.corrupt") && e.contains("MD5"), "{e}");
    assert!(e.contains(&format!("expected {}", md5(&a))), "{e}");
    assert!(to.join("downloads/p1.zip.corrupt").is_file());
    assert!(!to.join("downloads/p1.zip").exists());
    assert!(!to.join("IRMAS-TestingData-Part1").exists());
}

#[test]
fn no_network_and_a_truncated_zip_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let o = instrec(&[
        "dataset",
        "download",
        "irmas",
        "--to",
        s(&dir.path().join("irmas")),
        "--mirror",
        "http://127.0.0.1:1",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("http://127.0.0.1:1/IRMAS-TrainingData.zip") && e.contains("no network?"),
        "{e}"
    );
    // A zip cut short whose MD5 is the manifest's: the checksum passes, the unpack refuses it.
    let a = testing_zip(1, 2);
    let cut = a[..a.len() - 200].to_vec();
    let (_server, manifest, to) = one_file_setup(dir.path(), cut.clone(), &cut, Faults::default());
    let o = instrec(&["dataset", "download", s(&manifest), "--to", s(&to)]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("p1.zip: not a complete zip archive"), "{e}");
    assert!(!to.join("IRMAS-TestingData-Part1").exists());
}

#[test]
fn a_download_killed_halfway_resumes_and_ends_with_the_right_md5() {
    let a = testing_zip(1, 24);
    let dir = tempfile::tempdir().unwrap();
    let throttled = Faults {
        throttle: Some(Duration::from_millis(20)),
        ..Default::default()
    };
    let (server, manifest, to) = one_file_setup(dir.path(), a.clone(), &a, throttled);
    let part = to.join("downloads/p1.zip.part");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_instrec"))
        .args(["dataset", "download", s(&manifest), "--to", s(&to)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < (a.len() / 3) as u64 {
        assert!(Instant::now() < deadline, "the download did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < a.len() as u64, "{kept}");
    // The killed connection's server thread may still count a piece it wrote into the socket.
    let mut before = server.served.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = server.served.load(Ordering::Relaxed);
        if now == before {
            break;
        }
        before = now;
    }
    let o = instrec(&["dataset", "download", s(&manifest), "--to", s(&to)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.contains("MD5 matches"), "{out}");
    assert!(
        out.contains(&format!("{kept} resumed from an earlier run")),
        "{out}"
    );
    let after = server.served.load(Ordering::Relaxed) - before;
    println!(
        "file {} bytes; {kept} kept after kill -9; {after} fetched on resume; {} served in all",
        a.len(),
        server.served.load(Ordering::Relaxed)
    );
    assert_eq!(
        after,
        a.len() as u64 - kept,
        "only the rest is fetched again"
    );
    assert_eq!(md5_file(&to.join("downloads/p1.zip")).unwrap(), md5(&a));
    let mut rest = String::new();
    std::fs::File::open(to.join("IRMAS-TestingData-Part1/Part1/clip-0.txt"))
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    assert_eq!(rest, "pia\t\n");
}
