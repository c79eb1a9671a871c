//! ResNet18 and ResNet50 exactly as torchvision builds them (`torchvision/models/resnet.py`):
//! 7×7/2 conv, BN, ReLU, 3×3/2 max-pool, four stages of BasicBlocks [2, 2, 2, 2] or Bottlenecks
//! [3, 4, 6, 3] (stride on the 3×3 conv, 1×1 conv + BN downsample), global average pool, linear
//! head. Field names follow torchvision's state-dict keys (`conv1`, `bn1`, `layer1`…`layer4`, `fc`),
//! so a `.pth` file loads with one remapping: `downsample.0/1` → `downsample.conv/bn`.

use std::sync::{Arc, OnceLock};

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::fast::{BlockLayers, FastResNet, Layers};
use super::kernels::conv2d;
use super::norm::{self, BatchNorm2d};

/// `relu(bn(conv(x)) + identity)`, a residual block's end (one LibTorch graph when training on
/// it).
fn conv_bn_add_relu(
    conv: &Conv2d,
    bn: &BatchNorm2d,
    x: Tensor<4>,
    identity: Tensor<4>,
) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if let Some(y) = super::torch::conv_bn_train(conv, bn, &x, Some(&identity), true) {
        return y;
    }
    let (x, identity) = (f32(x), f32(identity));
    bn.forward_with(conv2d(conv, x, false), Some(identity), true)
}

/// `x` in f32: burn's ops take bf16 training's activations (`model::torch`) only so, where the
/// LibTorch block declined one (it never has for a ResNet; this keeps a decline from failing).
fn f32(x: Tensor<4>) -> Tensor<4> {
    if x.dtype() == burn::tensor::DType::F32 {
        x
    } else {
        x.cast(burn::tensor::DType::F32)
    }
}

/// conv → BN (→ ReLU). With the BN folded into the convolution (inference), one kernel does it
/// all on the Flex backend.
fn conv_bn(conv: &Conv2d, bn: &BatchNorm2d, x: Tensor<4>, then_relu: bool) -> Tensor<4> {
    if bn.folded {
        return conv2d(conv, x, then_relu);
    }
    #[cfg(feature = "tch")]
    if let Some(y) = super::torch::conv_bn_train(conv, bn, &x, None, then_relu) {
        return y;
    }
    bn.forward_with(conv2d(conv, f32(x), false), None, then_relu)
}

/// The two torchvision ResNets of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetDepth {
    ResNet18,
    ResNet50,
}

impl ResNetDepth {
    fn blocks(self) -> [usize; 4] {
        match self {
            Self::ResNet18 => [2, 2, 2, 2],
            Self::ResNet50 => [3, 4, 6, 3],
        }
    }

    fn bottleneck(self) -> bool {
        matches!(self, Self::ResNet50)
    }

    /// Channels of the pooled features (the input of `fc`).
    pub fn feature_dim(self) -> usize {
        if self.bottleneck() { 2048 } else { 512 }
    }
}

/// torchvision's convolution init: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
fn conv(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// `downsample = Sequential(conv1x1(inplanes, planes * expansion, stride), BatchNorm2d)`.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm2d,
}

impl Downsample {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: conv(cin, cout, 1, stride, 0, device),
            bn: BatchNorm2d::new(cout, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_bn(&self.conv, &self.bn, x, false)
    }
}

/// The residual branch: the input, or its 1×1 projection where the shape changes.
fn shortcut(downsample: &Option<Downsample>, x: &Tensor<4>) -> Tensor<4> {
    match downsample {
        Some(d) => d.forward(x.clone()),
        None => x.clone(),
    }
}

/// Two 3×3 convolutions (expansion 1).
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(cin: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let downsample =
            (stride != 1 || cin != planes).then(|| Downsample::new(cin, planes, stride, device));
        Self {
            conv1: conv(cin, planes, 3, stride, 1, device),
            bn1: BatchNorm2d::new(planes, device),
            conv2: conv(planes, planes, 3, 1, 1, device),
            bn2: BatchNorm2d::new(planes, device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, &x);
        let out = conv_bn(&self.conv1, &self.bn1, x, true);
        conv_bn_add_relu(&self.conv2, &self.bn2, out, identity)
    }
}

/// 1×1 reduce, 3×3 (with the stride, as torchvision's "ResNet V1.5"), 1×1 expand ×4.
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub conv3: Conv2d,
    pub bn3: BatchNorm2d,
    pub downsample: Option<Downsample>,
}

impl Bottleneck {
    const EXPANSION: usize = 4;

    fn new(cin: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let cout = planes * Self::EXPANSION;
        let downsample =
            (stride != 1 || cin != cout).then(|| Downsample::new(cin, cout, stride, device));
        Self {
            conv1: conv(cin, planes, 1, 1, 0, device),
            bn1: BatchNorm2d::new(planes, device),
            conv2: conv(planes, planes, 3, stride, 1, device),
            bn2: BatchNorm2d::new(planes, device),
            conv3: conv(planes, cout, 1, 1, 0, device),
            bn3: BatchNorm2d::new(cout, device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, &x);
        let out = conv_bn(&self.conv1, &self.bn1, x, true);
        let out = conv_bn(&self.conv2, &self.bn2, out, true);
        conv_bn_add_relu(&self.conv3, &self.bn3, out, identity)
    }
}

/// A residual block of either kind.
// Built once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

/// A block's convolutions with their BatchNorms: the main path in order, and the shortcut's.
type LayersMut<'a> = (
    Vec<(&'a mut Conv2d, &'a mut BatchNorm2d)>,
    Option<(&'a mut Conv2d, &'a mut BatchNorm2d)>,
);

impl Block {
    /// The block's layers (the one place they are listed): its convolutions with their
    /// BatchNorms, main path in order, and the shortcut's.
    fn layers_mut(&mut self) -> LayersMut<'_> {
        let (main, down) = match self {
            Self::Basic(b) => (
                vec![(&mut b.conv1, &mut b.bn1), (&mut b.conv2, &mut b.bn2)],
                &mut b.downsample,
            ),
            Self::Bottleneck(b) => (
                vec![
                    (&mut b.conv1, &mut b.bn1),
                    (&mut b.conv2, &mut b.bn2),
                    (&mut b.conv3, &mut b.bn3),
                ],
                &mut b.downsample,
            ),
        };
        (main, down.as_mut().map(|d| (&mut d.conv, &mut d.bn)))
    }

    /// The block's convolutions as [`FastResNet`] packs them ([`Block::layers_mut`], read only).
    fn layers(&self) -> BlockLayers<'_> {
        let (main, down) = match self {
            Self::Basic(b) => (vec![&b.conv1, &b.conv2], &b.downsample),
            Self::Bottleneck(b) => (vec![&b.conv1, &b.conv2, &b.conv3], &b.downsample),
        };
        BlockLayers {
            convs: main,
            downsample: down.as_ref().map(|d| &d.conv),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Basic(b) => b.forward(x),
            Self::Bottleneck(b) => b.forward(x),
        }
    }

    fn fold_batchnorm(&mut self) {
        let (main, down) = self.layers_mut();
        for (conv, bn) in main.into_iter().chain(down) {
            norm::fold(conv, bn);
        }
    }
}

#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub maxpool: MaxPool2d,
    pub layer1: Vec<Block>,
    pub layer2: Vec<Block>,
    pub layer3: Vec<Block>,
    pub layer4: Vec<Block>,
    pub fc: Linear,
    /// Once folded ([`ResNet::fold_batchnorm`]), the network packed for [`super::fast`], built on
    /// its first forward pass on Flex (`None` inside: a layer it does not run).
    #[module(skip)]
    pub fast: Arc<OnceLock<Option<FastResNet>>>,
}

impl ResNet {
    /// Draws the lazily initialised weights in the order the first forward pass would, so a
    /// model materialised up front holds the same weights as one initialised on first use.
    pub fn materialize(&self) {
        // In the order `forward` first uses them: each block's shortcut first.
        let mut convs = vec![&self.conv1];
        for block in self.blocks() {
            let l = block.layers();
            convs.extend(l.downsample.into_iter().chain(l.convs));
        }
        for c in convs {
            let _ = c.weight.val();
        }
        let _ = self.fc.weight.val();
        if let Some(b) = &self.fc.bias {
            let _ = b.val();
        }
    }

    /// For inference only: every BatchNorm folded into its convolution (eval-mode statistics), so
    /// each conv → BN → ReLU is one convolution with a bias and a fused ReLU. The logits equal the
    /// unfolded model's to float rounding; training a folded model is not meaningful.
    pub fn fold_batchnorm(mut self) -> Self {
        norm::fold(&mut self.conv1, &mut self.bn1);
        for block in [
            &mut self.layer1,
            &mut self.layer2,
            &mut self.layer3,
            &mut self.layer4,
        ]
        .into_iter()
        .flatten()
        {
            block.fold_batchnorm();
        }
        self.fast = Arc::default();
        self
    }

    /// Every layer, as [`FastResNet`] packs them.
    fn layers(&self) -> Layers<'_> {
        Layers {
            stem: &self.conv1,
            maxpool: &self.maxpool,
            blocks: self.blocks().map(Block::layers).collect(),
            fc: &self.fc,
        }
    }

    /// The residual blocks of the four stages, in order.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .flatten()
    }

    /// Pooled features and logits through [`super::fast`]: for a folded network on Flex.
    fn fast_forward(&self, x: &Tensor<4>) -> Option<(Tensor<2>, Tensor<2>)> {
        use burn::backend::Flex;
        if !self.bn1.folded || !matches!(super::kernels::route(x), super::kernels::Route::Flex) {
            return None;
        }
        let fast = self
            .fast
            .get_or_init(|| FastResNet::new(self.layers()))
            .as_ref()?;
        let dims = x.dims();
        let xp = x.clone().try_into_primitive::<Flex>().ok()?.to_contiguous();
        let (pooled, logits) = fast.forward(xp.storage::<f32>(), dims);
        let b = dims[0];
        let (f, c) = (pooled.len() / b.max(1), logits.len() / b.max(1));
        let wrap = |v: Vec<f32>, n: usize| {
            Tensor::<2>::from_primitive::<Flex>(super::kernels::flex_tensor(v, [b, n]))
        };
        Some((wrap(pooled, f), wrap(logits, c)))
    }

    /// A randomly initialised ResNet (torchvision's initialisation) with `num_classes` outputs.
    pub fn new(depth: ResNetDepth, num_classes: usize, device: &Device) -> Self {
        let mut inplanes = 64;
        let mut stage = |planes: usize, blocks: usize, stride: usize| -> Vec<Block> {
            (0..blocks)
                .map(|i| {
                    let s = if i == 0 { stride } else { 1 };
                    if depth.bottleneck() {
                        let b = Bottleneck::new(inplanes, planes, s, device);
                        inplanes = planes * Bottleneck::EXPANSION;
                        Block::Bottleneck(b)
                    } else {
                        let b = BasicBlock::new(inplanes, planes, s, device);
                        inplanes = planes;
                        Block::Basic(b)
                    }
                })
                .collect()
        };
        let [b1, b2, b3, b4] = depth.blocks();
        let layer1 = stage(64, b1, 1);
        let layer2 = stage(128, b2, 2);
        let layer3 = stage(256, b3, 2);
        let layer4 = stage(512, b4, 2);
        Self {
            conv1: conv(3, 64, 7, 2, 3, device),
            bn1: BatchNorm2d::new(64, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            fc: LinearConfig::new(depth.feature_dim(), num_classes).init(device),
            fast: Arc::default(),
        }
    }

    /// The last stage's activations, before the global pooling.
    fn trunk(&self, x: Tensor<4>) -> Tensor<4> {
        #[cfg(feature = "tch")]
        let x = super::channels_last::inference_input(x);
        let x = conv_bn(&self.conv1, &self.bn1, x, true);
        let mut x = super::kernels::max_pool2d(&self.maxpool, x);
        for block in self.blocks() {
            x = block.forward(x);
        }
        x
    }

    /// Global average pooling: `[batch, channels]`.
    fn pool(x: Tensor<4>) -> Tensor<2> {
        let [b, c, _, _] = x.dims();
        // bf16 training's activations (`model::torch`) back to f32 for the head and the loss.
        f32(x).mean_dim(3).mean_dim(2).reshape([b, c])
    }

    /// Globally average-pooled features before `fc`: `[batch, 512 or 2048]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        if let Some((pooled, _)) = self.fast_forward(&x) {
            return pooled;
        }
        Self::pool(self.trunk(x))
    }

    /// Logits `[batch, num_classes]` for input `[batch, 3, frames, mels]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        if let Some((_, logits)) = self.fast_forward(&x) {
            return logits;
        }
        let x = self.trunk(x);
        #[cfg(feature = "tch")]
        if let Some(logits) = super::torch::pool_linear_train(&x, &self.fc) {
            return logits;
        }
        self.fc.forward(Self::pool(x))
    }
}
