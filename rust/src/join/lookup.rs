//! The processing-time lookup join: a table of the latest value per key, by arrival.
//!
//! Invariants: an upsert replaces the key's value, a delete removes it, in arrival order
//! (version times play no part: this is Flink's processing-time lookup, not the temporal
//! join). A lookup never waits: it reads the table as it is when the probe batch arrives.
//! A batch is validated whole before any change; snapshots list keys in order.

use rustc_hash::{FxHashMap, FxHashSet};

use super::{KeyedTableState, SNAPSHOT};
use crate::snapshot::{Reader, Writer};
use crate::{CoreError, CoreResult};

const SECTION: &str = "lookup-table/1";

/// Result of a lookup: per probe row, a match flag and one column per table column (NaN
/// where unmatched).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Looked {
    /// Whether the key was in the table.
    pub matched: Vec<bool>,
    /// One column per table column.
    pub values: Vec<Vec<f64>>,
}

/// Latest value per key (see the module docs).
#[derive(Debug, Clone)]
pub struct LookupTable {
    columns: Vec<String>,
    rows: FxHashMap<i64, Box<[f64]>>,
    dirty: Option<FxHashSet<i64>>,
    updates: u64,
}

impl LookupTable {
    /// An empty table with these value columns.
    ///
    /// # Errors
    /// [`CoreError::Config`] for duplicate or empty column names.
    ///
    /// # Examples
    /// ```
    /// use fraudstream::join::lookup::LookupTable;
    /// let mut t = LookupTable::new(vec!["avg".into()]).unwrap();
    /// t.update(&[7], &[&[5.0]], None).unwrap();
    /// let out = t.lookup(&[7, 8]);
    /// assert_eq!(out.matched, vec![true, false]);
    /// assert_eq!(out.values[0][0], 5.0);
    /// ```
    pub fn new(columns: Vec<String>) -> CoreResult<Self> {
        super::check_columns(&columns, &["matched"])?;
        Ok(LookupTable { columns, rows: FxHashMap::default(), dirty: None, updates: 0 })
    }

    /// The value columns.
    #[must_use]
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Keys held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No key held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Updates applied since creation.
    #[must_use]
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Upserts (or, where `deletes[i]`, deletes) rows in order.
    ///
    /// # Errors
    /// A length or column count that does not match: nothing changes.
    pub fn update(&mut self, keys: &[i64], values: &[&[f64]], deletes: Option<&[bool]>) -> CoreResult<()> {
        let n = keys.len();
        if values.len() != self.columns.len() {
            return Err(CoreError::Config(format!(
                "{} table value columns given, the table has {}",
                values.len(),
                self.columns.len()
            )));
        }
        for (name, col) in self.columns.iter().zip(values) {
            if col.len() != n {
                return Err(CoreError::LengthMismatch {
                    column: name.clone(),
                    expected: n,
                    actual: col.len(),
                });
            }
        }
        if let Some(d) = deletes.filter(|d| d.len() != n) {
            return Err(CoreError::LengthMismatch { column: "deleted".into(), expected: n, actual: d.len() });
        }
        for (i, &key) in keys.iter().enumerate() {
            if deletes.is_some_and(|d| d[i]) {
                self.rows.remove(&key);
            } else {
                self.rows.insert(key, values.iter().map(|c| c[i]).collect());
            }
            if let Some(d) = &mut self.dirty {
                d.insert(key);
            }
        }
        self.updates += n as u64;
        Ok(())
    }

    /// The current value of each key.
    #[must_use]
    pub fn lookup(&self, keys: &[i64]) -> Looked {
        let mut out = Looked {
            matched: Vec::with_capacity(keys.len()),
            values: vec![Vec::with_capacity(keys.len()); self.columns.len()],
        };
        for key in keys {
            let row = self.rows.get(key);
            out.matched.push(row.is_some());
            for (c, col) in out.values.iter_mut().enumerate() {
                col.push(row.map_or(f64::NAN, |r| r[c]));
            }
        }
        out
    }
}

impl KeyedTableState for LookupTable {
    fn held_keys(&self) -> Vec<i64> {
        self.rows.keys().copied().collect()
    }

    fn changed_keys(&mut self) -> &mut Option<FxHashSet<i64>> {
        &mut self.dirty
    }

    fn write(&self, kind: u8, mut keys: Vec<i64>) -> Vec<u8> {
        let mut w = Writer::with_header();
        w.str(SECTION);
        w.u8(kind);
        w.count(self.columns.len());
        for c in &self.columns {
            w.str(c);
        }
        w.u64(self.updates);
        keys.sort_unstable();
        w.count(keys.len());
        for k in keys {
            w.i64(k);
            match self.rows.get(&k) {
                None => w.u8(0),
                Some(row) => {
                    w.u8(1);
                    for &x in row.iter() {
                        w.f64(x);
                    }
                }
            }
        }
        w.into_bytes()
    }

    fn read(&mut self, data: &[u8], kind: u8) -> CoreResult<()> {
        let bad = |m: &str| CoreError::Snapshot(m.to_owned());
        let mut r = Reader::with_header(data)?;
        if r.str()? != SECTION {
            return Err(bad("not a lookup table state"));
        }
        if r.u8()? != kind {
            return Err(bad("snapshot and changes are not interchangeable"));
        }
        r.expect_len(self.columns.len(), "table columns")?;
        for c in &self.columns {
            if &r.str()? != c {
                return Err(bad("table columns differ from this table's"));
            }
        }
        let updates = r.u64()?;
        let mut rows = Vec::new();
        for _ in 0..r.count()? {
            let key = r.i64()?;
            let row = match r.u8()? {
                0 => None,
                1 => Some((0..self.columns.len()).map(|_| r.f64()).collect::<CoreResult<Box<[f64]>>>()?),
                _ => return Err(bad("bad row tag")),
            };
            rows.push((key, row));
        }
        r.finish()?;
        if kind == SNAPSHOT {
            self.rows.clear();
        }
        for (key, row) in rows {
            match row {
                Some(row) => self.rows.insert(key, row),
                None => self.rows.remove(&key),
            };
        }
        self.updates = updates;
        if let Some(d) = &mut self.dirty {
            d.clear();
        }
        Ok(())
    }
}
