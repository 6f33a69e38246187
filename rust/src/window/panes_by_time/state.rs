//! State bytes: a key's slices written and read in the format of `PanesPerKey`, so either
//! layout reads the other's snapshots and changelogs.

use super::PanesByTime;
use crate::aggregate::{Acc, Layout};
use crate::snapshot::{Reader, Writer};
use crate::window::panes_per_key::{write_key, KeyPanes};
use crate::window::{Geometry, Rules};
use crate::CoreResult;

impl PanesByTime {
    /// Writes the state of the live key in `slot` as `PanesPerKey` would at watermark `wm`.
    pub(super) fn write_slot(&self, layout: &Layout, slot: u32, wm: i64, lateness: i64, w: &mut Writer) {
        let g = self.geo;
        let panes: Vec<(i64, Acc)> = (0..self.slices.len())
            .filter(|&s| self.acc(s, slot)[0] > 0)
            .map(|s| {
                (
                    self.slices[s].start,
                    layout.acc_of_flat(self.acc(s, slot), self.slices[s].overflow_of(slot)),
                )
            })
            .collect();
        let next_end = panes.iter().filter_map(|&(start, _)| g.first_unfired_end(start, wm)).min();
        let next_end = next_end.unwrap_or(i64::MAX);
        let fire = if next_end == i64::MAX { i64::MAX } else { next_end - 1 };
        let cleanup = panes.first().map_or(i64::MAX, |&(start, _)| self.expiry(start, lateness));
        let triggered = self.triggered[slot as usize].as_deref().map_or(&[][..], |t| t.as_slice());
        write_key(layout, w, next_end, fire.min(cleanup), triggered, panes.iter().map(|(s, a)| (*s, a)));
    }

    /// Replaces the state of `key` by `panes` (none: the key is dropped).
    pub(super) fn set_key(
        &mut self,
        rules: &Rules,
        key: i64,
        panes: &[(i64, Acc)],
        triggered: &[i64],
        wm: i64,
    ) {
        let layout = &rules.layout;
        if let Some(slot) = self.slot_of(key) {
            self.clear_slot(slot);
            self.drop_if_empty(slot);
        }
        if panes.is_empty() {
            return;
        }
        let slot = self.insert_key(key);
        let at = slot as usize * self.width;
        for (start, acc) in panes {
            let s = self.slice_at(*start, rules, wm);
            let slice = &mut self.slices[s];
            if let Some(overflow) = layout.flat_of_acc(acc, &mut slice.accs[at..at + self.width]) {
                slice.overflow.insert(slot, Some(overflow));
            }
            slice.touched.push(slot);
            self.open[slot as usize] += 1;
            self.panes += 1;
        }
        if !triggered.is_empty() {
            self.triggered[slot as usize] = Some(Box::new(triggered.iter().copied().collect()));
            self.early_marks = true;
        }
    }

    /// Reads what [`PanesByTime::write`] (or `PanesPerKey::write`) wrote, at watermark `wm`.
    ///
    /// # Errors
    /// [`crate::CoreError::Snapshot`] on malformed bytes.
    pub fn read(geo: Geometry, rules: &Rules, wm: i64, r: &mut Reader<'_>) -> CoreResult<Self> {
        let mut op = PanesByTime::new(geo, &rules.layout);
        for _ in 0..r.count()? {
            let key = r.i64()?;
            if op.slot_of(key).is_some() {
                return Err(crate::CoreError::Snapshot(format!("key {key} appears twice")));
            }
            let state = KeyPanes::read(&rules.layout, r)?;
            op.set_key(rules, key, &state.panes, &state.triggered, wm);
        }
        op.reschedule(wm, rules.allowed_lateness);
        Ok(op)
    }
}
