//! The keyed window engine: validation, watermarks and window operators wired together.
//!
//! `process` validates the whole batch first (a bad batch raises and changes nothing), then
//! handles its events one by one: each event is judged against the watermark *before* it, then
//! the watermark advances and due windows fire. A batch therefore gives exactly the output of
//! pushing its events one at a time — batch size never changes what is late or emitted.
//!
//! With [`EngineConfig::final_rows`] off (engines that only alert on early rows) windows close
//! and free their state exactly as with it on; the `Final`/`Update` rows are counted, not built.
//! The option is not state: snapshots and changes are the same bytes either way, and state
//! moves freely between engines that differ only in it.

use crate::aggregate::{AggSpec, Layout};
use crate::batch::{Batch, Schema};
use crate::predicate::Predicate;
use crate::snapshot::{Reader, Writer};
use crate::time::{check_duration, Millis, WATERMARK_END};
use crate::watermark::WatermarkTracker;
use crate::window::operator::{advance, run_batch, StateContext, WindowOperator};
use crate::window::output::Output;
use crate::window::panes_by_time::PanesByTime;
use crate::window::panes_per_key::{PanesPerKey, INLINE_CAPACITIES, MAX_INLINE_PANES};
use crate::window::session::SessionWindows;
use crate::window::{EmitMode, Geometry, PaneLayout, Rules, WindowSpec};
use crate::{CoreError, CoreResult};

/// Early firing, as configured (the predicate as text, compiled by the engine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarlyFiring {
    /// Only final rows (and updates for late data).
    Never,
    /// An early row on every change of an open window.
    EveryUpdate,
    /// An early row when the predicate first holds for an open window.
    When(String),
}

/// Everything an [`Engine`] is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Name of the key column (for error messages).
    pub key_column: String,
    /// Name of the event-time column (for error messages).
    pub time_column: String,
    /// The windows.
    pub window: WindowSpec,
    /// The aggregates per window.
    pub aggregations: Vec<AggSpec>,
    /// Bounded out-of-orderness of the watermark, ms.
    pub out_of_orderness: Millis,
    /// How long after firing a window still accepts late events, ms.
    pub allowed_lateness: Millis,
    /// Early firing.
    pub early: EarlyFiring,
    /// Number of input partitions (each with its own watermark).
    pub partitions: usize,
    /// Processing-time ms after which a silent partition stops holding the watermark back.
    pub idle_timeout: Option<Millis>,
    /// Whether `Final` rows (and `Update` rows for late data) are built. False for engines
    /// whose caller only reads early rows (alerting rules): closing a window then costs its
    /// cleanup only, not a row per key. Windows still fire, close and free their state as
    /// with true; late rows, early rows, counters (a row not built counts as emitted) and the
    /// state bytes are unchanged. Not part of the snapshot's configuration check (see
    /// [`EngineConfig::fingerprint`]).
    pub final_rows: bool,
    /// Most live keys (keys with open windows): a new key beyond it evicts the key whose latest
    /// event is the oldest, by its newest pane (tumbling/hopping) or session end (see
    /// [`crate::window::cap`]). `None`: unbounded.
    pub max_keys: Option<usize>,
}

impl EngineConfig {
    /// A configuration with the defaults: no disorder, no lateness, no early firing, one
    /// partition, no idleness.
    #[must_use]
    pub fn new(window: WindowSpec, aggregations: Vec<AggSpec>) -> Self {
        EngineConfig {
            key_column: "key".into(),
            time_column: "time".into(),
            window,
            aggregations,
            out_of_orderness: 0,
            allowed_lateness: 0,
            early: EarlyFiring::Never,
            partitions: 1,
            idle_timeout: None,
            final_rows: true,
            max_keys: None,
        }
    }

    /// The configuration the state bytes belong to (checked by restore): every field in its
    /// `Debug` form, as state was always written, except `final_rows`, which changes which rows
    /// are built, never the state. So an engine may restore (or apply changes written by) an
    /// engine that differs only in `final_rows`, and turning the option on or off keeps the
    /// state of existing snapshots and changelogs.
    fn fingerprint(&self) -> String {
        let EngineConfig {
            key_column,
            time_column,
            window,
            aggregations,
            out_of_orderness,
            allowed_lateness,
            early,
            partitions,
            idle_timeout,
            final_rows: _,
            max_keys,
        } = self;
        // the cap changes which keys live, so it is configuration; written only when set, so
        // engines without one keep the fingerprint of their existing snapshots
        let cap = max_keys.map_or(String::new(), |m| format!(", max_keys: {m}"));
        format!(
            "EngineConfig {{ key_column: {key_column:?}, time_column: {time_column:?}, \
             window: {window:?}, aggregations: {aggregations:?}, out_of_orderness: \
             {out_of_orderness:?}, allowed_lateness: {allowed_lateness:?}, early: {early:?}, \
             partitions: {partitions:?}, idle_timeout: {idle_timeout:?}{cap} }}"
        )
    }
}

/// The window operator of an engine: one variant per window type (and per compiled inline
/// capacity of the per-key pane layout, so that each runs monomorphic code).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "one operator per engine, moved only when built")]
enum Operator {
    /// Tumbling/hopping windows, panes kept per key (2, 3, 4 or 7 of them inline).
    PerKey2(PanesPerKey<2>),
    PerKey3(PanesPerKey<3>),
    PerKey4(PanesPerKey<4>),
    PerKey7(PanesPerKey<MAX_INLINE_PANES>),
    /// Tumbling/hopping windows, panes kept by pane time.
    ByTime(PanesByTime),
    /// Session windows.
    Session(SessionWindows),
}

/// Runs `$body` with `$op` bound to the operator inside an [`Operator`] (`$o`): one dispatch
/// per call, the body monomorphic for each operator type.
macro_rules! with_operator {
    ($o:expr, $op:ident => $body:expr) => {
        match $o {
            Operator::PerKey2($op) => $body,
            Operator::PerKey3($op) => $body,
            Operator::PerKey4($op) => $body,
            Operator::PerKey7($op) => $body,
            Operator::ByTime($op) => $body,
            Operator::Session($op) => $body,
        }
    };
}

impl Operator {
    /// The operator of `config`'s windows, empty or with the state that `state` reads (at
    /// watermark `wm`): the one place that maps a window type, and a pane layout, to its
    /// operator.
    fn build(
        config: &EngineConfig,
        rules: &Rules,
        state: Option<(Millis, &mut Reader<'_>)>,
    ) -> CoreResult<Self> {
        let layout = &rules.layout;
        let op = match config.window {
            WindowSpec::Session { gap } => Operator::Session(match state {
                Some((_, r)) => SessionWindows::read(gap, layout, r)?,
                None => SessionWindows::new(gap),
            }),
            spec => {
                let geo = Geometry::of(&spec).ok_or_else(|| CoreError::Config(format!("{spec:?}")))?;
                match PaneLayout::choose(&geo, config.partitions, config.allowed_lateness) {
                    PaneLayout::ByTime => Operator::ByTime(match state {
                        Some((wm, r)) => PanesByTime::read(geo, rules, wm, r)?,
                        None => PanesByTime::new(geo, layout),
                    }),
                    PaneLayout::PerKey { inline } => {
                        Operator::per_key(geo, layout, inline, state.map(|(_, r)| r))?
                    }
                }
            }
        };
        Ok(op.with_max_keys(config.max_keys))
    }

    /// Panes kept per key, `inline` of them (rounded up to a compiled capacity) in each key's
    /// table entry; empty or read from `state`.
    fn per_key(
        geo: Geometry,
        layout: &Layout,
        inline: usize,
        state: Option<&mut Reader<'_>>,
    ) -> CoreResult<Self> {
        fn build<const N: usize>(
            g: Geometry,
            l: &Layout,
            r: Option<&mut Reader<'_>>,
        ) -> CoreResult<PanesPerKey<N>> {
            r.map_or_else(|| Ok(PanesPerKey::new(g, l)), |r| PanesPerKey::read(g, l, r))
        }
        Ok(match INLINE_CAPACITIES.into_iter().find(|&c| c >= inline).unwrap_or(MAX_INLINE_PANES) {
            2 => Operator::PerKey2(build(geo, layout, state)?),
            3 => Operator::PerKey3(build(geo, layout, state)?),
            4 => Operator::PerKey4(build(geo, layout, state)?),
            _ => Operator::PerKey7(build(geo, layout, state)?),
        })
    }

    /// Caps the live keys at `max_keys` (`None`: unbounded).
    fn with_max_keys(mut self, max_keys: Option<usize>) -> Self {
        with_operator!(&mut self, op => op.set_max_keys(max_keys));
        self
    }

    /// Whether the panes are kept by pane time (for tests that compare the two layouts).
    #[cfg(test)]
    fn by_time(&self) -> bool {
        matches!(self, Operator::ByTime(_))
    }
}

/// Counters since the engine was created (or restored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events accepted into at least one window.
    pub events: u64,
    /// Events later than allowed lateness for all their windows (returned as late rows).
    pub late: u64,
    /// Rows emitted, counting the `Final`/`Update` rows an engine with
    /// [`EngineConfig::final_rows`] off closes without building them.
    pub emitted: u64,
    /// Keys evicted by [`EngineConfig::max_keys`] (in snapshots from format version 3).
    pub evicted: u64,
}

pub use crate::window::operator::StateSize;

/// Keyed event-time window aggregation.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    schema: Schema,
    rules: Rules,
    watermark: WatermarkTracker,
    op: Operator,
    counters: Counters,
    /// Slots of the current batch's keys (reused between batches).
    slots: Vec<u32>,
}

impl Engine {
    /// Builds an engine, validating the whole configuration.
    ///
    /// # Errors
    /// [`CoreError::Config`] or [`CoreError::Predicate`] naming what is wrong.
    ///
    /// # Examples
    /// ```
    /// use fraudstream::aggregate::{AggKind, AggSpec};
    /// use fraudstream::batch::Batch;
    /// use fraudstream::engine::{Engine, EngineConfig};
    /// use fraudstream::window::WindowSpec;
    ///
    /// let window = WindowSpec::Tumbling { size: 10, offset: 0 };
    /// let mut engine =
    ///     Engine::new(EngineConfig::new(window, vec![AggSpec::new("n", AggKind::Count, None)]))
    ///         .unwrap();
    /// let out = engine.process(&Batch::new(&[7, 7, 7], &[1, 4, 12]), None).unwrap();
    /// assert_eq!((out.keys, out.starts, out.ends, out.ints), (vec![7], vec![0], vec![10], vec![vec![2]]));
    /// assert_eq!(engine.flush().ints, vec![vec![1]]);
    /// ```
    pub fn new(config: EngineConfig) -> CoreResult<Self> {
        config.window.validate()?;
        check_duration("out_of_orderness", config.out_of_orderness, true)?;
        check_duration("allowed_lateness", config.allowed_lateness, true)?;
        if let Some(idle) = config.idle_timeout {
            check_duration("idle_timeout", idle, false)?;
        }
        if config.max_keys == Some(0) {
            return Err(CoreError::Config("max_keys must be at least 1".into()));
        }
        let layout = Layout::new(&config.aggregations)?;
        let emit = match &config.early {
            EarlyFiring::Never => EmitMode::Final,
            EarlyFiring::EveryUpdate => EmitMode::EveryUpdate,
            EarlyFiring::When(src) => EmitMode::When(Predicate::parse(src, &layout)?),
        };
        let schema = Schema {
            key: config.key_column.clone(),
            time: config.time_column.clone(),
            values: layout.columns().to_vec(),
        };
        let watermark =
            WatermarkTracker::new(config.out_of_orderness, config.partitions, config.idle_timeout)?;
        let rules =
            Rules { layout, emit, allowed_lateness: config.allowed_lateness, final_rows: config.final_rows };
        let op = Operator::build(&config, &rules, None)?;
        Ok(Engine { config, schema, rules, watermark, op, counters: Counters::default(), slots: Vec::new() })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Column names, including the value columns a batch must pass, in order.
    #[must_use]
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The compiled aggregates (output column layout).
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.rules.layout
    }

    /// The current watermark (`i64::MIN` before any event).
    #[must_use]
    pub fn watermark(&self) -> Millis {
        self.watermark.current()
    }

    /// Partitions currently idle.
    #[must_use]
    pub fn idle_partitions(&self) -> Vec<usize> {
        self.watermark.idle_partitions()
    }

    /// Counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        let evicted = with_operator!(&self.op, op => op.evicted());
        Counters { evicted, ..self.counters }
    }

    /// The sessions `(key, start, end)` of a session window engine (None for other windows).
    #[must_use]
    pub fn sessions(&self) -> Option<Vec<(i64, i64, i64)>> {
        match &self.op {
            Operator::Session(op) => Some(op.spans().collect()),
            _ => None,
        }
    }

    /// Size of the state.
    #[must_use]
    pub fn state_size(&self) -> StateSize {
        with_operator!(&self.op, op => op.state_size())
    }

    /// Processes a batch of events. `now` is the processing time (ms, any monotonic clock),
    /// used only for partition idleness.
    ///
    /// # Errors
    /// A bad batch ([`CoreError::LengthMismatch`], [`CoreError::InvalidValue`]) is rejected
    /// before any state changes.
    pub fn process(&mut self, batch: &Batch<'_>, now: Option<Millis>) -> CoreResult<Output> {
        self.process_dropping(batch, now, &[])
    }

    /// [`Engine::process`], dropping the state of a key without a row where the caller says:
    /// `(row, key)` drops `key` before the event at `row` (rows ascending), for a cap the caller
    /// keeps over several pieces of state (the fraud detector's cap on live cards). The key's
    /// later events start afresh; a key with no state is ignored. Drops are not counted as
    /// evictions (the caller counts them).
    ///
    /// # Errors
    /// As [`Engine::process`]; drops out of order or past the batch are
    /// [`CoreError::Config`], before any state changes.
    pub fn process_dropping(
        &mut self,
        batch: &Batch<'_>,
        now: Option<Millis>,
        drops: &[(usize, i64)],
    ) -> CoreResult<Output> {
        batch.validate(&self.schema, self.watermark.partitions())?;
        if drops.windows(2).any(|w| w[0].0 > w[1].0) || drops.last().is_some_and(|d| d.0 >= batch.len()) {
            return Err(CoreError::Config("key drops must come in row order, within the batch".into()));
        }
        let mut out = Output::for_layout(&self.rules.layout);
        if let Some(now) = now {
            let advanced = self.watermark.tick(now);
            self.on_watermark(advanced, &mut out);
        }
        let (rules, watermark, slots) = (&self.rules, &mut self.watermark, &mut self.slots);
        // (One dispatch per batch: the loop is monomorphic.)
        with_operator!(&mut self.op, op => run_batch(op, rules, watermark, slots, batch, now, drops, &mut out));
        let late = out.late_rows.len() as u64;
        self.counters.late += late;
        self.counters.events += batch.len() as u64 - late;
        self.count_emitted(&out);
        Ok(out)
    }

    /// Marks partitions idle by processing time `now` and fires what that releases.
    pub fn tick(&mut self, now: Millis) -> Output {
        let mut out = Output::for_layout(&self.rules.layout);
        let advanced = self.watermark.tick(now);
        self.on_watermark(advanced, &mut out);
        self.count_emitted(&out);
        out
    }

    /// Raises the watermark to at least `t` and fires what is due.
    pub fn advance_to(&mut self, t: Millis) -> Output {
        let mut out = Output::for_layout(&self.rules.layout);
        let advanced = self.watermark.advance_to(t);
        self.on_watermark(advanced, &mut out);
        self.count_emitted(&out);
        out
    }

    /// End of input: the watermark jumps to +infinity, every window fires, state empties.
    pub fn flush(&mut self) -> Output {
        self.advance_to(WATERMARK_END)
    }

    /// Counts the rows of `out` as emitted, those not built included (see
    /// [`EngineConfig::final_rows`]).
    fn count_emitted(&mut self, out: &Output) {
        self.counters.emitted += out.len() as u64 + out.withheld;
    }

    #[inline]
    fn on_watermark(&mut self, advanced: Option<Millis>, out: &mut Output) {
        with_operator!(&mut self.op, op => advance(op, &self.rules, advanced, out));
    }

    /// Moves the state of [`PanesByTime`] to [`PanesPerKeyAny`] (panes per key): for tests that
    /// compare the two layouts.
    #[cfg(test)]
    pub(crate) fn panes_per_key(&mut self) {
        let Operator::ByTime(op) = &self.op else { return };
        let Some(geo) = Geometry::of(&self.config.window) else { return };
        let mut w = Writer::default();
        op.snapshot(StateContext { rules: &self.rules, wm: self.watermark.current() }, &mut w);
        let bytes = w.into_bytes();
        let (evicted, changed) = (op.evicted(), op.book().changes.recorded().cloned());
        let disorder = (self.config.partitions == 1).then_some(self.config.out_of_orderness);
        let inline = crate::window::panes_per_key::inline_panes(&geo, self.config.allowed_lateness, disorder);
        let mut per_key = Operator::per_key(geo, &self.rules.layout, inline, Some(&mut Reader::new(&bytes)))
            .expect("state written by PanesByTime reads back")
            .with_max_keys(self.config.max_keys);
        with_operator!(&mut per_key, op => {
            op.set_evicted(evicted);
            op.book_mut().changes.replace(changed);
        });
        self.op = per_key;
    }

    /// The whole state as versioned bytes.
    #[must_use]
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = self.state_header(SNAPSHOT);
        let ctx = StateContext { rules: &self.rules, wm: self.watermark.current() };
        with_operator!(&self.op, op => op.snapshot(ctx, &mut w));
        w.into_bytes()
    }

    /// An engine with `config` and the state of `bytes` (from [`Engine::snapshot`] of an
    /// engine with the same configuration).
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for malformed bytes or a different configuration.
    pub fn restore(config: EngineConfig, bytes: &[u8]) -> CoreResult<Self> {
        let mut engine = Engine::new(config)?;
        let mut r = engine.read_state_header(bytes, SNAPSHOT)?;
        let state = Some((engine.watermark.current(), &mut r));
        engine.op = Operator::build(&engine.config, &engine.rules, state)?;
        r.finish()?;
        engine.set_evicted();
        Ok(engine)
    }

    /// Whether changes are being recorded.
    #[must_use]
    pub fn tracks_changes(&self) -> bool {
        with_operator!(&self.op, op => op.tracks_changes())
    }

    /// Starts (or stops) recording which keys change, for [`Engine::take_changes`].
    pub fn track_changes(&mut self, on: bool) {
        with_operator!(&mut self.op, op => op.track_changes(on));
    }

    /// The changes since the previous call (or since tracking started) as versioned bytes: the
    /// watermark, the counters, and the state of every key that changed (or its removal). A
    /// snapshot followed by its changes in order rebuilds the state exactly; that is how a
    /// changelog stays small (only what changed) and a restore stays bounded.
    pub fn take_changes(&mut self) -> Vec<u8> {
        let mut w = self.state_header(CHANGES);
        let ctx = StateContext { rules: &self.rules, wm: self.watermark.current() };
        with_operator!(&mut self.op, op => op.write_changes(ctx, &mut w));
        w.into_bytes()
    }

    /// Applies bytes from [`Engine::take_changes`] of an engine with the same configuration.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for malformed bytes or a different configuration. The state may
    /// be partly updated when the bytes are corrupt after a valid header; restore from a
    /// snapshot again in that case.
    pub fn apply_changes(&mut self, bytes: &[u8]) -> CoreResult<()> {
        let mut r = self.read_state_header(bytes, CHANGES)?;
        let ctx = StateContext { rules: &self.rules, wm: self.watermark.current() };
        with_operator!(&mut self.op, op => op.apply_changes(ctx, &mut r))?;
        self.set_evicted();
        r.finish()
    }

    /// Gives the operator the eviction count just read with the counters.
    fn set_evicted(&mut self) {
        let n = self.counters.evicted;
        with_operator!(&mut self.op, op => op.set_evicted(n));
    }

    fn state_header(&self, kind: u8) -> Writer {
        let mut w = Writer::with_header();
        w.u8(kind);
        w.str(&self.config.fingerprint());
        self.watermark.write(&mut w);
        let c = self.counters();
        w.u64(c.events);
        w.u64(c.late);
        w.u64(c.emitted);
        w.u64(c.evicted);
        w
    }

    fn read_state_header<'a>(&mut self, bytes: &'a [u8], kind: u8) -> CoreResult<Reader<'a>> {
        let mut r = Reader::with_header(bytes)?;
        let found = r.u8()?;
        if found != kind {
            let name = |k: u8| if k == SNAPSHOT { "a snapshot" } else { "changes" };
            return Err(CoreError::Snapshot(format!("expected {}, found {}", name(kind), name(found))));
        }
        let fingerprint = r.str()?;
        if fingerprint != self.config.fingerprint() {
            return Err(CoreError::Snapshot(format!(
                "state was written with another configuration: {fingerprint}"
            )));
        }
        let watermark = WatermarkTracker::read(&mut r)?;
        if watermark.partitions() != self.config.partitions {
            return Err(CoreError::Snapshot("partition count differs".into()));
        }
        self.watermark = watermark;
        let (events, late, emitted) = (r.u64()?, r.u64()?, r.u64()?);
        let evicted = if r.version() >= 3 { r.u64()? } else { 0 };
        self.counters = Counters { events, late, emitted, evicted };
        Ok(r)
    }
}

/// State bytes kinds.
const SNAPSHOT: u8 = b'S';
const CHANGES: u8 = b'C';

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
