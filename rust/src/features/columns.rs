//! The feature engine's inputs and outputs as columns: transactions, label events, the
//! feature columns, and the column names used in error messages.
//!
//! Inputs are borrowed slices (numpy arrays, zero copy); outputs are owned vectors moved into
//! new arrays. Per-window features are one vector per configured window, in configuration order.

use crate::time::Millis;

/// Names of the transaction columns, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnNames {
    /// Transaction id.
    pub id: String,
    /// Event time (epoch ms).
    pub time: String,
    /// Card / customer.
    pub customer: String,
    /// Terminal / merchant.
    pub terminal: String,
    /// Amount.
    pub amount: String,
    /// Delay-model label (optional column).
    pub fraud: String,
    /// Country (optional column).
    pub country: String,
}

impl Default for ColumnNames {
    fn default() -> Self {
        ColumnNames {
            id: "TRANSACTION_ID".into(),
            time: "TX_TIME_MS".into(),
            customer: "CUSTOMER_ID".into(),
            terminal: "TERMINAL_ID".into(),
            amount: "TX_AMOUNT".into(),
            fraud: "TX_FRAUD".into(),
            country: "COUNTRY".into(),
        }
    }
}

/// A batch of transactions as borrowed columns, in event order.
#[derive(Debug, Clone, Copy)]
pub struct Transactions<'a> {
    /// Transaction ids (ties at one time are ordered by id).
    pub ids: &'a [i64],
    /// Event times, epoch ms.
    pub times: &'a [i64],
    /// Card / customer ids.
    pub customers: &'a [i64],
    /// Terminal ids.
    pub terminals: &'a [i64],
    /// Amounts (finite).
    pub amounts: &'a [f64],
    /// Delay-model labels (0/1), known `label_delay` after each transaction; `None` when
    /// labels come only as label events.
    pub frauds: Option<&'a [i64]>,
    /// Country codes; required when the engine tracks countries, ignored otherwise.
    pub countries: Option<&'a [i64]>,
}

impl Transactions<'_> {
    /// Number of rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the batch is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A batch of label events (fraud feedback) as borrowed columns.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// When each label becomes known (arrival time), epoch ms.
    pub times: &'a [i64],
    /// Terminal of the labelled transaction.
    pub terminals: &'a [i64],
    /// Time of the labelled transaction.
    pub tx_times: &'a [i64],
    /// Id of the labelled transaction.
    pub tx_ids: &'a [i64],
    /// 1 fraud, 0 genuine (a later label for the same transaction replaces an earlier one).
    pub frauds: &'a [i64],
}

/// One label event, as the engine queues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label {
    pub(crate) time: Millis,
    pub(crate) terminal: i64,
    pub(crate) tx_time: Millis,
    pub(crate) tx_id: i64,
    pub(crate) fraud: bool,
}

/// The features of a batch, one value per transaction in each column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureColumns {
    /// 1 on Saturday and Sunday (UTC).
    pub during_weekend: Vec<i8>,
    /// 1 when the UTC hour is at most 6.
    pub during_night: Vec<i8>,
    /// Per card window: transactions in `(t - w, t]`, the current one included.
    pub customer_nb_tx: Vec<Vec<i64>>,
    /// Per card window: their mean amount.
    pub customer_avg_amount: Vec<Vec<f64>>,
    /// Per card window: the amount's z-score against the previous transactions in it.
    pub customer_amount_z: Vec<Vec<f64>>,
    /// Per card window: distinct countries, the current one included (when tracked).
    pub customer_countries: Vec<Vec<i64>>,
    /// Amount over the mean of the card's previous transactions in the longest window.
    pub customer_amount_ratio: Vec<f64>,
    /// Ms since the card's previous transaction, capped at the longest card window.
    pub customer_ms_since_prev: Vec<i64>,
    /// 1 when the card has not used this terminal within the longest card window.
    pub customer_new_terminal: Vec<i8>,
    /// Per terminal window: transactions in `(t - (n + D), t - D]`.
    pub terminal_nb_tx: Vec<Vec<i64>>,
    /// Per terminal window: known frauds among them.
    pub terminal_nb_fraud: Vec<Vec<i64>>,
    /// Per terminal window: frauds / transactions, 0 when there are none.
    pub terminal_risk: Vec<Vec<f64>>,
    /// 1 when the terminal's latest transaction with a known label was a fraud.
    pub terminal_last_known_fraud: Vec<i8>,
    /// Cards evicted by the cap on live cards ([`super::cards`]): `(row, card)`, the card's
    /// state dropped before that row, rows ascending.
    pub evicted: Vec<(usize, i64)>,
}

impl FeatureColumns {
    /// Empty columns for `c` card windows and `m` terminal windows, room for `n` rows.
    #[must_use]
    pub fn new(c: usize, m: usize, countries: bool, n: usize) -> Self {
        FeatureColumns {
            during_weekend: Vec::with_capacity(n),
            during_night: Vec::with_capacity(n),
            customer_nb_tx: (0..c).map(|_| Vec::with_capacity(n)).collect(),
            customer_avg_amount: (0..c).map(|_| Vec::with_capacity(n)).collect(),
            customer_amount_z: (0..c).map(|_| Vec::with_capacity(n)).collect(),
            customer_countries: (0..if countries { c } else { 0 }).map(|_| Vec::with_capacity(n)).collect(),
            customer_amount_ratio: Vec::with_capacity(n),
            customer_ms_since_prev: Vec::with_capacity(n),
            customer_new_terminal: Vec::with_capacity(n),
            terminal_nb_tx: (0..m).map(|_| Vec::with_capacity(n)).collect(),
            terminal_nb_fraud: (0..m).map(|_| Vec::with_capacity(n)).collect(),
            terminal_risk: (0..m).map(|_| Vec::with_capacity(n)).collect(),
            terminal_last_known_fraud: Vec::with_capacity(n),
            evicted: Vec::new(),
        }
    }

    /// Number of rows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.during_weekend.len()
    }

    /// Whether there are no rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.during_weekend.is_empty()
    }
}
