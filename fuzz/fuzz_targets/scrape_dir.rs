//! Any bytes as a file in a multiprocess directory (next to a good one):
//! the scrape must succeed, keep the good file's value and encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_collect::{encode, Collector, Format};

/// counter_1.db holding one entry, `["ok", "ok_total", {}, ""]` = 7.0.
fn good_file() -> Vec<u8> {
    let key = br#"["ok", "ok_total", {}, ""]"#;
    let mut out = vec![0u8; 8];
    out.extend_from_slice(&(key.len() as i32).to_ne_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(b"  ");
    out.extend_from_slice(&7.0f64.to_ne_bytes());
    out.extend_from_slice(&0.0f64.to_ne_bytes());
    let used = out.len() as i32;
    out[..4].copy_from_slice(&used.to_ne_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("counter_1.db"), good_file()).unwrap();
    let name = match data.first().map(|b| b % 4) {
        Some(0) => "counter_2.db",
        Some(1) => "histogram_2.db",
        Some(2) => "gauge_all_2.db",
        _ => "summary_2.db",
    };
    std::fs::write(dir.path().join(name), data.get(1..).unwrap_or_default()).unwrap();
    let mut collector = Collector::new(dir.path());
    let set = collector.collect().expect("a readable directory always scrapes");
    if name != "counter_2.db" {
        // Another type's file cannot change a counter family.
        assert_eq!(set.value("ok_total", &[]), Some(7.0));
    }
    let _ = encode(&set, Format::Text);
    let _ = encode(&set, Format::OpenMetrics);
});
