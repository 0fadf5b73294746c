//! The writer's guarantees, checked through the reader: entries are where
//! Python expects them, survive a new process adopting the file, and a
//! forked child writes only to its own files.

mod support;

use std::path::Path;

use muster_store::format::HEADER_SIZE;
use muster_store::reader::{entries, MappedFile};
use muster_store::writer::FileWriter;
use muster_store::{encode_key, FileKind, Key, Store, StoreError, ValueCell};

/// (key, value) of every entry in `path`.
fn read_all(path: &Path) -> Vec<(String, f64)> {
    let map = MappedFile::open(path).unwrap();
    let used = map.used().unwrap();
    entries(map.bytes(), HEADER_SIZE, used)
        .map(|e| {
            let e = e.unwrap();
            (
                String::from_utf8(e.key.to_vec()).unwrap(),
                map.load(e.value_pos).0,
            )
        })
        .collect()
}

fn add(writer: &FileWriter, key: &str, delta: f64) {
    let slot = unsafe { &*writer.value_ptr(key).unwrap() };
    let next = f64::from_bits(slot.load(std::sync::atomic::Ordering::Relaxed)) + delta;
    slot.store(next.to_bits(), std::sync::atomic::Ordering::Relaxed);
}

/// Leaves `key` = `value` in `path` as an earlier process would: written by
/// a writer that is gone before the test opens the file again.
fn left_by_earlier_writer(path: &Path, key: &str, value: f64) {
    let writer = FileWriter::open(path).unwrap();
    add(&writer, key, value);
}

#[test]
fn entries_are_appended_and_found_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter_1.db");
    let writer = FileWriter::open(&path).unwrap();
    let a = encode_key("a", "a_total", &[], "help");
    let b = encode_key("b", "b_total", &[("x", "é\n\"")], "help");
    add(&writer, &a, 1.0);
    add(&writer, &b, 2.5);
    add(&writer, &a, 1.0);
    assert_eq!(read_all(&path), vec![(a.clone(), 2.0), (b.clone(), 2.5)]);
    let parsed = Key::parse(b.as_bytes()).unwrap();
    assert_eq!(parsed.labels, vec![("x".to_owned(), "é\n\"".to_owned())]);
    // The file is created at Python's initial size, space reserved for real.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 16);
}

#[test]
fn growth_keeps_earlier_pointers_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter_1.db");
    let writer = FileWriter::open(&path).unwrap();
    let first = writer
        .value_ptr(&encode_key("first", "first_total", &[], ""))
        .unwrap();
    // ~200 KiB of keys forces several doublings past 64 KiB.
    for i in 0..2000 {
        add(
            &writer,
            &encode_key("m", "m_total", &[("i", &i.to_string())], &"h".repeat(60)),
            1.0,
        );
    }
    unsafe { &*first }.store(42f64.to_bits(), std::sync::atomic::Ordering::Relaxed);
    let all = read_all(&path);
    assert_eq!(all.len(), 2001);
    assert_eq!(all[0].1, 42.0);
    assert!(std::fs::metadata(&path).unwrap().len() >= 256 << 10);
}

#[test]
fn a_new_writer_adopts_existing_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter_w0.db");
    let key = encode_key("c", "c_total", &[], "");
    left_by_earlier_writer(&path, &key, 5.0);
    let writer = FileWriter::open(&path).unwrap();
    add(&writer, &key, 1.0);
    assert_eq!(read_all(&path), vec![(key, 6.0)]);
}

#[test]
fn a_corrupt_tail_is_dropped_on_adoption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter_w0.db");
    let good = encode_key("good", "good_total", &[], "");
    left_by_earlier_writer(&path, &good, 3.0);
    // Claim more bytes are used than hold a whole entry.
    let mut bytes = std::fs::read(&path).unwrap();
    let used = i32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
    bytes[used..used + 4].copy_from_slice(&1000i32.to_ne_bytes());
    bytes[..4].copy_from_slice(&((used + 24) as i32).to_ne_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let writer = FileWriter::open(&path).unwrap();
    let other = encode_key("other", "other_total", &[], "");
    add(&writer, &other, 1.0);
    assert_eq!(read_all(&path), vec![(good, 3.0), (other, 1.0)]);
}

#[test]
fn symlinks_are_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, b"precious").unwrap();
    let link = dir.path().join("counter_1.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = FileWriter::open(&link)
        .err()
        .expect("a symlink must be refused");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert!(MappedFile::open(&link).is_err());
}

#[test]
fn a_forked_child_writes_to_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let cell = ValueCell::new_in(
        &store,
        FileKind::Counter,
        encode_key("forks", "forks_total", &[], ""),
    );
    cell.add(1.0);
    let parent_file = dir
        .path()
        .join(format!("counter_{}.db", std::process::id()));
    assert!(parent_file.exists());

    // SAFETY: the child only updates the cell and exits.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            cell.add(10.0);
            let code = if cell.get() == 10.0 { 0 } else { 1 };
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            let child_file = dir.path().join(format!("counter_{child}.db"));
            assert_eq!(read_all(&child_file)[0].1, 10.0);
            assert_eq!(read_all(&parent_file)[0].1, 1.0);
            cell.add(1.0);
            assert_eq!(read_all(&parent_file)[0].1, 2.0);
        }
    }
}

#[test]
fn a_process_id_names_the_files_and_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    store.set_process_id("w7").unwrap();
    let cell = ValueCell::new_in(
        &store,
        FileKind::Gauge(muster_store::GaugeMode::LiveSum),
        encode_key("g", "g", &[], ""),
    );
    cell.set(3.0);
    let file = dir.path().join("gauge_livesum_w7.db");
    assert_eq!(read_all(&file)[0].1, 3.0);
    muster_store::remove_live_gauge_files(dir.path(), "w7").unwrap();
    assert!(!file.exists());
    for bad in ["", "a_b", "../x", "w 1", "x.db"] {
        assert!(store.set_process_id(bad).is_err(), "{bad:?}");
    }
}

/// One writer per file: a second writer of the same file, in this process or
/// in another one (a second server on the directory, two processes with one
/// id), is refused with an error naming the file; the first keeps writing.
#[test]
fn a_second_writer_of_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter_w0.db");
    let key = encode_key("c", "c_total", &[], "");
    let first = FileWriter::open(&path).unwrap();
    add(&first, &key, 1.0);

    let refused = |err: Option<StoreError>| match err {
        Some(e @ StoreError::FileLocked { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(
                text.contains(&format!("pid {}", std::process::id())),
                "the holder is named: {text}"
            );
        }
        other => panic!("a second writer of one file must be refused, got {other:?}"),
    };
    refused(FileWriter::open(&path).err());

    support::assert_child_exits_zero(
        || match FileWriter::open(&path) {
            Err(StoreError::FileLocked { .. }) => 0,
            Err(_) => 2,
            Ok(_) => 1,
        },
        "in another process: 1 = it was given the file, 2 = another error",
    );
    add(&first, &key, 1.0);
    assert_eq!(read_all(&path), vec![(key.clone(), 2.0)]);

    // Once the first writer is gone the file is free, and its values continue.
    drop(first);
    let second = FileWriter::open(&path).unwrap();
    add(&second, &key, 1.0);
    assert_eq!(read_all(&path), vec![(key, 3.0)]);
}

/// A second store of this process with the same directory and id cannot
/// take the first one's files: its values stay in memory, counted as write
/// errors, and the file keeps only the first store's values.
#[test]
fn a_second_store_with_the_same_id_keeps_its_values_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let key = encode_key("c", "c_total", &[], "");
    let stores = [Store::new(dir.path()), Store::new(dir.path())];
    for s in &stores {
        s.set_process_id("w0").unwrap();
    }
    let cells = stores
        .each_ref()
        .map(|s| ValueCell::new_in(s, FileKind::Counter, key.clone()));
    cells[0].add(1.0);
    cells[1].add(5.0);
    assert_eq!(stores[0].write_errors(), 0);
    assert_eq!(stores[1].write_errors(), 1);
    assert_eq!((cells[0].get(), cells[1].get()), (1.0, 5.0));
    assert_eq!(
        read_all(&dir.path().join("counter_w0.db")),
        vec![(key, 1.0)]
    );
}

/// Stores are independent: threads of one process, each with its own
/// directory and id, write their own files in parallel.
#[test]
fn stores_in_parallel_threads_write_their_own_files() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let key = encode_key("c", "c_total", &[], "");
    std::thread::scope(|s| {
        for (i, dir) in dirs.iter().enumerate() {
            let key = key.clone();
            s.spawn(move || {
                let store = Store::new(dir.path());
                store.set_process_id(&format!("t{i}")).unwrap();
                let cell = ValueCell::new_in(&store, FileKind::Counter, key);
                for _ in 0..=i * 1000 {
                    cell.add(1.0);
                }
            });
        }
    });
    for (i, dir) in dirs.iter().enumerate() {
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("counter_t{i}.db")]);
        let file = dir.path().join(&names[0]);
        assert_eq!(read_all(&file), vec![(key.clone(), (i * 1000 + 1) as f64)]);
    }
}

/// A most-recent gauge's value and timestamp are read as one pair, never a
/// new value with an old timestamp or the reverse, while a thread rewrites
/// them as fast as it can. (A reader that cannot get a clean pair for
/// `MAX_WAIT`, which a writer saturating one entry can cause on a loaded
/// machine, reads the pair as unset, timestamp 0: skipped, never torn.)
#[test]
fn value_and_timestamp_are_read_as_one_pair() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let cell = ValueCell::new_in(
        &store,
        FileKind::Gauge(muster_store::GaugeMode::MostRecent),
        encode_key("g", "g", &[], ""),
    );
    cell.set_with_timestamp(0.0, 0.0);
    let path = dir
        .path()
        .join(format!("gauge_mostrecent_{}.db", std::process::id()));
    let map = MappedFile::open(&path).unwrap();
    let pos = entries(map.bytes(), HEADER_SIZE, map.used().unwrap())
        .next()
        .unwrap()
        .unwrap()
        .value_pos;
    let done = std::sync::atomic::AtomicBool::new(false);
    let torn = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut torn, mut clean) = (Vec::new(), 0u64);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (value, timestamp) = map.load(pos);
                if timestamp == 0.0 && value != 0.0 {
                    continue; // given up on, read as unset
                }
                if value != timestamp {
                    torn.push((value, timestamp));
                }
                clean += 1;
            }
            assert!(clean > 0, "the reader never got a pair");
            torn
        });
        for i in 1..=2_000_000 {
            cell.set_with_timestamp(i as f64, i as f64);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(
        torn.is_empty(),
        "{} torn pairs (value, timestamp), e.g. {:?}",
        torn.len(),
        &torn[..torn.len().min(5)]
    );
    assert_eq!(map.load(pos), (2e6, 2e6));
}

/// Exemplar slots go to `exemplar_<id>.muster` (never a `*.db` Python
/// reads), read back whole through the reader, and a process that adopts the
/// file sees the exemplar its slot's earlier writer left.
#[test]
fn exemplars_live_in_their_own_file_and_survive_adoption() {
    use muster_store::format::EXEMPLAR_PAYLOAD;
    use muster_store::reader::entries_sized;
    use muster_store::{encode_labels, ExemplarCell};

    let dir = tempfile::tempdir().unwrap();
    let key = encode_key("req", "req_total", &[("route", "/")], "Requests.");
    let labels = encode_labels(&[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]).unwrap();
    {
        let store = Store::new(dir.path());
        store.set_process_id("w0").unwrap();
        let cell = ExemplarCell::new_in(&store, key.clone());
        assert!(cell.set(&labels, 1.0, 1_700_000_000.5));
        // A counter in the same store still goes to Python's file.
        ValueCell::new_in(&store, FileKind::Counter, key.clone()).add(1.0);
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["counter_w0.db", "exemplar_w0.muster"]);

    let path = dir.path().join("exemplar_w0.muster");
    let map = MappedFile::open(&path).unwrap();
    let found: Vec<_> = entries_sized(
        map.bytes(),
        HEADER_SIZE,
        map.used().unwrap(),
        EXEMPLAR_PAYLOAD,
    )
    .map(|e| e.unwrap())
    .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key, key.as_bytes());
    let got = map.load_exemplar(found[0].value_pos).unwrap();
    assert_eq!(
        got.labels,
        [(
            "trace_id".to_owned(),
            "4bf92f3577b34da6a3ce929d0e0e4736".to_owned()
        )]
    );
    assert_eq!((got.value, got.timestamp), (1.0, 1_700_000_000.5));

    let store = Store::new(dir.path());
    store.set_process_id("w0").unwrap();
    let adopted = ExemplarCell::new_in(&store, key);
    assert_eq!(adopted.get(), Some(got));
}
