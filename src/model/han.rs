//! The baseline of the paper's Table 2: the CNN of Han, Kim & Lee (2016), "Deep convolutional
//! neural networks for predominant instrument recognition in polyphonic music".
//!
//! Input `[batch, 1, 43, 128]`. Four blocks of two 3×3 convolutions (1-pixel zero padding; 32, 64,
//! 128, 256 filters), each convolution followed by LeakyReLU(0.33); 3×3 max-pooling with stride 3
//! after blocks 1–3 and global max-pooling after block 4; dropout 0.25 after every block; dense
//! 1024 + LeakyReLU(0.33) + dropout 0.5; dense `num_classes`. Glorot-uniform weights, zero biases
//! (Keras's defaults). With 11 outputs it has 1,446,123 parameters.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};

const SLOPE: f64 = 0.33;

/// The fewest frames and mel bands the network takes: three 3×3 poolings with stride 3 leave
/// one position of 27.
pub const MIN_SIDE: usize = 27;

fn glorot() -> Initializer {
    Initializer::XavierUniform { gain: 1.0 }
}

fn conv3(cin: usize, cout: usize, device: &Device) -> Conv2d {
    let mut c = Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_initializer(glorot())
        .init(device);
    c.bias = Some(Param::from_tensor(Tensor::zeros([cout], device)));
    c
}

fn dense(cin: usize, cout: usize, device: &Device) -> Linear {
    let mut l = LinearConfig::new(cin, cout)
        .with_initializer(glorot())
        .init(device);
    l.bias = Some(Param::from_tensor(Tensor::zeros([cout], device)));
    l
}

#[derive(Module, Debug)]
pub struct HanBlock {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
}

impl HanBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = leaky_relu(self.conv1.forward(x), SLOPE);
        leaky_relu(self.conv2.forward(x), SLOPE)
    }
}

#[derive(Module, Debug)]
pub struct HanCnn {
    pub blocks: Vec<HanBlock>,
    pub pool: MaxPool2d,
    pub dropout_block: Dropout,
    pub fc1: Linear,
    pub dropout_fc: Dropout,
    pub fc2: Linear,
}

impl HanCnn {
    pub fn new(num_classes: usize, device: &Device) -> Self {
        let widths = [(1, 32), (32, 64), (64, 128), (128, 256)];
        Self {
            blocks: widths
                .iter()
                .map(|&(cin, cout)| HanBlock {
                    conv1: conv3(cin, cout, device),
                    conv2: conv3(cout, cout, device),
                })
                .collect(),
            pool: MaxPool2dConfig::new([3, 3]).with_strides([3, 3]).init(),
            dropout_block: DropoutConfig::new(0.25).init(),
            fc1: dense(256, 1024, device),
            dropout_fc: DropoutConfig::new(0.5).init(),
            fc2: dense(1024, num_classes, device),
        }
    }

    /// Logits `[batch, num_classes]` for input `[batch, 1, frames, mels]`, both at least
    /// [`MIN_SIDE`].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        let last = self.blocks.len() - 1;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if i < last {
                x = self.pool.forward(x);
            }
            x = self.dropout_block.forward(x);
        }
        // Global max-pooling over frames and mels.
        let [b, c, _, _] = x.dims();
        let x = x.max_dim(3).max_dim(2).reshape([b, c]);
        let x = self
            .dropout_fc
            .forward(leaky_relu(self.fc1.forward(x), SLOPE));
        self.fc2.forward(x)
    }
}
