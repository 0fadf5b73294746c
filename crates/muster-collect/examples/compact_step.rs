//! Runs one compaction and, to test its crash safety, kills itself with
//! SIGKILL just before its step number KILL_AT (0-based; `never` to finish).
//!
//! ```text
//! compact_step DIR KILL_AT [--reaped PID]... [--abandoned]
//! ```
//!
//! Prints each step to stderr before making it (`step N: ...`), and the report
//! to stdout when it finishes.

use muster_collect::compact::Compaction;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: compact_step DIR KILL_AT|never [--reaped PID]... [--abandoned]");
        std::process::exit(2);
    }
    let kill_at: Option<usize> = match args[1].as_str() {
        "never" => None,
        n => Some(n.parse().expect("KILL_AT is a number or `never`")),
    };
    let mut steps = 0usize;
    let mut compaction = Compaction::new(&args[0]).on_step(|step| {
        eprintln!("step {steps}: {step:?}");
        if Some(steps) == kill_at {
            // SAFETY: kill(2) on our own pid.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        steps += 1;
    });
    let mut rest = args[2..].iter();
    while let Some(arg) = rest.next() {
        compaction = match arg.as_str() {
            "--reaped" => compaction.reaped(
                rest.next()
                    .and_then(|p| p.parse().ok())
                    .expect("--reaped takes a pid"),
            ),
            "--abandoned" => compaction.abandoned(),
            other => panic!("unknown argument {other:?}"),
        };
    }
    match compaction.run() {
        Ok(report) => println!("{report:?}"),
        Err(e) => {
            eprintln!("compaction failed: {e}");
            std::process::exit(1);
        }
    }
}
