//! The crate's one error type. Every message names what is at fault: the file ([`FileError`]),
//! the setting ([`SettingError`]), the URL or the device.

use std::path::Path;

/// Why a file could not be used, naming it: the one shape (`{path}: {reason}`) of the errors
/// about files in every layer (audio, bundles, weights, `.npy`, configs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FileError {
    pub path: String,
    pub reason: String,
}

impl FileError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn at(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::new(path.display().to_string(), reason.to_string())
    }
}

/// Why some bytes or text cannot be used, before the caller names the file they came from: the
/// reason half of a [`FileError`] (`FileError::at(path, reason)` completes it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Reason(pub String);

impl From<String> for Reason {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// The reason reads as text.
impl std::ops::Deref for Reason {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> Self {
        r.0
    }
}

impl From<&str> for Reason {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// A setting outside its range, wherever it was read (a flag, an experiment TOML, a run's
/// `train.json`, a bundle's `config.json`): `{what} must {rule}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must {rule}")]
pub struct SettingError {
    /// The setting's name.
    pub what: String,
    /// What it must be, and what it was: `be between 1 and 43, got 0`.
    pub rule: String,
}

impl SettingError {
    pub fn new(what: &str, rule: impl Into<String>) -> Self {
        Self {
            what: what.to_string(),
            rule: rule.into(),
        }
    }
}

/// What stops a command of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file that cannot be read, written or used.
    #[error(transparent)]
    File(#[from] FileError),
    /// A setting out of its range.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// ImageNet weights that are neither cached nor downloadable.
    #[error(
        "{file} is not in {dir} and could not be downloaded from {url} ({reason}); download it on a machine with internet access and put it in that folder (or set TORCH_HOME)"
    )]
    Offline {
        file: String,
        dir: String,
        url: String,
        reason: String,
    },
    /// A download that failed.
    #[error("{url}: {reason}")]
    Download { url: String, reason: String },
    /// A backend or device that this binary or machine does not have.
    #[error("{0}")]
    Device(String),
    /// An I/O error whose message already starts with its path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Writing our own types as JSON (a bug if it ever fails).
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A data set that cannot be used, a run that cannot go on.
    #[error("{0}")]
    Invalid(String),
}

/// A result of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with [`Error::Invalid`] and a formatted message.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use fail;
