//! Names, help and label names of a metric, validated once at creation.

use muster_store::{encode_key, FileKind, Store, ValueCell};

/// Why a metric cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// The metric name is not `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name {0:?}: use [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidName(String),
    /// A label name is not `[a-zA-Z_][a-zA-Z0-9_]*`, or starts with `__`.
    #[error("invalid label name {0:?}: use [a-zA-Z_][a-zA-Z0-9_]* not starting with __")]
    InvalidLabel(String),
    /// A label name the metric type uses itself (`le`, `quantile`).
    #[error("label name {0:?} is reserved for this metric type")]
    ReservedLabel(String),
    /// The same label name twice.
    #[error("label name {0:?} is given twice")]
    DuplicateLabel(String),
    /// Histogram bounds that are empty, unsorted or NaN.
    #[error("invalid histogram buckets: {0}")]
    InvalidBuckets(String),
    /// The number of label values differs from the number of label names.
    #[error("{family} has {expected} label names but {got} values were given")]
    LabelCount {
        /// The family.
        family: String,
        /// How many names it has.
        expected: usize,
        /// How many values were given.
        got: usize,
    },
}

/// What every value of a metric shares: names, help, label names, file kind
/// and the store its values go to.
/// (Public only because [`crate::Member`] names it; not reachable outside.)
#[derive(Debug)]
pub struct Desc {
    pub(crate) family: String,
    pub(crate) help: String,
    pub(crate) label_names: Box<[String]>,
    pub(crate) kind: FileKind,
    pub(crate) store: Store,
}

impl Desc {
    pub fn new(
        store: &Store,
        family: &str,
        help: &str,
        label_names: &[&str],
        reserved: &[&str],
        kind: FileKind,
    ) -> Result<Desc, MetricError> {
        validate_metric_name(family)?;
        for (i, name) in label_names.iter().enumerate() {
            validate_label_name(name)?;
            if reserved.contains(name) {
                return Err(MetricError::ReservedLabel((*name).to_owned()));
            }
            if label_names[..i].contains(name) {
                return Err(MetricError::DuplicateLabel((*name).to_owned()));
            }
        }
        Ok(Desc {
            family: family.to_owned(),
            help: help.to_owned(),
            label_names: label_names.iter().map(|s| (*s).to_owned()).collect(),
            kind,
            store: store.clone(),
        })
    }

    /// The key of sample `suffix` (e.g. `_total`) for these label values,
    /// plus an extra label (histogram `le`).
    pub fn key(&self, suffix: &str, values: &[&str], extra: Option<(&str, &str)>) -> String {
        let mut labels: Vec<(&str, &str)> = self
            .label_names
            .iter()
            .map(String::as_str)
            .zip(values.iter().copied())
            .collect();
        labels.extend(extra);
        encode_key(
            &self.family,
            &format!("{}{suffix}", self.family),
            &labels,
            &self.help,
        )
    }

    /// A cell of this metric's store and file kind for `key`.
    pub(crate) fn cell(&self, key: String) -> ValueCell {
        ValueCell::new_in(&self.store, self.kind, key)
    }
}

fn validate_metric_name(name: &str) -> Result<(), MetricError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(MetricError::InvalidName(name.to_owned()))
    }
}

fn validate_label_name(name: &str) -> Result<(), MetricError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__");
    if ok {
        Ok(())
    } else {
        Err(MetricError::InvalidLabel(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        let s = Store::global();
        let k = FileKind::Counter;
        assert!(Desc::new(s, "http_requests", "h", &["method", "_x"], &[], k).is_ok());
        assert!(Desc::new(s, "a:b_c9", "h", &[], &[], k).is_ok());
        for bad in ["", "9abc", "a-b", "a b", "é"] {
            assert_eq!(
                Desc::new(s, bad, "h", &[], &[], k).unwrap_err(),
                MetricError::InvalidName(bad.into())
            );
        }
        for bad in ["", "__x", "a:b", "1a", "a-b"] {
            assert_eq!(
                Desc::new(s, "m", "h", &[bad], &[], k).unwrap_err(),
                MetricError::InvalidLabel(bad.into())
            );
        }
        assert_eq!(
            Desc::new(s, "m", "h", &["le"], &["le"], k).unwrap_err(),
            MetricError::ReservedLabel("le".into())
        );
        assert_eq!(
            Desc::new(s, "m", "h", &["a", "a"], &[], k).unwrap_err(),
            MetricError::DuplicateLabel("a".into())
        );
    }
}
