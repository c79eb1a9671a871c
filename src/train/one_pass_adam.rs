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
/// What goes back to burn's optimizer when a one-pass kernel does not apply.
pub(super) type Declined<const D: usize> = Box<(Tensor<D>, Tensor<D>, Option<Momentum<D>>)>;

/// The hyper-parameters as burn holds them (f32): PyTorch's β (0.9, 0.999) and ε 1e-8.
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

/// burn's `O` with flex tensors stepped in one pass.
#[derive(Clone)]
pub(super) struct OnePass<O> {
    pub burn: O,
    pub hyper: Hyper,
}

impl<O: BurnAdam> BurnAdam for OnePass<O> {
    fn state<const D: usize>(momentum: Momentum<D>) -> O::State<D> {
        O::state(momentum)
    }
    fn momentum<const D: usize>(state: O::State<D>) -> Momentum<D> {
        O::momentum(state)
    }
}

impl<O: BurnAdam> Optimizer for OnePass<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        match flex_step(&self.hyper, lr, tensor, grad, state.map(O::momentum)) {
            Ok((t, m)) => (t, Some(O::state(m))),
            Err(declined) => {
                let (t, g, m) = *declined;
                self.burn.step(lr, t, g, m.map(O::state))
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

/// Adam (L2 decay) or AdamW (decoupled) whose flex steps take one pass, whole-module.
pub(super) fn one_pass(weight_decay: f32, decoupled: bool) -> ModuleOptimizer {
    let hyper = Hyper::new(weight_decay, decoupled);
    if decoupled {
        let burn = adamw_config(weight_decay).build();
        ModuleOptimizer::from(OnePass { burn, hyper })
    } else {
        let burn = adam_config(weight_decay).build();
        ModuleOptimizer::from(OnePass { burn, hyper })
    }
}

/// Whether `t` is an f32 tensor of plain flex (the optimizer sees parameters without autodiff).
fn on_flex<const D: usize>(t: &Tensor<D>) -> bool {
    use burn::backend::DispatchDevice;
    let device = t.device();
    t.dtype() == DType::F32
        && !device.is_autodiff()
        && matches!(device.inner().as_dispatch(), DispatchDevice::Flex(_))
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

/// One step of `tensor` in one pass, or everything handed back when it is not an f32 flex
/// tensor or the state is AMSGrad's.
pub(super) fn flex_step<const D: usize>(
    hyper: &Hyper,
    lr: LearningRate,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    momentum: Option<Momentum<D>>,
) -> Result<(Tensor<D>, Momentum<D>), Declined<D>> {
    let applies = on_flex(&tensor)
        && on_flex(&grad)
        && tensor.dims() == grad.dims()
        && momentum.as_ref().is_none_or(|m| {
            m.max_moment_2.is_none()
                && on_flex(&m.moment_1)
                && on_flex(&m.moment_2)
                && m.moment_1.dims() == tensor.dims()
                && m.moment_2.dims() == tensor.dims()
        });
    if !applies {
        return Err(Box::new((tensor, grad, momentum)));
    }
    let dims = tensor.dims();
    let convert = |t: Tensor<D>| dense(t).expect("an f32 flex tensor converts to flex's primitive");
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
    step_elements(hyper, lr, time, first, elements_mut(&mut p), g, m_el, v_el);
    let back = |t: FlexTensor| Tensor::<D>::from_primitive::<Flex>(t);
    Ok((back(p), Momentum::new(time, back(m), back(v))))
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
                    let (t, m) = flex_step(&hyper, lr, ours, g.clone(), s_ours)
                        .unwrap_or_else(|_| panic!("declined a flex tensor"));
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
