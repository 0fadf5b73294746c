//! Exemplar slots: the latest exemplar of one series (or bucket) of one
//! process, in an entry of an `exemplar_<id>.muster` file.
//!
//! A slot is [`crate::format::EXEMPLAR_PAYLOAD`] bytes of 8-byte words:
//!
//! | word | what |
//! |---|---|
//! | 0 | sequence: even when the slot is stable, odd while a writer is in it |
//! | 1 | the exemplar's value (f64 bits) |
//! | 2 | its timestamp, seconds since the epoch (f64 bits); 0 = no exemplar yet |
//! | 3 | length of the encoded labels, in bytes |
//! | 4.. | the encoded labels: per label, a 2-byte little-endian length and the name's UTF-8 bytes, then the same for the value |
//!
//! A seqlock: a writer makes the sequence odd (compare-and-swap, so threads
//! of the process take turns; a writer that finds the slot busy drops its
//! exemplar instead of waiting: exemplars are samples), stores the words and
//! makes the sequence even again. A reader loads the sequence, the words and
//! the sequence again, and keeps what it read only when both loads agree and
//! are even: it never sees a torn exemplar. A slot left odd by a writer that
//! died midway reads as empty until the file's next writer adopts the file
//! and clears it.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::cell::ValueCell;
use crate::format::{FileKind, EXEMPLAR_LABEL_BYTES, EXEMPLAR_PAYLOAD};
use crate::store::Store;

/// Words in a slot.
pub(crate) const WORDS: usize = EXEMPLAR_PAYLOAD / 8;
/// Word index where the labels start.
const LABELS: usize = 4;
/// OpenMetrics' limit on an exemplar's label names and values together.
pub const MAX_LABEL_CHARS: usize = 128;

/// Why an exemplar's labels cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExemplarError {
    /// Names and values together are longer than OpenMetrics allows.
    #[error("exemplar labels have {0} characters; OpenMetrics allows at most 128")]
    TooLong(usize),
    /// A label name is empty or not `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("exemplar label name {0:?} is not a valid label name")]
    BadName(String),
}

/// An exemplar as stored: labels, value and timestamp (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredExemplar {
    /// Label names and values (e.g. `trace_id`).
    pub labels: Vec<(String, String)>,
    /// The observed value (1 for a counter increment by one).
    pub value: f64,
    /// Seconds since the epoch.
    pub timestamp: f64,
}

/// Encodes exemplar labels as a slot holds them, checking OpenMetrics' limit.
pub fn encode_labels(labels: &[(&str, &str)]) -> Result<Vec<u8>, ExemplarError> {
    let chars: usize = labels
        .iter()
        .map(|(n, v)| n.chars().count() + v.chars().count())
        .sum();
    if chars > MAX_LABEL_CHARS {
        return Err(ExemplarError::TooLong(chars));
    }
    let mut out = Vec::with_capacity(chars + 4 * labels.len());
    for (name, value) in labels {
        let valid = name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if name.is_empty() || !valid {
            return Err(ExemplarError::BadName((*name).to_owned()));
        }
        for part in [name, value] {
            out.extend_from_slice(&(part.len() as u16).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    // 128 characters of at most 4 bytes plus 4 bytes per label (at most 64
    // labels: names are not empty... values may be) always fit.
    debug_assert!(out.len() <= EXEMPLAR_LABEL_BYTES);
    Ok(out)
}

/// Decodes labels encoded by [`encode_labels`]; `None` if malformed.
fn decode_labels(mut bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let take = |bytes: &mut &[u8]| -> Option<String> {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = u16::from_le_bytes(*len) as usize;
        let text = rest.get(..len)?;
        *bytes = &rest[len..];
        String::from_utf8(text.to_vec()).ok()
    };
    let mut labels = Vec::new();
    while !bytes.is_empty() {
        let name = take(&mut bytes)?;
        let value = take(&mut bytes)?;
        labels.push((name, value));
    }
    Some(labels)
}

/// Writes an exemplar into `slot`; false if another thread was writing it
/// (the exemplar is dropped) or the labels do not fit.
pub(crate) fn store(slot: &[AtomicU64; WORDS], labels: &[u8], value: f64, timestamp: f64) -> bool {
    if labels.len() > EXEMPLAR_LABEL_BYTES {
        return false;
    }
    let seq = slot[0].load(Ordering::Relaxed);
    if seq % 2 == 1
        || slot[0]
            .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return false;
    }
    fence(Ordering::Release);
    slot[1].store(value.to_bits(), Ordering::Relaxed);
    slot[2].store(timestamp.to_bits(), Ordering::Relaxed);
    slot[3].store(labels.len() as u64, Ordering::Relaxed);
    for (word, chunk) in slot[LABELS..].iter().zip(labels.chunks(8)) {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    }
    slot[0].store(seq + 2, Ordering::Release);
    true
}

/// Reads the exemplar in `slot`: `None` when there is none yet, or when a
/// writer stays in the slot for longer than a few retries.
pub(crate) fn load(slot: &[AtomicU64; WORDS]) -> Option<StoredExemplar> {
    let mut words = [0u64; WORDS];
    for attempt in 0..200 {
        let before = slot[0].load(Ordering::Acquire);
        if before.is_multiple_of(2) {
            for (out, word) in words.iter_mut().zip(slot.iter()).skip(1) {
                *out = word.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if slot[0].load(Ordering::Relaxed) == before {
                return decode(&words);
            }
        }
        if attempt < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
    }
    None
}

fn decode(words: &[u64; WORDS]) -> Option<StoredExemplar> {
    let timestamp = f64::from_bits(words[2]);
    let len = words[3] as usize;
    if timestamp == 0.0 || len > EXEMPLAR_LABEL_BYTES {
        return None;
    }
    let bytes: Vec<u8> = words[LABELS..]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(len)
        .collect();
    Some(StoredExemplar {
        labels: decode_labels(&bytes)?,
        value: f64::from_bits(words[1]),
        timestamp,
    })
}

/// When a file is adopted: a slot its previous writer left midway is
/// emptied (its words may be torn).
pub(crate) fn clear_stale_busy(slot: &[AtomicU64; WORDS]) {
    let seq = slot[0].load(Ordering::Relaxed);
    if seq % 2 == 1 {
        slot[2].store(0, Ordering::Relaxed);
        slot[3].store(0, Ordering::Relaxed);
        slot[0].store(seq + 1, Ordering::Release);
    }
}

/// Where one series' (or bucket's) latest exemplar of this process goes: an
/// entry of the store's exemplar file, found like a [`ValueCell`]'s value
/// (also after `fork`, in the child's own file).
pub struct ExemplarCell(ValueCell);

impl ExemplarCell {
    /// A slot for `key` (see [`crate::encode_key`]) in `store`'s exemplar file.
    pub fn new_in(store: &Store, key: String) -> ExemplarCell {
        ExemplarCell(ValueCell::new_in(store, FileKind::Exemplar, key))
    }

    /// The slot's key.
    pub fn key(&self) -> &str {
        self.0.key()
    }

    fn slot(&self) -> &[AtomicU64; WORDS] {
        // SAFETY: cells of kind `Exemplar` resolve to a value area of
        // `EXEMPLAR_PAYLOAD` bytes (the exemplar file's entries, or memory
        // of that size), 8-byte aligned, living as long as the store.
        unsafe { &*(self.0.words_ptr() as *const [AtomicU64; WORDS]) }
    }

    /// Stores an exemplar (labels from [`encode_labels`]); false when another
    /// thread was storing one into this slot at the same moment (this one is
    /// dropped).
    pub fn set(&self, labels: &[u8], value: f64, timestamp: f64) -> bool {
        store(self.slot(), labels, value, timestamp)
    }

    /// The exemplar this process last stored here.
    pub fn get(&self) -> Option<StoredExemplar> {
        load(self.slot())
    }
}

impl std::fmt::Debug for ExemplarCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ExemplarCell").field(&self.0.key()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_are_limited() {
        let labels = [("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), ("x", "é")];
        let bytes = encode_labels(&labels).unwrap();
        let back = decode_labels(&bytes).unwrap();
        assert_eq!(back[0], ("trace_id".into(), labels[0].1.into()));
        assert_eq!(back[1], ("x".into(), "é".into()));
        let long = "a".repeat(120);
        assert!(
            encode_labels(&[("trace_id", &long)]).is_ok(),
            "128 is allowed"
        );
        assert!(matches!(
            encode_labels(&[("trace_id", &"a".repeat(121))]),
            Err(ExemplarError::TooLong(129))
        ));
        assert!(matches!(
            encode_labels(&[("", "a")]),
            Err(ExemplarError::BadName(_))
        ));
        assert!(matches!(
            encode_labels(&[("1a", "a")]),
            Err(ExemplarError::BadName(_))
        ));
        // Four-byte characters up to the limit fit.
        let wide = "😀".repeat(120);
        let bytes = encode_labels(&[("trace_id", &wide)]).unwrap();
        assert!(bytes.len() <= EXEMPLAR_LABEL_BYTES);
    }

    #[test]
    fn a_slot_reads_what_was_stored_and_a_busy_one_refuses_a_second_writer() {
        let slot: [AtomicU64; WORDS] = std::array::from_fn(|_| AtomicU64::new(0));
        assert_eq!(load(&slot), None);
        let labels = encode_labels(&[("trace_id", "abc")]).unwrap();
        assert!(store(&slot, &labels, 0.5, 1700000000.123));
        let got = load(&slot).unwrap();
        assert_eq!(got.labels, vec![("trace_id".into(), "abc".into())]);
        assert_eq!((got.value, got.timestamp), (0.5, 1700000000.123));
        slot[0].fetch_add(1, Ordering::Relaxed); // a writer is in it
        assert!(!store(&slot, &labels, 1.0, 1.0));
        assert_eq!(load(&slot), None, "a busy slot is not read torn");
        clear_stale_busy(&slot);
        assert_eq!(load(&slot), None, "a slot left midway reads as empty");
        assert!(store(&slot, &labels, 2.0, 2.0));
        assert_eq!(load(&slot).unwrap().value, 2.0);
    }
}
