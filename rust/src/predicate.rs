//! Alert predicates over a window's aggregates, declared as data and evaluated in Rust.
//!
//! Grammar (case-insensitive keywords):
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" expr ")" | operand op number
//! operand := name | func "(" column ")" | "count" ["(" ["*"] ")"]
//! op      := ">=" | ">" | "<=" | "<" | "==" | "=" | "!="
//! ```
//!
//! An operand names an aggregation by its output name (`countries >= 3`) or by function and
//! column (`distinct(country) >= 3`, `sum(amount) > 500`); it must be one of the configured
//! aggregations, so a predicate never needs state of its own.
//!
//! Predicates come from configuration (a file, an environment variable), so the parser is as
//! hostile-input safe as the decoder: nesting (parentheses and `not`) is limited to
//! [`MAX_NESTING`] levels and an expression to [`MAX_COMPARISONS`] comparisons, which bounds
//! the depth of the parsed tree and hence the recursion of parsing, evaluating and dropping it
//! (a predicate nested 10,000 deep used to overflow the stack). Error positions count
//! characters, not bytes, and name the character as written (`n ≥ 5` is at position 2, `'≥'`).

use crate::aggregate::{Acc, AggKind, Layout};
use crate::{CoreError, CoreResult};

/// Deepest nesting of parentheses and `not` a predicate may use.
pub const MAX_NESTING: usize = 64;
/// Most comparisons one predicate may hold (an `and`/`or` chain of them is a tree as deep).
pub const MAX_COMPARISONS: usize = 1_000;

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// A parsed predicate; aggregates are referred to by their index in the layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// Both hold.
    And(Box<Predicate>, Box<Predicate>),
    /// Either holds.
    Or(Box<Predicate>, Box<Predicate>),
    /// Negation.
    Not(Box<Predicate>),
    /// `aggregate op value`.
    Cmp {
        /// Index of the aggregate in the layout.
        agg: usize,
        /// The comparison.
        op: CmpOp,
        /// The constant compared with.
        value: f64,
    },
}

impl Predicate {
    /// Parses `src` against the aggregations of `layout`.
    ///
    /// # Errors
    /// [`CoreError::Predicate`] with the position (in characters) of the problem; also for a
    /// predicate nested deeper than [`MAX_NESTING`] or with more than [`MAX_COMPARISONS`]
    /// comparisons.
    ///
    /// # Examples
    /// ```
    /// use fraudstream::aggregate::{AggKind, AggSpec, Layout};
    /// use fraudstream::predicate::Predicate;
    /// let layout = Layout::new(&[
    ///     AggSpec::new("n", AggKind::Count, None),
    ///     AggSpec::new("countries", AggKind::CountDistinct, Some("country")),
    /// ]).unwrap();
    /// assert!(Predicate::parse("distinct(country) >= 3 and count >= 5", &layout).is_ok());
    /// assert!(Predicate::parse("sum(amount) > 3", &layout).is_err());
    /// ```
    pub fn parse(src: &str, layout: &Layout) -> CoreResult<Self> {
        let mut p = Parser { src, tokens: tokenize(src)?, pos: 0, layout, depth: 0, comparisons: 0 };
        let expr = p.or()?;
        match p.tokens.get(p.pos) {
            None => Ok(expr),
            Some(tok) => Err(p.error(tok.at, format!("unexpected {:?}", tok.text))),
        }
    }

    /// Evaluates on an accumulator of `layout`.
    #[must_use]
    pub fn eval(&self, layout: &Layout, acc: &Acc) -> bool {
        self.holds(&|agg| layout.value(acc, agg))
    }

    /// Evaluates with `value(agg)`, the result of aggregate `agg` as a float.
    #[must_use]
    pub fn holds(&self, value: &impl Fn(usize) -> f64) -> bool {
        match self {
            Predicate::And(a, b) => a.holds(value) && b.holds(value),
            Predicate::Or(a, b) => a.holds(value) || b.holds(value),
            Predicate::Not(a) => !a.holds(value),
            Predicate::Cmp { agg, op, value: bound } => {
                let x = value(*agg);
                match op {
                    CmpOp::Ge => x >= *bound,
                    CmpOp::Gt => x > *bound,
                    CmpOp::Le => x <= *bound,
                    CmpOp::Lt => x < *bound,
                    CmpOp::Eq => x == *bound,
                    CmpOp::Ne => x != *bound,
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Token<'a> {
    text: &'a str,
    at: usize,
}

fn tokenize(src: &str) -> CoreResult<Vec<Token<'_>>> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == b'.' || (c == b'-' && i + 1 < bytes.len()) {
            i += 1;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_')
            {
                i += 1;
            }
        } else if matches!(c, b'>' | b'<' | b'=' | b'!') {
            i += 1;
            if i < bytes.len() && bytes[i] == b'=' {
                i += 1;
            }
        } else if matches!(c, b'(' | b')' | b'*') {
            i += 1;
        } else {
            // the character as written, not its first byte (`≥` is three bytes in UTF-8)
            let shown = src[i..].chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(CoreError::Predicate {
                source_text: shown_source(src),
                position: char_position(src, i),
                reason: format!("unexpected character {shown:?}"),
            });
        }
        out.push(Token { text: &src[start..i], at: start });
    }
    Ok(out)
}

/// The source as an error shows it: at most [`SHOWN_CHARS`] characters (a hostile predicate
/// can be megabytes long).
fn shown_source(src: &str) -> String {
    match src.char_indices().nth(SHOWN_CHARS) {
        None => src.to_owned(),
        Some((cut, _)) => format!("{}... ({} characters)", &src[..cut], src.chars().count()),
    }
}

const SHOWN_CHARS: usize = 200;

/// The character position of byte offset `byte` in `src` (a token boundary, or the end).
fn char_position(src: &str, byte: usize) -> usize {
    src.get(..byte).map_or(byte, |head| head.chars().count())
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token<'a>>,
    pos: usize,
    layout: &'a Layout,
    /// Nesting of the `unary` being parsed (parentheses and `not`).
    depth: usize,
    comparisons: usize,
}

impl Parser<'_> {
    /// An error at byte offset `byte` of the source, reported at its character position.
    fn error(&self, byte: usize, reason: String) -> CoreError {
        CoreError::Predicate {
            source_text: shown_source(self.src),
            position: char_position(self.src, byte),
            reason,
        }
    }

    /// Enters one more level of nesting at byte offset `at`.
    fn nest(&mut self, at: usize) -> CoreResult<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error(at, format!("nested deeper than {MAX_NESTING} levels")));
        }
        Ok(())
    }

    fn peek_is(&self, word: &str) -> bool {
        self.tokens.get(self.pos).is_some_and(|t| t.text.eq_ignore_ascii_case(word))
    }

    fn next(&mut self, what: &str) -> CoreResult<Token<'_>> {
        let tok = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        tok.ok_or_else(|| self.error(self.src.len(), format!("expected {what}, found the end")))
    }

    fn or(&mut self) -> CoreResult<Predicate> {
        let mut left = self.and()?;
        while self.peek_is("or") {
            self.pos += 1;
            left = Predicate::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> CoreResult<Predicate> {
        let mut left = self.unary()?;
        while self.peek_is("and") {
            self.pos += 1;
            left = Predicate::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> CoreResult<Predicate> {
        let at = self.tokens.get(self.pos).map_or(self.src.len(), |t| t.at);
        if self.peek_is("not") {
            self.pos += 1;
            self.nest(at)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Predicate::Not(Box::new(inner)));
        }
        if self.peek_is("(") {
            self.pos += 1;
            self.nest(at)?;
            let inner = self.or()?;
            self.depth -= 1;
            let close = self.next("')'")?;
            if close.text != ")" {
                let (at, text) = (close.at, close.text.to_owned());
                return Err(self.error(at, format!("expected ')', found {text:?}")));
            }
            return Ok(inner);
        }
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(self.error(at, format!("more than {MAX_COMPARISONS} comparisons")));
        }
        let agg = self.operand()?;
        let op_tok = self.next("a comparison")?;
        let (at, text) = (op_tok.at, op_tok.text.to_owned());
        let op = match text.as_str() {
            ">=" => CmpOp::Ge,
            ">" => CmpOp::Gt,
            "<=" => CmpOp::Le,
            "<" => CmpOp::Lt,
            "==" | "=" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            _ => return Err(self.error(at, format!("expected a comparison, found {text:?}"))),
        };
        let num = self.next("a number")?;
        let (at, text) = (num.at, num.text.to_owned());
        let value: f64 = text
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| self.error(at, format!("expected a number, found {text:?}")))?;
        Ok(Predicate::Cmp { agg, op, value })
    }

    fn operand(&mut self) -> CoreResult<usize> {
        let tok = self.next("an aggregation")?;
        let (at, name) = (tok.at, tok.text.to_owned());
        if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return Err(self.error(at, format!("expected an aggregation, found {name:?}")));
        }
        let specs = self.layout.specs();
        let known = || specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
        if !self.peek_is("(") {
            if let Some(i) = specs.iter().position(|s| s.name == name) {
                return Ok(i);
            }
            if name.eq_ignore_ascii_case("count") {
                if let Some(i) = specs.iter().position(|s| s.kind == AggKind::Count) {
                    return Ok(i);
                }
            }
            return Err(self.error(at, format!("unknown aggregation {name:?}; known: {}", known())));
        }
        self.pos += 1;
        let kind: AggKind = name.parse().map_err(|_| {
            self.error(at, format!("unknown function {name:?}; expected one of {:?}", AggKind::NAMES))
        })?;
        let mut column = None;
        if !self.peek_is(")") {
            let col = self.next("a column")?;
            if col.text != "*" {
                column = Some(col.text.to_owned());
            }
        }
        let close = self.next("')'")?;
        if close.text != ")" {
            let (at, text) = (close.at, close.text.to_owned());
            return Err(self.error(at, format!("expected ')', found {text:?}")));
        }
        specs
            .iter()
            .position(|s| s.kind == kind && (kind == AggKind::Count || s.column == column))
            .ok_or_else(|| {
                let col = column.as_deref().unwrap_or("*");
                self.error(
                    at,
                    format!("{kind}({col}) is not among the configured aggregations ({})", known()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::AggSpec;
    use crate::batch::{Batch, Values};

    fn layout() -> Layout {
        Layout::new(&[
            AggSpec::new("n", AggKind::Count, None),
            AggSpec::new("countries", AggKind::CountDistinct, Some("country")),
            AggSpec::new("total", AggKind::Sum, Some("amount")),
        ])
        .unwrap()
    }

    fn acc(l: &Layout, countries: &[i64], amounts: &[f64]) -> Acc {
        let keys = vec![1; countries.len()];
        let times: Vec<i64> = (0..countries.len() as i64).collect();
        let b =
            Batch { values: vec![Values::I64(countries), Values::F64(amounts)], ..Batch::new(&keys, &times) };
        let mut a = l.new_acc();
        for (row, &t) in times.iter().enumerate() {
            l.add(&mut a, &b, row, t);
        }
        a
    }

    #[test]
    fn the_velocity_rule() {
        let l = layout();
        let p = Predicate::parse("distinct(country) >= 3 and count >= 5", &l).unwrap();
        assert!(!p.eval(&l, &acc(&l, &[1, 2, 3, 1], &[1.0; 4])));
        assert!(p.eval(&l, &acc(&l, &[1, 2, 3, 1, 1], &[1.0; 5])));
        assert!(!p.eval(&l, &acc(&l, &[1, 2, 2, 1, 1], &[1.0; 5])));
    }

    #[test]
    fn names_precedence_and_negation() {
        let l = layout();
        let a = acc(&l, &[1, 2], &[100.0, 450.0]);
        let yes = |s: &str| Predicate::parse(s, &l).unwrap().eval(&l, &a);
        assert!(yes("countries >= 2 and total > 500"));
        assert!(yes("n > 5 or countries == 2 and total >= 550"));
        assert!(!yes("(n > 5 or countries == 2) and total > 550"));
        assert!(yes("not n >= 3"));
        assert!(yes("count(*) = 2 and sum(amount) != 0"));
        assert!(yes("COUNT() >= 2 AND n < 2.5"));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let l = layout();
        let err = |s: &str| match Predicate::parse(s, &l).unwrap_err() {
            CoreError::Predicate { position, reason, .. } => (position, reason),
            e => panic!("{e}"),
        };
        assert_eq!(err("n >= ").0, 5);
        assert!(err("max(amount) > 1").1.contains("not among"));
        assert!(err("bogus > 1").1.contains("unknown aggregation"));
        assert_eq!(err("n >= 3 n").0, 7);
        assert!(err("n ~ 3").1.contains("unexpected character"));
        assert!(err("(n > 1").1.contains("')'"));
        assert!(err("n > abc").1.contains("number"));
        assert!(err("n > nan").1.contains("number"));
    }

    #[test]
    fn positions_count_characters_and_show_the_character() {
        let l = layout();
        let e = Predicate::parse("n ≥ 5", &l).unwrap_err();
        let CoreError::Predicate { position, reason, .. } = &e else { panic!("{e}") };
        assert_eq!(*position, 2);
        assert!(reason.contains("'≥'"), "{reason}");
        assert!(e.to_string().contains("'≥'"), "{e}");
        let e = Predicate::parse("é > 1 and n >= ", &l).unwrap_err();
        let CoreError::Predicate { position, .. } = e else { panic!() };
        assert_eq!(position, 0);
        let CoreError::Predicate { position, .. } = Predicate::parse("(n > 1) ∧ n > 2", &l).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(position, 8);
    }

    #[test]
    fn deep_nesting_and_long_chains_are_errors_not_stack_overflows() {
        let l = layout();
        let deep = |open: &str, n: usize, close: &str| format!("{}n > 1{}", open.repeat(n), close.repeat(n));
        for src in [
            deep("(", 10_000, ")"),
            deep("not ", 20_000, ""),
            deep("(not ", 5_000, ")"),
            deep("(", 1_000_000, ""),
        ] {
            let e = Predicate::parse(&src, &l).unwrap_err().to_string();
            assert!(e.contains("nested deeper"), "{e}");
            assert!(e.len() < 400, "the error shows the start of the source only: {e}");
        }
        let chain = vec!["n > 1"; 100_000].join(" and ");
        assert!(Predicate::parse(&chain, &l).unwrap_err().to_string().contains("comparisons"));
        // at the limits, a predicate parses and evaluates
        let ok = deep("(", MAX_NESTING, ")");
        let a = acc(&l, &[1, 2], &[1.0, 2.0]);
        assert!(Predicate::parse(&ok, &l).unwrap().eval(&l, &a));
        assert!(Predicate::parse(&deep("not ", MAX_NESTING, ""), &l).is_ok());
        assert!(Predicate::parse(&deep("not ", MAX_NESTING + 1, ""), &l).is_err());
        let chain = vec!["n > 1"; MAX_COMPARISONS].join(" or ");
        assert!(Predicate::parse(&chain, &l).unwrap().eval(&l, &a));
    }
}
