use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};

use super::*;
use crate::runtime::swap::tests::{assert_near_tract, bias_of, input, tracts_and_ours, weight};

/// One convolution's sizes.
#[derive(Clone, Copy, Debug)]
struct Case {
    input: [usize; 4],
    outputs: usize,
    kernel: usize,
    stride: usize,
    /// Explicit padding, top-left and bottom-right; `None`: tract's SAME_UPPER.
    pads: Option<(usize, usize)>,
    relu6: bool,
}

impl Case {
    fn padding(&self) -> PaddingSpec {
        match self.pads {
            Some((before, after)) => PaddingSpec::ExplicitOnnxPool(tvec![before; 2], tvec![after; 2], false),
            None => PaddingSpec::SameUpper,
        }
    }

    fn conv(&self) -> Conv {
        Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![self.kernel, self.kernel],
                padding: self.padding(),
                dilations: None,
                strides: Some(tvec![self.stride, self.stride]),
                input_channels: self.input[1],
                output_channels: self.outputs,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        }
    }

    fn depth(&self) -> usize {
        self.input[1] * self.kernel * self.kernel
    }

    /// The convolution alone, with its Clip when it has one, decluttered.
    fn model(&self) -> TypedModel {
        let weights: Vec<f32> = (0..self.outputs * self.depth()).map(weight).collect();
        let shape = [self.outputs, self.input[1], self.kernel, self.kernel];
        let kernel = Tensor::from_shape(&shape, &weights).unwrap();
        let bias: Vec<f32> = (0..self.outputs).map(bias_of).collect();
        let bias = Tensor::from_shape(&[self.outputs], &bias).unwrap();
        let clamp = self.relu6.then_some((0.0, 0.3));
        conv_graph(&self.conv(), &self.input, kernel.into(), bias.into(), clamp)
            .unwrap()
            .into_decluttered()
            .unwrap()
    }

    /// The convolution by its definition, in the order the op promises: the bias,
    /// then one fused multiply-add per tap (input channel, kernel row, column), a
    /// tap in the padding reading zero.
    fn reference(&self, values: &[f32]) -> Vec<f32> {
        let [n, c, h, w] = self.input;
        let (k, s) = (self.kernel, self.stride);
        let pads = self.padding().compute(&[h, w], &[k, k], &[1, 1], &[s, s]);
        let (pt, pl) = (pads[0].pad_before as isize, pads[1].pad_before as isize);
        let mut out = Vec::new();
        for b in 0..n {
            for o in 0..self.outputs {
                for oy in 0..pads[0].convoluted {
                    for ox in 0..pads[1].convoluted {
                        let mut sum = bias_of(o);
                        for i in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * s + ky) as isize - pt;
                                    let ix = (ox * s + kx) as isize - pl;
                                    let inside =
                                        (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                                    let x = match inside {
                                        true => values[((b * c + i) * h + iy as usize) * w + ix as usize],
                                        false => 0.0,
                                    };
                                    sum = weight(((o * c + i) * k + ky) * k + kx).mul_add(x, sum);
                                }
                            }
                        }
                        out.push(if self.relu6 { sum.clamp(0.0, 0.3) } else { sum });
                    }
                }
            }
        }
        out
    }

    /// The swapped graph equals the definition exactly, and tract's own op within
    /// rounding.
    fn same_values(&self) {
        let (values, x) = input(&self.input);
        let at = format!("{self:?}");
        let (theirs, got) = tracts_and_ours::<VectorConv>(|| self.model(), swap_in, &x, &at);
        let expected = self.reference(&values);
        assert_eq!(expected.len(), got.len(), "{self:?}");
        for (ix, ((e, g), t)) in expected.iter().zip(&got).zip(&theirs).enumerate() {
            assert_eq!(e.to_bits(), g.to_bits(), "{self:?} at {ix}: {e} vs {g}");
            assert_near_tract(*t, *g, &format!("{self:?} at {ix}"));
        }
    }
}

fn case(
    input: [usize; 4],
    outputs: usize,
    kernel: usize,
    stride: usize,
    pads: Option<(usize, usize)>,
) -> Case {
    Case {
        input,
        outputs,
        kernel,
        stride,
        pads,
        relu6: false,
    }
}

#[test]
fn every_output_equals_the_definition_and_tracts_conv() {
    if !tile::supported() {
        return;
    }
    for relu6 in [false, true] {
        for c in [
            // EfficientNet's stem, smaller: 3×3 stride 2 over three colours, padded after.
            case([1, 3, 32, 32], 32, 3, 2, Some((0, 1))),
            case([1, 3, 17, 23], 32, 3, 2, None),
            // Rows that do not fill a run of pixels, channels that fill no panel.
            case([2, 2, 9, 7], 7, 5, 1, Some((2, 2))),
            case([1, 4, 12, 12], 13, 3, 1, Some((1, 1))),
            case([1, 1, 8, 8], 6, 2, 2, Some((0, 0))),
            // One output row: the last run short of `COLS` inside it.
            case([1, 2, 3, 21], 9, 3, 1, Some((0, 0))),
            // Many input channels (the synthetic preset's 3×3 over 32), stride 2.
            case([1, 32, 12, 12], 16, 3, 2, Some((1, 1))),
            case([1, 48, 7, 9], 8, 3, 1, Some((1, 1))),
        ] {
            Case { relu6, ..c }.same_values();
        }
    }
}

#[test]
fn channels_shared_among_threads_give_the_same_outputs() {
    use tract_linalg::multithread::{multithread_tract_scope, Executor};
    if !tile::supported() {
        return;
    }
    multithread_tract_scope(Executor::multithread(3), || {
        case([1, 3, 96, 96], 32, 3, 2, Some((0, 1))).same_values();
        case([2, 3, 40, 40], 25, 3, 1, None).same_values();
    });
}

#[test]
fn depthwise_pointwise_and_deep_convolutions_keep_their_ops() {
    // 1×1 (the pointwise op's), depthwise (the depthwise op's), and more taps
    // than a gathered block holds.
    let mut pointwise = case([1, 4, 8, 8], 8, 1, 1, Some((0, 0))).model();
    let mut deep = case([1, 64, 8, 8], 8, 3, 1, Some((1, 1))).model();
    assert_eq!(swap_in(&mut pointwise).unwrap(), 0);
    assert_eq!(swap_in(&mut deep).unwrap(), 0);
    let depthwise = crate::runtime::depthwise::tests::example_op();
    let mut graph = depthwise.alone(false).unwrap();
    assert!(graph.nodes().iter().all(|n| n.op_as::<VectorConv>().is_none()));
    graph = graph.into_decluttered().unwrap();
    assert_eq!(swap_in(&mut graph).unwrap(), 0);
}

/// A swapped-in op over `[1, 3, 16, 16]` to 8 channels (stride 2, ReLU6), for
/// other modules' tests.
pub(in crate::runtime) fn example_op() -> Option<VectorConv> {
    let mut model = Case {
        relu6: true,
        ..case([1, 3, 16, 16], 8, 3, 2, Some((0, 1)))
    }
    .model();
    swap_in(&mut model).unwrap();
    let node = model.nodes().iter().find_map(|n| n.op_as::<VectorConv>());
    node.cloned()
}
