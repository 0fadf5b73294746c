//! The set-up of the one-shot commands (`src/one_shot.rs`: glibc's heap grown
//! in one step, over transparent huge pages) is best effort and takes nothing
//! from the scrape: where the kernel refuses huge pages to the process
//! (`prctl(PR_SET_THP_DISABLE)`, as a container's policy may), or the
//! process's address space is limited (`ulimit -v`), `muster scrape` prints
//! the same exposition, and Python's collector agrees with it. A scrape that
//! cannot start threads (a container's `pids.max` reached, `ulimit -u`)
//! reads every file in one thread. A reader that hangs up early (`muster
//! scrape | head`) ends the scrape quietly; a full disk under the output is
//! a clear error.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::{
    assert_same, muster, muster_scrape, python_collect, python_parse, python_write, run_ok,
};

/// `muster scrape --format text` of `dir` by `muster` (see `common`), to be
/// run under some limit.
fn scrape_command(mut muster: Command, dir: &Path) -> Command {
    muster
        .args(["scrape", "--format", "text", "--dir"])
        .arg(dir);
    muster
}

/// Runs `cmd` (see [`scrape_command`]) and checks that it succeeds without
/// a panic or a skipped file, prints `expected` (the scrape of `dir` without
/// the limit), and that Python's collector agrees with what it printed.
fn assert_scrape_unchanged(mut cmd: Command, dir: &Path, expected: &[u8], limit: &str) {
    let out = cmd.output().expect("muster scrape runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "muster scrape {limit} failed ({}): {stderr}",
        out.status
    );
    assert!(
        !stderr.contains("skipping"),
        "files skipped {limit}: {stderr}"
    );
    assert!(
        out.stdout == expected,
        "{limit} the exposition differs:\n{}\n--- without ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(expected)
    );
    let python = python_collect(dir);
    assert!(python.len() > 20, "{python:?}");
    let shown: Vec<String> = python_parse("text", &out.stdout, &[])
        .into_iter()
        .filter(|s| !s.starts_with("[\"muster_"))
        .collect();
    assert_same(&python, &shown, &format!("muster scrape {limit}"));
}

/// A directory Python's writers filled with every metric type and hostile
/// label values, and muster's scrape of it without any limit.
fn python_dir(tmp: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let dir = tmp.join("mp");
    std::fs::create_dir(&dir).unwrap();
    python_write(&dir, &["types", "hostile_labels"]);
    let unlimited = muster_scrape(&dir, "text");
    (dir, unlimited)
}

#[test]
fn a_scrape_refused_huge_pages_prints_the_same() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, unlimited) = python_dir(tmp.path());
    let mut cmd = scrape_command(muster(), &dir);
    // SAFETY: prctl only changes this child's memory policy, between fork
    // and exec; it is inherited across exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    assert_scrape_unchanged(cmd, &dir, &unlimited, "with huge pages refused");
}

#[test]
fn a_scrape_under_an_address_space_limit_maps_every_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, unlimited) = python_dir(tmp.path());
    // A tight but ordinary limit: the program, its heap and the files fit
    // in it many times over, unless the set-up sets address space aside
    // (an allocation region of 4 GiB, tried once, left no room to map the
    // files under a limit just above it).
    let limit: u64 = 1 << 30;
    let mut cmd = scrape_command(muster(), &dir);
    // SAFETY: setrlimit only changes this child's limit, between fork and
    // exec; it is inherited across exec.
    unsafe {
        cmd.pre_exec(move || common::set_limit(libc::RLIMIT_AS, limit));
    }
    assert_scrape_unchanged(cmd, &dir, &unlimited, "under an address-space limit");
}

/// A directory `workers` gunicorn-like Python workers wrote
/// (`scripts/bench.d/gen_dir.py`: four files each, 100 routes).
fn gunicorn_dir(tmp: &Path, workers: u32) -> std::path::PathBuf {
    let dir = tmp.join("mp");
    run_ok(
        Command::new(common::python())
            .arg(common::root().join("scripts/bench.d/gen_dir.py"))
            .arg(&dir)
            .arg(workers.to_string()),
        b"",
    );
    dir
}

#[test]
fn a_scrape_that_cannot_start_threads_reads_every_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 16 workers: 64 files, 13 MB of entries, enough for a first scrape to
    // read headers and entries in several threads.
    let dir = gunicorn_dir(tmp.path(), 16);
    // Readable by the unprivileged user the scrape may run as.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let unlimited = muster_scrape(&dir, "text");
    let cmd = scrape_command(common::muster_with_task_limit(tmp.path(), 1), &dir);
    assert_scrape_unchanged(cmd, &dir, &unlimited, "without threads");
}

/// `muster scrape | head`: a reader that hangs up after the first bytes ends
/// the scrape quietly. The output goes out in pieces of 64 KiB, so the
/// pieces after the hang-up fail with a closed pipe, which is no error; the
/// bytes read are the start of the whole exposition.
#[test]
fn a_reader_that_hangs_up_early_ends_the_scrape_quietly() {
    use std::io::Read;
    use std::process::Stdio;

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = gunicorn_dir(tmp.path(), 4);
    let whole = muster_scrape(&dir, "text");
    // Far more than a pipe holds (64 KiB) and than one piece.
    assert!(whole.len() > 256 << 10, "only {} bytes", whole.len());
    let mut child = scrape_command(muster(), &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("muster scrape starts");
    let mut first = vec![0u8; 100];
    let mut stdout = child.stdout.take().expect("stdout piped");
    stdout.read_exact(&mut first).expect("the first bytes");
    drop(stdout);
    let out = child.wait_with_output().expect("muster scrape ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "muster scrape ({}) after its reader hung up: {stderr}",
        out.status
    );
    assert_eq!(first, whole[..100]);
}

/// `muster scrape > file` on a full disk: the first piece cannot be written,
/// and the scrape says so and fails (exit 2), without a panic.
#[test]
fn a_full_disk_under_the_output_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = python_dir(tmp.path());
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = scrape_command(muster(), &dir)
        .stdout(full)
        .output()
        .expect("muster scrape runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot write output") && stderr.contains("No space left on device"),
        "the error names the cause: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
