//! Compaction of dead Python workers' files (`muster_collect::compact`) against a
//! compactor SIGKILLed before each of its steps: muster's scrape counts every
//! value exactly once in the state each kill leaves, and the next run finishes
//! the job (one archive per kind, no claimed or temporary file left); and
//! against a full disk (a real tmpfs) while it writes an archive. Files are
//! written by real prometheus_client processes; Python's MultiProcessCollector
//! reads the result too.

mod common;
mod private_tmpfs;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{example_bin, output_text, py_script, python, run_ok, run_with_input, Proc};

fn compact_step() -> PathBuf {
    example_bin("muster-collect", "compact_step", "MUSTER_COMPACT_STEP")
}

/// Runs one real Python process that writes every kind of file into `dir` and
/// exits; returns its pid (reaped by now).
fn dead_python(dir: &Path, seed: u32, slot: Option<u32>) -> u32 {
    let mut cmd = Command::new(python());
    cmd.arg(py_script("dead_writer.py"))
        .arg(dir)
        .arg(seed.to_string())
        .env_remove("MUSTER_WORKER_ID");
    if let Some(slot) = slot {
        cmd.env("MUSTER_WORKER_ID", slot.to_string());
    }
    let out = run_ok(&mut cmd, b"");
    String::from_utf8_lossy(&out)
        .trim()
        .parse()
        .expect("dead_writer.py prints its pid")
}

/// Samples that survive a compaction (not the `all`/`live*` gauges of dead
/// processes, which it removes), keyed like dead_writer.py --collect.
fn kept(samples: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    samples
        .into_iter()
        .filter(|(k, _)| !k.starts_with("g_all") && !k.starts_with("g_live"))
        .collect()
}

/// muster's merge of `dir`, keyed like dead_writer.py --collect.
fn muster_samples(dir: &Path) -> BTreeMap<String, f64> {
    let set = muster_collect::Collector::new(dir).collect().unwrap();
    let mut out = BTreeMap::new();
    for family in &set.families {
        for s in &family.samples {
            let labels: Vec<String> = s
                .labels
                .pairs()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.insert(format!("{}{{{}}}", s.name, labels.join(",")), s.value);
        }
    }
    out
}

/// Python's MultiProcessCollector over each of `dirs`, in one process.
fn python_samples(dirs: &[PathBuf]) -> Vec<BTreeMap<String, f64>> {
    let out = run_ok(
        Command::new(python())
            .arg(py_script("dead_writer.py"))
            .arg("--collect")
            .args(dirs),
        b"",
    );
    let mut all: BTreeMap<String, BTreeMap<String, f64>> =
        serde_json::from_slice(&out).expect("dead_writer.py --collect prints JSON");
    dirs.iter()
        .map(|d| {
            all.remove(d.to_str().unwrap())
                .expect("every directory collected")
        })
        .collect()
}

/// Equal, up to the few ulps a fold may round fractional sums up by.
fn assert_close(expected: &BTreeMap<String, f64>, got: &BTreeMap<String, f64>, context: &str) {
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{context}: series differ"
    );
    for (name, want) in expected {
        let have = got[name];
        let ok = if want.fract() == 0.0 {
            have == *want
        } else {
            (have - want).abs() <= 1e-12 * want.abs()
        };
        assert!(ok, "{context}: {name} = {have}, expected {want}");
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for name in names(from) {
        std::fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
}

/// Runs the compaction example on `dir` (abandoned files and those of
/// `reaped`), killing it before step `kill_at`; its output.
fn compaction_output(dir: &Path, kill_at: Option<usize>, reaped: &[u32]) -> Output {
    let mut cmd = Command::new(compact_step());
    cmd.arg(dir)
        .arg(kill_at.map_or("never".to_owned(), |k| k.to_string()))
        .arg("--abandoned");
    for pid in reaped {
        cmd.arg("--reaped").arg(pid.to_string());
    }
    run_with_input(&mut cmd, b"", Duration::from_secs(60))
}

/// Runs the compaction example on `dir`, killing it before step `kill_at`;
/// returns (killed?, the last step it printed).
fn run_compaction(dir: &Path, kill_at: Option<usize>, reaped: &[u32]) -> (bool, String) {
    let out = compaction_output(dir, kill_at, reaped);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let last = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("step "))
        .unwrap_or("")
        .to_owned();
    match out.status.signal() {
        Some(libc::SIGKILL) => (true, last),
        _ => {
            assert!(
                out.status.success(),
                "compaction failed: {}",
                output_text(&out)
            );
            (false, last)
        }
    }
}

#[test]
fn compaction_killed_at_every_step_loses_and_doubles_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    // An archive from an earlier compaction, a slot-named worker (never
    // compacted), and two dead pid-named workers: one reaped by "the
    // supervisor", one found abandoned.
    let first = dead_python(&base, 1, None);
    run_compaction(&base, None, &[first]);
    dead_python(&base, 9, Some(0));
    let reaped = [dead_python(&base, 2, None)];
    let abandoned = dead_python(&base, 4, None);
    let expected = kept(muster_samples(&base));
    assert!(expected.len() > 10, "{expected:?}");
    assert_close(
        &expected,
        &kept(python_samples(std::slice::from_ref(&base)).remove(0)),
        "Python, before",
    );

    let mut crashed = Vec::new();
    let mut steps_seen = Vec::new();
    for k in 0.. {
        let dir = tmp.path().join(format!("kill-{k}"));
        copy_dir(&base, &dir);
        let (killed, step) = run_compaction(&dir, Some(k), &reaped);
        if !killed {
            break;
        }
        assert!(
            step.starts_with(&format!("step {k}:")),
            "killed at {k}, last step {step:?}"
        );
        assert_close(
            &expected,
            &kept(muster_samples(&dir)),
            &format!("muster, killed at {step}"),
        );
        steps_seen.push(step);
        crashed.push(dir);
    }
    for kind in ["Claim", "WriteTemp", "Publish", "Unlink", "RemoveGauge"] {
        assert!(
            steps_seen.iter().any(|s| s.contains(&format!(": {kind}"))),
            "no {kind} step among {steps_seen:#?}"
        );
    }
    // Python's collector reads the files each kill left the same, except
    // between an archive's publication and the unlink of what it absorbed:
    // Python does not read the archive's list of absorbed files and counts
    // those twice (docs/python.md).
    for ((dir, step), got) in crashed
        .iter()
        .zip(&steps_seen)
        .zip(python_samples(&crashed))
    {
        if !step.contains(": Unlink(") {
            assert_close(&expected, &kept(got), &format!("Python, {}", dir.display()));
        }
    }
    // The next run finishes what the killed one started.
    for (dir, step) in crashed.iter().zip(&steps_seen) {
        run_compaction(dir, None, &[]);
        let context = format!("after recovering from a kill at {step}");
        assert_close(&expected, &kept(muster_samples(dir)), &context);
        let left = names(dir);
        let archives = left.iter().filter(|n| n.ends_with("_archive.db")).count();
        assert_eq!(archives, 7, "{context}: one archive per kind: {left:?}");
        for name in &left {
            let pid_named = reaped
                .iter()
                .chain([&first, &abandoned])
                .any(|p| name.contains(&format!("_{p}")));
            assert!(
                !pid_named && !name.ends_with(".tmp"),
                "{context}: {name} left in {left:?}"
            );
        }
        assert!(
            left.contains(&"counter_w0.db".to_owned()),
            "{context}: slot files kept"
        );
    }
    for (dir, got) in crashed.iter().zip(python_samples(&crashed)) {
        assert_close(
            &expected,
            &kept(got),
            &format!("Python after recovery, {}", dir.display()),
        );
    }
}

/// A process (`sleep`) holding a `size` tmpfs at `mnt` in a mount namespace
/// of its own (see `private_tmpfs`).
fn tmpfs_holder(tmp: &Path, mnt: &Path, size: &str) -> Proc {
    std::fs::create_dir_all(mnt).unwrap();
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    private_tmpfs::mount_private_tmpfs(&mut cmd, mnt, size);
    Proc::start("tmpfs holder", &mut cmd, &tmp.join("holder.log"))
}

/// A 2 MiB tmpfs held by a process of its own, and a multiprocess directory
/// on it: (the holder, the tmpfs as this process reaches it, the directory).
fn small_tmpfs_dir(tmp: &Path) -> (Proc, PathBuf, PathBuf) {
    let mnt = tmp.join("mnt");
    let holder = tmpfs_holder(tmp, &mnt, "size=2m,mode=0700");
    let fs = private_tmpfs::seen_by(holder.pid(), &mnt);
    let dir = fs.join("multiproc");
    std::fs::create_dir(&dir).unwrap();
    (holder, fs, dir)
}

/// Fills the file system of `path` to the last page with a file there (kept
/// open: dropping it and removing `path` makes room again).
fn fill_up(path: &Path) -> std::fs::File {
    let mut filler = std::fs::File::create(path).unwrap();
    let chunk = vec![1u8; 4096];
    let full = loop {
        if let Err(e) = std::io::Write::write_all(&mut filler, &chunk) {
            break e;
        }
    };
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");
    filler
}

/// A full disk while the fold writes the new archive: the compaction fails
/// with a clear error and loses nothing (muster and Python read every value
/// as before, no archive is published); once there is room, the next run
/// finishes the job.
#[test]
fn a_full_disk_during_the_fold_loses_nothing_and_the_next_run_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (holder, fs, dir) = small_tmpfs_dir(tmp.path());
    let dead = [dead_python(&dir, 3, None), dead_python(&dir, 5, None)];
    let expected = kept(muster_samples(&dir));
    assert!(expected.len() > 10, "{expected:?}");
    // Python's collector reads the directory as muster does.
    let python_agrees = |context: &str| {
        let python = kept(python_samples(std::slice::from_ref(&dir)).remove(0));
        assert_close(&expected, &python, &format!("Python, {context}"));
    };
    // Both readers read what the dead processes wrote.
    let both_agree = |context: &str| {
        assert_close(
            &expected,
            &kept(muster_samples(&dir)),
            &format!("muster, {context}"),
        );
        python_agrees(context);
    };
    python_agrees("before");

    let filler_path = fs.join("filler");
    let filler = fill_up(&filler_path);

    let out = compaction_output(&dir, None, &[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    both_agree("disk full");
    let left = names(&dir);
    assert!(
        !left.iter().any(|n| n.ends_with("_archive.db")),
        "no archive published on a full disk: {left:?}"
    );

    // Room again: the next run removes the partial temporary and folds.
    drop(filler);
    std::fs::remove_file(&filler_path).unwrap();
    let (killed, _) = run_compaction(&dir, None, &[]);
    assert!(!killed);
    both_agree("after");
    let left = names(&dir);
    assert!(
        left.iter().any(|n| n.ends_with("_archive.db")),
        "archives published once there is room: {left:?}"
    );
    for name in &left {
        let pid_named = dead.iter().any(|p| name.contains(&format!("_{p}")));
        assert!(
            !pid_named && !name.ends_with(".tmp"),
            "{name} left in {left:?}"
        );
    }
    drop(holder);
}

/// A full disk under a live `muster run`: a worker killed while the disk is
/// full leaves files its supervisor cannot fold (there is no room for the
/// archive). The supervisor keeps running, says so and tries again; every
/// scrape (muster's and Python's) still counts the dead worker's values; once
/// there is room, its files are folded into archives and nothing is lost.
#[test]
fn a_full_disk_under_muster_run_delays_compaction_and_loses_nothing() {
    const LIMIT: Duration = Duration::from_secs(30);
    let tmp = tempfile::tempdir().unwrap();
    let (holder, fs, dir) = small_tmpfs_dir(tmp.path());
    // Workers write their metrics as they start while this file exists.
    let flag = tmp.path().join("write");
    std::fs::write(&flag, b"").unwrap();
    let mut cmd = common::muster();
    cmd.args(["run", "-b", "127.0.0.1:0", "-w", "2", "--log-level", "info"])
        .arg("--multiproc-dir")
        .arg(&dir)
        .arg("--")
        .arg(python())
        .arg(py_script("dead_writer.py"))
        .arg("--live")
        .arg(&flag)
        .arg("4");
    let mut sup = Proc::start("muster run", &mut cmd, &tmp.path().join("run.log"));
    let wrote = |prefix: &str| -> Vec<u32> {
        names(tmp.path())
            .iter()
            .filter_map(|n| n.strip_prefix(prefix)?.parse().ok())
            .collect()
    };
    let writers = common::wait_until("both workers wrote their metrics", LIMIT, || {
        sup.assert_running();
        let pids = wrote("write.");
        (pids.len() == 2).then_some(pids)
    });
    // The workers' samples (not the supervisor's own `muster_*`, which move).
    let app = |samples: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        kept(samples)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("muster_"))
            .collect()
    };
    let expected = app(muster_samples(&dir));
    assert_eq!(expected["requests_total{route=/}"], 28.0, "{expected:?}");
    let both_agree = |context: &str| {
        assert_close(&expected, &app(muster_samples(&dir)), context);
        let python = app(python_samples(std::slice::from_ref(&dir)).remove(0));
        assert_close(&expected, &python, &format!("Python, {context}"));
    };

    // The disk fills up; replacements write nothing; a worker is killed.
    std::fs::remove_file(&flag).unwrap();
    let filler_path = fs.join("filler");
    let filler = fill_up(&filler_path);
    let dead = writers[0];
    // Its files, under their names or as a compaction claimed them
    // (`<kind>_<pid>-c<n>.db`).
    let dead_files = |dir: &Path| -> Vec<String> {
        let (named, claimed) = (format!("_{dead}.db"), format!("_{dead}-c"));
        names(dir)
            .into_iter()
            .filter(|n| n.ends_with(&named) || n.contains(&claimed))
            .collect()
    };
    assert!(!dead_files(&dir).is_empty());
    // SAFETY: kill only sends a signal, to a worker this test started.
    assert_eq!(unsafe { libc::kill(dead as i32, libc::SIGKILL) }, 0);
    let failed = "compaction did not run; it is retried";
    common::wait_until("two compactions that failed", LIMIT, || {
        sup.assert_running();
        (sup.log_text().matches(failed).count() >= 2).then_some(())
    });
    let log = sup.log_text();
    assert!(log.contains("No space left on device"), "{log}");
    both_agree("disk full");
    assert!(!dead_files(&dir).is_empty(), "{:?}", names(&dir));
    assert!(
        !names(&dir).iter().any(|n| n.ends_with("_archive.db")),
        "{:?}",
        names(&dir)
    );

    // Room again: the next try folds the dead worker's files.
    drop(filler);
    std::fs::remove_file(&filler_path).unwrap();
    common::wait_until("the dead worker's files folded", LIMIT, || {
        sup.assert_running();
        let left = names(&dir);
        (dead_files(&dir).is_empty() && left.iter().any(|n| n.ends_with("_archive.db")))
            .then_some(())
    });
    both_agree("after the fold");
    let left = names(&dir);
    assert!(!left.iter().any(|n| n.ends_with(".tmp")), "{left:?}");
    sup.stop_cleanly(LIMIT);
    drop(holder);
}
