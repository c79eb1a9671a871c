//! BatchNorm2d with PyTorch's semantics.
//!
//! burn's `BatchNorm` updates `running_var` with the biased batch variance; PyTorch uses the
//! unbiased one (`n / (n - 1)`). Fine-tuned ImageNet weights carry PyTorch statistics, and a
//! model trained here must behave like the one the paper trained, so this module follows PyTorch:
//! `running = (1 - momentum) · running + momentum · batch` with the unbiased variance for
//! `running_var`, normalisation by the biased variance + eps. Field names are torchvision's
//! (`weight`, `bias`, `running_mean`, `running_var`), so `.pth` files load without renaming.

use burn::module::{Flag, Module, Param, RunningState};
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct BatchNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
    pub training: Param<Flag>,
    pub momentum: f64,
    pub epsilon: f64,
}

impl BatchNorm2d {
    pub const MOMENTUM: f64 = 0.1;
    pub const EPSILON: f64 = 1e-5;

    /// γ = 1, β = 0, running mean 0 and variance 1, as `torch.nn.BatchNorm2d(num_features)`.
    pub fn new(num_features: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([num_features], device)),
            bias: Param::from_tensor(Tensor::zeros([num_features], device)),
            running_mean: RunningState::new(Tensor::zeros([num_features], device)),
            running_var: RunningState::new(Tensor::ones([num_features], device)),
            training: Param::from_bool(true),
            momentum: Self::MOMENTUM,
            epsilon: Self::EPSILON,
        }
    }

    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        if input.device().is_autodiff() && self.training.is_enabled() {
            self.forward_train(input)
        } else {
            let device = input.device();
            burn::tensor::module::batch_norm(
                input,
                self.weight.val(),
                self.bias.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                self.epsilon,
            )
        }
    }

    fn forward_train(&self, input: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = input.dims();
        let n = (b * h * w) as f64;
        let device = input.device();
        let result = burn::tensor::module::batch_norm_train(
            input,
            self.weight.val(),
            self.bias.val(),
            self.epsilon,
        );
        let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        let m = self.momentum;
        let mean = self
            .running_mean
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(result.mean.detach().mul_scalar(m));
        let var = self
            .running_var
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(result.variance.detach().mul_scalar(m * unbiased));
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        result.output
    }
}
