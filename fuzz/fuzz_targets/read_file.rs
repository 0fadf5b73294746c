//! Any bytes as a metric file: the parser must never panic, every entry it
//! returns must lie within `used`, and keys must parse or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_store::format::HEADER_SIZE;
use muster_store::reader::{entries, read_used};
use muster_store::Key;

fuzz_target!(|data: &[u8]| {
    let Ok(used) = read_used(data) else { return };
    assert!(used >= HEADER_SIZE && used <= data.len().max(HEADER_SIZE));
    for entry in entries(data, HEADER_SIZE, used) {
        let Ok(entry) = entry else { break };
        assert!(entry.end() <= used);
        assert_eq!(entry.value_pos % 8, 0);
        let _ = Key::parse(entry.key);
    }
});
