//! Native (sparse exponential) histogram buckets, as client_golang defines
//! them, written into this process's `native_<id>.muster` file.
//!
//! At schema `s` the bucket with index `k` holds the values in
//! `(2^((k-1)/2^s), 2^(k/2^s)]` (negative values mirrored); values with
//! `|v| <= zero_threshold` go to the zero bucket. Each populated bucket is an
//! entry of the file (key `<name>_positive` / `<name>_negative` with the
//! pseudo-labels `__schema` and `__index`), appended when first used, so the
//! file grows the way Python's files grow and a reader that sees the new
//! `used` sees the whole entry. The sum, the zero bucket, the zero threshold
//! and the configured schema are entries too; the count is what the buckets
//! and the zero bucket add up to (NaN is added to the sum and counted in no
//! bucket, as the classic buckets do).
//!
//! Bucket limit: when a new bucket would make more than `max_buckets`
//! populated buckets, the resolution is halved (schema - 1, bucket `k`
//! becoming `ceil(k / 2)`) until it fits or the schema is -4. Counts already
//! written stay where they are (values never move, so they never decrease):
//! later observations go to buckets of the lower schema, and the reader
//! reduces every bucket of the series to the lowest schema it finds.
//!
//! The hot path: the bucket index (from the float's bits, exact at powers of
//! two, like client_golang's `frexp` method), one probe of a lock-free table
//! from bucket index to value cell, and the compare-and-swap adds of the
//! bucket and the sum. New buckets take a mutex.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use hashbrown::HashSet;
use muster_store::{encode_key, FileKind, ValueCell};

use crate::desc::{Desc, MetricError};

/// The lowest schema (buckets growing by a factor of 65536).
pub const MIN_SCHEMA: i8 = -4;
/// The highest schema (buckets growing by a factor of 2^(1/256)).
pub const MAX_SCHEMA: i8 = 8;
/// client_golang's default zero threshold, 2^-128.
pub const DEFAULT_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;
/// The default bucket limit (client_golang recommends 160).
pub const DEFAULT_MAX_BUCKETS: u32 = 160;

/// How a histogram's native buckets are laid out: schema, zero threshold and
/// bucket limit, as client_golang's `NativeHistogramBucketFactor`,
/// `NativeHistogramZeroThreshold` and `NativeHistogramMaxBucketNumber`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NativeBuckets {
    schema: i8,
    zero_threshold: f64,
    max_buckets: u32,
}

impl NativeBuckets {
    /// Buckets of schema `schema` (-4..=8: each bucket's upper bound is the
    /// previous one times `2^(2^-schema)`), the default zero threshold and
    /// bucket limit.
    pub fn with_schema(schema: i8) -> Result<NativeBuckets, MetricError> {
        if !(MIN_SCHEMA..=MAX_SCHEMA).contains(&schema) {
            return Err(MetricError::InvalidBuckets(format!(
                "native schema {schema} is outside -4..=8"
            )));
        }
        Ok(NativeBuckets {
            schema,
            zero_threshold: DEFAULT_ZERO_THRESHOLD,
            max_buckets: DEFAULT_MAX_BUCKETS,
        })
    }

    /// The largest resolution whose bucket growth factor is at most
    /// `factor` (> 1), as client_golang picks it from
    /// `NativeHistogramBucketFactor` (1.1 gives schema 3).
    pub fn with_factor(factor: f64) -> Result<NativeBuckets, MetricError> {
        if factor.is_nan() || factor <= 1.0 {
            return Err(MetricError::InvalidBuckets(format!(
                "native bucket factor {factor} must be greater than 1"
            )));
        }
        let floor = factor.log2().log2().floor();
        let schema = if floor <= -8.0 {
            8
        } else if floor >= 4.0 {
            -4
        } else {
            -(floor as i8)
        };
        NativeBuckets::with_schema(schema)
    }

    /// Values with `|v| <= threshold` count in the zero bucket.
    pub fn zero_threshold(self, threshold: f64) -> Result<NativeBuckets, MetricError> {
        if !(threshold >= 0.0 && threshold.is_finite()) {
            return Err(MetricError::InvalidBuckets(format!(
                "native zero threshold {threshold} must be a finite number >= 0"
            )));
        }
        Ok(NativeBuckets {
            zero_threshold: threshold,
            ..self
        })
    }

    /// At most `max` populated buckets per process and series before the
    /// resolution is halved; 0 means no limit.
    pub fn max_buckets(self, max: u32) -> NativeBuckets {
        NativeBuckets {
            max_buckets: max,
            ..self
        }
    }

    /// The configured schema.
    pub fn schema(&self) -> i8 {
        self.schema
    }
}

impl Default for NativeBuckets {
    /// Schema 3 (a factor of 1.09 per bucket), the default zero threshold
    /// and a limit of 160 buckets.
    fn default() -> NativeBuckets {
        NativeBuckets {
            schema: 3,
            zero_threshold: DEFAULT_ZERO_THRESHOLD,
            max_buckets: DEFAULT_MAX_BUCKETS,
        }
    }
}

/// `v` (finite, > 0) as a fraction in `[0.5, 1)` and a power of two.
#[inline(always)]
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale into the normal range first.
        let (frac, exp) = frexp(v * f64::from_bits(0x43f0_0000_0000_0000)); // 2^64
        return (frac, exp - 64);
    }
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp - 1022)
}

/// Bits of a fraction's mantissa that pick a cell of [`Bounds::start`].
const CELL_BITS: u32 = 10;

/// The bucket bounds of one schema between 0.5 and 1, shared by every
/// histogram: `2^(j/2^s - 1)` for `j` in `0..2^s` (none for schema <= 0),
/// and, per cell of fractions with the same top mantissa bits, the first
/// bound at or above the cell's start. A cell is narrower than the gap
/// between two bounds, so a lookup is one load and at most two compares
/// instead of a binary search.
struct Bounds {
    upper: Box<[f64]>,
    start: Box<[u16]>,
}

impl Bounds {
    fn new(schema: i32) -> Bounds {
        if schema <= 0 {
            return Bounds {
                upper: Box::new([]),
                start: Box::new([]),
            };
        }
        let n = 1usize << schema;
        let upper: Box<[f64]> = (0..n).map(|j| (j as f64 / n as f64 - 1.0).exp2()).collect();
        let cells = 1usize << CELL_BITS;
        let start = (0..cells)
            .map(|c| {
                let low = 0.5 + c as f64 * 0.5 / cells as f64;
                upper.partition_point(|b| *b < low) as u16
            })
            .collect();
        Bounds { upper, start }
    }

    /// The bounds of `schema` (built once per process).
    fn of(schema: i32) -> &'static Bounds {
        static ALL: OnceLock<Vec<Bounds>> = OnceLock::new();
        let all = ALL.get_or_init(|| (0..=i32::from(MAX_SCHEMA)).map(Bounds::new).collect());
        &all[schema.clamp(0, i32::from(MAX_SCHEMA)) as usize]
    }

    /// How many bounds are below `frac` (in `[0.5, 1)`): the same as
    /// `upper.partition_point(|b| *b < frac)`.
    #[inline(always)]
    fn position(&self, frac: f64) -> usize {
        let cell = ((frac.to_bits() >> (52 - CELL_BITS)) & ((1 << CELL_BITS) - 1)) as usize;
        let mut j = self.start.get(cell).map_or(0, |s| usize::from(*s));
        while j < self.upper.len() && self.upper[j] < frac {
            j += 1;
        }
        j
    }
}

/// The bucket index of `v` (> 0, may be `+Inf`) at `schema`, where
/// `bounds` is [`Bounds::of`] that schema.
#[inline(always)]
fn bucket_index(v: f64, schema: i32, bounds: &Bounds) -> i32 {
    let (v, inf) = if v.is_infinite() {
        (f64::MAX, 1)
    } else {
        (v, 0)
    };
    let (frac, exp) = frexp(v);
    let index = if schema > 0 {
        bounds.position(frac) as i32 + (exp - 1) * bounds.upper.len() as i32
    } else {
        let key = if frac == 0.5 { exp - 1 } else { exp };
        let offset = (1 << -schema) - 1;
        (key + offset) >> -schema
    };
    index + inf
}

/// The index bucket `index` of schema `from` falls into at the lower schema
/// `to`: `ceil(index / 2^(from - to))`.
pub fn reduce_index(index: i32, from: i32, to: i32) -> i32 {
    let shift = (from - to).clamp(0, 31);
    ((index as i64 + (1i64 << shift) - 1) >> shift) as i32
}

/// One populated bucket of this process.
struct Bucket {
    negative: bool,
    schema: i32,
    index: i32,
    cell: ValueCell,
}

/// An open-addressing table from bucket index to bucket, for one schema.
/// Slots are only ever filled (under the growth lock), never emptied; a
/// table that must change is replaced, the old one kept until the histogram
/// is dropped (a thread may still be probing it).
struct Table {
    schema: i32,
    bounds: &'static Bounds,
    shift: u32,
    slots: Box<[AtomicPtr<Bucket>]>,
}

impl Table {
    fn new(schema: i32, capacity: usize) -> Table {
        let capacity = capacity.next_power_of_two().max(16);
        Table {
            schema,
            bounds: Bounds::of(schema),
            shift: 64 - capacity.trailing_zeros(),
            slots: (0..capacity)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        }
    }

    #[inline(always)]
    fn start(&self, negative: bool, index: i32) -> usize {
        let key = (index as u32 as u64) | (u64::from(negative) << 32);
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    #[inline(always)]
    fn find(&self, negative: bool, index: i32) -> Option<&Bucket> {
        let mask = self.slots.len() - 1;
        let mut at = self.start(negative, index);
        loop {
            let ptr = self.slots[at].load(Ordering::Acquire);
            if ptr.is_null() {
                return None;
            }
            // SAFETY: buckets live until the histogram is dropped (freed by
            // `NativeCells::drop`), and `self` is borrowed from it.
            let bucket = unsafe { &*ptr };
            if bucket.index == index && bucket.negative == negative {
                return Some(bucket);
            }
            at = (at + 1) & mask;
        }
    }

    /// Puts `bucket` in (the caller holds the growth lock and made room;
    /// the bucket lives as long as the table's histogram).
    fn insert(&self, bucket: *mut Bucket) {
        // SAFETY: see `find`.
        let (negative, index) = unsafe { ((*bucket).negative, (*bucket).index) };
        let mask = self.slots.len() - 1;
        let mut at = self.start(negative, index);
        while !self.slots[at].load(Ordering::Relaxed).is_null() {
            at = (at + 1) & mask;
        }
        self.slots[at].store(bucket, Ordering::Release);
    }
}

/// What only changes under the lock.
struct Growth {
    /// Buckets of the current schema (in `table`).
    in_table: usize,
    /// Populated buckets, reduced to the current schema.
    populated: HashSet<(bool, i32)>,
    /// Every bucket made (from `Box::into_raw`; freed on drop): their
    /// addresses are in tables, so they never move.
    buckets: Vec<*mut Bucket>,
    /// Every table made (likewise); the last is the current one.
    tables: Vec<*mut Table>,
}

/// The native part of one histogram series in this process.
pub(crate) struct NativeCells {
    options: NativeBuckets,
    desc: Arc<Desc>,
    values: Box<[Box<str>]>,
    sum: ValueCell,
    zero: ValueCell,
    table: AtomicPtr<Table>,
    growth: Mutex<Growth>,
}

// SAFETY: the raw pointers are to buckets and tables owned by `growth`,
// only read through atomics and shared references.
unsafe impl Send for NativeCells {}
unsafe impl Sync for NativeCells {}

impl NativeCells {
    /// The native cells of the series with label `values`; writes the
    /// configuration entries (schema, zero threshold) and makes the sum and
    /// zero bucket show 0.
    pub(crate) fn new(desc: &Arc<Desc>, options: NativeBuckets, values: &[&str]) -> NativeCells {
        let cell = |suffix: &str, extra: &[(&str, &str)]| {
            ValueCell::new_in(
                &desc.store,
                FileKind::Native,
                native_key(desc, values, suffix, extra),
            )
        };
        let schema = i32::from(options.schema);
        cell("_schema", &[]).set(f64::from(schema));
        cell("_zero_threshold", &[]).set(options.zero_threshold);
        let sum = cell("_sum", &[]);
        let zero = cell("_zero_count", &[]);
        sum.touch();
        zero.touch();
        let capacity = 2 * (options.max_buckets as usize + 1).min(1024);
        let first = Box::into_raw(Box::new(Table::new(schema, capacity)));
        let table = AtomicPtr::new(first);
        NativeCells {
            options,
            desc: desc.clone(),
            values: values.iter().map(|v| Box::from(*v)).collect(),
            sum,
            zero,
            table,
            growth: Mutex::new(Growth {
                in_table: 0,
                populated: HashSet::new(),
                buckets: Vec::new(),
                tables: vec![first],
            }),
        }
    }

    /// Records one observation.
    #[inline]
    pub(crate) fn observe(&self, value: f64) {
        if value.abs() <= self.options.zero_threshold {
            self.zero.add(1.0);
        } else if !value.is_nan() {
            let negative = value < 0.0;
            // SAFETY: tables live as long as `self` (kept in `growth`).
            let table = unsafe { &*self.table.load(Ordering::Acquire) };
            let index = bucket_index(value.abs(), table.schema, table.bounds);
            match table.find(negative, index) {
                Some(bucket) => bucket.cell.add(1.0),
                None => self.new_bucket(value.abs(), negative),
            }
        }
        self.sum.add(value);
    }

    /// The slow path: the value's bucket does not exist yet at the current
    /// schema; make it, halving the resolution first if the limit says so.
    #[cold]
    #[inline(never)]
    fn new_bucket(&self, magnitude: f64, negative: bool) {
        let mut growth = lock(&self.growth);
        let mut table = self.current();
        let mut index = bucket_index(magnitude, table.schema, table.bounds);
        if let Some(bucket) = table.find(negative, index) {
            // Another thread made it meanwhile.
            bucket.cell.add(1.0);
            return;
        }
        let growth = &mut *growth;
        let mut schema = table.schema;
        growth.populated.insert((negative, index));
        let max = self.options.max_buckets as usize;
        let mut reduced = false;
        while max > 0 && growth.populated.len() > max && schema > i32::from(MIN_SCHEMA) {
            schema -= 1;
            growth.populated = growth
                .populated
                .iter()
                .map(|&(neg, k)| (neg, reduce_index(k, schema + 1, schema)))
                .collect();
            reduced = true;
        }
        let needs_room = 2 * (growth.in_table + 1) > table.slots.len();
        if reduced || needs_room {
            let capacity = 2 * (growth.populated.len() + 1);
            let fresh = Table::new(schema, capacity.max(table.slots.len()));
            growth.in_table = 0;
            if !reduced {
                for &bucket in &growth.buckets {
                    // SAFETY: buckets live until `self` is dropped.
                    if unsafe { (*bucket).schema } == schema {
                        fresh.insert(bucket);
                        growth.in_table += 1;
                    }
                }
            }
            let fresh = Box::into_raw(Box::new(fresh));
            growth.tables.push(fresh);
            self.table.store(fresh, Ordering::Release);
            table = self.current();
            index = bucket_index(magnitude, schema, table.bounds);
            if let Some(bucket) = table.find(negative, index) {
                bucket.cell.add(1.0);
                return;
            }
        }
        let (schema_text, index_text) = (schema.to_string(), index.to_string());
        let suffix = if negative { "_negative" } else { "_positive" };
        let key = native_key(
            &self.desc,
            &self.values.iter().map(|v| &**v).collect::<Vec<_>>(),
            suffix,
            &[("__schema", &schema_text), ("__index", &index_text)],
        );
        let bucket = Bucket {
            negative,
            schema,
            index,
            cell: ValueCell::new_in(&self.desc.store, FileKind::Native, key),
        };
        bucket.cell.add(1.0);
        let bucket = Box::into_raw(Box::new(bucket));
        table.insert(bucket);
        growth.in_table += 1;
        growth.buckets.push(bucket);
    }

    /// The exemplar key of a histogram without classic buckets: its
    /// `+Inf` bucket's, which the merge shows for it.
    pub(crate) fn exemplar_key(&self) -> String {
        let values: Vec<&str> = self.values.iter().map(|v| &**v).collect();
        self.desc.key("_bucket", &values, Some(("le", "+Inf")))
    }

    fn current(&self) -> &Table {
        // SAFETY: the current table is one of `growth.tables`, which live
        // until `self` is dropped.
        unsafe { &*self.table.load(Ordering::Acquire) }
    }

    /// This process's count: the zero bucket and every bucket.
    pub(crate) fn count(&self) -> f64 {
        let growth = lock(&self.growth);
        // SAFETY: buckets live until `self` is dropped.
        let buckets: f64 = growth
            .buckets
            .iter()
            .map(|&b| unsafe { (*b).cell.get() })
            .sum();
        self.zero.get() + buckets
    }

    /// This process's sum.
    pub(crate) fn sum(&self) -> f64 {
        self.sum.get()
    }

    /// The schema new buckets are made at in this process.
    pub(crate) fn schema(&self) -> i8 {
        self.current().schema as i8
    }
}

impl Drop for NativeCells {
    fn drop(&mut self) {
        let growth = self
            .growth
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // SAFETY: made by `Box::into_raw`, each once, and no one else can
        // reach them any more (`&mut self`).
        for &bucket in &growth.buckets {
            drop(unsafe { Box::from_raw(bucket) });
        }
        for &table in &growth.tables {
            drop(unsafe { Box::from_raw(table) });
        }
    }
}

impl std::fmt::Debug for NativeCells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeCells")
            .field("options", &self.options)
            .field("sum", &self.sum)
            .finish()
    }
}

/// Locks `mutex`, also after a panic elsewhere poisoned it (the state is
/// consistent between statements).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The key of a native entry: `<family><suffix>` with the series' labels
/// and `extra` pseudo-labels (`__schema`, `__index`), which no user label
/// can be (`__` is reserved).
fn native_key(desc: &Desc, values: &[&str], suffix: &str, extra: &[(&str, &str)]) -> String {
    let mut labels: Vec<(&str, &str)> = desc
        .label_names
        .iter()
        .map(String::as_str)
        .zip(values.iter().copied())
        .collect();
    labels.extend_from_slice(extra);
    encode_key(
        &desc.family,
        &format!("{}{suffix}", desc.family),
        &labels,
        &desc.help,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// client_golang's method, written out with a logarithm: the bucket
    /// whose upper bound `2^(k/2^s)` is the first at or above `v`.
    fn by_log(v: f64, schema: i32) -> i32 {
        (v.log2() * f64::from(schema).exp2()).ceil() as i32
    }

    #[test]
    fn bucket_indexes_match_client_golang() {
        for schema in -4..=8 {
            let bounds = Bounds::of(schema);
            // The cell lookup agrees with a binary search everywhere.
            for i in 0..20_000u64 {
                let frac = 0.5 + (i as f64 + 0.37) / 40_000.0;
                assert_eq!(
                    bounds.position(frac),
                    bounds.upper.partition_point(|b| *b < frac),
                    "{frac} at {schema}"
                );
            }
            for b in bounds.upper.iter() {
                assert_eq!(bounds.position(*b), bounds.upper.partition_point(|u| u < b));
            }
            // Exact powers of two are the upper bound of their bucket.
            for exp in -20..20 {
                let v = f64::from(exp).exp2();
                let want = if schema >= 0 {
                    exp << schema
                } else {
                    reduce_index(exp, 0, schema)
                };
                assert_eq!(bucket_index(v, schema, bounds), want, "2^{exp} at {schema}");
            }
            for v in [0.3, 1.5, 3.0, 7.77, 1000.1, 1e-7, 123456.0] {
                assert_eq!(
                    bucket_index(v, schema, bounds),
                    by_log(v, schema),
                    "{v} at {schema}"
                );
            }
        }
        // client_golang's documented examples at schema 0: (0.5, 1] is 0,
        // (1, 2] is 1; +Inf is one past the largest finite value.
        let none = Bounds::of(0);
        assert_eq!(bucket_index(1.0, 0, none), 0);
        assert_eq!(bucket_index(1.5, 0, none), 1);
        assert_eq!(bucket_index(2.0, 0, none), 1);
        assert_eq!(
            bucket_index(f64::INFINITY, 0, none),
            bucket_index(f64::MAX, 0, none) + 1
        );
        let subnormal = f64::from_bits(1);
        assert_eq!(bucket_index(subnormal, 0, none), -1074);
    }

    #[test]
    fn reduction_is_ceil_of_half() {
        assert_eq!(reduce_index(3, 1, 0), 2);
        assert_eq!(reduce_index(4, 1, 0), 2);
        assert_eq!(reduce_index(-3, 1, 0), -1);
        assert_eq!(reduce_index(-4, 1, 0), -2);
        assert_eq!(reduce_index(0, 1, 0), 0);
        assert_eq!(reduce_index(9, 3, 0), 2);
        assert_eq!(reduce_index(7, 2, 2), 7);
    }

    #[test]
    fn factors_pick_client_golangs_schema() {
        for (factor, schema) in [
            (1.1, 3),
            (2.0, 0),
            (1.00271, 8),
            (1.0001, 8),
            (4.0, -1),
            (65536.0, -4),
            (1e10, -4),
        ] {
            assert_eq!(
                NativeBuckets::with_factor(factor).unwrap().schema(),
                schema,
                "{factor}"
            );
        }
        assert!(NativeBuckets::with_factor(1.0).is_err());
        assert!(NativeBuckets::with_schema(9).is_err());
        assert!(NativeBuckets::default().zero_threshold(-1.0).is_err());
    }
}
