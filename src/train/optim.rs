//! The optimizer a run steps: burn's [`ModuleOptimizer`] (Adam or AdamW with PyTorch's ε; flex
//! tensors in one pass), and on LibTorch the queue of fused steps that it applies after burn has
//! visited every parameter.

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, OptimizerRecord};

use crate::error::Result;

use super::config::OptimizerKind;
use super::one_pass_adam::Hyper;

/// burn's Adam with PyTorch's β and ε (burn's default ε is 1e-5), those [`Hyper`] holds for the
/// backend kernels, and L2 `weight_decay` (PyTorch's `Adam(weight_decay=...)`).
pub(super) fn adam_config(weight_decay: f32) -> AdamConfig {
    let h = Hyper::new(weight_decay, false);
    AdamConfig::new()
        .with_beta_1(h.beta_1)
        .with_beta_2(h.beta_2)
        .with_epsilon(h.epsilon)
        .with_weight_decay(Some(WeightDecayConfig::new(weight_decay)))
}

/// burn's AdamW with the same β and ε and decoupled `weight_decay`.
pub(super) fn adamw_config(weight_decay: f32) -> AdamWConfig {
    let h = Hyper::new(weight_decay, true);
    AdamWConfig::new()
        .with_beta_1(h.beta_1)
        .with_beta_2(h.beta_2)
        .with_epsilon(h.epsilon)
        .with_weight_decay(weight_decay)
}

/// Adam or AdamW, with its state; [`RunOptimizer::step`] is a whole optimizer step.
#[derive(Clone)]
pub struct RunOptimizer {
    inner: ModuleOptimizer,
    /// LibTorch's fused steps waiting for the end of burn's pass (feature `tch`).
    #[cfg(feature = "tch")]
    queue: Option<super::fused_adam::Queue>,
}

impl RunOptimizer {
    /// Adam or AdamW with PyTorch's ε (burn's default is 1e-5) and `weight_decay`. With `fused`,
    /// flex tensors step in one pass (`train::one_pass_adam`, bit-identical to burn's), and in a
    /// build with feature `tch` LibTorch's fused kernels take the steps of LibTorch tensors
    /// (`train::fused_adam`); both keep burn's optimizer state, so checkpoints are the same
    /// either way. Without it, burn's optimizer takes every step.
    pub fn new(kind: OptimizerKind, weight_decay: f32, fused: bool) -> Self {
        let decoupled = kind == OptimizerKind::AdamW;
        #[cfg(feature = "tch")]
        if fused {
            let (inner, queue) = super::fused_adam::adam(weight_decay, decoupled);
            return Self {
                inner,
                queue: Some(queue),
            };
        }
        let inner = if fused {
            super::one_pass_adam::one_pass(weight_decay, decoupled)
        } else if decoupled {
            adamw_config(weight_decay).init()
        } else {
            adam_config(weight_decay).init()
        };
        Self {
            inner,
            #[cfg(feature = "tch")]
            queue: None,
        }
    }

    /// `module` after one step with `grads` at `lr`. An error only where LibTorch refused its
    /// fused step (the parameters are then as burn's pass left them: not stepped).
    pub fn step<M: Module>(
        &mut self,
        lr: impl Into<ModuleLearningRate>,
        module: M,
        grads: GradientsParams,
    ) -> Result<M> {
        let module = self.inner.step(lr, module, grads);
        #[cfg(feature = "tch")]
        if let Some(queue) = &self.queue {
            queue.flush().map_err(crate::error::Error::Device)?;
        }
        Ok(module)
    }

    /// (LibTorch fused-kernel calls, parameter-tensor steps they took) so far; (0, 0) where
    /// burn's optimizer takes every step.
    pub fn fused_counts(&self) -> (u64, u64) {
        #[cfg(feature = "tch")]
        if let Some(queue) = &self.queue {
            return queue.counts();
        }
        (0, 0)
    }

    /// The state, as burn's optimizers write it.
    pub fn to_record(&self) -> OptimizerRecord {
        self.inner.to_record()
    }

    /// This optimizer with the state of `record`.
    pub fn load_record(mut self, record: OptimizerRecord) -> Self {
        self.inner = self.inner.load_record(record);
        self
    }
}
