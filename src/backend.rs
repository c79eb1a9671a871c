//! Backend selection. burn picks the backend from the device, so the model and training code is
//! the same for every backend; this module only maps a name to a device.

use burn::tensor::Device;

/// A compute backend instrec can run on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum Backend {
    /// burn's pure-Rust CPU backend (always available).
    Flex,
    /// LibTorch on the CPU (cargo feature `tch`).
    #[value(alias = "libtorch")]
    Tch,
    /// CUDA GPU 0 (cargo feature `cuda`).
    Cuda,
}

crate::util::display_as_value!(Backend);

impl Backend {
    /// The backends compiled into this binary.
    pub fn available() -> Vec<Backend> {
        let mut v = vec![Self::Flex];
        if cfg!(feature = "tch") {
            v.push(Self::Tch);
        }
        if cfg!(feature = "cuda") {
            v.push(Self::Cuda);
        }
        v
    }

    /// The inference device of this backend (call `.autodiff()` on it to train), or an error
    /// saying which cargo feature the binary lacks.
    pub fn device(self) -> Result<Device, String> {
        match self {
            Self::Flex => Ok(Device::flex()),
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            Self::Tch => Ok(Device::libtorch()),
            #[cfg(feature = "cuda")]
            Self::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(format!(
                "backend '{}' is not compiled into this binary: rebuild with `cargo build --release --features {}`",
                other, other
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_always_there_and_missing_features_are_named() {
        assert!(Backend::Flex.device().is_ok());
        if !cfg!(feature = "cuda") {
            let e = Backend::Cuda.device().unwrap_err();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
