//! Batch scoring of exported models: logistic regression and tree ensembles.
//!
//! A [`Scorer`] is built from plain arrays (what the portable JSON model file holds, never a
//! pickle) and scores feature columns (or a row-major matrix), one probability per row.
//!
//! Invariants:
//! - Each input is transformed ([`Transform`]: identity, `ln(max(x, 1e-3))` or
//!   `ln(1 + max(x, 0))`), then standardized with the training statistics:
//!   `z = (t - mean) / scale`.
//! - Logistic regression: `p = 1 / (1 + exp(-(intercept + coef . z)))`.
//! - Tree ensembles compare like scikit-learn: the standardized value rounded to `f32`, then
//!   `z <= threshold` goes left; `p` is the mean of the trees' leaf values. So an exported
//!   scikit-learn forest gives the same scores here as in scikit-learn.
//! - Construction validates the structure (every child after its parent and inside the
//!   ensemble, features in range, finite numbers), so scoring always terminates and never
//!   panics; a row with a non-finite feature is rejected, naming the feature and row.

use std::str::FromStr;

use crate::batch::Values;
use crate::{CoreError, CoreResult};

/// Rows standardized and scored together (the working block stays in cache).
const BLOCK: usize = 512;

/// The transform applied to an input before standardization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// The value itself.
    Identity,
    /// `ln(max(x, 1e-3))`, for ratios.
    Log,
    /// `ln(1 + max(x, 0))`, for durations and counts.
    Log1p,
}

impl Transform {
    /// Applies the transform.
    #[inline]
    #[must_use]
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Transform::Identity => x,
            Transform::Log => x.max(1e-3).ln(),
            Transform::Log1p => x.max(0.0).ln_1p(),
        }
    }
}

impl FromStr for Transform {
    type Err = CoreError;

    fn from_str(s: &str) -> CoreResult<Self> {
        match s {
            "identity" => Ok(Transform::Identity),
            "log" => Ok(Transform::Log),
            "log1p" => Ok(Transform::Log1p),
            other => Err(config(format!("unknown transform {other:?}; expected identity, log or log1p"))),
        }
    }
}

/// One node of a flattened tree: a split, or a leaf holding its value whose children are
/// itself, so every row walks exactly `depth` steps without a data-dependent branch.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    /// The largest `f32` not above the split threshold: for an `f32` input `z`,
    /// `z <= threshold` exactly when `z <= below` (comparisons stay in `f32`, nodes in 16 bytes).
    below: f32,
    feature: u32,
    /// Left (`z <= threshold`) and right child; a leaf points to itself twice.
    children: [u32; 2],
}

/// The largest `f32` that is `<= t` (for finite or infinite `t`, not NaN).
fn f32_at_or_below(t: f64) -> f32 {
    let c = t as f32;
    if f64::from(c) <= t {
        return c;
    }
    // step one ulp down (c is not -inf here: -inf <= t always)
    match c.to_bits() {
        0 | 0x8000_0000 => f32::from_bits(0x8000_0001), // +-0 -> the negative subnormal
        bits if c > 0.0 => f32::from_bits(bits - 1),
        bits => f32::from_bits(bits + 1),
    }
}

/// A tree's root and the number of steps from it to its deepest leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Root {
    node: u32,
    depth: u32,
}

/// Trees as parallel arrays, node indices local to each tree (scikit-learn's `tree_` layout).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeArrays {
    /// Split feature per node, negative for a leaf.
    pub feature: Vec<i64>,
    /// Split threshold per node (ignored for leaves).
    pub threshold: Vec<f64>,
    /// Left child per node (local index), ignored for leaves.
    pub left: Vec<i64>,
    /// Right child per node (local index), ignored for leaves.
    pub right: Vec<i64>,
    /// Leaf value per node: the probability of the positive class (ignored for splits).
    pub value: Vec<f64>,
    /// Number of nodes of each tree, in order; they sum to the array length.
    pub tree_sizes: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Logistic { coef: Vec<f64>, intercept: f64 },
    Forest { nodes: Vec<Node>, leaf_values: Vec<f64>, roots: Vec<Root> },
}

/// A model ready to score batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorer {
    names: Vec<String>,
    transforms: Vec<Transform>,
    mean: Vec<f64>,
    scale: Vec<f64>,
    kind: Kind,
}

fn config(msg: impl Into<String>) -> CoreError {
    CoreError::Config(msg.into())
}

fn check_scaling(names: &[String], transforms: &[Transform], mean: &[f64], scale: &[f64]) -> CoreResult<()> {
    let k = names.len();
    if k == 0 || transforms.len() != k || mean.len() != k || scale.len() != k {
        return Err(config(format!(
            "model needs one transform, mean and scale per feature: {k} features, {} transforms, {} means, {} scales",
            transforms.len(),
            mean.len(),
            scale.len()
        )));
    }
    for (j, (&m, &s)) in mean.iter().zip(scale).enumerate() {
        if !m.is_finite() || !s.is_finite() || s <= 0.0 {
            return Err(config(format!(
                "feature '{}': mean {m} / scale {s} must be finite, scale > 0",
                names[j]
            )));
        }
    }
    Ok(())
}

impl Scorer {
    /// A logistic-regression scorer.
    ///
    /// # Errors
    /// [`CoreError::Config`] when lengths disagree or a number is not finite.
    pub fn logistic(
        names: Vec<String>,
        transforms: Vec<Transform>,
        mean: Vec<f64>,
        scale: Vec<f64>,
        coef: Vec<f64>,
        intercept: f64,
    ) -> CoreResult<Self> {
        check_scaling(&names, &transforms, &mean, &scale)?;
        if coef.len() != names.len() || !coef.iter().all(|c| c.is_finite()) || !intercept.is_finite() {
            return Err(config(
                "logistic regression needs one finite coefficient per feature and a finite intercept",
            ));
        }
        Ok(Scorer { names, transforms, mean, scale, kind: Kind::Logistic { coef, intercept } })
    }

    /// A tree-ensemble scorer (mean of the trees' leaf values).
    ///
    /// # Errors
    /// [`CoreError::Config`] for inconsistent arrays, a child that does not come after its
    /// parent inside its tree, a feature out of range or a non-finite number.
    pub fn forest(
        names: Vec<String>,
        transforms: Vec<Transform>,
        mean: Vec<f64>,
        scale: Vec<f64>,
        trees: &TreeArrays,
    ) -> CoreResult<Self> {
        check_scaling(&names, &transforms, &mean, &scale)?;
        let n = trees.feature.len();
        if [trees.threshold.len(), trees.left.len(), trees.right.len(), trees.value.len()]
            .iter()
            .any(|&l| l != n)
        {
            return Err(config(
                "tree arrays feature/threshold/left/right/value must have one entry per node",
            ));
        }
        if trees.tree_sizes.is_empty() || trees.tree_sizes.iter().any(|&s| s <= 0) {
            return Err(config("a tree ensemble needs at least one tree, each with at least one node"));
        }
        if trees.tree_sizes.iter().sum::<i64>() != i64::try_from(n).unwrap_or(i64::MAX)
            || n >= u32::MAX as usize
        {
            return Err(config(format!("tree sizes do not add up to the {n} nodes")));
        }
        let mut nodes = Vec::with_capacity(n);
        let mut leaf_values = vec![0.0; n];
        let mut roots = Vec::with_capacity(trees.tree_sizes.len());
        let mut start = 0usize;
        for (t, &size) in trees.tree_sizes.iter().enumerate() {
            // the cast is lossless: size > 0, checked above
            let end = start + size as usize;
            // depth of each node: children come after their parent, so one forward pass
            let mut depth = vec![0u32; end - start];
            for i in start..end {
                let local = i64::try_from(i - start).unwrap_or(i64::MAX);
                // the cast is lossless: n < u32::MAX
                let me = i as u32;
                let feature = trees.feature[i];
                let bad = |what: &str| config(format!("tree {t} node {}: {what}", i - start));
                if feature < 0 {
                    if !trees.value[i].is_finite() {
                        return Err(bad("leaf value is not finite"));
                    }
                    leaf_values[i] = trees.value[i];
                    nodes.push(Node { below: f32::INFINITY, feature: 0, children: [me, me] });
                    continue;
                }
                if feature >= i64::try_from(names.len()).unwrap_or(i64::MAX) {
                    return Err(bad(&format!("feature {feature} out of range")));
                }
                if trees.threshold[i].is_nan() {
                    return Err(bad("threshold is NaN"));
                }
                let (l, r) = (trees.left[i], trees.right[i]);
                if l <= local || r <= local || l >= size || r >= size {
                    return Err(bad("children must come after the node, inside its tree"));
                }
                // the cast is lossless: checked above
                let (l, r) = (l as usize, r as usize);
                let d = depth[i - start] + 1;
                depth[l] = d;
                depth[r] = d;
                // the cast is lossless: checked above
                nodes.push(Node {
                    below: f32_at_or_below(trees.threshold[i]),
                    feature: feature as u32,
                    children: [(start + l) as u32, (start + r) as u32],
                });
            }
            // the cast is lossless: n < u32::MAX
            roots.push(Root { node: start as u32, depth: depth.iter().copied().max().unwrap_or(0) });
            start = end;
        }
        Ok(Scorer { names, transforms, mean, scale, kind: Kind::Forest { nodes, leaf_values, roots } })
    }

    /// Feature names, in column order.
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Scores a row-major matrix of raw (untransformed) features with `columns` per row
    /// (`names().len()` of them).
    ///
    /// # Errors
    /// [`CoreError::LengthMismatch`] when the matrix has the wrong number of columns, or
    /// [`CoreError::InvalidValue`] naming the feature and row of a non-finite value.
    pub fn score(&self, x: &[f64], columns: usize) -> CoreResult<Vec<f64>> {
        let k = self.names.len();
        if columns != k || x.len() / k * k != x.len() {
            return Err(CoreError::LengthMismatch {
                column: "features (columns of the matrix)".into(),
                expected: k,
                actual: if columns == k { x.len() % k } else { columns },
            });
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::invalid(&self.names[i % k], i / k, format!("{} is not finite", x[i])));
        }
        let mut out = vec![0.0; x.len() / k];
        let mut t = vec![0.0; BLOCK * k];
        for (block, out) in x.chunks(BLOCK * k).zip(out.chunks_mut(BLOCK)) {
            for (i, (dst, v)) in t.iter_mut().zip(block).enumerate() {
                *dst = self.transforms[i % k].apply(*v);
            }
            self.score_block(&t[..block.len()], out);
        }
        Ok(out)
    }

    /// Scores raw (untransformed) feature columns, one per name, all of one length.
    ///
    /// # Errors
    /// [`CoreError::LengthMismatch`] for a wrong number of columns or unequal lengths, or
    /// [`CoreError::InvalidValue`] naming the feature and row of a non-finite value.
    pub fn score_columns(&self, columns: &[Values<'_>]) -> CoreResult<Vec<f64>> {
        let k = self.names.len();
        if columns.len() != k {
            return Err(CoreError::LengthMismatch {
                column: "features (number of columns)".into(),
                expected: k,
                actual: columns.len(),
            });
        }
        let n = columns[0].len();
        for (j, c) in columns.iter().enumerate() {
            if c.len() != n {
                return Err(CoreError::LengthMismatch {
                    column: self.names[j].clone(),
                    expected: n,
                    actual: c.len(),
                });
            }
            if let Values::F64(v) = c {
                if let Some(row) = v.iter().position(|x| !x.is_finite()) {
                    return Err(CoreError::invalid(&self.names[j], row, format!("{} is not finite", v[row])));
                }
            }
        }
        let mut out = vec![0.0; n];
        let mut t = vec![0.0; BLOCK * k];
        for (b, out) in out.chunks_mut(BLOCK).enumerate() {
            let lo = b * BLOCK;
            for (j, c) in columns.iter().enumerate() {
                let f = self.transforms[j];
                match c {
                    Values::F64(v) => {
                        for (r, x) in v[lo..lo + out.len()].iter().enumerate() {
                            t[r * k + j] = f.apply(*x);
                        }
                    }
                    Values::I64(v) => {
                        for (r, x) in v[lo..lo + out.len()].iter().enumerate() {
                            let x = *x as f64;
                            t[r * k + j] = f.apply(x);
                        }
                    }
                }
            }
            self.score_block(&t[..out.len() * k], out);
        }
        Ok(out)
    }

    /// Scores one block of transformed rows (row-major, `k` per row).
    fn score_block(&self, t: &[f64], out: &mut [f64]) {
        match &self.kind {
            Kind::Logistic { coef, intercept } => {
                // fold the scaling into the coefficients: z = t * (c / s) + (b - sum c m / s)
                let k = self.names.len();
                let w = coef.iter().zip(&self.scale).map(|(c, s)| c / s);
                let b = intercept
                    - coef.iter().zip(&self.mean).zip(&self.scale).map(|((c, m), s)| c * m / s).sum::<f64>();
                let w: Vec<f64> = w.collect();
                for (row, p) in t.chunks_exact(k).zip(out.iter_mut()) {
                    let z = b + row.iter().zip(&w).map(|(v, w)| v * w).sum::<f64>();
                    *p = 1.0 / (1.0 + (-z).exp());
                }
            }
            Kind::Forest { nodes, leaf_values, roots } => {
                self.score_forest(t, nodes, leaf_values, roots, out)
            }
        }
    }

    fn score_forest(&self, t: &[f64], nodes: &[Node], leaf_values: &[f64], roots: &[Root], out: &mut [f64]) {
        const LANES: usize = 8;
        let k = self.names.len();
        // standardize as scikit-learn does: in f64, then rounded to f32
        let z: Vec<f32> = t
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let j = i % k;
                ((v - self.mean[j]) / self.scale[j]) as f32
            })
            .collect();
        out.fill(0.0);
        for root in roots {
            // walk LANES rows at once: independent chains overlap their latencies
            let mut lanes = z.chunks_exact(LANES * k);
            let mut outs = out.chunks_exact_mut(LANES);
            for (rows, acc) in (&mut lanes).zip(&mut outs) {
                let mut idx = [root.node; LANES];
                for _ in 0..root.depth {
                    for (l, i) in idx.iter_mut().enumerate() {
                        let node = &nodes[*i as usize];
                        let right = rows[l * k + node.feature as usize] > node.below;
                        *i = node.children[usize::from(right)];
                    }
                }
                for (a, i) in acc.iter_mut().zip(idx) {
                    *a += leaf_values[i as usize];
                }
            }
            for (row, acc) in lanes.remainder().chunks_exact(k).zip(outs.into_remainder()) {
                let mut i = root.node;
                for _ in 0..root.depth {
                    let node = &nodes[i as usize];
                    i = node.children[usize::from(row[node.feature as usize] > node.below)];
                }
                *acc += leaf_values[i as usize];
            }
        }
        let trees = roots.len() as f64;
        for p in out.iter_mut() {
            *p /= trees;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("f{i}")).collect()
    }

    fn ids(k: usize) -> Vec<Transform> {
        vec![Transform::Identity; k]
    }

    #[test]
    fn logistic_scores_standardized_inputs() {
        let s =
            Scorer::logistic(names(2), ids(2), vec![1.0, 0.0], vec![2.0, 1.0], vec![1.0, -1.0], 0.5).unwrap();
        let p = s.score(&[3.0, 0.5, 1.0, 0.0], 2).unwrap();
        let expect = |z: f64| 1.0 / (1.0 + (-z).exp());
        assert!((p[0] - expect(0.5 + 1.0 - 0.5)).abs() < 1e-15);
        assert!((p[1] - expect(0.5)).abs() < 1e-15);
    }

    fn stump_forest() -> TreeArrays {
        // tree 0: f0 <= 0 ? 0.1 : 0.9 ; tree 1: a single leaf 0.5
        TreeArrays {
            feature: vec![0, -2, -2, -2],
            threshold: vec![0.0, -2.0, -2.0, -2.0],
            left: vec![1, -1, -1, -1],
            right: vec![2, -1, -1, -1],
            value: vec![0.0, 0.1, 0.9, 0.5],
            tree_sizes: vec![3, 1],
        }
    }

    #[test]
    fn forest_averages_leaves_and_compares_like_sklearn() {
        let s = Scorer::forest(names(1), ids(1), vec![10.0], vec![1.0], &stump_forest()).unwrap();
        let p = s.score(&[9.0, 10.0, 11.0], 1).unwrap();
        assert_eq!(p, vec![0.3, 0.3, 0.7]);
    }

    #[test]
    fn columns_and_rows_give_the_same_scores_with_transforms() {
        let t = vec![Transform::Log, Transform::Log1p, Transform::Identity];
        let s = Scorer::logistic(
            names(3),
            t.clone(),
            vec![0.1, 1.0, 2.0],
            vec![2.0, 0.5, 3.0],
            vec![0.3, -0.2, 0.1],
            -1.0,
        )
        .unwrap();
        let n = 1_100; // more than two blocks
        let a: Vec<f64> = (0..n).map(|i| f64::from(i) / 7.0).collect();
        let b: Vec<i64> = (0..n).map(|i| i64::from(i) * 1_000 - 5).collect();
        let c: Vec<f64> = (0..n).map(|i| f64::from(i % 13)).collect();
        let by_columns = s.score_columns(&[Values::F64(&a), Values::I64(&b), Values::F64(&c)]).unwrap();
        let rows: Vec<f64> = (0..n as usize).flat_map(|i| [a[i], b[i] as f64, c[i]]).collect();
        assert_eq!(by_columns, s.score(&rows, 3).unwrap());
        let z = 0.3 * ((3.0f64 / 7.0).ln() - 0.1) / 2.0 - 0.2 * ((2_995.0f64).ln_1p() - 1.0) / 0.5
            + 0.1 * (3.0 - 2.0) / 3.0
            - 1.0;
        assert!((by_columns[3] - 1.0 / (1.0 + (-z).exp())).abs() < 1e-12);
        assert_eq!(Transform::Log.apply(-5.0), 1e-3f64.ln());
        assert!("exp".parse::<Transform>().is_err());
        assert!(matches!(
            s.score_columns(&[Values::F64(&a), Values::I64(&b[1..]), Values::F64(&c)]),
            Err(CoreError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn f32_thresholds_compare_exactly_like_f64() {
        for t in [0.1, -0.1, 0.0, -0.0, 1e-45, -1e-45, 3.4e38, 1e300, -1e300, 0.5, 1.0 / 3.0] {
            let b = f32_at_or_below(t);
            assert!(f64::from(b) <= t, "{t}");
            let up = match b {
                0.0 => f32::from_bits(1),
                b if b > 0.0 => f32::from_bits(b.to_bits() + 1),
                b => f32::from_bits(b.to_bits() - 1),
            };
            assert!(f64::from(up) > t || b == f32::MAX, "{t}: {b} is not the largest");
        }
    }

    #[test]
    fn deep_and_uneven_trees_score_every_row_exactly() {
        // a chain x <= 0 ? (x <= -1 ? 0.0 : 0.25) : 1.0, scored over more rows than one lane group
        let t = TreeArrays {
            feature: vec![0, 0, -1, -1, -1],
            threshold: vec![0.0, -1.0, 0.0, 0.0, 0.0],
            left: vec![1, 2, -1, -1, -1],
            right: vec![4, 3, -1, -1, -1],
            value: vec![0.0, 0.0, 0.0, 0.25, 1.0],
            tree_sizes: vec![5],
        };
        let s = Scorer::forest(names(1), ids(1), vec![0.0], vec![1.0], &t).unwrap();
        let x: Vec<f64> = (0..21).map(|i| f64::from(i % 3) - 1.5).collect();
        let want: Vec<f64> = x
            .iter()
            .map(|&v| {
                if v <= -1.0 {
                    0.0
                } else if v <= 0.0 {
                    0.25
                } else {
                    1.0
                }
            })
            .collect();
        assert_eq!(s.score(&x, 1).unwrap(), want);
    }

    #[test]
    fn bad_models_and_inputs_are_errors() {
        let mut t = stump_forest();
        t.left[0] = 0;
        assert!(Scorer::forest(names(1), ids(1), vec![0.0], vec![1.0], &t).is_err(), "a cycle");
        let mut t = stump_forest();
        t.right[0] = 3;
        assert!(
            Scorer::forest(names(1), ids(1), vec![0.0], vec![1.0], &t).is_err(),
            "a child in another tree"
        );
        let mut t = stump_forest();
        t.feature[0] = 4;
        assert!(Scorer::forest(names(1), ids(1), vec![0.0], vec![1.0], &t).is_err());
        assert!(Scorer::logistic(names(2), ids(2), vec![0.0; 2], vec![1.0, 0.0], vec![1.0; 2], 0.0).is_err());
        let s = Scorer::logistic(names(2), ids(2), vec![0.0; 2], vec![1.0; 2], vec![1.0; 2], 0.0).unwrap();
        assert!(matches!(s.score(&[1.0, 2.0, 3.0], 2), Err(CoreError::LengthMismatch { .. })));
        match s.score(&[1.0, 2.0, 3.0, f64::NAN], 2) {
            Err(CoreError::InvalidValue { column, row, .. }) => assert_eq!((column.as_str(), row), ("f1", 1)),
            other => panic!("{other:?}"),
        }
    }
}
