//! Reading files: a validating entry parser and a live, mapped view of a file.
//!
//! Nothing here trusts the file: every length and offset is checked against
//! `used` and the file size, and a problem is an error for that file, never a
//! panic.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use memmap2::{Mmap, MmapOptions};

use crate::format::{padding, HEADER_SIZE, MAX_FILE_SIZE};

/// Why a file (or the rest of it) cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The file has no bytes at all, not even a header.
    #[error("empty file (no header)")]
    Empty,
    /// The file is shorter than its 8-byte header.
    #[error("file of {0} bytes is shorter than the 8-byte header")]
    ShortHeader(usize),
    /// The header's `used` is out of range.
    #[error("header says {used} bytes are used, but the file has {size}")]
    BadUsed {
        /// The header's value.
        used: i64,
        /// The file's size.
        size: usize,
    },
    /// An entry runs past `used`.
    #[error("entry at offset {offset} runs past the {used} bytes in use (truncated or corrupt)")]
    Truncated {
        /// Where the entry starts.
        offset: usize,
        /// The header's `used`.
        used: usize,
    },
    /// An entry's key length is negative.
    #[error("entry at offset {offset} has a negative key length {len}")]
    NegativeLength {
        /// Where the entry starts.
        offset: usize,
        /// The length read.
        len: i32,
    },
    /// The path is not a regular file (a symlink, directory, fifo, ...).
    #[error("not a regular file")]
    NotRegular,
    /// The file is larger than this reader accepts.
    #[error("file of {0} bytes is larger than the 1 GiB limit")]
    TooLarge(u64),
    /// The operating system refused.
    #[error("{0}")]
    Io(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e.to_string())
    }
}

/// One entry found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry<'a> {
    /// Offset of the entry's length field.
    pub offset: usize,
    /// The key bytes (not yet checked to be UTF-8 or JSON).
    pub key: &'a [u8],
    /// Offset of the 8-byte value; the timestamp follows it.
    pub value_pos: usize,
    /// Bytes of the value area: 16 (value and timestamp) in `*.db` files,
    /// more in exemplar files (see [`crate::format::FileKind::payload_size`]).
    pub payload: usize,
}

impl RawEntry<'_> {
    /// Offset just past this entry.
    pub fn end(&self) -> usize {
        self.value_pos + self.payload
    }
}

/// Reads the header's `used` from `data`, validated against `data.len()`.
///
/// A `used` of 0 is a file Python created but has not initialised yet: it
/// holds no entries, so it reads as `HEADER_SIZE`.
pub fn read_used(data: &[u8]) -> Result<usize, ReadError> {
    check_header_fits(data)?;
    let used = i32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
    check_used(used, data.len())
}

/// Whether `data` is long enough to hold the header.
fn check_header_fits(data: &[u8]) -> Result<(), ReadError> {
    match data.len() {
        0 => Err(ReadError::Empty),
        len if len < HEADER_SIZE => Err(ReadError::ShortHeader(len)),
        _ => Ok(()),
    }
}

fn check_used(used: i32, size: usize) -> Result<usize, ReadError> {
    if used == 0 {
        return Ok(HEADER_SIZE);
    }
    if used < HEADER_SIZE as i32 || used as usize > size {
        return Err(ReadError::BadUsed {
            used: used.into(),
            size,
        });
    }
    Ok(used as usize)
}

/// Iterates the entries of `data[..used]` starting at `start`, which must be
/// an entry boundary (`HEADER_SIZE` for the whole file). After the first
/// error the iterator ends.
pub fn entries(data: &[u8], start: usize, used: usize) -> Entries<'_> {
    entries_sized(data, start, used, crate::format::VALUE_PAYLOAD)
}

/// [`entries`] of a file whose value areas are `payload` bytes long (a
/// multiple of 8, at least 16): muster's exemplar files.
pub fn entries_sized(data: &[u8], start: usize, used: usize, payload: usize) -> Entries<'_> {
    Entries {
        data,
        pos: start,
        used: used.min(data.len()),
        failed: false,
        payload,
    }
}

/// Iterator returned by [`entries`].
pub struct Entries<'a> {
    data: &'a [u8],
    pos: usize,
    used: usize,
    failed: bool,
    payload: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<RawEntry<'a>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.used {
            return None;
        }
        let offset = self.pos;
        let result = self.parse_at(offset);
        match &result {
            Ok(entry) => self.pos = entry.end(),
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

impl<'a> Entries<'a> {
    fn parse_at(&self, offset: usize) -> Result<RawEntry<'a>, ReadError> {
        let truncated = ReadError::Truncated {
            offset,
            used: self.used,
        };
        let len_end = offset.checked_add(4).ok_or(truncated.clone())?;
        if len_end > self.used {
            return Err(truncated);
        }
        let b = &self.data[offset..len_end];
        let len = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        if len < 0 {
            return Err(ReadError::NegativeLength { offset, len });
        }
        let len = len as usize;
        let value_pos = len_end + len + padding(len);
        if value_pos + self.payload > self.used {
            return Err(truncated);
        }
        Ok(RawEntry {
            offset,
            key: &self.data[len_end..len_end + len],
            value_pos,
            payload: self.payload,
        })
    }
}

/// A read-only, shared mapping of one file, for reading while writers run.
///
/// Values are loaded with atomic 8-byte loads, so a concurrent writer's
/// update is seen whole or not at all; `used` is loaded with acquire order,
/// so every entry it covers is complete.
pub struct MappedFile {
    map: Option<Mmap>,
    file: File,
    dev: u64,
    ino: u64,
}

impl MappedFile {
    /// Opens `path` without following symlinks and maps it read-only.
    pub fn open(path: &Path) -> Result<MappedFile, ReadError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    ReadError::NotRegular
                } else {
                    ReadError::from(e)
                }
            })?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(ReadError::NotRegular);
        }
        let mut mapped = MappedFile {
            map: None,
            file,
            dev: meta.dev(),
            ino: meta.ino(),
        };
        mapped.map_size(meta.len())?;
        Ok(mapped)
    }

    /// The device and inode the file had when opened: a file replaced under
    /// the same name has a different identity.
    pub fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Maps the file again if it has grown (or shrunk) since it was mapped.
    pub fn remap(&mut self) -> Result<(), ReadError> {
        let size = self.file.metadata()?.len();
        self.map_size(size)
    }

    /// Maps the file again at its size now, whatever it was: after a page of
    /// the mapping was replaced by zeros because the file shrank under it
    /// ([`crate::shrunk`]), even if it has grown back to the same size.
    pub fn map_again(&mut self) -> Result<(), ReadError> {
        self.map = None;
        self.remap()
    }

    /// Maps the file's first `size` bytes (its size as just looked up),
    /// unless that is what is mapped already.
    fn map_size(&mut self, size: u64) -> Result<(), ReadError> {
        if size > MAX_FILE_SIZE as u64 {
            return Err(ReadError::TooLarge(size));
        }
        let size = size as usize;
        if self.map.as_ref().map_or(0, |m| m.len()) == size {
            return Ok(());
        }
        self.map = if size == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only and shared. Other processes
            // may change the bytes under it: values are only read through
            // atomics (`load`) and key bytes are never rewritten once `used`
            // covers them. Truncation by a third party could fault; writers
            // of this format only ever grow files.
            Some(unsafe { MmapOptions::new().len(size).map(&self.file)? })
        };
        Ok(())
    }

    /// The mapped bytes (empty for an empty file).
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The header's `used`, loaded with acquire order and validated.
    pub fn used(&self) -> Result<usize, ReadError> {
        let data = self.bytes();
        check_header_fits(data)?;
        // SAFETY: the mapping is page aligned and at least 8 bytes long.
        let used = unsafe { &*(data.as_ptr() as *const AtomicI32) }.load(Ordering::Acquire);
        check_used(used, data.len())
    }

    /// The `N` 8-byte words at `value_pos`, if aligned and inside the mapping.
    #[inline(always)]
    fn words<const N: usize>(&self, value_pos: usize) -> Option<&[AtomicU64; N]> {
        let data = self.bytes();
        if !value_pos.is_multiple_of(8) || value_pos + 8 * N > data.len() {
            return None;
        }
        // SAFETY: in bounds and 8-byte aligned (the mapping is page aligned).
        Some(unsafe { &*(data.as_ptr().add(value_pos) as *const [AtomicU64; N]) })
    }

    /// Loads the exemplar slot at `value_pos` (from an entry of an exemplar
    /// file, see [`entries_sized`]): never a torn exemplar; `None` if the
    /// slot is empty, busy for too long, or not inside the mapping.
    pub fn load_exemplar(&self, value_pos: usize) -> Option<crate::StoredExemplar> {
        crate::exemplar::load(self.words::<{ crate::exemplar::WORDS }>(value_pos)?)
    }

    /// Loads the value alone at `value_pos` (see [`MappedFile::load`]).
    #[inline]
    pub fn load_value(&self, value_pos: usize) -> f64 {
        self.words(value_pos)
            .map_or(0.0, |[v]| f64::from_bits(v.load(Ordering::Relaxed)))
    }

    /// Loads the value and timestamp at `value_pos` (from a [`RawEntry`]) as
    /// one pair: never a new value with an old timestamp or the reverse
    /// (muster's writer publishes them together, see `pair`).
    ///
    /// `value_pos` must come from this file's entries, which guarantees it is
    /// 8-byte aligned and within the mapping; anything else reads as 0.
    #[inline]
    pub fn load(&self, value_pos: usize) -> (f64, f64) {
        let alive = || {
            let id = crate::procfs::FileId::new(self.dev, self.ino);
            crate::procfs::flock_holder(id).is_some()
        };
        self.words(value_pos)
            .map_or((0.0, 0.0), |words| crate::pair::load(words, alive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::entry_size;

    fn file_with(keys: &[&str]) -> Vec<u8> {
        let mut data = vec![0u8; HEADER_SIZE];
        for (i, k) in keys.iter().enumerate() {
            data.extend_from_slice(&(k.len() as i32).to_ne_bytes());
            data.extend_from_slice(k.as_bytes());
            data.extend(std::iter::repeat_n(b' ', padding(k.len())));
            data.extend_from_slice(&(i as f64).to_ne_bytes());
            data.extend_from_slice(&0f64.to_ne_bytes());
        }
        let used = data.len() as i32;
        data[..4].copy_from_slice(&used.to_ne_bytes());
        data
    }

    #[test]
    fn reads_entries_in_order() {
        let data = file_with(&["a", "bbbb", "ccccccccc"]);
        let used = read_used(&data).unwrap();
        let got: Vec<_> = entries(&data, HEADER_SIZE, used)
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].key, b"bbbb");
        assert_eq!(got[1].offset, HEADER_SIZE + entry_size(1));
        assert_eq!(got[2].end(), used);
    }

    #[test]
    fn partial_trailing_entry_is_an_error_after_good_ones() {
        let mut data = file_with(&["abc", "defgh"]);
        let used = data.len() - 3;
        data[..4].copy_from_slice(&(used as i32).to_ne_bytes());
        let got: Vec<_> = entries(&data, HEADER_SIZE, used).collect();
        assert!(got[0].is_ok());
        assert!(matches!(got[1], Err(ReadError::Truncated { .. })));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn header_problems_are_errors() {
        assert_eq!(read_used(&[]), Err(ReadError::Empty));
        assert_eq!(read_used(&[1, 2, 3]), Err(ReadError::ShortHeader(3)));
        let mut data = file_with(&["x"]);
        data[..4].copy_from_slice(&1000i32.to_ne_bytes());
        assert!(matches!(read_used(&data), Err(ReadError::BadUsed { .. })));
        data[..4].copy_from_slice(&(-5i32).to_ne_bytes());
        assert!(matches!(read_used(&data), Err(ReadError::BadUsed { .. })));
        data[..4].copy_from_slice(&0i32.to_ne_bytes());
        assert_eq!(read_used(&data), Ok(HEADER_SIZE));
    }

    #[test]
    fn mapped_loads_read_entries_and_refuse_other_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter_1.db");
        std::fs::write(&path, file_with(&["a", "bb"])).unwrap();
        let map = MappedFile::open(&path).unwrap();
        let used = map.used().unwrap();
        let got: Vec<_> = entries(map.bytes(), HEADER_SIZE, used)
            .map(|e| e.unwrap().value_pos)
            .map(|pos| (map.load_value(pos), map.load(pos)))
            .collect();
        assert_eq!(got, [(0.0, (0.0, 0.0)), (1.0, (1.0, 0.0))]);
        // Misaligned, or running past the mapping: 0, never a bad read.
        let last = used - 8;
        assert_eq!(map.load(HEADER_SIZE + 1), (0.0, 0.0));
        assert_eq!(map.load_value(HEADER_SIZE + 1), 0.0);
        assert_eq!(map.load(last), (0.0, 0.0));
        assert_eq!(map.load_value(used), 0.0);
    }

    #[test]
    fn negative_length_is_an_error() {
        let mut data = file_with(&["abc"]);
        data[8..12].copy_from_slice(&(-1i32).to_ne_bytes());
        let used = read_used(&data).unwrap();
        let got: Vec<_> = entries(&data, HEADER_SIZE, used).collect();
        assert!(matches!(got[0], Err(ReadError::NegativeLength { .. })));
    }
}
