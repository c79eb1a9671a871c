//! Weight import: torchvision `.pth` state dicts (burn-store's PyTorch reader) and the ImageNet
//! checkpoints in the torch hub cache, downloaded with a SHA-256 check when absent.

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::store::{
    ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use sha2::{Digest, Sha256};

use crate::error::{Error, FileError, Reason, Result};

use super::resnet::{ResNet, ResNetDepth};

/// Which tensors of a state dict to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Every tensor, the `fc` head included (its shape must match).
    Load,
    /// Everything but `fc`: the classifier stays freshly initialised (fine-tuning to 11 classes).
    Fresh,
}

/// torchvision keys that carry no weights burn needs.
fn ignorable(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
}

fn not_fc(path: &str, _container: &str) -> bool {
    !path.starts_with("fc.")
}

/// Loads a torchvision ResNet state dict (`torch.save(model.state_dict(), path)`) into `model`.
/// Every key must match a parameter of the same shape: a missing key, an unexpected key or a
/// shape mismatch is an error naming the key (no silent partial load).
pub fn load_resnet_pth(model: ResNet, path: &Path, head: Head) -> Result<ResNet, FileError> {
    let fail = |reason: String| FileError::at(path, reason);
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let store = torchvision_keys!(PytorchStore::from_file(path), head);
    load_checked(model, store, head, "PyTorch", fail)
}

/// torchvision's key layout on a burn store (`downsample.0/1` are instrec's `downsample.conv/bn`),
/// the head left out with [`Head::Fresh`]; the checks come after loading, in [`verify`].
macro_rules! torchvision_keys {
    ($store:expr, $head:expr) => {{
        let s = $store
            .with_key_remapping(r"downsample\.0\.", "downsample.conv.")
            .with_key_remapping(r"downsample\.1\.", "downsample.bn.")
            .validate(false)
            .allow_partial(true);
        if $head == Head::Fresh {
            s.with_predicate(not_fc)
        } else {
            s
        }
    }};
}
use torchvision_keys;

/// Loads through `store` and checks every key (see [`verify`]).
fn load_checked<S: ModuleStore>(
    mut model: ResNet,
    mut store: S,
    head: Head,
    format: &str,
    fail: impl Fn(String) -> FileError,
) -> Result<ResNet, FileError> {
    let result = model
        .load_from(&mut store)
        .map_err(|e| fail(format!("not a readable {format} state dict: {e}")))?;
    verify(&result, head).map_err(|e| fail(e.into()))?;
    Ok(model)
}

/// Loads a torchvision-layout ResNet state dict stored as safetensors (names, `[out, in]` linear
/// weights and all) into `model`, with the same key checks as [`load_resnet_pth`].
pub fn load_resnet_safetensors(
    model: ResNet,
    bytes: Vec<u8>,
    name: &str,
    head: Head,
) -> Result<ResNet, FileError> {
    let fail = |reason: String| FileError::new(name, reason);
    let store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter)
        .skip_enum_variants(true);
    load_checked(
        model,
        torchvision_keys!(store, head),
        head,
        "safetensors",
        fail,
    )
}

/// Checks that a load applied every tensor: a shape mismatch, a missing key or an unexpected key
/// is an error naming the key(s) (`fc.*` is exempt with [`Head::Fresh`]).
pub fn verify(result: &burn::store::ApplyResult, head: Head) -> Result<(), Reason> {
    if let Some(e) = result.errors.first() {
        return Err(Reason(e.to_string()));
    }
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| head == Head::Load || !k.starts_with("fc."))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing key(s) for this architecture: {}",
            missing.join(", ")
        )
        .into());
    }
    let unexpected: Vec<&str> = result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|k| !ignorable(k) && (head == Head::Load || !k.starts_with("fc.")))
        .collect();
    if !unexpected.is_empty() {
        return Err(format!(
            "unexpected key(s) for this architecture: {}",
            unexpected.join(", ")
        )
        .into());
    }
    if result.applied.is_empty() {
        return Err("no tensor could be loaded".into());
    }
    Ok(())
}

/// A torchvision ImageNet checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub file: &'static str,
    pub url: &'static str,
}

impl Checkpoint {
    /// `imagenet`: IMAGENET1K_V1 (the paper's era); `imagenet-v2`: ResNet50's IMAGENET1K_V2.
    pub fn for_arch(depth: ResNetDepth, v2: bool) -> Result<Self, Reason> {
        Ok(match (depth, v2) {
            (ResNetDepth::ResNet18, false) => Self {
                file: "resnet18-f37072fd.pth",
                url: "https://download.pytorch.org/models/resnet18-f37072fd.pth",
            },
            (ResNetDepth::ResNet50, false) => Self {
                file: "resnet50-0676ba61.pth",
                url: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
            },
            (ResNetDepth::ResNet50, true) => Self {
                file: "resnet50-11ad3fa6.pth",
                url: "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
            },
            (ResNetDepth::ResNet18, true) => {
                return Err("torchvision has no IMAGENET1K_V2 weights for resnet18".into());
            }
        })
    }

    /// The SHA-256 prefix torch hub puts in the file name (`resnet18-f37072fd.pth` → `f37072fd`).
    pub fn hash_prefix(&self) -> &'static str {
        let stem = self.file.trim_end_matches(".pth");
        stem.rsplit('-').next().unwrap_or("")
    }
}

/// PyTorch's checkpoint cache: `$TORCH_HOME/hub/checkpoints`, where `TORCH_HOME` defaults to
/// `$XDG_CACHE_HOME/torch`, then `~/.cache/torch`.
pub fn torch_hub_checkpoints() -> PathBuf {
    let home = std::env::var_os("TORCH_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("torch")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/torch")))
        .unwrap_or_else(|| PathBuf::from(".cache/torch"));
    home.join("hub").join("checkpoints")
}

/// The local path of `ckpt`, downloading it into the torch hub cache when absent. Set
/// `INSTREC_OFFLINE=1` to never touch the network.
pub fn fetch_checkpoint(ckpt: &Checkpoint, progress: &dyn Fn(u64, Option<u64>)) -> Result<PathBuf> {
    let dir = torch_hub_checkpoints();
    let path = dir.join(ckpt.file);
    if path.is_file() {
        return Ok(path);
    }
    let offline = |reason: String| Error::Offline {
        file: ckpt.file.into(),
        dir: dir.display().to_string(),
        url: ckpt.url.into(),
        reason,
    };
    if std::env::var_os("INSTREC_OFFLINE").is_some_and(|v| v != "0") {
        return Err(offline("INSTREC_OFFLINE is set".into()));
    }
    std::fs::create_dir_all(&dir).map_err(|e| offline(format!("cannot create the folder: {e}")))?;
    download_verified(ckpt.url, &path, ckpt.hash_prefix(), progress).map_err(|e| match e {
        Error::Download { reason, .. } => offline(reason),
        other => other,
    })?;
    Ok(path)
}

/// Downloads `url` to `dest` atomically, checking that the SHA-256 of the content starts with
/// `sha256_prefix` (torch hub's check); on any failure nothing is left at `dest`.
pub fn download_verified(
    url: &str,
    dest: &Path,
    sha256_prefix: &str,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<()> {
    let fail = |reason: String| Error::Download {
        url: url.into(),
        reason,
    };
    let response = ureq::get(url).call().map_err(|e| fail(e.to_string()))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut reader = response.into_body().into_reader();
    let tmp = crate::util::temp_sibling(dest);
    let result = (|| -> Result<()> {
        let mut file = std::fs::File::create(&tmp).map_err(|e| fail(e.to_string()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| fail(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut file, &buf[..n]).map_err(|e| fail(e.to_string()))?;
            done += n as u64;
            progress(done, total);
        }
        if let Some(t) = total
            && t != done
        {
            return Err(fail(format!("connection closed after {done} of {t} bytes")));
        }
        file.sync_all().map_err(|e| fail(e.to_string()))?;
        let digest = crate::util::hex(&hasher.finalize());
        if !digest.starts_with(sha256_prefix) {
            return Err(fail(format!(
                "SHA-256 mismatch: expected a hash starting with {sha256_prefix}, got {digest}"
            )));
        }
        std::fs::rename(&tmp, dest).map_err(|e| fail(e.to_string()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// Serves `body` once over HTTP on a loopback port; returns the URL.
    fn serve_once(body: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            }
        });
        format!("http://{addr}/resnet18-00000000.pth")
    }

    use crate::util::sha256_hex as sha_hex;

    #[test]
    fn download_checks_the_hash_and_writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"pretend weights".repeat(1000);
        let prefix = sha_hex(&body)[..8].to_string();
        let dest = dir.path().join("w.pth");
        let seen = std::cell::Cell::new(0u64);
        download_verified(&serve_once(body.clone()), &dest, &prefix, &|d, _| {
            seen.set(d)
        })
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        assert_eq!(seen.get(), body.len() as u64);

        let bad = dir.path().join("bad.pth");
        let err = download_verified(&serve_once(body), &bad, "00000000", &|_, _| {}).unwrap_err();
        assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
        assert!(!bad.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left"
        );
    }

    fn result(missing: &[&str], unused: &[&str]) -> burn::store::ApplyResult {
        burn::store::ApplyResult {
            applied: vec!["conv1.weight".into()],
            skipped: vec![],
            missing: missing
                .iter()
                .map(|k| (k.to_string(), String::new()))
                .collect(),
            unused: unused.iter().map(|k| k.to_string()).collect(),
            errors: vec![],
        }
    }

    #[test]
    fn verify_names_missing_and_unexpected_keys() {
        let e = verify(&result(&["layer4.1.bn2.running_var"], &[]), Head::Load).unwrap_err();
        assert!(
            e.contains("missing") && e.contains("layer4.1.bn2.running_var"),
            "{e}"
        );
        let e = verify(&result(&[], &["layer5.0.conv1.weight"]), Head::Fresh).unwrap_err();
        assert!(
            e.contains("unexpected") && e.contains("layer5.0.conv1.weight"),
            "{e}"
        );
        // torchvision's BatchNorm counters are not weights; fc is exempt when the head is fresh.
        verify(&result(&[], &["bn1.num_batches_tracked"]), Head::Load).unwrap();
        verify(&result(&["fc.weight"], &["fc.bias"]), Head::Fresh).unwrap();
        assert!(verify(&result(&["fc.weight"], &[]), Head::Load).is_err());
        let mut r = result(&[], &[]);
        r.errors.push(burn::store::ApplyError::ShapeMismatch {
            path: "fc.weight".into(),
            expected: burn::tensor::Shape::new([11, 512]),
            found: burn::tensor::Shape::new([1000, 512]),
        });
        assert!(verify(&r, Head::Load).unwrap_err().contains("fc.weight"));
    }

    #[test]
    fn checkpoint_names_carry_their_hash() {
        let c = Checkpoint::for_arch(ResNetDepth::ResNet18, false).unwrap();
        assert_eq!(c.hash_prefix(), "f37072fd");
        let c = Checkpoint::for_arch(ResNetDepth::ResNet50, true).unwrap();
        assert_eq!(c.file, "resnet50-11ad3fa6.pth");
        assert!(Checkpoint::for_arch(ResNetDepth::ResNet18, true).is_err());
    }
}
