//! Property tests: the reader never panics on any bytes, and reads back
//! exactly what the writer wrote.

use muster_store::format::{entry_size, HEADER_SIZE};
use muster_store::reader::{entries, read_used, MappedFile};
use muster_store::writer::FileWriter;
use proptest::prelude::*;

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(used) = read_used(&data) {
            let mut end = HEADER_SIZE;
            for entry in entries(&data, HEADER_SIZE, used) {
                match entry {
                    Ok(e) => {
                        prop_assert_eq!(e.offset, end);
                        prop_assert!(e.end() <= used);
                        prop_assert_eq!(e.value_pos % 8, 0);
                        end = e.end();
                    }
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn writer_round_trips_through_reader(keys in proptest::collection::vec("\\PC{0,40}", 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gauge_all_1.db");
        let writer = FileWriter::open(&path).unwrap();
        let mut expected: Vec<(String, f64)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let slot = unsafe { &*writer.value_ptr(key).unwrap() };
            slot.store((i as f64).to_bits(), std::sync::atomic::Ordering::Relaxed);
            match expected.iter_mut().find(|(k, _)| k == key) {
                Some(e) => e.1 = i as f64,
                None => expected.push((key.clone(), i as f64)),
            }
        }
        let map = MappedFile::open(&path).unwrap();
        let used = map.used().unwrap();
        let got: Vec<(String, f64)> = entries(map.bytes(), HEADER_SIZE, used)
            .map(|e| { let e = e.unwrap(); (String::from_utf8(e.key.to_vec()).unwrap(), map.load(e.value_pos).0) })
            .collect();
        let size: usize = expected.iter().map(|(k, _)| entry_size(k.len())).sum();
        prop_assert_eq!(used, HEADER_SIZE + size);
        prop_assert_eq!(got, expected);
    }
}
