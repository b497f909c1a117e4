//! Completion indexes as the Job status writes them: ordered, merged intervals,
//! `"1,3-5"`, `"7,8"` (upstream's `orderedIntervals`).

use std::fmt;

/// Disjoint, ordered, inclusive intervals of completion indexes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intervals(Vec<(i32, i32)>);

impl Intervals {
    /// Reads `"1,3-5"`, keeping only indexes below `completions`; malformed parts are
    /// skipped, as upstream does.
    pub fn parse(text: &str, completions: i32) -> Self {
        let mut out = Intervals::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            let (Ok(first), Ok(last)) = (first, last) else {
                continue;
            };
            if first < 0 || last < first || first >= completions {
                continue;
            }
            out.add_range(first, last.min(completions - 1));
        }
        out
    }

    fn add_range(&mut self, first: i32, last: i32) {
        self.0.push((first, last));
        self.0.sort_unstable();
        let mut merged: Vec<(i32, i32)> = Vec::with_capacity(self.0.len());
        for &(a, b) in &self.0 {
            match merged.last_mut() {
                Some(prev) if a <= prev.1 + 1 => prev.1 = prev.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.0 = merged;
    }

    /// These intervals with `indexes` added.
    pub fn with(&self, indexes: impl IntoIterator<Item = i32>) -> Self {
        let mut out = self.clone();
        for ix in indexes {
            if !out.has(ix) {
                out.add_range(ix, ix);
            }
        }
        out
    }

    /// Whether `index` is in one of the intervals.
    pub fn has(&self, index: i32) -> bool {
        self.0.iter().any(|&(a, b)| a <= index && index <= b)
    }

    /// How many indexes the intervals hold.
    pub fn total(&self) -> i32 {
        self.0.iter().map(|&(a, b)| b - a + 1).sum()
    }
}

impl fmt::Display for Intervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            // Two neighbours are listed, three or more are a range, as upstream.
            match b - a {
                0 => write!(f, "{a}")?,
                1 => write!(f, "{a},{b}")?,
                _ => write!(f, "{a}-{b}")?,
            }
        }
        Ok(())
    }
}
