//! Batches of vector × matrix products between two activations: a decode step's
//! attention, each beam's and head's query against its cached keys, then its
//! weights against the cached values (`abk,abnk->abn` and `abk,abkn->abn`), and
//! the same with a row axis in the queries (`ambk,anbk->abmn`: a text's tokens,
//! the prefix's positions), each query row a product of its own.
//!
//! tract runs these as matrix products, packing both operands on every call, for
//! a one-row product of 64 by a dozen: the packing and the dispatch take most of
//! the time (`bench --profile`: a third of a beam step). Here each product is a
//! plain loop over the operands in place, where one of them is broadcast over
//! the batch (the image's keys and values, one for every beam) read once per
//! product without being copied.

#[cfg(test)]
mod tests;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::swap::{f32_product, row_major_steps, swap_each, Clamp, Fold};

/// Lanes of the partial sums of a dot product: one AVX vector, two NEON ones.
const LANES: usize = 8;

/// How the matrix holds its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `[.., n, k]`: each output is a dot product of the vector with a row.
    RowsPerOutput,
    /// `[.., k, n]`: the outputs are the matrix's rows weighed by the vector.
    RowsPerInput,
}

/// `out[.., n] = Σ_k x[.., k] · y[.., n, .., k]` (or `y[.., k, .., n]`) over the
/// output's other axes, each of them an axis of either operand or both, as long
/// as the output's or one (broadcast).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorGemv {
    layout: Layout,
    /// Each output axis but the last: the axis of the vector operand and of the
    /// matrix operand it runs along, where they have it.
    outer: TVec<(Option<usize>, Option<usize>)>,
    /// The matrix's axes along the sum and along the output's last axis.
    y_k: usize,
    y_n: usize,
    /// A constant every output is multiplied by (attention's `1/√d`), from a Mul
    /// after the product.
    scale: Option<f32>,
    clamp: Clamp,
}

// Ops are equal when they compute the same: layout, axes and bounds.
impl Eq for VectorGemv {}

/// Replaces every product of two activations of that shape in a decluttered
/// model. Returns how many.
pub fn swap_in(model: &mut TypedModel) -> TractResult<usize> {
    swap_each(model, |model, node| match node.op_as::<EinSum>() {
        Some(einsum) => VectorGemv::for_einsum(model, node, einsum),
        None => Ok(None),
    })
}

impl Fold for VectorGemv {
    fn reads(&self) -> usize {
        2
    }

    fn fold_scale(&mut self, scale: f32) -> bool {
        self.scale = Some(scale);
        true
    }

    fn fold_clamp(&mut self, bounds: (f32, f32)) {
        self.clamp = Some(bounds);
    }
}

impl VectorGemv {
    /// The op for a product whose vector operand ends with the summed axis `k`,
    /// whose matrix operand ends with `k` or with the output's last axis `n`, and
    /// whose other axes are all the output's (`P k, P n k -> P n`, `P m k, P n k
    /// -> P m n` in any order of the axes), both operands f32 activations; `None`
    /// where tract's own op stays.
    fn for_einsum(model: &TypedModel, node: &TypedNode, einsum: &EinSum) -> TractResult<Option<Self>> {
        let Some([x, y, out]) = f32_product(model, node, einsum)? else {
            return Ok(None);
        };
        if x.konst.is_some() || y.konst.is_some() {
            return Ok(None);
        }
        let (inputs, outputs) = einsum.axes.to_strs();
        let (xs, ys, os): (Vec<char>, Vec<char>, Vec<char>) = (
            inputs[0].chars().collect(),
            inputs[1].chars().collect(),
            outputs[0].chars().collect(),
        );
        let (Some((&k, x_outer)), Some((&n, o_outer))) = (xs.split_last(), os.split_last()) else {
            return Ok(None);
        };
        let distinct = |axes: &[char]| axes.iter().enumerate().all(|(i, c)| !axes[..i].contains(c));
        let (Some(y_k), Some(y_n)) = (ys.iter().position(|&c| c == k), ys.iter().position(|&c| c == n))
        else {
            return Ok(None);
        };
        let layout = if y_k + 1 == ys.len() {
            Layout::RowsPerOutput
        } else if y_n + 1 == ys.len() {
            Layout::RowsPerInput
        } else {
            return Ok(None);
        };
        let y_outer = ys.iter().filter(|&&c| c != k && c != n);
        if !distinct(&xs)
            || !distinct(&ys)
            || !distinct(&os)
            || o_outer.contains(&k)
            || xs.contains(&n)
            || !x_outer.iter().chain(y_outer).all(|c| o_outer.contains(c))
        {
            return Ok(None);
        }
        let outer: TVec<(Option<usize>, Option<usize>)> = o_outer
            .iter()
            .map(|c| (xs.iter().position(|x| x == c), ys.iter().position(|y| y == c)))
            .collect();
        // Each outer axis is an operand's, as long as the output's or one in each.
        let (x_shape, y_shape) = (x.shape.to_tvec(), y.shape.to_tvec());
        for (axis, &(xa, ya)) in outer.iter().enumerate() {
            let dim = &out.shape[axis];
            let fits = |d: &TDim| d == dim || d.is_one();
            if (xa.is_none() && ya.is_none())
                || !xa.is_none_or(|a| fits(&x_shape[a]))
                || !ya.is_none_or(|a| fits(&y_shape[a]))
            {
                return Ok(None);
            }
        }
        Ok(Some(Self {
            layout,
            outer,
            y_k,
            y_n,
            scale: None,
            clamp: None,
        }))
    }

    fn output_shape(&self, x: &[TDim], y: &[TDim]) -> TVec<TDim> {
        let mut shape: TVec<TDim> = self
            .outer
            .iter()
            .map(|&(xa, ya)| match (xa.map(|a| &x[a]), ya.map(|a| &y[a])) {
                (Some(dx), Some(dy)) if dx.is_one() => dy.clone(),
                (Some(dx), _) => dx.clone(),
                (None, Some(dy)) => dy.clone(),
                (None, None) => 1.to_dim(),
            })
            .collect();
        shape.push(y[self.y_n].clone());
        shape
    }

    /// Every product: for each output vector, the offsets of its operands (zero
    /// steps along a broadcast axis).
    fn run(&self, x: &Tensor, y: &Tensor) -> TractResult<Tensor> {
        let (xs, ys) = (x.shape(), y.shape());
        let ranks_fit = |axis: Option<usize>, rank: usize| axis.is_none_or(|a| a < rank);
        ensure!(
            !xs.is_empty()
                && self.y_k.max(self.y_n) < ys.len()
                && self
                    .outer
                    .iter()
                    .all(|&(xa, ya)| ranks_fit(xa, xs.len() - 1) && ranks_fit(ya, ys.len())),
            "VectorGemv: operands {xs:?} and {ys:?} do not fit {:?}",
            self.layout
        );
        let (k, n) = (xs[xs.len() - 1], ys[self.y_n]);
        ensure!(ys[self.y_k] == k, "VectorGemv: sums of {xs:?} and {ys:?} differ");
        let (x_steps, y_steps) = (row_major_steps(xs), row_major_steps(ys));
        let mut shape: TVec<usize> = tvec![];
        let (mut x_strides, mut y_strides): (TVec<usize>, TVec<usize>) = (tvec![], tvec![]);
        for (axis, &(xa, ya)) in self.outer.iter().enumerate() {
            let (dx, dy) = (xa.map_or(1, |a| xs[a]), ya.map_or(1, |a| ys[a]));
            ensure!(
                dx == dy || dx == 1 || dy == 1,
                "VectorGemv: axis {axis} of {xs:?} and {ys:?}"
            );
            shape.push(dx.max(dy));
            // A step of zero along an axis the operand lacks or broadcasts.
            x_strides.push(xa.filter(|&a| xs[a] != 1).map_or(0, |a| x_steps[a]));
            y_strides.push(ya.filter(|&a| ys[a] != 1).map_or(0, |a| y_steps[a]));
        }
        shape.push(n);
        let xv = x.try_as_plain_ram()?;
        let yv = y.try_as_plain_ram()?;
        let (xv, yv) = (xv.as_slice::<f32>()?, yv.as_slice::<f32>()?);
        let mut output = Tensor::zero::<f32>(&shape)?;
        let mut view = output.try_as_plain_ram_mut()?;
        let out = view.as_slice_mut::<f32>()?;
        let products = Products {
            layout: self.layout,
            scale: self.scale,
            clamp: self.clamp,
            shape: &shape,
            x_strides: &x_strides,
            y_strides: &y_strides,
            k,
            n,
            k_step: y_steps[self.y_k],
            n_step: y_steps[self.y_n],
        };
        products.run(xv, yv, out);
        Ok(output)
    }
}

/// One call's products: where each output vector's operands are, and how to
/// combine them.
struct Products<'a> {
    layout: Layout,
    scale: Option<f32>,
    clamp: Clamp,
    /// The output's shape: its outer axes, then `n`.
    shape: &'a [usize],
    x_strides: &'a [usize],
    y_strides: &'a [usize],
    k: usize,
    n: usize,
    k_step: usize,
    n_step: usize,
}

/// Outputs summed at a time over a matrix's rows (`RowsPerInput`): as many as
/// the registers hold (eight AVX vectors, sixteen NEON ones), so each sum stays
/// in a register from the first row to the last.
const BLOCK: usize = 64;

impl Products<'_> {
    fn run(&self, x: &[f32], y: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was just checked for.
            return unsafe { self.run_avx2(x, y, out) };
        }
        self.each(x, y, out)
    }

    /// The same loops compiled for AVX2: the same operations in the same order,
    /// eight lanes at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(&self, x: &[f32], y: &[f32], out: &mut [f32]) {
        self.each(x, y, out)
    }

    /// Every output vector from its operands, `out` starting at zero.
    #[inline(always)]
    fn each(&self, xv: &[f32], yv: &[f32], out: &mut [f32]) {
        let (p, k, n) = (self.x_strides.len(), self.k, self.n);
        for (index, out) in out.chunks_exact_mut(n.max(1)).enumerate() {
            let (mut x_at, mut y_at, mut rest) = (0, 0, index);
            for axis in (0..p).rev() {
                let i = rest % self.shape[axis];
                rest /= self.shape[axis];
                x_at += i * self.x_strides[axis];
                y_at += i * self.y_strides[axis];
            }
            let x = &xv[x_at..][..k];
            match self.layout {
                Layout::RowsPerOutput => {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = dot(x, &yv[y_at + j * self.n_step..][..k]);
                    }
                }
                Layout::RowsPerInput => weigh_rows(x, yv, y_at, self.k_step, out),
            }
            if let Some(s) = self.scale {
                out.iter_mut().for_each(|o| *o *= s);
            }
            if let Some((lo, hi)) = self.clamp {
                out.iter_mut().for_each(|o| *o = o.max(lo).min(hi));
            }
        }
    }
}

/// `out[j] = Σ_d x[d] · y[at + d * k_step + j]`, `out` starting at zero: the rows
/// weighed in order, `BLOCK` outputs at a time held in registers, then a block
/// of 32, 16 and 8 as what is left needs, then the last few one at a time.
#[inline(always)]
fn weigh_rows(x: &[f32], yv: &[f32], y_at: usize, k_step: usize, out: &mut [f32]) {
    let n = out.len();
    let mut from = 0;
    while n - from >= BLOCK {
        weigh_block::<BLOCK>(x, yv, y_at + from, k_step, &mut out[from..]);
        from += BLOCK;
    }
    for_each_smaller_block(n - from, |block| {
        match block {
            32 => weigh_block::<32>(x, yv, y_at + from, k_step, &mut out[from..]),
            16 => weigh_block::<16>(x, yv, y_at + from, k_step, &mut out[from..]),
            _ => weigh_block::<8>(x, yv, y_at + from, k_step, &mut out[from..]),
        }
        from += block;
    });
    let rest = &mut out[from..];
    for (d, &weight) in x.iter().enumerate() {
        let row = &yv[y_at + d * k_step + from..][..rest.len()];
        for (o, &v) in rest.iter_mut().zip(row) {
            *o += weight * v;
        }
    }
}

/// The blocks of 32, 16 and 8 that fit in `len` (under `BLOCK`), largest first.
#[inline(always)]
fn for_each_smaller_block(mut len: usize, mut f: impl FnMut(usize)) {
    for block in [32, 16, 8] {
        if len >= block {
            f(block);
            len -= block;
        }
    }
}

/// `B` outputs of `weigh_rows`, their sums in registers.
#[inline(always)]
fn weigh_block<const B: usize>(x: &[f32], yv: &[f32], y_at: usize, k_step: usize, out: &mut [f32]) {
    let mut sums = [0f32; B];
    for (d, &weight) in x.iter().enumerate() {
        let row: &[f32; B] = yv[y_at + d * k_step..][..B]
            .try_into()
            .expect("a block of B values");
        for (o, &v) in sums.iter_mut().zip(row) {
            *o += weight * v;
        }
    }
    out[..B].copy_from_slice(&sums);
}

/// `Σ a[i] · b[i]` in `LANES` partial sums, then those summed in order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let (a_blocks, b_blocks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_blocks.remainder(), b_blocks.remainder());
    for (a, b) in a_blocks.zip(b_blocks) {
        for lane in 0..LANES {
            lanes[lane] += a[lane] * b[lane];
        }
    }
    let mut sum = lanes.iter().sum::<f32>();
    for (a, b) in a_rest.iter().zip(b_rest) {
        sum += a * b;
    }
    sum
}

impl Op for VectorGemv {
    fn name(&self) -> StaticName {
        "VectorGemv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} over {} outer axes",
            self.layout,
            self.outer.len()
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for VectorGemv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, y) = args_2!(inputs);
        Ok(tvec!(self.run(&x, &y)?.into_tvalue()))
    }
}

impl TypedOp for VectorGemv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 2, "VectorGemv takes two inputs");
        let (x, y) = (inputs[0].shape.to_tvec(), inputs[1].shape.to_tvec());
        ensure!(
            !x.is_empty()
                && self.y_k.max(self.y_n) < y.len()
                && self.outer.iter().all(|&(xa, ya)| {
                    xa.is_none_or(|a| a + 1 < x.len()) && ya.is_none_or(|a| a < y.len())
                }),
            "VectorGemv: operands {x:?} and {y:?} do not fit {:?}",
            self.layout
        );
        Ok(tvec!(f32::fact(self.output_shape(&x, &y))))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let (x, y) = (inputs[0].shape.to_tvec(), inputs[1].shape.to_tvec());
        let outputs: TDim = self.output_shape(&x, &y).iter().product();
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            outputs * x.last().cloned().unwrap_or_else(|| 1.to_dim())
        )))
    }

    as_op!();
}
