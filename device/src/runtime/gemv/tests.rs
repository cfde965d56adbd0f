use super::*;
use crate::runtime::swap::tests::assert_near_tract;

/// A graph of one product `expr` of two sources, with symbolic batch axes where
/// `symbolic` (the beams and the cached length of a decode step).
fn product_model(expr: &str, x: &[usize], y: &[usize], symbolic: bool) -> TypedModel {
    let mut model = TypedModel::default();
    let fact = |shape: &[usize], model: &TypedModel| -> TypedFact {
        let mut dims: TVec<TDim> = shape.iter().map(|&d| d.to_dim()).collect();
        if symbolic && shape[0] > 1 {
            dims[0] = model.symbols.sym("B").into();
        }
        f32::fact(dims)
    };
    let (fx, fy) = (fact(x, &model), fact(y, &model));
    let a = model.add_source("x", fx).unwrap();
    let b = model.add_source("y", fy).unwrap();
    let einsum = EinSum::new(expr.parse().unwrap(), f32::datum_type());
    let out = model.wire_node("product", einsum, &[a, b]).unwrap();
    model.select_output_outlets(&out).unwrap();
    model.into_decluttered().unwrap()
}

fn values(shape: &[usize], seed: f32) -> Tensor {
    let len: usize = shape.iter().product();
    let v: Vec<f32> = (0..len).map(|i| ((i as f32 + seed) * 0.37).sin()).collect();
    Tensor::from_shape(shape, &v).unwrap()
}

fn run_plain(model: TypedModel, x: &Tensor, y: &Tensor) -> Vec<f32> {
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    let out = plan
        .run(tvec!(x.clone().into_tvalue(), y.clone().into_tvalue()))
        .unwrap()
        .remove(0);
    out.try_as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec()
}

/// The swapped graph gives tract's values within rounding.
fn same_values(expr: &str, x: &[usize], y: &[usize], symbolic: bool) {
    let at = format!("{expr} {x:?} {y:?}");
    let (xv, yv) = (values(x, 0.0), values(y, 5.0));
    let theirs = run_plain(product_model(expr, x, y, symbolic), &xv, &yv);
    let mut ours = product_model(expr, x, y, symbolic);
    assert_eq!(swap_in(&mut ours).unwrap(), 1, "{at}");
    assert!(
        ours.nodes().iter().any(|n| n.op_as::<VectorGemv>().is_some()),
        "{at}"
    );
    let got = run_plain(ours, &xv, &yv);
    assert_eq!(theirs.len(), got.len(), "{at}");
    for (ix, (t, g)) in theirs.iter().zip(&got).enumerate() {
        assert_near_tract(*t, *g, &format!("{at} at {ix}"));
    }
}

#[test]
fn attention_products_give_tracts_values() {
    for symbolic in [false, true] {
        // A step's self-attention: 15 beams × 4 heads, a query against 11 cached
        // keys, then the weights against the values.
        same_values("abk,abnk->abn", &[15, 4, 64], &[15, 4, 11, 64], symbolic);
        same_values("abk,abkn->abn", &[15, 4, 11], &[15, 4, 11, 64], symbolic);
        // The image's keys and values, one for every beam.
        same_values("abk,abnk->abn", &[15, 4, 64], &[1, 4, 49, 64], symbolic);
        same_values("abk,abkn->abn", &[15, 4, 49], &[1, 4, 49, 64], symbolic);
    }
    // Lengths that fill no whole block of lanes; one batch axis; a query broadcast.
    same_values("abk,abnk->abn", &[3, 2, 13], &[3, 2, 5, 13], false);
    same_values("ak,ank->an", &[1, 7], &[6, 3, 7], false);
    same_values("abk,abkn->abn", &[2, 3, 2], &[2, 3, 2, 9], false);
}

#[test]
fn products_with_rows_of_queries_give_tracts_values() {
    for symbolic in [false, true] {
        // The text encoder's attention: 9 tokens × 12 heads, the heads' axis
        // after the tokens' in the queries, keys and values.
        same_values("ambk,anbk->abmn", &[1, 9, 12, 32], &[1, 9, 12, 32], symbolic);
        same_values("abmk,akbn->ambn", &[1, 12, 9, 9], &[1, 9, 12, 32], symbolic);
        // The prefix's: 3 positions of 2 beams against the cached keys, then the
        // image's values, one for both beams; 70 values a row (a block and a part).
        same_values("ambk,abnk->abmn", &[2, 3, 4, 16], &[2, 4, 3, 16], symbolic);
        same_values("abmk,abkn->ambn", &[2, 4, 3, 49], &[1, 4, 49, 70], symbolic);
    }
    // Rows before the batch axis (the synthetic image encoder's attention).
    same_values("mbk,nbk->bmn", &[17, 4, 32], &[17, 4, 32], false);
    same_values("bmk,kbn->mbn", &[4, 17, 17], &[17, 4, 32], false);
}

#[test]
fn other_products_keep_tracts_op() {
    // The matrix as the first operand (its sum not the vector's last axis), a
    // matrix whose sum and output axes are both inside it, and a product by a
    // constant (the linear op's).
    let mut matrix_first = product_model("amk,ak->am", &[2, 3, 8], &[2, 8], false);
    assert_eq!(swap_in(&mut matrix_first).unwrap(), 0);
    let mut inside = product_model("abk,ankb->abn", &[2, 3, 8], &[2, 5, 8, 3], false);
    assert_eq!(swap_in(&mut inside).unwrap(), 0);
    let mut model = TypedModel::default();
    let a = model.add_source("x", f32::fact([2, 8])).unwrap();
    let w = model.add_const("w", values(&[8, 4], 1.0)).unwrap();
    let einsum = EinSum::new("ak,kn->an".parse().unwrap(), f32::datum_type());
    let out = model.wire_node("product", einsum, &[a, w]).unwrap();
    model.select_output_outlets(&out).unwrap();
    let mut constant = model.into_decluttered().unwrap();
    assert_eq!(swap_in(&mut constant).unwrap(), 0);
}

#[test]
fn a_scale_after_the_product_is_folded_in() {
    let expr = "ambk,anbk->abmn";
    let (x, y) = ([1, 9, 4, 32], [1, 9, 4, 32]);
    let scaled = || {
        let mut model = product_model(expr, &x, &y, true);
        let product = model.output_outlets().unwrap()[0];
        let scale = model.add_const("scale", tensor4(&[[[[0.17677669f32]]]])).unwrap();
        let out = model
            .wire_node("div", tract_onnx::tract_core::ops::math::mul(), &[product, scale])
            .unwrap();
        model.select_output_outlets(&out).unwrap();
        model.into_decluttered().unwrap()
    };
    let (xv, yv) = (values(&x, 0.0), values(&y, 5.0));
    let theirs = run_plain(scaled(), &xv, &yv);
    let mut ours = scaled();
    assert_eq!(swap_in(&mut ours).unwrap(), 1);
    let ops: Vec<String> = ours.nodes().iter().map(|n| n.op.name().to_string()).collect();
    assert!(
        !ops.iter().any(|op| op == "Mul" || op.contains("TypedBinOp")),
        "{ops:?}"
    );
    let got = run_plain(ours, &xv, &yv);
    assert_eq!(theirs.len(), got.len());
    for (ix, (t, g)) in theirs.iter().zip(&got).enumerate() {
        assert_near_tract(*t, *g, &format!("scaled at {ix}"));
    }
}
