//! Giving memory back after a peak.
//!
//! glibc keeps freed heap for reuse and only returns what sits at the top of
//! the heap: after the loader (the kernel's BTF parsed, then dropped) or an
//! exec storm (tens of thousands of short-lived process entries, then
//! expired) the daemon's RSS would stay at its peak for good, on every node.
//! The detector's maps shrink once they are mostly empty, and a periodic
//! `malloc_trim` hands the free pages back (it madvises free chunks in the
//! middle of the heap too, not only the top).

use crate::time::Mono;

/// How often the free heap is looked at: a trim costs a walk of the free
/// lists, cheap at this rate and quick enough for the "RSS back within a
/// minute of a storm" budget.
const CHECK_EVERY_NS: u64 = 10_000_000_000;
/// Free heap worth giving back.
const TRIM_ABOVE_BYTES: usize = 1 << 20;

/// Fewer malloc arenas: each thread that allocates may otherwise get its
/// own (one per core ×8), each keeping its own freed memory.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before the
    // worker threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Free bytes held by the allocator (all arenas), if it can tell.
fn free_heap_bytes() -> Option<usize> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads allocator statistics.
        let mi = unsafe { libc::mallinfo2() };
        Some(mi.fordblks)
    }
    #[cfg(not(target_env = "gnu"))]
    None
}

/// Return free heap pages to the system now; true if anything was.
pub fn trim() -> bool {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim is thread-safe and only releases free memory.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(target_env = "gnu"))]
    false
}

/// Decides, on the daemon's tick, when to trim.
#[derive(Debug, Default)]
pub struct Trimmer {
    last_check: Option<Mono>,
}

impl Trimmer {
    /// True when it is time to shrink and trim (the caller shrinks its
    /// own collections first, so their freed buffers are trimmed too).
    pub fn due(&mut self, now: Mono) -> bool {
        if self
            .last_check
            .is_some_and(|t| now.saturating_sub(t) < CHECK_EVERY_NS)
        {
            return false;
        }
        self.last_check = Some(now);
        true
    }

    /// Trim if enough is free; returns whether a trim ran.
    pub fn trim_if_worth_it(&self) -> bool {
        free_heap_bytes().is_none_or(|free| free >= TRIM_ABOVE_BYTES) && trim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_period() {
        let mut t = Trimmer::default();
        assert!(t.due(Mono(1)));
        assert!(!t.due(Mono(1 + CHECK_EVERY_NS - 1)));
        assert!(t.due(Mono(1 + CHECK_EVERY_NS)));
    }

    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }

    #[test]
    fn a_fragmented_peak_is_given_back() {
        // 80 MiB of small blocks (like process entries), every 64th kept:
        // the heap's top stays in use, so free() alone returns nothing.
        let mut blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 4096]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(64).map(std::mem::take).collect();
        drop(blocks);
        let before = rss_bytes();
        assert!(trim(), "malloc_trim released nothing");
        let after = rss_bytes();
        assert!(
            before.saturating_sub(after) > 40 << 20,
            "RSS {before} → {after} after freeing ~79 MiB"
        );
        assert_eq!(kept.len(), 313);
    }
}
