use super::*;
use crate::runtime::swap::tests::{assert_near_tract, bias_of, tracts_and_ours, weight};

/// A graph of one 1×1 convolution over `[batch, inputs, h, w]`, decluttered.
fn conv_model(input: &[usize], outputs: usize, bias: Option<bool>, relu6: bool) -> TypedModel {
    let inputs = input[1];
    let weights: Vec<f32> = (0..outputs * inputs).map(weight).collect();
    let kernel = Tensor::from_shape(&[outputs, inputs, 1, 1], &weights).unwrap();
    let bias = match bias {
        Some(true) => Tensor::from_shape(&[outputs], &(0..outputs).map(bias_of).collect::<Vec<_>>()).unwrap(),
        Some(false) => tensor0(0.25f32),
        None => tensor0(0f32),
    };
    let conv = pointwise_conv(inputs, outputs);
    let clamp = relu6.then_some((0.0, 0.3));
    conv_graph(&conv, input, kernel.into(), bias.into(), clamp)
        .unwrap()
        .into_decluttered()
        .unwrap()
}

/// The convolution by its definition, in the order the op promises: the bias,
/// then one fused multiply-add per input channel, in order.
fn reference(input: &[usize], values: &[f32], outputs: usize, bias: Option<bool>, relu6: bool) -> Vec<f32> {
    let (n, c, pixels) = (input[0], input[1], input[2] * input[3]);
    let mut out = Vec::new();
    for b in 0..n {
        for o in 0..outputs {
            for p in 0..pixels {
                let mut sum = match bias {
                    Some(true) => bias_of(o),
                    Some(false) => 0.25,
                    None => 0.0,
                };
                for i in 0..c {
                    sum = weight(o * c + i).mul_add(values[(b * c + i) * pixels + p], sum);
                }
                out.push(if relu6 { sum.clamp(0.0, 0.3) } else { sum });
            }
        }
    }
    out
}

/// The swapped graph equals the definition exactly, and tract's own product
/// within rounding (it sums in another order).
fn same_values(input: &[usize], outputs: usize, bias: Option<bool>, relu6: bool) {
    let (values, x) = crate::runtime::swap::tests::input(input);
    let at = format!("{input:?} to {outputs} bias {bias:?} relu6 {relu6}");
    let model = || conv_model(input, outputs, bias, relu6);
    let (theirs, got) = tracts_and_ours::<VectorPointwise>(model, swap_in, &x, &at);
    let expected = reference(input, &values, outputs, bias, relu6);
    assert_eq!(expected.len(), got.len(), "{at}");
    for (ix, ((e, g), t)) in expected.iter().zip(&got).zip(&theirs).enumerate() {
        assert_eq!(e.to_bits(), g.to_bits(), "{at} at {ix}: {e} vs {g}");
        assert_near_tract(*t, *g, &format!("{at} at {ix}"));
    }
}

#[test]
fn every_output_equals_the_definition_and_tracts_product() {
    if !tile::supported() {
        return;
    }
    for relu6 in [false, true] {
        same_values(&[1, 16, 32, 32], 96, Some(true), relu6);
        // Pixels and channels that fill no whole tile at the edges.
        same_values(&[1, 24, 14, 14], 20, Some(true), relu6);
        same_values(&[1, 5, 10, 17], 7, Some(false), relu6);
        same_values(&[2, 12, 12, 12], 13, Some(true), relu6);
    }
    same_values(&[1, 40, 16, 2], 6, None, false);
}

#[test]
fn channels_shared_among_threads_give_the_same_outputs() {
    use tract_linalg::multithread::{multithread_tract_scope, Executor};
    if !tile::supported() {
        return;
    }
    // Above tract's threading threshold, so the channels are split, some chunks
    // starting inside a panel.
    multithread_tract_scope(Executor::multithread(3), || {
        same_values(&[1, 32, 40, 40], 44, Some(true), true);
        same_values(&[2, 19, 23, 29], 25, Some(true), false);
    });
}

#[test]
fn products_with_too_few_pixels_keep_tracts_op() {
    for (h, w) in [(3, 3), (7, 7)] {
        let mut small = conv_model(&[1, 8, h, w], 12, Some(true), false);
        assert_eq!(swap_in(&mut small).unwrap(), 0, "{h}x{w}");
        // Whole blocks of channels: with them blocked, the tiles run along
        // the pixels and leave none unused.
        let mut blockable = conv_model(&[1, 8, h, w], 16, Some(true), false);
        assert_eq!(swap_in(&mut blockable).unwrap(), 1, "{h}x{w} blockable");
    }
}

/// A swapped-in op over `[1, 8, 16, 16]` to 12 channels (ReLU6), for other modules' tests.
pub(in crate::runtime) fn example_op() -> Option<VectorPointwise> {
    let mut model = conv_model(&[1, 8, 16, 16], 12, Some(true), true);
    swap_in(&mut model).unwrap();
    let node = model.nodes().iter().find_map(|n| n.op_as::<VectorPointwise>());
    node.cloned()
}
