use super::panels::int8_scale;
use super::*;
use crate::runtime::swap::tests::{assert_near_tract, bias_of, input, run, tracts_and_ours, weight};
use tract_onnx::tract_core::ops::math;

/// Weights of the shape `shape` (axes `axes`) as an int8 bundle's graph gives
/// them: `q · scale`, one scale per output (the axes `outputs`), each output's
/// largest `|q|` 127, as `export --int8` quantizes.
fn int8_valued(axes: &str, shape: &[usize], outputs: &str) -> Vec<f32> {
    let axes: Vec<char> = axes.chars().collect();
    let len: usize = shape.iter().product();
    (0..len)
        .map(|flat| {
            let (mut rest, mut output, mut first) = (flat, 0, true);
            for (axis, &dim) in axes.iter().zip(shape).rev() {
                let index = rest % dim;
                rest /= dim;
                if outputs.contains(*axis) {
                    output = output * dim + index;
                } else {
                    first &= index == 0;
                }
            }
            let q = if first {
                127
            } else {
                ((flat * 37 + 11) % 253) as i32 - 126
            };
            q as f32 * ((1 + output % 5) as f32 / 1000.0)
        })
        .collect()
}

/// A graph of one product `repr` of the input (`x_dims`, `0` for the symbol S,
/// as a beam's rows are) by the constant `weights`, plus `bias` when given,
/// decluttered.
fn product_model(repr: &str, x_dims: &[usize], weights: Tensor, bias: Option<Tensor>) -> TypedModel {
    let mut model = TypedModel::default();
    let s = model.symbols.sym("S");
    let dims: TVec<TDim> = x_dims
        .iter()
        .map(|&d| if d == 0 { s.to_dim() } else { d.to_dim() })
        .collect();
    let x = model.add_source("x", f32::fact(dims)).unwrap();
    let w = model.add_const("w", weights).unwrap();
    let op = EinSum {
        axes: repr.parse().unwrap(),
        operating_dt: f32::datum_type(),
        q_params: None,
    };
    let mut y = model.wire_node("product", op, &[x, w]).unwrap();
    if let Some(bias) = bias {
        let b = model.add_const("b", bias).unwrap();
        y = model.wire_node("bias", math::add(), &[y[0], b]).unwrap();
    }
    model.select_output_outlets(&y).unwrap();
    model.into_decluttered().unwrap()
}

/// `x [S, 2, inputs] · W + b` (W `[inputs, outputs]`, or `[outputs, inputs]`
/// when `transposed`), decluttered.
fn linear_model(inputs: usize, outputs: usize, transposed: bool, bias: bool) -> TypedModel {
    let (shape, axes) = if transposed {
        ([outputs, inputs], "abk,nk->abn")
    } else {
        ([inputs, outputs], "abk,kn->abn")
    };
    let values = int8_valued(&axes[4..6], &shape, "n");
    let bias = bias.then(|| {
        let b: Vec<f32> = (0..outputs).map(bias_of).collect();
        Tensor::from_shape(&[1, 1, outputs], &b).unwrap()
    });
    product_model(
        axes,
        &[0, 2, inputs],
        Tensor::from_shape(&shape, &values).unwrap(),
        bias,
    )
}

/// The swapped graph equals the definition (the bias, then one fused
/// multiply-add per input, in order) exactly, and tract's product within rounding.
fn same_values(rows: usize, inputs: usize, outputs: usize, transposed: bool, bias: bool) {
    let at = format!("{rows}x2 rows, {inputs} to {outputs}, transposed {transposed}, bias {bias}");
    let (values, x) = input(&[rows, 2, inputs]);
    let model = || linear_model(inputs, outputs, transposed, bias);
    let (theirs, got) = tracts_and_ours::<VectorLinear>(model, swap_in, &x, &at);
    assert_eq!(got.len(), rows * 2 * outputs, "{at}");
    let weights = if transposed {
        int8_valued("nk", &[outputs, inputs], "n")
    } else {
        int8_valued("kn", &[inputs, outputs], "n")
    };
    for (m, (x, (got, theirs))) in values
        .chunks_exact(inputs)
        .zip(got.chunks_exact(outputs).zip(theirs.chunks_exact(outputs)))
        .enumerate()
    {
        for o in 0..outputs {
            let mut sum = if bias { bias_of(o) } else { 0.0 };
            for (i, &x) in x.iter().enumerate() {
                let w = if transposed {
                    weights[o * inputs + i]
                } else {
                    weights[i * outputs + o]
                };
                sum = x.mul_add(w, sum);
            }
            assert_eq!(sum.to_bits(), got[o].to_bits(), "{at}: row {m} output {o}");
            assert_near_tract(theirs[o], sum, &format!("{at}: row {m} output {o}"));
        }
    }
}

#[test]
fn every_output_equals_the_definition_and_tracts_product() {
    if !tile::supported() {
        return;
    }
    // 1 to 8 rows of two (a greedy step to a beam of 15 with a tile and a half
    // of rows), outputs that fill whole panels or not.
    for rows in [1, 3, 7, 8] {
        same_values(rows, 24, 32, false, true);
        same_values(rows, 19, 37, true, true);
        same_values(rows, 5, 3, false, false);
    }
}

/// A product of the axes `repr`, the input `x_shape` (`0`: the symbol S, given
/// `rows` when run), the weights `w_shape`: swapped, and equal to tract's within
/// rounding.
fn same_as_tract(repr: &str, x_shape: &[usize], w_shape: &[usize], rows: usize) {
    let (_, rest) = repr.split_once(',').expect("two inputs");
    let (w_axes, y_axes) = rest.split_once("->").expect("an output");
    let outputs: String = w_axes.chars().filter(|c| y_axes.contains(*c)).collect();
    let values = int8_valued(w_axes, w_shape, &outputs);
    let build = || product_model(repr, x_shape, Tensor::from_shape(w_shape, &values).unwrap(), None);
    let concrete: Vec<usize> = x_shape.iter().map(|&d| if d == 0 { rows } else { d }).collect();
    let len: usize = concrete.iter().product();
    let values: Vec<f32> = (0..len).map(|i| ((i as f32) * 0.013).cos()).collect();
    let x = Tensor::from_shape(&concrete, &values).unwrap();
    let theirs = run(build(), &x);
    let mut ours = build();
    assert_eq!(swap_in(&mut ours).unwrap(), 1, "{repr}");
    let got = run(ours, &x);
    assert_eq!(theirs.len(), got.len(), "{repr}");
    for (ix, (t, g)) in theirs.iter().zip(&got).enumerate() {
        assert_near_tract(*t, *g, &format!("{repr} at {ix}"));
    }
}

#[test]
fn the_decoders_and_projections_products_are_swapped() {
    if !tile::supported() {
        return;
    }
    // A step's rows with an axis of one value, dropped or added.
    same_as_tract("amk,kn->an", &[0, 1, 24], &[24, 40], 15);
    same_as_tract("ak,kn->amn", &[0, 40], &[40, 24], 15);
    // Heads and their width summed together (an attention's output projection).
    same_as_tract("abk,bkn->amn", &[0, 4, 8], &[4, 8, 20], 15);
    same_as_tract("ambk,bkn->amn", &[0, 3, 4, 8], &[4, 8, 20], 2);
    // Channels-first image tokens to a projection's outputs.
    same_as_tract("kbm,kn->abmn", &[40, 7, 7], &[40, 24], 0);
}

#[test]
fn rows_shared_among_threads_give_the_same_outputs() {
    use tract_linalg::multithread::{multithread_tract_scope, Executor};
    if !tile::supported() {
        return;
    }
    // Above tract's threading threshold, so the rows are split.
    multithread_tract_scope(Executor::multithread(3), || {
        same_values(40, 64, 300, false, true);
        same_as_tract("kbm,kn->abmn", &[64, 20, 20], &[64, 120], 0);
    });
}

#[test]
fn products_by_f32_weights_keep_tracts_op() {
    let values: Vec<f32> = (0..8 * 5).map(weight).collect();
    let weights = Tensor::from_shape(&[8, 5], &values).unwrap();
    let mut model = product_model("mk,kn->mn", &[4, 8], weights, None);
    assert_eq!(swap_in(&mut model).unwrap(), 0);
}

#[test]
fn products_of_two_activations_keep_tracts_op() {
    let mut model = TypedModel::default();
    let a = model.add_source("a", f32::fact([4, 8])).unwrap();
    let b = model.add_source("b", f32::fact([8, 5])).unwrap();
    let op = EinSum {
        axes: "mk,kn->mn".parse().unwrap(),
        operating_dt: f32::datum_type(),
        q_params: None,
    };
    let y = model.wire_node("product", op, &[a, b]).unwrap();
    model.select_output_outlets(&y).unwrap();
    let mut model = model.into_decluttered().unwrap();
    assert_eq!(swap_in(&mut model).unwrap(), 0);
}

/// Weights as an int8 bundle's graph gives them: `q · scale`, one symmetric scale
/// per output (`max|w| / 127`), as `export --int8` quantizes.
fn int8_weights(inputs: usize, outputs: usize) -> Vec<f32> {
    let mut w = vec![0f32; inputs * outputs];
    for o in 0..outputs {
        let column: Vec<f32> = (0..inputs)
            .map(|i| weight(i * outputs + o) * (o + 1) as f32)
            .collect();
        let scale = column.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        for (i, v) in column.iter().enumerate() {
            w[i * outputs + o] = (v / scale).round().clamp(-127.0, 127.0) * scale;
        }
    }
    w
}

#[test]
fn an_int8_bundles_weights_are_kept_as_int8_and_give_the_same_outputs() {
    if !tile::supported() {
        return;
    }
    let (inputs, outputs, rows) = (40, 37, 15);
    let w = int8_weights(inputs, outputs);
    let build = || {
        product_model(
            "mk,kn->mn",
            &[0, inputs],
            Tensor::from_shape(&[inputs, outputs], &w).unwrap(),
            None,
        )
    };
    let values: Vec<f32> = (0..rows * inputs).map(|i| ((i as f32) * 0.013).cos()).collect();
    let x = Tensor::from_shape(&[rows, inputs], &values).unwrap();
    let theirs = run(build(), &x);
    let mut ours = build();
    assert_eq!(swap_in(&mut ours).unwrap(), 1);
    let got = run(ours, &x);
    for m in 0..rows {
        for o in 0..outputs {
            let mut sum = 0f32;
            for i in 0..inputs {
                sum = values[m * inputs + i].mul_add(w[i * outputs + o], sum);
            }
            let (g, t) = (got[m * outputs + o], theirs[m * outputs + o]);
            assert_eq!(sum.to_bits(), g.to_bits(), "row {m} output {o}: {sum} vs {g}");
            assert_near_tract(t, g, &format!("row {m} output {o}"));
        }
    }
}

#[test]
fn int8_scales_are_found_again_exactly_or_not_at_all() {
    for (inputs, outputs) in [(256, 40), (1024, 7), (3, 5)] {
        let w = int8_weights(inputs, outputs);
        for o in 0..outputs {
            let scale = int8_scale(inputs, |i| w[i * outputs + o]).expect("an int8 column");
            for i in 0..inputs {
                let v = w[i * outputs + o];
                assert_eq!((v / scale).round() * scale, v);
            }
        }
    }
    assert_eq!(int8_scale(3, |_| 0.0), Some(1.0));
    // Values that are no int8 multiples of one scale stay f32.
    assert_eq!(int8_scale(100, weight), None);
}
