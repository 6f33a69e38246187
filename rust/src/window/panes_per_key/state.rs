//! A key's state bytes: the format of snapshots and changelogs, which
//! [`super::super::panes_by_time`] writes and reads too.

use super::{KeyState, Pane};
use crate::aggregate::{Acc, Layout};
use crate::snapshot::{Reader, Writer};
use crate::window::keys::KeyedState;
use crate::CoreResult;

impl<const N: usize> KeyedState for KeyState<N> {
    fn write(&self, layout: &Layout, w: &mut Writer) {
        let triggered = self.triggered.as_deref().map_or(&[][..], |t| t.as_slice());
        let panes = self.panes.iter().map(|p| (p.start, &p.acc));
        write_key(layout, w, self.next_end, self.timer, triggered, panes);
    }

    fn read(layout: &Layout, r: &mut Reader<'_>) -> CoreResult<Self> {
        let key = KeyPanes::read(layout, r)?;
        let mut st = KeyState::new();
        st.next_end = key.next_end;
        st.timer = key.timer;
        if !key.triggered.is_empty() {
            st.triggered = Some(Box::new(key.triggered.into_iter().collect()));
        }
        for (start, acc) in key.panes {
            let at = st.panes.len();
            st.panes.insert(at, Pane { start, acc });
        }
        Ok(st)
    }

    fn timer(&self) -> i64 {
        self.timer
    }

    fn set_timer_seq(&mut self, seq: u64) {
        self.timer_seq = seq;
    }

    fn windows(&self) -> usize {
        self.panes.len()
    }

    /// The head (`next_end`, `timer`, two counts) and one pane: its start, count and the
    /// lengths of its slot lists.
    const MIN_WRITTEN: usize = 4 * 8 + 8 + 8 + 3 * 8;
}

/// Writes one key's tumbling/hopping state: the byte format of snapshots and changelogs,
/// shared by [`PanesPerKey`] and [`super::panes_by_time::PanesByTime`] (so that either reads the other's state).
pub(in crate::window) fn write_key<'a>(
    layout: &Layout,
    w: &mut Writer,
    next_end: i64,
    timer: i64,
    triggered: &[i64],
    panes: impl ExactSizeIterator<Item = (i64, &'a Acc)>,
) {
    w.i64(next_end);
    w.i64(timer);
    w.count(triggered.len());
    triggered.iter().for_each(|&e| w.i64(e));
    w.count(panes.len());
    for (start, acc) in panes {
        w.i64(start);
        layout.write_acc(acc, w);
    }
}

/// One key's state as [`write_key`] wrote it.
pub(in crate::window) struct KeyPanes {
    pub next_end: i64,
    pub timer: i64,
    pub triggered: Vec<i64>,
    /// (start, accumulator), by start.
    pub panes: Vec<(i64, Acc)>,
}

impl KeyPanes {
    pub fn read(layout: &Layout, r: &mut Reader<'_>) -> CoreResult<Self> {
        let next_end = r.i64()?;
        let timer = r.i64()?;
        let triggered = (0..r.count()?).map(|_| r.i64()).collect::<CoreResult<Vec<i64>>>()?;
        let n = r.count()?;
        let mut panes = Vec::with_capacity(n.min(r.remaining() / 16));
        for _ in 0..n {
            let start = r.i64()?;
            panes.push((start, layout.read_acc(r)?));
        }
        Ok(KeyPanes { next_end, timer, triggered, panes })
    }
}
