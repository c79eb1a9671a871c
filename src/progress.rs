//! The progress bars on stderr: counted items, bytes and library files, all drawn with one style,
//! and the observers that training and experiments report to.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` units drawn with `template` (indicatif's syntax) and this program's bar glyphs.
fn styled(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

/// A bar for `total` items, labelled `what`.
pub fn items(total: usize, what: &str) -> ProgressBar {
    let pb = styled(
        total as u64,
        "{msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})",
    );
    pb.set_message(what.to_string());
    pb
}

/// A bar for a download of `total` bytes (0 while unknown), labelled `what`.
pub fn bytes(total: Option<u64>, what: &str) -> ProgressBar {
    styled(
        total.unwrap_or(0),
        &format!("{what} [{{bar:40}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, ETA {{eta}})"),
    )
}

/// A bar for a library run: files done of files to do, and a message of audio hours and speed.
pub fn files() -> ProgressBar {
    styled(0, "[{bar:30}] {pos}/{len} files  {msg}  eta {eta}")
}

/// Progress bars for training.
pub struct TrainBars {
    bar: Mutex<Option<ProgressBar>>,
}

impl TrainBars {
    pub fn new() -> Self {
        Self {
            bar: Mutex::new(None),
        }
    }
}

impl instrec::train::Observer for TrainBars {
    fn message(&self, text: &str) {
        match self.bar.lock().expect("lock").as_ref() {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }
    fn epoch_start(&self, epoch: usize, max_epochs: usize, batches: usize) {
        let pb = items(batches, &format!("epoch {epoch}/{max_epochs}"));
        *self.bar.lock().expect("lock") = Some(pb);
    }
    fn batch(&self, done: usize, loss: f64) {
        if let Some(b) = self.bar.lock().expect("lock").as_ref() {
            b.set_position(done as u64);
            b.set_message(format!("loss {loss:.4}"));
        }
    }
    fn download(&self, done: u64, total: Option<u64>) {
        let mut guard = self.bar.lock().expect("lock");
        let bar = guard.get_or_insert_with(|| bytes(total, "downloading ImageNet weights"));
        bar.set_position(done);
        if total == Some(done) {
            bar.finish_and_clear();
            *guard = None;
        }
    }
    fn epoch_end(&self, l: &instrec::train::EpochLog) {
        if let Some(b) = self.bar.lock().expect("lock").take() {
            b.finish_and_clear();
        }
        eprintln!(
            "epoch {:>3}  lr {:.2e}  train loss {:.4}  val loss {:.4}  val micro-F1 {:.3}  {:.1} s  {:.0} windows/s",
            l.epoch, l.lr, l.train_loss, l.val_loss, l.val_micro_f1, l.seconds, l.samples_per_s
        );
    }
}

/// Progress bars for experiments and the demo: rendering, then each run's training.
pub struct ExperimentBars {
    train: TrainBars,
    render: Mutex<Option<ProgressBar>>,
}

impl ExperimentBars {
    pub fn new() -> Self {
        Self {
            train: TrainBars::new(),
            render: Mutex::new(None),
        }
    }

    /// Clears a bar still on screen.
    pub fn finish(&self) {
        if let Some(b) = self.render.lock().expect("lock").take() {
            b.finish_and_clear();
        }
    }
}

impl instrec::experiment::ExperimentObserver for ExperimentBars {
    fn rendering(&self, done: usize, total: usize) {
        let mut bar = self.render.lock().expect("lock");
        let b = bar.get_or_insert_with(|| items(total, "rendering"));
        b.set_position(done as u64);
        if done >= total {
            b.finish_and_clear();
            *bar = None;
        }
    }
    fn run_start(&self, index: usize, total: usize, name: &str, skipped: bool) {
        eprintln!(
            "[{index}/{total}] {name}{}",
            if skipped {
                ": finished earlier, skipped"
            } else {
                ""
            }
        );
    }
    fn train_observer(&self) -> &dyn instrec::train::Observer {
        &self.train
    }
}

/// A byte bar per file of a data set download.
pub struct DownloadBars {
    bar: Mutex<Option<ProgressBar>>,
}

impl DownloadBars {
    pub fn new() -> Self {
        Self {
            bar: Mutex::new(None),
        }
    }

    /// Clears a bar still on screen.
    pub fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("lock").take() {
            b.finish_and_clear();
        }
    }
}

impl instrec::data::download::DownloadObserver for DownloadBars {
    fn transfer(&self, name: &str, resumed_from: u64, total: Option<u64>) {
        self.finish();
        let pb = bytes(total, name);
        pb.set_position(resumed_from);
        *self.bar.lock().expect("lock") = Some(pb);
    }
    fn bytes(&self, done: u64) {
        if let Some(b) = self.bar.lock().expect("lock").as_ref() {
            b.set_position(done);
        }
    }
    fn message(&self, text: &str) {
        match self.bar.lock().expect("lock").as_ref() {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }
}
