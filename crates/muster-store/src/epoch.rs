//! Epoch tags: what makes a cached value address valid, checked in one load.
//!
//! A [`crate::ValueCell`] caches its value's address with a 16-bit tag in one
//! `AtomicU64`; the address is valid while its tag is the current one. The
//! current tag changes (see [`advance`]) in a child after `fork` and whenever a
//! store is reconfigured, so every cell resolves again, once.
//!
//! Tags are never reused while a cell holds them: each tag counts its holders,
//! and [`advance`] only moves to a tag nobody holds. So a tag cannot wrap
//! around into a stale address, however many times the process reconfigures or
//! forks. If all tags are held (65,534 cells each stuck on a different epoch),
//! the current tag becomes [`UNCACHED`], which no cell may hold: updates then
//! resolve every time (slower, still correct) until a tag is free again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Number of tags; a tag fits in the 16 bits above a 48-bit address.
const TAGS: usize = 1 << 16;
/// The tag no cell holds: while it is current, nothing is cached.
/// (Tag 0 is never current either: it marks a cell never resolved.)
pub(crate) const UNCACHED: u64 = (TAGS - 1) as u64;

static CURRENT: AtomicU64 = AtomicU64::new(1);
/// How many cells hold each tag (plus resolutions in flight).
static HOLDERS: [AtomicU32; TAGS] = [const { AtomicU32::new(0) }; TAGS];

/// The current tag.
#[inline(always)]
pub(crate) fn current() -> u64 {
    CURRENT.load(Ordering::Relaxed)
}

/// Moves to a new tag that no cell holds, so every cached address is stale.
///
/// Only atomics: async-signal-safe, as `fork`'s child handler needs.
pub(crate) fn advance() {
    let mut now = CURRENT.load(Ordering::SeqCst);
    loop {
        let free = (1..UNCACHED)
            .map(|i| (now + i - 1) % (UNCACHED - 1) + 1)
            .find(|&t| t != now && HOLDERS[t as usize].load(Ordering::SeqCst) == 0)
            .unwrap_or(UNCACHED);
        match CURRENT.compare_exchange(now, free, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return,
            Err(moved) => now = moved,
        }
    }
}

/// Takes a hold on `tag` if it is still current; a resolution made after a
/// successful hold may be cached under `tag` (and released with [`release`]).
pub(crate) fn hold(tag: u64) -> bool {
    if tag == UNCACHED {
        return false;
    }
    HOLDERS[tag as usize].fetch_add(1, Ordering::SeqCst);
    if CURRENT.load(Ordering::SeqCst) == tag {
        return true;
    }
    release(tag);
    false
}

/// Gives back a hold taken by [`hold`] (tag 0, "never resolved", is ignored).
pub(crate) fn release(tag: u64) {
    if tag != 0 {
        HOLDERS[tag as usize].fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_tag_is_never_current_again() {
        // Other tests of this crate advance the epoch concurrently: only
        // assertions that hold whatever they do.
        let tag = loop {
            let t = current();
            if hold(t) {
                break t;
            }
        };
        for _ in 0..3 * TAGS {
            advance();
            assert_ne!(current(), tag, "a held tag came back");
        }
        release(tag);
        assert_ne!(current(), 0);
    }

    #[test]
    fn the_uncached_tag_is_never_held() {
        assert!(!hold(UNCACHED));
        assert_eq!(HOLDERS[UNCACHED as usize].load(Ordering::SeqCst), 0);
    }
}
