//! Scratch buffers reused across calls, so multi-megabyte im2col and activation buffers are not
//! page-faulted and cleared anew each time; and zeroed output buffers cleared on all threads.

/// `len` zeros, cleared on every rayon thread: for a kernel's output or gradient buffer. glibc's
/// `calloc` (`vec![0.0; n]`) clears a reused heap block on the calling thread alone, a serial
/// pass of up to 23 MB (ResNet50's early planes) while the other threads wait.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(1 << 16)
        .for_each(|c| c.fill(std::mem::MaybeUninit::new(0.0)));
    // SAFETY: the loop above wrote each of the first `len` floats.
    unsafe { v.set_len(len) };
    v
}

/// Scratch buffers reused across calls: fresh multi-megabyte buffers cost a page fault and a
/// page clear per 4 KB (≈10 % of a training step when each call allocated its own).
static SCRATCH: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// A scratch buffer of `len` floats; its contents are unspecified (every user overwrites it), so a
/// reused one is not cleared again.
pub(crate) struct Scratch(pub(crate) Vec<f32>);

impl Scratch {
    pub(crate) fn take(len: usize) -> Self {
        let mut pool = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest buffer that holds `len`, so that large ones stay for large requests.
        let fits = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= len)
            .min_by_key(|&i| pool[i].capacity());
        let Some(i) = fits else {
            // None holds `len`: a fresh zeroed one, exactly `len` long, keeps the invariant below.
            pool.pop();
            drop(pool);
            return Self(vec![0.0; len]);
        };
        let mut v = pool.swap_remove(i);
        drop(pool);
        // SAFETY: every pooled buffer was initialised over its whole capacity (created by
        // `vec![0.0; n]` with capacity n, and only ever truncated since), and f32 has no invalid
        // bit patterns, so lengthening it up to its capacity exposes initialised floats only.
        unsafe { v.set_len(len) };
        Self(v)
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mut pool = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
        // A few buffers cover a forward or backward pass (activations, im2col, GEMM output);
        // more would only hold memory.
        if pool.len() < 12 {
            pool.push(std::mem::take(&mut self.0));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroed_is_all_zeros_of_the_length_asked() {
        // Lengths around the clearing chunk (65,536), on a heap that held non-zero floats.
        for len in [0, 1, 65_535, 65_536, 200_001] {
            drop(vec![7f32; len]);
            let v = super::zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0), "len {len}");
        }
    }
}
