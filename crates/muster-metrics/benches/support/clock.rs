//! A criterion measurement shared by muster's benches: CPU time of the
//! benchmarking thread, so time spent descheduled by other load on a shared
//! machine does not count; `MUSTER_BENCH_CLOCK=wall` measures wall time.

use std::time::Instant;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;
use nix::time::{clock_gettime, ClockId};

/// Thread CPU time (or wall time), in nanoseconds.
pub struct Clock {
    wall: bool,
    unit: Unit,
}

/// How values are shown: divided by `divisor`, named `name` (criterion's
/// estimates files stay in ns).
pub struct Unit {
    divisor: f64,
    name: &'static str,
}

impl Clock {
    /// Thread CPU time unless `MUSTER_BENCH_CLOCK=wall`, shown as `name`
    /// (values in ns divided by `divisor`).
    pub fn from_env(divisor: f64, name: &'static str) -> Clock {
        Clock {
            wall: std::env::var("MUSTER_BENCH_CLOCK").as_deref() == Ok("wall"),
            unit: Unit { divisor, name },
        }
    }

    fn now_ns(&self) -> u64 {
        if self.wall {
            static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            return ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64;
        }
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(|ts| ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
            .unwrap_or(0)
    }
}

impl Measurement for Clock {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        self.now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        self.now_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &self.unit
    }
}

impl ValueFormatter for Unit {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= self.divisor);
        self.name
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        _t: &Throughput,
        _values: &mut [f64],
    ) -> &'static str {
        "ns"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}
