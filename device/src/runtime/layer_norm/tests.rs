use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    attribute_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::*;

const F32: i32 = 1;

fn f32_value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => dimension::Value::DimValue(*n),
                None => dimension::Value::DimParam("rows".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: F32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn constant(name: &str, dims: &[i64], values: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: F32,
        float_data: values,
        ..Default::default()
    }
}

/// ONNX's LayerNormalization of `[rows, ..dims]` over the axes from `axis`, with
/// a shift or without, as tract loads and declutters it.
fn layer_norm(dims: &[i64], axis: i64, shift: bool) -> TypedModel {
    let normalized_dims = &dims[(axis as usize - 1)..];
    let normalized: i64 = normalized_dims.iter().product();
    let scale: Vec<f32> = (0..normalized).map(|i| 0.5 + 0.1 * i as f32).collect();
    let mut inputs = vec!["x".to_string(), "scale".into()];
    let mut initializer = vec![constant("scale", normalized_dims, scale)];
    if shift {
        inputs.push("shift".into());
        initializer.push(constant(
            "shift",
            normalized_dims,
            (0..normalized).map(|i| 0.3 - 0.07 * i as f32).collect(),
        ));
    }
    let attribute = vec![
        AttributeProto {
            name: "axis".into(),
            r#type: attribute_proto::AttributeType::Int as i32,
            i: axis,
            ..Default::default()
        },
        AttributeProto {
            name: "epsilon".into(),
            r#type: attribute_proto::AttributeType::Float as i32,
            f: 1e-5,
            ..Default::default()
        },
    ];
    let shape: Vec<Option<i64>> = std::iter::once(None)
        .chain(dims.iter().map(|&d| Some(d)))
        .collect();
    let graph = GraphProto {
        node: vec![NodeProto {
            input: inputs,
            output: vec!["y".into()],
            name: "layernormalization_1".into(),
            op_type: "LayerNormalization".into(),
            attribute,
            ..Default::default()
        }],
        initializer,
        input: vec![f32_value("x", &shape)],
        output: vec![f32_value("y", &shape)],
        ..Default::default()
    };
    let proto = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    };
    let model = tract_onnx::onnx().model_for_proto_model(&proto).unwrap();
    model.into_typed().unwrap().into_decluttered().unwrap()
}

/// Rows of values far from zero mean, with a spread, some near each other.
fn input(rows: usize, dims: &[i64]) -> Tensor {
    let mut shape = vec![rows];
    shape.extend(dims.iter().map(|&d| d as usize));
    let len: usize = shape.iter().product();
    let values: Vec<f32> = (0..len)
        .map(|i| 3.0 + ((i * 37 % 101) as f32 - 50.0) * 0.173 + (i % 7) as f32 * 1e-3)
        .collect();
    Tensor::from_shape(&shape, &values).unwrap()
}

fn run(model: TypedModel, x: &Tensor) -> Tensor {
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    plan.run(tvec![x.clone().into()]).unwrap().remove(0).into_tensor()
}

#[test]
fn layer_norms_over_the_last_axis_are_one_op_with_tracts_bits() {
    for (dims, shift) in [
        (&[24i64][..], true),
        (&[5, 384][..], true),
        (&[3][..], false),
        (&[2, 9][..], false),
    ] {
        let axis = dims.len() as i64;
        let mut ours = layer_norm(dims, axis, shift);
        assert_eq!(swap_in(&mut ours).unwrap(), 1, "{dims:?}");
        let ops: Vec<String> = ours.nodes().iter().map(|n| n.op.name().to_string()).collect();
        assert!(ops.contains(&"VectorLayerNorm".to_string()), "{ops:?}");
        for rows in [1, 7] {
            let x = input(rows, dims);
            let theirs = run(layer_norm(dims, axis, shift), &x);
            let got = run(ours.clone(), &x);
            assert_eq!(got.shape(), theirs.shape());
            let (got, theirs) = (
                got.to_plain_array_view::<f32>().unwrap(),
                theirs.to_plain_array_view::<f32>().unwrap(),
            );
            assert!(theirs.iter().any(|v| v.abs() > 0.5), "a normalized spread");
            for (i, (g, t)) in got.iter().zip(theirs).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    t.to_bits(),
                    "{dims:?} rows {rows} at {i}: {g} against {t}"
                );
            }
        }
    }
}

#[test]
fn a_layer_norm_over_more_than_the_last_axis_stays_tracts() {
    let mut model = layer_norm(&[4, 6], 1, true);
    assert_eq!(swap_in(&mut model).unwrap(), 0);
}

#[test]
fn rows_of_another_width_are_refused() {
    let mut model = layer_norm(&[8], 1, true);
    swap_in(&mut model).unwrap();
    let op = model
        .nodes()
        .iter()
        .find_map(|n| n.op_as::<VectorLayerNorm>())
        .unwrap();
    let err = op
        .eval_out_of_plan(tvec![tensor2(&[[1f32, 2.0]]).into()])
        .unwrap_err();
    assert!(format!("{err}").contains("expected rows of 8"), "{err}");
}
