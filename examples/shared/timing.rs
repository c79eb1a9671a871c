//! The timing loop the kernel benchmarks share: one forward and backward pass, timed apart, and
//! the best of each over interleaved runs of two variants.

use std::time::Instant;

use burn::tensor::Tensor;

/// Milliseconds of `forward` (which returns the loss) and of its backward pass; the loss and one
/// value of `x`'s gradient are read back, so that each pass has finished when its clock stops.
/// (Reading the whole gradient back would time a copy of it into fresh pages too: 23 MB, about
/// 30 ms, for ResNet50's 256-channel planes, which a training step never makes.)
pub fn forward_backward(x: &Tensor<4>, forward: impl FnOnce() -> Tensor<1>) -> (f64, f64) {
    let t = Instant::now();
    let loss = forward();
    std::hint::black_box(loss.clone().into_data());
    let forward = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let grads = loss.backward();
    let first = x
        .grad(&grads)
        .map(|g| g.slice([0..1, 0..1, 0..1, 0..1]).into_data());
    std::hint::black_box(first);
    (forward, t.elapsed().as_secs_f64() * 1e3)
}

/// The best times so far: the first variant's forward and backward, then the second's.
pub struct Best([f64; 4]);

impl Best {
    pub fn new() -> Self {
        Self([f64::MAX; 4])
    }
    pub fn keep(&mut self, second: bool, (forward, backward): (f64, f64)) {
        let i = if second { 2 } else { 0 };
        self.0[i] = self.0[i].min(forward);
        self.0[i + 1] = self.0[i + 1].min(backward);
    }
    /// A Markdown table row: `label`, then the four times.
    pub fn row(&self, label: &str) -> String {
        let [a, b, c, d] = self.0;
        format!("| {label} | {a:.1} ms | {b:.1} ms | {c:.1} ms | {d:.1} ms |")
    }
}
