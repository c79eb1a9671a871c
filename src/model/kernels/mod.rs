//! instrec's own CPU kernels for the Flex backend, where burn-flex's are slow for ResNets on
//! 43×128 windows: convolution as im2col + GEMM over many images at once (forward and backward),
//! max pooling with argmax, their autodiff nodes, and the scratch buffers they share.
//!
//! - `route`: which kernels a tensor takes;
//! - `scratch`: reused buffers, and zeroed ones cleared on all threads;
//! - `im2col`: the unrolled images and their geometry;
//! - `gemm`: the matrix products;
//! - [`conv`]: the convolution forward, backward and autodiff node;
//! - `winograd`: the 3×3 stride-1 convolutions' forward and backward by Winograd's F(4×4, 3×3)
//!   or, on planes too small for 4×4 tiles, F(2×2, 3×3);
//! - `winograd_nhwc`: inference's 3×3 stride-1 convolutions on channels-last activations by
//!   F(4×4, 3×3) (`crate::model::fast`);
//! - `pointwise`: the 1×1 stride-1 convolutions' forward and backward, a GEMM per image;
//! - [`pool`]: max pooling, forward, backward and autodiff node.

pub mod conv;
pub(crate) mod gemm;
pub(crate) mod im2col;
mod pointwise;
pub mod pool;
pub(crate) mod route;
pub(crate) mod scratch;
mod winograd;
pub(crate) mod winograd_nhwc;

pub use conv::conv2d;
pub(crate) use gemm::gemm;
pub use im2col::Geometry;
pub(crate) use im2col::out_len;
pub use pool::max_pool2d;
pub(crate) use route::{FlexAd, Route, flex_tensor, host_f32, route, symmetric_padding};
pub(crate) use scratch::{Scratch, zeroed};
