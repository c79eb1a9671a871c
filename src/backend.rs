//! Backend selection. burn picks the backend from the device, so the model and training code is
//! the same for every backend; this module only maps a name to a device.

use burn::tensor::Device;

use crate::error::Error;

/// A compute backend instrec can run on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum Backend {
    /// burn's pure-Rust CPU backend (always available).
    Flex,
    /// LibTorch, on the CPU or a CUDA GPU with --device cuda:N (cargo feature `tch`).
    #[value(alias = "libtorch")]
    Tch,
    /// burn's CubeCL CUDA backend (cargo feature `cuda`; its build downloads LLVM).
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

    /// The inference device of this backend on its default device (the CPU; GPU 0 for `cuda`).
    /// Call `.autodiff()` on it to train.
    pub fn device(self) -> Result<Device, Error> {
        let default = match self {
            Self::Cuda => DeviceSpec::Cuda(0),
            _ => DeviceSpec::Cpu,
        };
        self.device_on(default)
    }

    /// [`Backend::device_on`] `spec`, or [`Backend::device`] without one.
    pub fn device_for(self, spec: Option<DeviceSpec>) -> Result<Device, Error> {
        match spec {
            Some(d) => self.device_on(d),
            None => self.device(),
        }
    }

    /// The inference device of this backend on `spec`, or an error saying why there is none:
    /// a cargo feature the binary lacks, a backend that has no such device, or a GPU index that
    /// LibTorch does not see.
    pub fn device_on(self, spec: DeviceSpec) -> Result<Device, Error> {
        match (self, spec) {
            (Self::Flex, DeviceSpec::Cpu) => Ok(Device::flex()),
            (Self::Flex, DeviceSpec::Cuda(_)) => Err(Error::Device(format!(
                "--device {spec}: the flex backend runs on the CPU only; for a GPU use --backend tch --device {spec} (a build with `--features tch`)"
            ))),
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            (Self::Tch, DeviceSpec::Cpu) => Ok(Device::libtorch()),
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            (Self::Tch, DeviceSpec::Cuda(n)) => {
                use burn::backend::Backend as _;
                // Type id 0 is CUDA for LibTorch; 0 devices: no GPU, no driver or a CPU-only torch.
                let count = burn::backend::LibTorch::device_count(0);
                if n < count {
                    Ok(Device::libtorch_cuda(n))
                } else {
                    Err(Error::Device(format!(
                        "--device {spec}: LibTorch sees {count} CUDA device(s){}",
                        if count == 0 {
                            " (no GPU, no CUDA driver, or a CPU-only torch build)"
                        } else {
                            ""
                        }
                    )))
                }
            }
            #[cfg(feature = "cuda")]
            (Self::Cuda, DeviceSpec::Cuda(n)) => Ok(Device::cuda(n)),
            #[cfg(feature = "cuda")]
            (Self::Cuda, DeviceSpec::Cpu) => Err(Error::Device(
                "the cuda backend needs a GPU: --device cuda:N (or --backend flex/tch for the CPU)"
                    .into(),
            )),
            #[allow(unreachable_patterns)]
            (other, _) => Err(Error::Device(format!(
                "backend '{}' is not compiled into this binary: rebuild with `cargo build --release --features {}`",
                other, other
            ))),
        }
    }
}

/// The arithmetic of a training step: fp32, or bf16 as PyTorch's autocast does it (on LibTorch):
/// convolutions in bf16, weights, BatchNorm, loss and optimizer in fp32.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

crate::util::display_as_value!(Precision);

impl Precision {
    /// `--precision` for `backend`: bf16 only where LibTorch trains (its fused blocks cast).
    pub fn check(self, backend: Backend) -> Result<(), crate::error::SettingError> {
        if self == Self::Bf16 && backend != Backend::Tch {
            return Err(crate::error::SettingError::new(
                "--precision",
                format!("be fp32 with --backend {backend}: bf16 needs --backend tch (LibTorch)"),
            ));
        }
        Ok(())
    }

    pub fn is_fp32(&self) -> bool {
        *self == Self::Fp32
    }
}

/// Where a backend runs: `cpu`, or `cuda:N` (`cuda` is `cuda:0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("'{s}' is not a device: expected cpu, cuda or cuda:N")),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse_and_flex_refuses_a_gpu() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(3)));
        for bad in ["", "cuda:", "cuda:x", "gpu0", "CUDA:1"] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.contains("cpu, cuda or cuda:N"), "{bad}: {e}");
        }
        let e = Backend::Flex
            .device_on(DeviceSpec::Cuda(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--backend tch --device cuda:1"), "{e}");
        if !cfg!(feature = "tch") {
            let e = Backend::Tch
                .device_on(DeviceSpec::Cuda(0))
                .unwrap_err()
                .to_string();
            assert!(e.contains("--features tch"), "{e}");
        }
    }

    #[test]
    fn flex_is_always_there_and_missing_features_are_named() {
        assert!(Backend::Flex.device().is_ok());
        if !cfg!(feature = "cuda") {
            let e = Backend::Cuda.device().unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
