//! `--shard I/N`: a deterministic 1/N of a sweep's cells, so a Slurm job array can spread a
//! sweep over many nodes sharing one results folder.
//!
//! Round robin over the expansion order ([`crate::cells::expand`], itself deterministic):
//! shard I takes cells I, I+N, I+2N, … . Shard sizes differ by at most one, and shard I of N
//! is the same set on every node. I is 0-based (`0/4` … `3/4`), matching
//! `SLURM_ARRAY_TASK_ID` with `--array=0-3`.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use crate::cells::Cell;

/// Shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole sweep.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 {
            bail!("shard {index}/{count}: N must be at least 1");
        }
        if index >= count {
            bail!("shard {index}/{count}: I must be in 0..{count} (I is 0-based: 0/{count} … {}/{count})", count - 1);
        }
        Ok(Shard { index, count })
    }

    /// This shard's cells, in expansion order.
    pub fn select<'a>(&self, cells: &'a [Cell]) -> Vec<&'a Cell> {
        cells.iter().skip(self.index).step_by(self.count).collect()
    }
}

impl FromStr for Shard {
    type Err = anyhow::Error;

    /// Parses `I/N`.
    fn from_str(s: &str) -> Result<Shard> {
        let (i, n) = s.split_once('/').with_context(|| format!("shard `{s}`: expected I/N, e.g. 0/4"))?;
        let index = i.trim().parse().with_context(|| format!("shard `{s}`: I is not a non-negative integer"))?;
        let count = n.trim().parse().with_context(|| format!("shard `{s}`: N is not a positive integer"))?;
        Shard::new(index, count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("2/5".parse::<Shard>().unwrap(), Shard { index: 2, count: 5 });
        assert_eq!("0/1".parse::<Shard>().unwrap(), Shard::ALL);
        for bad in ["5/5", "1/0", "a/2", "3", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?} should not parse");
        }
        let msg = format!("{:#}", "4/4".parse::<Shard>().unwrap_err());
        assert!(msg.contains("0-based"), "{msg}");
    }
}
