//! An entry's value and timestamp, published and read as one pair.
//!
//! A most-recent gauge is merged by its timestamp, so a scrape must never pair
//! a new value with an old timestamp or the reverse. The file format has no
//! room for a sequence number, so the timestamp word is the lock: a writer
//! swaps in [`BUSY`] (a NaN no clock gives), stores the value, then stores the
//! new timestamp. A reader loads timestamp, value, timestamp, and keeps the
//! pair when both timestamp loads agree and are not busy.
//!
//! Writers of one file are threads of one process (one owner per file), so
//! they take turns on the busy mark. A reader that finds the mark for longer
//! than a few spins (the writer was preempted) waits for it, as long as the
//! file still has a live writer and at most [`MAX_WAIT`]; a mark left by a
//! writer that died midway reads as unset (timestamp 0), and the file's next
//! writer clears it when it adopts the file. Python's reader still reads the
//! file: in the nanoseconds a write takes it sees a NaN timestamp, which its
//! merge treats like an unset one (that process's value is skipped for that
//! scrape), never a torn pair.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The timestamp word while a writer is between its two stores: a quiet NaN
/// whose payload spells "muster". No clock and no Python process writes it.
pub(crate) const BUSY: u64 = 0x7ff8_6d75_7374_6572;

/// Attempts that only spin before waiting for the writer in earnest.
const SPINS: u32 = 64;
/// The longest a reader waits for a live writer to finish one pair.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(250);

/// Waits a little for a writer to finish: spins first, then sleeps briefly
/// (a preempted writer needs the CPU more than we do).
fn back_off(attempt: u32) {
    if attempt < SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Replaces the pair with `(next(old value), timestamp)`, atomically for
/// [`load`] and for other writers of this process.
pub(crate) fn update(words: &[AtomicU64; 2], next: impl FnOnce(f64) -> f64, timestamp: f64) {
    let [value, stamp] = words;
    let mut attempt = 0;
    let mut seen = stamp.load(Ordering::Relaxed);
    loop {
        if seen == BUSY {
            back_off(attempt);
            attempt = attempt.saturating_add(1);
            seen = stamp.load(Ordering::Relaxed);
            continue;
        }
        match stamp.compare_exchange_weak(seen, BUSY, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now) => seen = now,
        }
    }
    let new = next(f64::from_bits(value.load(Ordering::Relaxed)));
    value.store(new.to_bits(), Ordering::Release);
    stamp.store(timestamp.to_bits(), Ordering::Release);
}

/// The pair as one writer left it. While the pair is busy the reader waits
/// for its writer, if `writer_alive` says the file still has one, for at most
/// [`MAX_WAIT`]; a pair that stays busy reads with timestamp 0 (unset).
#[inline]
pub(crate) fn load(words: &[AtomicU64; 2], writer_alive: impl FnMut() -> bool) -> (f64, f64) {
    // Nearly always: no writer midway, three loads.
    let [value, stamp] = words;
    let before = stamp.load(Ordering::Acquire);
    if before != BUSY {
        let v = value.load(Ordering::Acquire);
        if stamp.load(Ordering::Relaxed) == before {
            return (f64::from_bits(v), f64::from_bits(before));
        }
    }
    load_contended(words, writer_alive)
}

/// [`load`] when a writer was midway: tries again, then waits.
#[cold]
#[inline(never)]
fn load_contended(words: &[AtomicU64; 2], mut writer_alive: impl FnMut() -> bool) -> (f64, f64) {
    let [value, stamp] = words;
    let mut deadline = None;
    for attempt in 0.. {
        let before = stamp.load(Ordering::Acquire);
        if before != BUSY {
            let v = value.load(Ordering::Acquire);
            if stamp.load(Ordering::Relaxed) == before {
                return (f64::from_bits(v), f64::from_bits(before));
            }
        } else if attempt >= SPINS {
            let deadline = *deadline.get_or_insert_with(|| {
                let alive = writer_alive();
                Instant::now() + if alive { MAX_WAIT } else { Duration::ZERO }
            });
            if Instant::now() >= deadline {
                break;
            }
        }
        back_off(attempt);
    }
    (f64::from_bits(value.load(Ordering::Acquire)), 0.0)
}

/// The timestamp a new writer finds: a busy mark left by a dead writer
/// becomes 0 (unset); anything else is kept.
pub(crate) fn clear_stale_busy(words: &[AtomicU64; 2]) {
    let _ = words[1].compare_exchange(BUSY, 0, Ordering::Relaxed, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_pair_reads_as_unset_and_is_cleared() {
        let words = [AtomicU64::new(5f64.to_bits()), AtomicU64::new(BUSY)];
        let dead = || false;
        assert_eq!(load(&words, dead), (5.0, 0.0));
        // A live writer is waited for, but not for ever.
        let start = Instant::now();
        assert_eq!(load(&words, || true), (5.0, 0.0));
        assert!(start.elapsed() >= MAX_WAIT);
        clear_stale_busy(&words);
        assert_eq!(load(&words, dead), (5.0, 0.0));
        update(&words, |v| v + 1.0, 7.5);
        assert_eq!(load(&words, dead), (6.0, 7.5));
        clear_stale_busy(&words);
        assert_eq!(load(&words, dead), (6.0, 7.5));
    }
}
