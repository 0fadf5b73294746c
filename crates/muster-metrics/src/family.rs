//! Families: one metric per distinct set of label values, with a bound on
//! how many distinct sets a process keeps.

use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use hashbrown::{Equivalent, HashMap};
use parking_lot::RwLock;

use crate::counter::Counter;
use crate::desc::{Desc, MetricError};

/// Distinct label sets a family keeps per process unless told otherwise.
pub const DEFAULT_LABEL_SET_LIMIT: usize = 10_000;
/// Label values longer than this many bytes are cut (at a character boundary).
pub const MAX_LABEL_VALUE_BYTES: usize = 4096;
/// The value every label takes in the series that absorbs label sets past the limit.
pub const OVERFLOW_LABEL_VALUE: &str = "__overflow__";

static DEFAULT_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LABEL_SET_LIMIT);

/// Sets the label-set limit of families created from now on.
pub fn set_default_label_set_limit(limit: usize) {
    DEFAULT_LIMIT.store(limit.max(1), Ordering::Relaxed);
}

/// A metric type that can be a member of a [`Family`].
pub trait Member: Sized + Send + Sync + 'static {
    /// What every member shares besides the description (histogram bounds).
    type Config: Send + Sync;

    #[doc(hidden)]
    fn build(desc: &Arc<Desc>, config: &Self::Config, values: &[&str]) -> Self;
}

/// A set of label values given as a type, for compile-time checked labels.
///
/// ```
/// use muster_metrics::{Counter, LabelSet};
/// struct Route<'a> { method: &'a str, route: &'a str }
/// impl LabelSet for Route<'_> {
///     const NAMES: &'static [&'static str] = &["method", "route"];
///     fn values(&self) -> impl AsRef<[&str]> { [self.method, self.route] }
/// }
/// # let dir = tempfile::tempdir().unwrap(); muster_store::configure(dir.path());
/// let requests = Counter::typed_family::<Route>("requests", "Requests.").unwrap();
/// requests.get(&Route { method: "GET", route: "/" }).inc();
/// ```
pub trait LabelSet {
    /// The label names, in the order [`LabelSet::values`] gives values.
    const NAMES: &'static [&'static str];
    /// The label values: an array (or anything that is a slice), so a
    /// lookup allocates nothing.
    fn values(&self) -> impl AsRef<[&str]>;
}

/// Label values given as a slice at run time (the default).
pub enum DynamicLabels {}

/// Metrics of one name, one per distinct set of label values.
pub struct Family<M: Member, L = DynamicLabels> {
    inner: Arc<Inner<M>>,
    _labels: PhantomData<fn(&L)>,
}

impl<M: Member, L> Clone for Family<M, L> {
    fn clone(&self) -> Self {
        Family {
            inner: self.inner.clone(),
            _labels: PhantomData,
        }
    }
}

type Children<M> = HashMap<Box<[Box<str>]>, Box<M>, foldhash::fast::FixedState>;

struct Inner<M: Member> {
    desc: Arc<Desc>,
    config: M::Config,
    children: RwLock<Children<M>>,
    limit: AtomicUsize,
    overflow: OnceLock<Box<M>>,
    /// `muster_label_sets_dropped_total{family="<this family>"}`, in its store.
    dropped: OnceLock<Counter>,
    warned_count: AtomicBool,
}

/// Looks up `[Box<str>]` keys by `[&str]` without allocating. Hashes the
/// same way as the stored key (a slice of strings).
struct Lookup<'a>(&'a [&'a str]);

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Equivalent<Box<[Box<str>]>> for Lookup<'_> {
    fn equivalent(&self, key: &Box<[Box<str>]>) -> bool {
        key.len() == self.0.len() && key.iter().zip(self.0).all(|(a, b)| **a == **b)
    }
}

impl<M: Member, L> Family<M, L> {
    pub(crate) fn new(desc: Desc, config: M::Config) -> Family<M, L> {
        Family {
            inner: Arc::new(Inner {
                desc: Arc::new(desc),
                config,
                children: RwLock::new(HashMap::with_hasher(foldhash::fast::FixedState::default())),
                limit: AtomicUsize::new(DEFAULT_LIMIT.load(Ordering::Relaxed)),
                overflow: OnceLock::new(),
                dropped: OnceLock::new(),
                warned_count: AtomicBool::new(false),
            }),
            _labels: PhantomData,
        }
    }

    /// Sets how many distinct label sets this family keeps in this process.
    /// Further sets share one series whose labels are all
    /// [`OVERFLOW_LABEL_VALUE`], and are counted in
    /// `muster_label_sets_dropped_total{family}`.
    pub fn with_label_set_limit(self, limit: usize) -> Self {
        self.inner.limit.store(limit.max(1), Ordering::Relaxed);
        self
    }

    /// The family name.
    pub fn name(&self) -> &str {
        &self.inner.desc.family
    }

    /// The label names.
    pub fn label_names(&self) -> &[String] {
        &self.inner.desc.label_names
    }

    /// How many distinct label sets this process holds.
    pub fn len(&self) -> usize {
        self.inner.children.read().len()
    }

    /// Whether no label set has been used yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The metric for these label values, in label-name order.
    ///
    /// Never panics: with the wrong number of values, the error is logged
    /// once and missing values count as empty (extra ones are dropped); use
    /// [`Family::try_with_label_values`] to get the error instead.
    #[inline]
    pub fn with_label_values(&self, values: &[&str]) -> &M {
        if values.len() == self.inner.desc.label_names.len()
            && values.iter().all(|v| v.len() <= MAX_LABEL_VALUE_BYTES)
        {
            self.find(values).unwrap_or_else(|| self.insert(values))
        } else {
            self.irregular(values)
        }
    }

    /// Like [`Family::with_label_values`], but a wrong number of values is an error.
    pub fn try_with_label_values(&self, values: &[&str]) -> Result<&M, MetricError> {
        let expected = self.inner.desc.label_names.len();
        if values.len() != expected {
            return Err(MetricError::LabelCount {
                family: self.inner.desc.family.clone(),
                expected,
                got: values.len(),
            });
        }
        Ok(self.with_label_values(values))
    }

    #[inline]
    fn find(&self, values: &[&str]) -> Option<&M> {
        let children = self.inner.children.read();
        let m: &M = children.get(&Lookup(values))?;
        // SAFETY: members are boxed and never removed or replaced while the
        // family lives, so the box's contents outlive the lock guard; the
        // returned borrow is tied to `self`, which keeps the family alive.
        Some(unsafe { &*(m as *const M) })
    }

    #[cold]
    fn insert(&self, values: &[&str]) -> &M {
        let mut children = self.inner.children.write();
        if let Some(m) = children.get(&Lookup(values)) {
            // SAFETY: as in `find`.
            return unsafe { &*(&**m as *const M) };
        }
        if children.len() >= self.inner.limit.load(Ordering::Relaxed) {
            drop(children);
            return self.overflow();
        }
        let member = Box::new(M::build(&self.inner.desc, &self.inner.config, values));
        let ptr: *const M = &*member;
        children.insert(values.iter().map(|v| Box::from(*v)).collect(), member);
        // SAFETY: as in `find`.
        unsafe { &*ptr }
    }

    fn overflow(&self) -> &M {
        self.inner
            .dropped
            .get_or_init(|| dropped_label_sets(&self.inner.desc))
            .inc();
        self.inner.overflow.get_or_init(|| {
            tracing::warn!(
                family = %self.inner.desc.family,
                limit = self.inner.limit.load(Ordering::Relaxed),
                "label set limit reached: further label sets go to the overflow series"
            );
            let values = vec![OVERFLOW_LABEL_VALUE; self.inner.desc.label_names.len()];
            Box::new(M::build(&self.inner.desc, &self.inner.config, &values))
        })
    }

    #[cold]
    fn irregular(&self, values: &[&str]) -> &M {
        let expected = self.inner.desc.label_names.len();
        if values.len() != expected && !self.inner.warned_count.swap(true, Ordering::Relaxed) {
            tracing::error!(
                family = %self.inner.desc.family,
                expected,
                got = values.len(),
                "wrong number of label values; missing ones count as empty"
            );
        }
        let fixed: Vec<&str> = (0..expected)
            .map(|i| values.get(i).map_or("", |v| cut(v, MAX_LABEL_VALUE_BYTES)))
            .collect();
        self.find(&fixed).unwrap_or_else(|| self.insert(&fixed))
    }
}

impl<M: Member, L: LabelSet> Family<M, L> {
    /// The metric for a typed label set.
    pub fn get(&self, labels: &L) -> &M {
        self.with_label_values(labels.values().as_ref())
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `muster_label_sets_dropped_total{family}` for the family `desc` describes,
/// in its store: label sets sent to its overflow series.
fn dropped_label_sets(desc: &Desc) -> Counter {
    let counter = Counter::family_in(
        &desc.store,
        "muster_label_sets_dropped",
        "Label sets that exceeded their family's limit and went to the overflow series.",
        &["family"],
    )
    .expect("a valid built-in metric");
    counter.with_label_values(&[&desc.family]).clone()
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("aé", 3), "aé");
    }
}
