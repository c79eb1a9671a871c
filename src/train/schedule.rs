//! The paper's learning-rate schedule, built from burn's schedulers: linear warm-up over the
//! first epochs, then cosine annealing to 0 at the last step, both stepped per batch.

use burn::lr_scheduler::LrSchedulerConfig;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::lr_scheduler::sequential::SequentialLrSchedulerConfig;

/// Warm-up then cosine over `total_steps` batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub base_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl Schedule {
    pub fn new(
        base_lr: f64,
        warmup_epochs: usize,
        max_epochs: usize,
        steps_per_epoch: usize,
    ) -> Self {
        let total_steps = (max_epochs * steps_per_epoch).max(1);
        Self {
            base_lr,
            warmup_steps: (warmup_epochs * steps_per_epoch).min(total_steps),
            total_steps,
        }
    }

    /// A burn scheduler whose `step()` gives the learning rate of step 0, 1, 2, ...:
    /// `base · (s + 1) / W` for `s < W` (warm-up), then `base · ½(1 + cos(π (s − W) / (T − W − 1)))`,
    /// which is `base` right after the warm-up and 0 at the last step `T − 1`.
    pub fn scheduler(&self) -> ModuleLrScheduler {
        let w = self.warmup_steps;
        let cosine_iters = self.total_steps.saturating_sub(w + 1).max(1);
        let cosine = LrSchedulerConfig::Cosine(CosineAnnealingLrSchedulerConfig::new(
            self.base_lr,
            cosine_iters,
        ));
        let result = if w >= 2 {
            let linear = LrSchedulerConfig::Linear(LinearLrSchedulerConfig::new(
                self.base_lr / w as f64,
                self.base_lr,
                w - 1,
            ));
            SequentialLrSchedulerConfig::new(vec![linear, cosine], vec![w]).init()
        } else {
            CosineAnnealingLrSchedulerConfig::new(self.base_lr, cosine_iters).init()
        };
        result.expect("valid schedule (learning rate in (0, 1])")
    }

    /// The learning rate at step `step` (0-based), replaying the scheduler.
    pub fn lr_at(&self, step: usize) -> f64 {
        let mut s = self.scheduler();
        let mut lr = 0.0;
        for _ in 0..=step {
            lr = s.step().base();
        }
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_zero() {
        // 10 epochs of 10 steps, 5 of warm-up.
        let s = Schedule::new(5e-4, 5, 10, 10);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(s.lr_at(0), 5e-4 / 50.0), "{}", s.lr_at(0));
        assert!(close(s.lr_at(24), 5e-4 * 25.0 / 50.0));
        assert!(close(s.lr_at(49), 5e-4), "end of warm-up {}", s.lr_at(49));
        assert!(
            close(s.lr_at(50), 5e-4),
            "first cosine step {}",
            s.lr_at(50)
        );
        // Middle of the cosine part (T − W − 1 = 49 iterations; half-way is 24.5).
        let mid = s.lr_at(50 + 49 / 2);
        let expected = 5e-4 * 0.5 * (1.0 + (std::f64::consts::PI * 24.0 / 49.0).cos());
        assert!(close(mid, expected), "{mid} vs {expected}");
        assert!(close(s.lr_at(99), 0.0), "last step {}", s.lr_at(99));
        // Monotone up, then monotone down.
        let lrs: Vec<f64> = (0..100).map(|i| s.lr_at(i)).collect();
        assert!(lrs[..50].windows(2).all(|w| w[1] >= w[0]));
        assert!(lrs[50..].windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn tiny_runs_still_have_a_valid_schedule() {
        let s = Schedule::new(1e-3, 5, 1, 1);
        assert!(s.lr_at(0) > 0.0);
        let s = Schedule::new(1e-3, 0, 3, 4);
        assert!((s.lr_at(0) - 1e-3).abs() < 1e-12);
    }
}
