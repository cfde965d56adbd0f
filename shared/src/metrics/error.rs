//! Errors of the evaluation metrics: inputs whose shapes do not fit together, or that leave a
//! score undefined (an empty corpus, an image without references).

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// Two inputs that must be parallel have different lengths.
    #[error("{what}: {left} vs {right}")]
    LengthMismatch {
        what: &'static str,
        left: usize,
        right: usize,
    },
    /// Nothing to average over.
    #[error("no {what} to evaluate")]
    Empty { what: &'static str },
    /// A row of a matrix whose length differs from the others'.
    #[error("{what} {row} has {len} entries, expected {expected}")]
    RowLength {
        what: &'static str,
        row: usize,
        len: usize,
        expected: usize,
    },
    /// One item has an empty list where the metric needs at least one entry.
    #[error("{what} {index} has no {missing}")]
    EmptyItem {
        what: &'static str,
        index: usize,
        missing: &'static str,
    },
    /// An index that points outside the collection it refers to.
    #[error("{what} {index} points to {target} {value}, but there are only {len}")]
    IndexOutOfRange {
        what: &'static str,
        index: usize,
        target: &'static str,
        value: usize,
        len: usize,
    },
    /// A NaN where a number must be ordered.
    #[error("{what} [{row}][{column}] is NaN")]
    NotANumber {
        what: &'static str,
        row: usize,
        column: usize,
    },
}

pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

/// Checks that two parallel inputs have the same, non-zero length.
pub(super) fn check_parallel(what: &'static str, left: usize, right: usize) -> Result<()> {
    if left != right {
        return Err(MetricsError::LengthMismatch { what, left, right });
    }
    if left == 0 {
        return Err(MetricsError::Empty { what });
    }
    Ok(())
}
