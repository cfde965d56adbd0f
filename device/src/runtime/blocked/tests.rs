use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::*;
use crate::runtime::swap::tests::input;
use crate::runtime::{conv, depthwise, pointwise};

/// A convolution of `x` (`inputs` channels) to `outputs` channels, `k`×`k` over
/// `group` groups, with its bias, then ReLU6 where `relu6`.
#[allow(clippy::too_many_arguments)]
fn wire_conv(
    model: &mut TypedModel,
    name: &str,
    x: OutletId,
    (inputs, outputs): (usize, usize),
    k: usize,
    stride: usize,
    group: usize,
    relu6: bool,
) -> OutletId {
    let per_group = inputs / group;
    let len = outputs * per_group * k * k;
    let seed = name.len() as f32;
    let weights: Vec<f32> = (0..len).map(|i| ((i as f32 + seed) * 0.37).sin() * 0.3).collect();
    let kernel = Tensor::from_shape(&[outputs, per_group, k, k], &weights).unwrap();
    let bias: Vec<f32> = (0..outputs).map(|o| o as f32 * 0.01 - 0.05).collect();
    let kernel = model.add_const(format!("{name}.kernel"), kernel).unwrap();
    let bias = model
        .add_const(
            format!("{name}.bias"),
            Tensor::from_shape(&[outputs], &bias).unwrap(),
        )
        .unwrap();
    let conv = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![k, k],
            padding: PaddingSpec::SameUpper,
            dilations: None,
            strides: Some(tvec![stride, stride]),
            input_channels: inputs,
            output_channels: outputs,
        },
        kernel_fmt: KernelFormat::OIHW,
        group,
        q_params: None,
    };
    let mut y = model.wire_node(name, conv, &[x, kernel, bias]).unwrap()[0];
    if relu6 {
        let bound = |v: f32| Tensor::from_shape(&[1, 1, 1, 1], &[v]).unwrap();
        let lo = model.add_const(format!("{name}.lo"), bound(0.0)).unwrap();
        let hi = model.add_const(format!("{name}.hi"), bound(6.0)).unwrap();
        y = model
            .wire_node(format!("{name}.max"), math::max(), &[y, lo])
            .unwrap()[0];
        y = model
            .wire_node(format!("{name}.min"), math::min(), &[y, hi])
            .unwrap()[0];
    }
    y
}

/// A small EfficientNet: a stem, a block without expansion, a strided block, a
/// block with its residual Add, and a pointwise layer over a 4×4 map that reads
/// the residual sum, then the map's mean taken by tract's own op.
fn network() -> TypedModel {
    let mut model = TypedModel::default();
    let image = model.add_source("image", f32::fact([1, 3, 32, 32])).unwrap();
    let m = &mut model;
    let stem = wire_conv(m, "stem", image, (3, 16), 3, 2, 1, true);
    let dw = wire_conv(m, "dw1", stem, (16, 16), 3, 1, 16, true);
    let p1 = wire_conv(m, "project1", dw, (16, 8), 1, 1, 1, false);
    let e2 = wire_conv(m, "expand2", p1, (8, 48), 1, 1, 1, true);
    let dw2 = wire_conv(m, "dw2", e2, (48, 48), 5, 2, 48, true);
    let p2 = wire_conv(m, "project2", dw2, (48, 24), 1, 1, 1, false);
    let e3 = wire_conv(m, "expand3", p2, (24, 72), 1, 1, 1, true);
    let dw3 = wire_conv(m, "dw3", e3, (72, 72), 3, 2, 72, true);
    let p3 = wire_conv(m, "project3", dw3, (72, 24), 1, 1, 1, false);
    let e4 = wire_conv(m, "expand4", p3, (24, 72), 1, 1, 1, true);
    let dw4 = wire_conv(m, "dw4", e4, (72, 72), 3, 1, 72, true);
    let p4 = wire_conv(m, "project4", dw4, (72, 24), 1, 1, 1, false);
    let sum = m.wire_node("residual", math::add(), &[p3, p4]).unwrap()[0];
    let head = wire_conv(m, "head", sum, (24, 40), 1, 1, 1, true);
    let reduce = tract_onnx::tract_core::ops::nn::Reduce::new(
        tvec![2, 3],
        tract_onnx::tract_core::ops::nn::Reducer::Sum,
    );
    let pooled = m.wire_node("pool", reduce, &[head]).unwrap()[0];
    m.select_output_outlets(&[pooled, sum]).unwrap();
    model.into_decluttered().unwrap()
}

/// The network with this runtime's convolutions swapped in, blocked where
/// `blocked`: how many nodes run blocked, and its outputs' values.
fn swapped(blocked: bool, image: &Tensor) -> (usize, Vec<Vec<f32>>) {
    let mut model = network();
    conv::swap_in(&mut model).unwrap();
    depthwise::swap_in(&mut model).unwrap();
    pointwise::swap_in(&mut model).unwrap();
    let count = if blocked { swap_in(&mut model).unwrap() } else { 0 };
    if blocked && cfg!(target_arch = "x86_64") {
        let names: Vec<String> = model.nodes().iter().map(|n| n.op.name().to_string()).collect();
        assert_eq!(
            names.iter().filter(|n| *n == "FromBlocked").count(),
            2,
            "{names:?}"
        );
    }
    (count, outputs(model, image))
}

fn outputs(model: TypedModel, image: &Tensor) -> Vec<Vec<f32>> {
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    let out = plan.run(tvec!(image.clone().into_tvalue())).unwrap();
    out.iter()
        .map(|v| v.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec())
        .collect()
}

#[test]
fn a_network_runs_blocked_with_the_nchw_values() {
    let (_, image) = input(&[1, 3, 32, 32]);
    let (count, blocked) = swapped(true, &image);
    // The stem, the four depthwise and eight pointwise convolutions, the Add.
    // (tract declutters a chain of depthwise convolutions to channels-last on
    // aarch64, which the swapped ops do not take: fewer run blocked there.)
    if cfg!(target_arch = "x86_64") {
        assert_eq!(count, 14);
    } else {
        assert!(count >= 2, "{count} blocked");
    }
    let (_, nchw) = swapped(false, &image);
    assert_eq!(blocked, nchw, "the same sums in the same order");
    let theirs = outputs(network(), &image);
    for (theirs, ours) in theirs.iter().zip(&blocked) {
        assert_eq!(theirs.len(), ours.len());
        assert!(theirs.iter().any(|v| v.abs() > 0.1));
        for (i, (t, o)) in theirs.iter().zip(ours).enumerate() {
            assert!(
                (t - o).abs() <= 1e-4 * t.abs().max(1.0),
                "at {i}: tract's {t}, ours {o}"
            );
        }
    }
}

#[test]
fn values_go_back_to_nchw() {
    let values: Vec<f32> = (0..16 * 6).map(|i| i as f32).collect();
    let blocked = to_blocked(&values, 16);
    assert_ne!(blocked, values);
    let op = FromBlocked::new(&[1, 16, 2, 3]).unwrap();
    let x = Tensor::from_shape(&[1, 16, 2, 3], &blocked).unwrap();
    let out = op.eval_out_of_plan(tvec![x.into_tvalue()]).unwrap().unwrap();
    assert_eq!(
        out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(),
        &values[..]
    );
    assert!(
        FromBlocked::new(&[1, 12, 2, 3]).is_none(),
        "channels in no whole blocks"
    );
    assert_eq!(FromBlocked::new(&[16, 2, 3]), Some(op), "the batch axis dropped");
}
