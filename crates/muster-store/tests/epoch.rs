//! A cached value address never outlives its configuration, however many
//! times the store is reconfigured: the tag a cell keeps is 16 bits, and it
//! must not wrap around into the same value with a stale address.
//!
//! Alone in its test binary, so that nothing else reconfigures meanwhile.

use std::path::Path;

use muster_store::format::HEADER_SIZE;
use muster_store::reader::{entries, MappedFile};
use muster_store::{encode_key, FileKind, ValueCell};

fn value(dir: &Path) -> f64 {
    let path = dir.join(format!("counter_{}.db", std::process::id()));
    let map = MappedFile::open(&path).unwrap();
    let e = entries(map.bytes(), HEADER_SIZE, map.used().unwrap())
        .next()
        .unwrap()
        .unwrap();
    map.load_value(e.value_pos)
}

#[test]
fn a_cell_never_writes_where_it_resolved_before_65535_reconfigurations() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    muster_store::configure(a.path());
    let cell = ValueCell::new(FileKind::Counter, encode_key("c", "c_total", &[], ""));
    cell.add(1.0);
    // 2^16 - 1 reconfigurations: a 16-bit counter that skips 0 is back where
    // it was. The last one points the store at `b`.
    for i in 0..65_535 {
        muster_store::configure([b.path(), a.path()][i % 2]);
    }
    cell.add(1.0);
    assert_eq!(value(a.path()), 1.0, "the old file was written again");
    assert_eq!(value(b.path()), 1.0);
}
