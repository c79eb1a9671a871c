//! Adam and AdamW on flex tensors in one pass over each parameter, its gradient and its two
//! moments, where burn's optimizer makes about 13 whole-tensor passes (each op allocates and
//! writes a tensor). The arithmetic is burn's, op for op in f32 (`burn-optim`'s `adam.rs`,
//! `adamw.rs`, `decay.rs`), so the steps are bit-identical to burn's and its state, and the
//! checkpoints, are unchanged. Tensors of other backends take burn's optimizer.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::optim::{Adam, AdamState, AdamW, AdamWState, AdaptiveMomentumState, LearningRate};
use burn::optim::{ModuleOptimizer, Optimizer};
use burn::tensor::{DType, Device, Tensor};
use rayon::prelude::*;

use super::optim::{adam_config, adamw_config};

pub(super) type Momentum<const D: usize> = AdaptiveMomentumState<D>;

/// The hyper-parameters as burn holds them (f32): PyTorch's β (0.9, 0.999) and ε 1e-8, written
/// here once (`optim::adam_config` gives burn's optimizers the same).
#[derive(Debug, Clone, Copy)]
pub(super) struct Hyper {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// AdamW's decoupled decay (else Adam's L2 term added to the gradient).
    pub decoupled: bool,
}

impl Hyper {
    pub fn new(weight_decay: f32, decoupled: bool) -> Self {
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay,
            decoupled,
        }
    }
}

/// burn's Adam or AdamW, whose state is its moments under another name.
pub(super) trait BurnAdam: Optimizer {
    fn state<const D: usize>(momentum: Momentum<D>) -> Self::State<D>;
    fn momentum<const D: usize>(state: Self::State<D>) -> Momentum<D>;
}

impl BurnAdam for Adam {
    fn state<const D: usize>(momentum: Momentum<D>) -> AdamState<D> {
        AdamState::new(momentum)
    }
    fn momentum<const D: usize>(state: AdamState<D>) -> Momentum<D> {
        state.momentum
    }
}

impl BurnAdam for AdamW {
    fn state<const D: usize>(momentum: Momentum<D>) -> AdamWState<D> {
        AdamWState { momentum }
    }
    fn momentum<const D: usize>(state: AdamWState<D>) -> Momentum<D> {
        state.momentum
    }
}

/// A backend's own Adam step, for the tensors [`kernel_applies`] finds on its devices.
pub(super) trait StepKernel: Clone + Send + Sync + 'static {
    /// Whether its tensors live on this device.
    fn takes(device: &burn::backend::DispatchDevice) -> bool;
    /// The step of one parameter (and the step's state).
    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        momentum: Option<Momentum<D>>,
    ) -> (Tensor<D>, Momentum<D>);
}

/// burn's `O` (and its state) with `kernel` taking the steps it can.
#[derive(Clone)]
pub(super) struct WithKernel<O, K> {
    pub burn: O,
    pub kernel: K,
}

impl<O: BurnAdam, K: StepKernel> BurnAdam for WithKernel<O, K> {
    fn state<const D: usize>(momentum: Momentum<D>) -> O::State<D> {
        O::state(momentum)
    }
    fn momentum<const D: usize>(state: O::State<D>) -> Momentum<D> {
        O::momentum(state)
    }
}

impl<O: BurnAdam, K: StepKernel> Optimizer for WithKernel<O, K> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let momentum = state.map(O::momentum);
        if kernel_applies(&tensor, &grad, momentum.as_ref(), K::takes) {
            let (t, m) = self.kernel.step(lr, tensor, grad, momentum);
            (t, Some(O::state(m)))
        } else {
            self.burn.step(lr, tensor, grad, momentum.map(O::state))
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

/// Flex tensors in one pass.
#[derive(Debug, Clone, Copy)]
pub(super) struct FlexPass(pub Hyper);

impl StepKernel for FlexPass {
    fn takes(device: &burn::backend::DispatchDevice) -> bool {
        matches!(device, burn::backend::DispatchDevice::Flex(_))
    }

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        momentum: Option<Momentum<D>>,
    ) -> (Tensor<D>, Momentum<D>) {
        let dims = tensor.dims();
        let convert =
            |t: Tensor<D>| dense(t).expect("an f32 flex tensor converts to flex's primitive");
        let (mut p, g) = (convert(tensor), convert(grad));
        let first = momentum.is_none();
        let time = momentum.as_ref().map_or(0, |m| m.time) + 1;
        let (mut m, mut v) = match momentum {
            Some(s) => (convert(s.moment_1), convert(s.moment_2)),
            None => {
                let zeros = || FlexTensor::zeros(dims.into(), DType::F32);
                (zeros(), zeros())
            }
        };
        let g = g.as_slice::<f32>().expect("dense");
        let (m_el, v_el) = (elements_mut(&mut m), elements_mut(&mut v));
        step_elements(
            &self.0,
            lr,
            time,
            first,
            elements_mut(&mut p),
            g,
            m_el,
            v_el,
        );
        let back = |t: FlexTensor| Tensor::<D>::from_primitive::<Flex>(t);
        (back(p), Momentum::new(time, back(m), back(v)))
    }
}

/// burn's `O` with flex tensors stepped in one pass.
pub(super) type OnePass<O> = WithKernel<O, FlexPass>;

/// burn's `O` (Adam's or AdamW's config built) with flex's one pass.
pub(super) fn with_one_pass<O>(burn: O, hyper: Hyper) -> OnePass<O> {
    WithKernel {
        burn,
        kernel: FlexPass(hyper),
    }
}

/// Adam (L2 decay) or AdamW (decoupled) whose flex steps take one pass, whole-module.
pub(super) fn one_pass(weight_decay: f32, decoupled: bool) -> ModuleOptimizer {
    let hyper = Hyper::new(weight_decay, decoupled);
    if decoupled {
        ModuleOptimizer::from(with_one_pass(adamw_config(weight_decay).build(), hyper))
    } else {
        ModuleOptimizer::from(with_one_pass(adam_config(weight_decay).build(), hyper))
    }
}

/// Whether a step's parameter, gradient and moments are plain (not autodiff) f32 tensors of one
/// shape on a device of the kind `on` accepts, and the state is not AMSGrad's: where a backend's
/// own Adam kernel applies.
pub(super) fn kernel_applies<const D: usize>(
    tensor: &Tensor<D>,
    grad: &Tensor<D>,
    momentum: Option<&Momentum<D>>,
    on: fn(&burn::backend::DispatchDevice) -> bool,
) -> bool {
    let fits = |t: &Tensor<D>| {
        let device = t.device();
        t.dtype() == DType::F32
            && !device.is_autodiff()
            && on(device.inner().as_dispatch())
            && t.dims() == tensor.dims()
    };
    fits(tensor)
        && fits(grad)
        && momentum
            .is_none_or(|m| m.max_moment_2.is_none() && fits(&m.moment_1) && fits(&m.moment_2))
}

/// `t`'s flex tensor with its elements in one run of its storage (copied where they are not).
fn dense<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    let t = t.try_into_primitive::<Flex>().ok()?;
    Some(if t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    })
}

/// The elements of a dense tensor, writable (copied first where burn shares its storage).
fn elements_mut(t: &mut FlexTensor) -> &mut [f32] {
    let (start, end) = t.layout().contiguous_offsets().unwrap_or((0, 0));
    &mut t.storage_mut::<f32>()[start..end]
}

/// Elements per parallel task: large enough that a task outweighs its scheduling.
const CHUNK: usize = 1 << 14;

/// burn's step (`time` from 1; `first`: no moments yet) on the elements of one tensor.
#[allow(clippy::too_many_arguments)]
fn step_elements(
    h: &Hyper,
    lr: LearningRate,
    time: usize,
    first: bool,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    // The scalars as burn computes them: f32, in its order. Its Adam folds both bias
    // corrections into one factor and ε; its AdamW divides each moment by its own.
    let (f1, f2) = (1.0 - h.beta_1, 1.0 - h.beta_2);
    let t = time as i32;
    let (bc1, bc2) = (1.0 - h.beta_1.powi(t), 1.0 - h.beta_2.powi(t));
    let bc2_sqrt = bc2.sqrt();
    let combined = bc2_sqrt / bc1;
    let eps_l2 = h.epsilon * bc2_sqrt;
    let eps = h.epsilon;
    let lr32 = lr as f32;
    let decay_rate = lr * h.weight_decay as f64;
    let keep = (1.0 - decay_rate) as f32;
    let (b1, b2, wd) = (h.beta_1, h.beta_2, h.weight_decay);
    let (decoupled, decays) = (h.decoupled, decay_rate != 0.0);
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            for i in 0..p.len() {
                // Adam: grad = tensor * penalty + grad (burn's WeightDecay::transform).
                let gi = if decoupled { g[i] } else { p[i] * wd + g[i] };
                let (mi, vi) = if first {
                    (gi * f1, (gi * gi) * f2)
                } else {
                    (m[i] * b1 + gi * f1, v[i] * b2 + (gi * gi) * f2)
                };
                m[i] = mi;
                v[i] = vi;
                p[i] = if !decoupled {
                    p[i] - ((mi * combined) / (vi.sqrt() + eps_l2)) * lr32
                } else {
                    let update = (mi / bc1) / ((vi / bc2).sqrt() + eps);
                    let decayed = if decays { p[i] * keep } else { p[i] };
                    decayed - update * lr32
                };
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    fn burn_step<O: BurnAdam>(
        o: &O,
        lr: LearningRate,
        t: Tensor<3>,
        g: Tensor<3>,
        m: Option<Momentum<3>>,
    ) -> (Tensor<3>, Option<Momentum<3>>) {
        let (t, s) = o.step(lr, t, g, m.map(O::state));
        (t, s.map(O::momentum))
    }

    fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
        t.clone().into_data().convert::<f32>().try_to_vec().unwrap()
    }

    /// Five steps of each optimizer, one pass and burn's, from the same start: bit-identical
    /// parameters and moments (a tensor larger than one chunk, and a strided view).
    #[test]
    fn one_pass_steps_equal_burns_bit_for_bit() {
        let device = Device::flex();
        for decoupled in [false, true] {
            for wd in [5e-4f32, 0.0] {
                let hyper = Hyper::new(wd, decoupled);
                let burn_adam = adam_config(wd).build();
                let burn_adamw = adamw_config(wd).build();
                let shape = [3, 7, 1000];
                let start = Tensor::<3>::random(shape, Distribution::Normal(0.0, 0.3), &device);
                let (mut ours, mut theirs) = (start.clone(), start);
                let (mut s_ours, mut s_theirs): (Option<Momentum<3>>, Option<Momentum<3>>) =
                    (None, None);
                for k in 0..5 {
                    let g = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
                    // A transposed view of a gradient, as autodiff may hand one over.
                    let g = if k == 2 {
                        let data: Vec<f32> = values(&g);
                        Tensor::<3>::from_data(TensorData::new(data, [1000, 7, 3]), &device)
                            .swap_dims(0, 2)
                    } else {
                        g
                    };
                    let lr = 1e-3 * (k + 1) as f64;
                    assert!(kernel_applies(&ours, &g, s_ours.as_ref(), FlexPass::takes));
                    let (t, m) = FlexPass(hyper).step(lr, ours, g.clone(), s_ours);
                    (ours, s_ours) = (t, Some(m));
                    let (t, s) = if decoupled {
                        burn_step(&burn_adamw, lr, theirs, g, s_theirs)
                    } else {
                        burn_step(&burn_adam, lr, theirs, g, s_theirs)
                    };
                    (theirs, s_theirs) = (t, s);
                }
                let (a, b) = (s_ours.unwrap(), s_theirs.unwrap());
                assert_eq!(a.time, b.time);
                let same = |x: &Tensor<3>, y: &Tensor<3>| {
                    let (x, y) = (values(x), values(y));
                    x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits())
                };
                let what = format!("decoupled {decoupled}, wd {wd}");
                assert!(same(&ours, &theirs), "parameters differ ({what})");
                assert!(same(&a.moment_1, &b.moment_1), "m differs ({what})");
                assert!(same(&a.moment_2, &b.moment_2), "v differs ({what})");
            }
        }
    }
}
