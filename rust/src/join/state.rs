//! Snapshots and changes of a [`TemporalJoin`]: versioned bytes (`crate::snapshot`).
//!
//! Layout: the section name, `S` (snapshot) or `C` (changes), the configuration (checked on
//! read), the watermarks, arrival sequence and counters, every waiting probe, then keys in
//! order with their versions (changes: only the keys changed since the previous call; an
//! empty list removes the key). A read checks everything before it changes the state.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;

use super::{
    JoinCounters, JoinKind, KeyedTableState, TemporalJoin, Values, Version, Waiting, SECTION, SNAPSHOT,
};
use crate::snapshot::{Reader, Writer};
use crate::{CoreError, CoreResult};

impl TemporalJoin {
    /// Whether changes are recorded.
    #[must_use]
    pub fn tracks_changes(&self) -> bool {
        self.dirty.is_some()
    }

    fn write_header(&self, w: &mut Writer, kind: u8) {
        w.str(SECTION);
        w.u8(kind);
        w.count(self.config.columns.len());
        for c in &self.config.columns {
            w.str(c);
        }
        w.i64(self.config.table_disorder);
        w.i64(self.config.probe_disorder);
        w.u8(u8::from(self.config.kind == JoinKind::Inner));
        w.i64(self.table_wm);
        w.i64(self.probe_wm);
        w.u64(self.seq);
        let c = self.counters;
        for v in [c.probes, c.late_probes, c.updates, c.late_updates, c.matched, c.unmatched, c.freed] {
            w.u64(v);
        }
        w.count(self.waiting.len());
        for (&(t, s), p) in &self.waiting {
            w.i64(t);
            w.u64(s);
            w.i64(p.key);
            w.i64(p.id);
        }
    }

    fn write_key(&self, w: &mut Writer, key: i64) {
        w.i64(key);
        let versions = self.table.get(&key).map_or(&[][..], Vec::as_slice);
        w.count(versions.len());
        for v in versions {
            w.i64(v.time);
            match &v.values {
                None => w.u8(0),
                Some(vals) => {
                    w.u8(1);
                    for &x in vals.iter() {
                        w.f64(x);
                    }
                }
            }
        }
    }
}

impl KeyedTableState for TemporalJoin {
    fn held_keys(&self) -> Vec<i64> {
        self.table.keys().copied().collect()
    }

    fn changed_keys(&mut self) -> &mut Option<FxHashSet<i64>> {
        &mut self.dirty
    }

    fn write(&self, kind: u8, mut keys: Vec<i64>) -> Vec<u8> {
        let mut w = Writer::with_header();
        self.write_header(&mut w, kind);
        keys.sort_unstable();
        w.count(keys.len());
        for k in keys {
            self.write_key(&mut w, k);
        }
        w.into_bytes()
    }

    fn read(&mut self, data: &[u8], kind: u8) -> CoreResult<()> {
        let bad = |m: &str| CoreError::Snapshot(m.to_owned());
        let mut r = Reader::with_header(data)?;
        if r.str()? != SECTION {
            return Err(bad("not a temporal join state"));
        }
        if r.u8()? != kind {
            return Err(bad(if kind == SNAPSHOT {
                "expected a snapshot, got changes"
            } else {
                "expected changes, got a snapshot"
            }));
        }
        r.expect_len(self.config.columns.len(), "table columns")?;
        for c in &self.config.columns {
            if &r.str()? != c {
                return Err(bad("table columns differ from this join's"));
            }
        }
        let kind_inner = u8::from(self.config.kind == JoinKind::Inner);
        if r.i64()? != self.config.table_disorder
            || r.i64()? != self.config.probe_disorder
            || r.u8()? != kind_inner
        {
            return Err(bad("join configuration differs from this join's"));
        }
        let (table_wm, probe_wm, seq) = (r.i64()?, r.i64()?, r.u64()?);
        let mut c = [0u64; 7];
        for v in &mut c {
            *v = r.u64()?;
        }
        let counters = JoinCounters {
            probes: c[0],
            late_probes: c[1],
            updates: c[2],
            late_updates: c[3],
            matched: c[4],
            unmatched: c[5],
            freed: c[6],
        };
        let mut waiting = BTreeMap::new();
        for _ in 0..r.count()? {
            let (t, s, key, id) = (r.i64()?, r.u64()?, r.i64()?, r.i64()?);
            waiting.insert((t, s), Waiting { key, id });
        }
        let width = self.config.columns.len();
        let mut keys = Vec::new();
        for _ in 0..r.count()? {
            let key = r.i64()?;
            let mut versions: Vec<Version> = Vec::new();
            for _ in 0..r.count()? {
                let time = r.i64()?;
                let values = match r.u8()? {
                    0 => None,
                    1 => Some((0..width).map(|_| r.f64()).collect::<CoreResult<Values>>()?),
                    _ => return Err(bad("bad version tag")),
                };
                if versions.last().is_some_and(|v| v.time >= time) {
                    return Err(bad("versions out of order"));
                }
                versions.push(Version { time, values });
            }
            keys.push((key, versions));
        }
        r.finish()?;
        // all read: now mutate
        if kind == SNAPSHOT {
            self.table.clear();
        }
        for (key, versions) in keys {
            if versions.is_empty() {
                self.table.remove(&key);
            } else {
                self.table.insert(key, versions);
            }
        }
        self.table_wm = table_wm;
        self.probe_wm = probe_wm;
        self.seq = seq;
        self.counters = counters;
        self.waiting = waiting;
        if let Some(d) = &mut self.dirty {
            d.clear();
        }
        self.rebuild_prunable();
        Ok(())
    }
}
