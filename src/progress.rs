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

/// The one bar on screen of an observer, shared between threads.
struct Slot(Mutex<Option<ProgressBar>>);

impl Slot {
    fn new() -> Self {
        Self(Mutex::new(None))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.0.lock().expect("lock")
    }

    /// Puts `pb` on screen in place of the bar there.
    fn show(&self, pb: ProgressBar) {
        self.clear();
        *self.lock() = Some(pb);
    }

    /// Clears the bar still on screen, if any.
    fn clear(&self) {
        if let Some(b) = self.lock().take() {
            b.finish_and_clear();
        }
    }

    /// Runs `f` on the bar on screen, if any.
    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(b) = self.lock().as_ref() {
            f(b);
        }
    }

    /// A line above the bar, or on stderr when there is none.
    fn println(&self, text: &str) {
        match self.lock().as_ref() {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// Moves the bar that `make` makes on first use to `done`, and clears it once `done`
    /// reaches `total`.
    fn advance(&self, done: u64, total: Option<u64>, make: impl FnOnce() -> ProgressBar) {
        let mut guard = self.lock();
        let bar = guard.get_or_insert_with(make);
        bar.set_position(done);
        if total.is_some_and(|t| done >= t) {
            bar.finish_and_clear();
            *guard = None;
        }
    }
}

/// Progress bars for training.
pub struct TrainBars {
    bar: Slot,
}

impl TrainBars {
    pub fn new() -> Self {
        Self { bar: Slot::new() }
    }
}

impl instrec::train::Observer for TrainBars {
    fn message(&self, text: &str) {
        self.bar.println(text);
    }
    fn epoch_start(&self, epoch: usize, max_epochs: usize, batches: usize) {
        self.bar
            .show(items(batches, &format!("epoch {epoch}/{max_epochs}")));
    }
    fn batch(&self, done: usize, loss: f64) {
        self.bar.with(|b| {
            b.set_position(done as u64);
            b.set_message(format!("loss {loss:.4}"));
        });
    }
    fn download(&self, done: u64, total: Option<u64>) {
        self.bar
            .advance(done, total, || bytes(total, "downloading ImageNet weights"));
    }
    fn epoch_end(&self, l: &instrec::train::EpochLog) {
        self.bar.clear();
        eprintln!(
            "epoch {:>3}  lr {:.2e}  train loss {:.4}  val loss {:.4}  val micro-F1 {:.3}  {:.1} s  {:.0} windows/s",
            l.epoch, l.lr, l.train_loss, l.val_loss, l.val_micro_f1, l.seconds, l.samples_per_s
        );
    }
}

/// Progress bars for experiments and the demo: rendering, then each run's training.
pub struct ExperimentBars {
    train: TrainBars,
    render: Slot,
}

impl ExperimentBars {
    pub fn new() -> Self {
        Self {
            train: TrainBars::new(),
            render: Slot::new(),
        }
    }

    /// Clears a bar still on screen.
    pub fn finish(&self) {
        self.render.clear();
    }
}

impl instrec::experiment::ExperimentObserver for ExperimentBars {
    fn rendering(&self, done: usize, total: usize) {
        self.render.advance(done as u64, Some(total as u64), || {
            items(total, "rendering")
        });
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
    bar: Slot,
}

impl DownloadBars {
    pub fn new() -> Self {
        Self { bar: Slot::new() }
    }

    /// Clears a bar still on screen.
    pub fn finish(&self) {
        self.bar.clear();
    }
}

impl instrec::data::download::DownloadObserver for DownloadBars {
    fn transfer(&self, name: &str, resumed_from: u64, total: Option<u64>) {
        let pb = bytes(total, name);
        pb.set_position(resumed_from);
        self.bar.show(pb);
    }
    fn bytes(&self, done: u64) {
        self.bar.with(|b| b.set_position(done));
    }
    fn message(&self, text: &str) {
        self.bar.println(text);
    }
}
