//! `_core.FeatureEngine` and `_core.ModelScorer`: thin wrappers over
//! [`crate::features::FeatureEngine`] and [`crate::features::score::Scorer`].
//!
//! Columns are borrowed from numpy without copying, the GIL is released for the work, and
//! the results are moved into new numpy arrays.

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::convert::{int_column, slice, value_columns, value_slices};
use super::errors::{not_contiguous, IntoPyResult};
use super::{detached, Shared};
use crate::features::score::{Scorer, Transform, TreeArrays};
use crate::features::{CardCap, ColumnNames, FeatureColumns, FeatureConfig, Labels, Transactions};

fn float_column<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadonlyArray1<'py, f64>> {
    obj.extract::<PyReadonlyArray1<'py, f64>>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!("column '{name}' must be a 1-d float64 numpy array"))
    })
}

fn columns_to_py(py: Python<'_>, out: FeatureColumns) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    let ints = |v: Vec<Vec<i64>>| PyList::new(py, v.into_iter().map(|c| c.into_pyarray(py)));
    let floats = |v: Vec<Vec<f64>>| PyList::new(py, v.into_iter().map(|c| c.into_pyarray(py)));
    d.set_item("during_weekend", out.during_weekend.into_pyarray(py))?;
    d.set_item("during_night", out.during_night.into_pyarray(py))?;
    d.set_item("customer_nb_tx", ints(out.customer_nb_tx)?)?;
    d.set_item("customer_avg_amount", floats(out.customer_avg_amount)?)?;
    d.set_item("customer_amount_z", floats(out.customer_amount_z)?)?;
    d.set_item("customer_countries", ints(out.customer_countries)?)?;
    d.set_item("customer_amount_ratio", out.customer_amount_ratio.into_pyarray(py))?;
    d.set_item("customer_ms_since_prev", out.customer_ms_since_prev.into_pyarray(py))?;
    d.set_item("customer_new_terminal", out.customer_new_terminal.into_pyarray(py))?;
    d.set_item("terminal_nb_tx", ints(out.terminal_nb_tx)?)?;
    d.set_item("terminal_nb_fraud", ints(out.terminal_nb_fraud)?)?;
    d.set_item("terminal_risk", floats(out.terminal_risk)?)?;
    d.set_item("terminal_last_known_fraud", out.terminal_last_known_fraud.into_pyarray(py))?;
    let (rows, cards): (Vec<i64>, Vec<i64>) =
        out.evicted.iter().map(|&(row, card)| (i64::try_from(row).unwrap_or(i64::MAX), card)).unzip();
    d.set_item("evicted_rows", rows.into_pyarray(py))?;
    d.set_item("evicted_cards", cards.into_pyarray(py))?;
    Ok(d)
}

/// Streaming fraud features over numpy columns (see `fraudstream.fraud.features`).
#[pyclass(module = "fraudstream._core", frozen)]
pub struct FeatureEngine {
    engine: Shared<crate::features::FeatureEngine>,
}

#[pymethods]
impl FeatureEngine {
    /// Builds an engine; windows and the delay are milliseconds; `column_names` are
    /// (id, time, customer, terminal, amount, fraud, country) for error messages; `max_cards`
    /// caps the live cards, each live for `card_horizon` ms after its latest transaction
    /// (default: the longest card window).
    #[new]
    #[pyo3(signature = (
        *, customer_windows, terminal_windows, label_delay, countries=false, column_names=None,
        max_cards=None, card_horizon=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        customer_windows: Vec<i64>,
        terminal_windows: Vec<i64>,
        label_delay: i64,
        countries: bool,
        column_names: Option<(String, String, String, String, String, String, String)>,
        max_cards: Option<usize>,
        card_horizon: Option<i64>,
    ) -> PyResult<Self> {
        let names = match column_names {
            Some((id, time, customer, terminal, amount, fraud, country)) => {
                ColumnNames { id, time, customer, terminal, amount, fraud, country }
            }
            None => ColumnNames::default(),
        };
        let longest = customer_windows.iter().copied().max().unwrap_or(0);
        let card_cap =
            max_cards.map(|max_cards| CardCap { max_cards, horizon: card_horizon.unwrap_or(longest) });
        let config =
            FeatureConfig { customer_windows, terminal_windows, label_delay, countries, names, card_cap };
        let engine = crate::features::FeatureEngine::new(config).py_result(py)?;
        Ok(FeatureEngine { engine: Shared::new(engine, "feature engine") })
    }

    /// Features of one batch of transactions (in (time, id) order), as a dict of arrays
    /// (lists of arrays for per-window features).
    #[pyo3(signature = (ids, times, customers, terminals, amounts, frauds=None, countries=None))]
    #[allow(clippy::too_many_arguments)]
    fn process<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
        times: &Bound<'py, PyAny>,
        customers: &Bound<'py, PyAny>,
        terminals: &Bound<'py, PyAny>,
        amounts: &Bound<'py, PyAny>,
        frauds: Option<&Bound<'py, PyAny>>,
        countries: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let names = self.engine.with(py, |e| e.config().names.clone())?;
        let ids = int_column(ids, &names.id)?;
        let times = int_column(times, &names.time)?;
        let customers = int_column(customers, &names.customer)?;
        let terminals = int_column(terminals, &names.terminal)?;
        let amounts = float_column(amounts, &names.amount)?;
        let frauds = frauds.map(|f| int_column(f, &names.fraud)).transpose()?;
        let countries = countries.map(|c| int_column(c, &names.country)).transpose()?;
        let tx = Transactions {
            ids: slice(py, &ids, &names.id)?,
            times: slice(py, &times, &names.time)?,
            customers: slice(py, &customers, &names.customer)?,
            terminals: slice(py, &terminals, &names.terminal)?,
            amounts: slice(py, &amounts, &names.amount)?,
            frauds: frauds.as_ref().map(|f| slice(py, f, &names.fraud)).transpose()?,
            countries: countries.as_ref().map(|c| slice(py, c, &names.country)).transpose()?,
        };
        let out = self.engine.with(py, |e| e.process(&tx))?.py_result(py)?;
        columns_to_py(py, out)
    }

    /// Adds label events: arrival time, terminal, transaction time, transaction id, 0/1.
    fn add_labels<'py>(
        &self,
        py: Python<'py>,
        times: &Bound<'py, PyAny>,
        terminals: &Bound<'py, PyAny>,
        tx_times: &Bound<'py, PyAny>,
        tx_ids: &Bound<'py, PyAny>,
        frauds: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let times = int_column(times, "label_time")?;
        let terminals = int_column(terminals, "label_terminal")?;
        let tx_times = int_column(tx_times, "label_transaction_time")?;
        let tx_ids = int_column(tx_ids, "label_transaction_id")?;
        let frauds = int_column(frauds, "label_fraud")?;
        let labels = Labels {
            times: slice(py, &times, "label_time")?,
            terminals: slice(py, &terminals, "label_terminal")?,
            tx_times: slice(py, &tx_times, "label_transaction_time")?,
            tx_ids: slice(py, &tx_ids, "label_transaction_id")?,
            frauds: slice(py, &frauds, "label_fraud")?,
        };
        self.engine.with(py, |e| e.add_labels(&labels))?.py_result(py)
    }

    /// (time, id) of the latest transaction processed, or None.
    #[getter]
    fn last_event(&self, py: Python<'_>) -> PyResult<Option<(i64, i64)>> {
        self.engine.with(py, |e| e.last_event())
    }

    /// {"transactions", "labels_applied", "labels_unmatched", "labels_late", "cards_evicted"}.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (c, evicted) = self.engine.with(py, |e| (e.counters(), e.cards_evicted()))?;
        let d = PyDict::new(py);
        d.set_item("cards_evicted", evicted)?;
        d.set_item("transactions", c.transactions)?;
        d.set_item("labels_applied", c.labels_applied)?;
        d.set_item("labels_unmatched", c.labels_unmatched)?;
        d.set_item("labels_late", c.labels_late)?;
        Ok(d)
    }

    /// {"customers", "terminals", "entries", "pending_labels", "bytes"}.
    fn state_size<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.engine.with(py, |e| e.state_size())?;
        let d = PyDict::new(py);
        d.set_item("customers", s.customers)?;
        d.set_item("terminals", s.terminals)?;
        d.set_item("entries", s.entries)?;
        d.set_item("pending_labels", s.pending_labels)?;
        d.set_item("bytes", s.bytes)?;
        Ok(d)
    }

    /// The whole state as versioned bytes.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.engine.with(py, |e| e.snapshot())?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// `snapshot()`'s bytes in a uint8 array that owns them: no copy of a state of megabytes.
    fn snapshot_array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u8>>> {
        Ok(self.engine.with(py, |e| e.snapshot())?.into_pyarray(py))
    }

    /// Replaces the state with a snapshot from an engine of the same configuration.
    fn restore(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let config = self.engine.with(py, |e| e.config().clone())?;
        let restored =
            detached(py, || crate::features::FeatureEngine::restore(config, data)).py_result(py)?;
        self.engine.with(py, |e| *e = restored)
    }
}

/// A model scorer over a float64 feature matrix (see `fraudstream.fraud.model`).
#[pyclass(module = "fraudstream._core", frozen)]
pub struct ModelScorer {
    scorer: Scorer,
}

fn transforms(py: Python<'_>, names: &[String]) -> PyResult<Vec<Transform>> {
    names.iter().map(|t| t.parse::<Transform>()).collect::<Result<_, _>>().py_result(py)
}

#[pymethods]
impl ModelScorer {
    /// A logistic-regression scorer; `transforms` are "identity", "log" or "log1p".
    #[staticmethod]
    fn logistic(
        py: Python<'_>,
        names: Vec<String>,
        transforms: Vec<String>,
        mean: Vec<f64>,
        scale: Vec<f64>,
        coef: Vec<f64>,
        intercept: f64,
    ) -> PyResult<Self> {
        let t = self::transforms(py, &transforms)?;
        Ok(ModelScorer { scorer: Scorer::logistic(names, t, mean, scale, coef, intercept).py_result(py)? })
    }

    /// A tree-ensemble scorer (mean of leaf values) from flattened scikit-learn tree arrays.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn forest(
        py: Python<'_>,
        names: Vec<String>,
        transforms: Vec<String>,
        mean: Vec<f64>,
        scale: Vec<f64>,
        feature: Vec<i64>,
        threshold: Vec<f64>,
        left: Vec<i64>,
        right: Vec<i64>,
        value: Vec<f64>,
        tree_sizes: Vec<i64>,
    ) -> PyResult<Self> {
        let trees = TreeArrays { feature, threshold, left, right, value, tree_sizes };
        let t = self::transforms(py, &transforms)?;
        Ok(ModelScorer { scorer: Scorer::forest(names, t, mean, scale, &trees).py_result(py)? })
    }

    /// Feature names, in column order.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.scorer.names().to_vec()
    }

    /// Probabilities for raw feature columns (1-d float64 or int64 arrays, one per name).
    fn score_columns<'py>(
        &self,
        py: Python<'py>,
        columns: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let names = self.scorer.names();
        let arrays = value_columns(&columns, names)?;
        let values = value_slices(py, &arrays, names)?;
        let out = detached(py, || self.scorer.score_columns(&values)).py_result(py)?;
        Ok(out.into_pyarray(py))
    }

    /// Probabilities for a C-contiguous float64 matrix of raw features, shape (rows, len(names)).
    fn score<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let columns = x.shape()[1];
        let data = x.as_slice().map_err(|_| not_contiguous(py, "matrix"))?;
        let out = detached(py, || self.scorer.score(data, columns)).py_result(py)?;
        Ok(out.into_pyarray(py))
    }
}
