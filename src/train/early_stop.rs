//! Early stopping on the validation loss.

use serde::{Deserialize, Serialize};

/// Early stopping on the validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub patience: usize,
    pub best_loss: f64,
    /// 1-based epoch of the best loss (0: none yet).
    pub best_epoch: usize,
    /// Epochs since the best.
    pub wait: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            best_loss: f64::INFINITY,
            best_epoch: 0,
            wait: 0,
        }
    }

    /// Records an epoch's validation loss; returns whether it is a new best.
    pub fn update(&mut self, epoch: usize, loss: f64) -> bool {
        if loss < self.best_loss {
            self.best_loss = loss;
            self.best_epoch = epoch;
            self.wait = 0;
            true
        } else {
            self.wait += 1;
            false
        }
    }

    /// Whether `patience` epochs have passed without a new best.
    pub fn should_stop(&self) -> bool {
        self.wait >= self.patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn early_stopping_waits_patience_epochs_after_the_best() {
        let mut e = EarlyStopping::new(2);
        assert!(e.update(1, 1.0));
        assert!(e.update(2, 0.8));
        assert!(!e.update(3, 0.9));
        assert!(!e.should_stop());
        assert!(!e.update(4, 0.8)); // equal is not better
        assert!(e.should_stop());
        assert_eq!((e.best_epoch, e.best_loss), (2, 0.8));
        let mut e = EarlyStopping::new(2);
        e.update(1, 1.0);
        e.update(2, 1.1);
        assert!(e.update(3, 0.5));
        assert_eq!(e.wait, 0);
    }
}
