//! Many files at once: decoder threads make windows while one thread scores full batches drawn
//! from several files.

use std::path::{Path, PathBuf};

use crate::error::FileError;

use super::tagger::{TagResult, Tagger};
use super::windows::FileEnd;

impl Tagger {
    /// Tags many files at once: `threads` workers decode and make windows while this thread
    /// scores full batches drawn from several files, so the cores and the batch stay busy. The
    /// windows waiting at any time are bounded by the batch and a queue of `2 × threads` decoder
    /// blocks' worth, however many or long the files ([`TagStats::max_waiting`]). `done` gets
    /// each file's result as soon as its last window is scored (in completion order). A quiet
    /// file ([`Tagger::boost_quiet`]) is made again with its gain once its level is known, and
    /// the windows of its first pass are dropped.
    pub fn tag_many(
        &self,
        files: &[PathBuf],
        threads: usize,
        done: &mut dyn FnMut(&Path, Result<TagResult, FileError>),
    ) -> TagStats {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::mpsc::sync_channel;
        enum Msg {
            Windows(usize, Vec<Vec<f32>>),
            /// The file's windows so far are void: it is being made again with a gain.
            Again(usize),
            End(usize, Result<FileEnd, FileError>),
        }
        let threads = threads.max(1);
        // Each message holds at most one decoder block's windows; a few per worker may wait.
        let (tx, rx) = sync_channel::<Msg>(2 * threads);
        let next = AtomicUsize::new(0);
        let waiting = AtomicUsize::new(0);
        let mut stats = TagStats::default();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (tx, next, waiting) = (tx.clone(), &next, &waiting);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(i) else { break };
                        let mut emit = |w: Vec<Vec<f32>>| {
                            if !w.is_empty() {
                                waiting.fetch_add(w.len(), Ordering::Relaxed);
                                let _ = tx.send(Msg::Windows(i, w));
                            }
                        };
                        let mut end = self.windows_of(path, 0.0, &mut emit);
                        if let Some(gain_db) = end.as_ref().ok().and_then(|e| self.boost_for(e)) {
                            if tx.send(Msg::Again(i)).is_err() {
                                break;
                            }
                            end = self.windows_of(path, gain_db, &mut emit);
                        }
                        if tx.send(Msg::End(i, end)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut p = Pending::default();
            for msg in rx.iter() {
                stats.max_waiting = stats.max_waiting.max(waiting.load(Ordering::Relaxed));
                match msg {
                    Msg::Windows(i, w) => {
                        p.batch.extend(w.into_iter().map(|x| (i, x)));
                        while p.batch.len() >= self.batch_size {
                            let owners = p.score(self, self.batch_size, &waiting);
                            p.finish(self, &owners, files, done);
                        }
                    }
                    Msg::End(i, Ok(end)) => {
                        // Its last windows may wait for a full batch; it is handed over then.
                        stats.audio_s += end.duration_s;
                        p.ends.insert(i, end);
                        p.finish(self, &[i], files, done);
                    }
                    Msg::Again(i) => p.drop_file(i, &waiting),
                    Msg::End(i, Err(e)) => {
                        p.drop_file(i, &waiting);
                        stats.failed += 1;
                        done(&files[i], Err(e));
                    }
                }
            }
            while !p.batch.is_empty() {
                let owners = p.score(self, self.batch_size, &waiting);
                p.finish(self, &owners, files, done);
            }
        });
        stats
    }
}

/// The consumer's side of [`Tagger::tag_many`]: windows waiting for a batch, scores and ends of
/// the files in flight.
#[derive(Default)]
struct Pending {
    batch: Vec<(usize, Vec<f32>)>,
    scores: std::collections::HashMap<usize, Vec<Vec<f32>>>,
    ends: std::collections::HashMap<usize, FileEnd>,
}

impl Pending {
    /// Forgets a file's waiting windows and scores.
    fn drop_file(&mut self, i: usize, waiting: &std::sync::atomic::AtomicUsize) {
        let before = self.batch.len();
        self.batch.retain(|(j, _)| *j != i);
        waiting.fetch_sub(
            before - self.batch.len(),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.scores.remove(&i);
    }

    /// Scores the first `n` waiting windows; returns the files they belong to.
    fn score(
        &mut self,
        t: &Tagger,
        n: usize,
        waiting: &std::sync::atomic::AtomicUsize,
    ) -> Vec<usize> {
        let rest = self.batch.split_off(n.min(self.batch.len()));
        let batch = std::mem::replace(&mut self.batch, rest);
        let owners: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
        let out = t.score(batch.into_iter().map(|(_, x)| x));
        waiting.fetch_sub(owners.len(), std::sync::atomic::Ordering::Relaxed);
        for (&i, s) in owners.iter().zip(out) {
            self.scores.entry(i).or_default().push(s);
        }
        let mut files = owners;
        files.dedup();
        files
    }

    /// Hands over every file among `files` whose end is known and whose windows are all scored.
    fn finish(
        &mut self,
        t: &Tagger,
        files: &[usize],
        paths: &[PathBuf],
        done: &mut dyn FnMut(&Path, Result<TagResult, FileError>),
    ) {
        for &i in files {
            let complete = self
                .ends
                .get(&i)
                .is_some_and(|e| self.scores.get(&i).map_or(0, Vec::len) == e.starts.len());
            if complete {
                let end = self.ends.remove(&i).unwrap();
                let scores = self.scores.remove(&i).unwrap_or_default();
                done(&paths[i], Ok(t.result(&paths[i], &end, scores)));
            }
        }
    }
}

/// Counts from [`Tagger::tag_many`].
#[derive(Debug, Clone, Default)]
pub struct TagStats {
    pub audio_s: f64,
    pub failed: usize,
    /// The most windows that waited at once (made, not yet scored).
    pub max_waiting: usize,
}
