//! Depthwise convolutions (EfficientNet's 3×3 and 5×5 layers) as vector loops,
//! swapped in for tract's own op when a graph is loaded.
//!
//! tract 0.23 has a vectorised depthwise kernel for wasm only; on x86_64 and
//! aarch64 its op walks every output's taps one scalar at a time: 2.8 GFLOP/s and
//! half the image encoder's time (`bench --profile`). Here each channel's plane is
//! copied once with its padding written out as zeros and split by stride, so that
//! the whole plane's outputs are one run of vector blocks (`rows`, `vector`); a
//! Clip after it (ReLU6) is applied on the way out instead of as another pass.
//!
//! Every output sums the same terms in the same order as tract's op on x86_64
//! (the bias, then the taps row by row, each a multiply then an add, never fused;
//! a padding tap adds an exact zero), so there outputs equal tract's to the bit,
//! and this op gives the same bits on aarch64, where tract's own differed by an
//! ulp: parity and host/device equality hold as they did.

mod blocked;
mod lanes;
mod rows;
mod vector;

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::blocked::{Blockable, BLOCK};
use super::swap::{conv_graph, race_graph, swap_each, Clamp, Fold};
use blocked::LaneWeights;
use rows::Geometry;

/// One depthwise convolution: its geometry and its weights, read from the graph's
/// constants at load.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorDepthwise {
    geometry: Geometry,
    output_shape: TVec<usize>,
    /// `[channels, 1, kernel_h, kernel_w]`.
    kernel: Arc<Tensor>,
    /// One per channel, or one for all.
    bias: Arc<Tensor>,
    /// A Clip folded in from the graph.
    clamp: Clamp,
    /// What it replaced, to rebuild tract's own op beside it (`bench --profile`).
    conv: Conv,
    input_shape: TVec<usize>,
    /// The weights as the loops read them with channels in blocks of eight in
    /// and out (`crate::runtime::blocked`), where it runs so.
    lanes: Option<Arc<LaneWeights>>,
}

// Ops are equal when they compute the same: geometry, weights and bounds.
impl Eq for VectorDepthwise {}

/// Replaces every depthwise `Conv` this op can run (f32, NCHW, 2-D, undilated,
/// constant weights, concrete shapes) in a decluttered model. Returns how many.
pub fn swap_in(model: &mut TypedModel) -> TractResult<usize> {
    swap_each(model, |model, node| match node.op_as::<Conv>() {
        Some(conv) => VectorDepthwise::for_conv(model, node, conv),
        None => Ok(None),
    })
}

impl Fold for VectorDepthwise {
    fn fold_clamp(&mut self, bounds: (f32, f32)) {
        self.clamp = Some(bounds);
    }
}

impl VectorDepthwise {
    /// The op for this convolution node, or `None` where tract's own op stays.
    fn for_conv(model: &TypedModel, node: &TypedNode, conv: &Conv) -> TractResult<Option<Self>> {
        let spec = &conv.pool_spec;
        let channels = conv.group;
        if conv.q_params.is_some()
            || channels < 2
            || spec.input_channels != channels
            || spec.output_channels != channels
            || conv.kernel_fmt != KernelFormat::OIHW
            || spec.rank() != 2
            || spec.dilations().iter().any(|&d| d != 1)
            || node.inputs.len() != 3
        {
            return Ok(None);
        }
        let has_batch = match spec.data_format {
            DataFormat::NCHW => true,
            DataFormat::CHW => false,
            DataFormat::NHWC | DataFormat::HWC => return Ok(None),
        };
        let input = model.outlet_fact(node.inputs[0])?;
        let kernel = model.outlet_fact(node.inputs[1])?;
        let bias = model.outlet_fact(node.inputs[2])?;
        let output = &node.outputs[0].fact;
        let (Some(in_shape), Some(out_shape), Some(kernel), Some(bias)) = (
            input.shape.as_concrete(),
            output.shape.as_concrete(),
            kernel.konst.as_ref(),
            bias.konst.as_ref(),
        ) else {
            return Ok(None);
        };
        if input.datum_type != f32::datum_type()
            || output.datum_type != f32::datum_type()
            || kernel.datum_type() != f32::datum_type()
            || bias.datum_type() != f32::datum_type()
        {
            return Ok(None);
        }
        let (batch, in_hw) = if has_batch {
            (in_shape[0], &in_shape[2..])
        } else {
            (1, &in_shape[1..])
        };
        let (kernel_h, kernel_w) = (spec.kernel_shape[0], spec.kernel_shape[1]);
        if kernel.shape() != [channels, 1, kernel_h, kernel_w]
            || !(bias.len() == 1 || bias.len() == channels)
            || in_shape.len() != 3 + has_batch as usize
        {
            return Ok(None);
        }
        let padding = spec.computed_padding(in_hw);
        let (out_h, out_w) = (padding[0].convoluted, padding[1].convoluted);
        let expected: TVec<usize> = if has_batch {
            tvec![batch, channels, out_h, out_w]
        } else {
            tvec![channels, out_h, out_w]
        };
        if expected.as_slice() != out_shape {
            return Ok(None);
        }
        let geometry = Geometry {
            batch,
            channels,
            in_h: in_hw[0],
            in_w: in_hw[1],
            out_h,
            out_w,
            kernel_h,
            kernel_w,
            stride_h: spec.stride(0),
            stride_w: spec.stride(1),
            pad_top: padding[0].pad_before,
            pad_left: padding[1].pad_before,
        };
        Ok(Some(Self {
            geometry,
            output_shape: expected,
            kernel: kernel.clone(),
            bias: bias.clone(),
            clamp: None,
            conv: conv.clone(),
            input_shape: in_shape.into(),
            lanes: None,
        }))
    }

    /// This convolution alone, as a graph with tract's own op or with this one,
    /// optimized, so that the two can be timed on the same sizes and weights.
    pub fn alone(&self, ours: bool) -> TractResult<TypedModel> {
        let model = conv_graph(
            &self.conv,
            &self.input_shape,
            self.kernel.clone(),
            self.bias.clone(),
            self.clamp,
        )?;
        race_graph(model, ours, swap_in)
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }
}

impl Blockable for VectorDepthwise {
    fn can_block(&self) -> bool {
        self.geometry.batch == 1 && self.geometry.channels.is_multiple_of(BLOCK)
    }

    fn reads_blocked(&self) -> bool {
        true
    }

    fn set_blocked(&mut self) -> TractResult<()> {
        let g = &self.geometry;
        let (kernel, bias) = (self.kernel.try_as_plain_ram()?, self.bias.try_as_plain_ram()?);
        let (kernel, bias) = (kernel.as_slice::<f32>()?, bias.as_slice::<f32>()?);
        let lanes = LaneWeights::pack(kernel, bias, g.channels, g.kernel_h * g.kernel_w);
        self.lanes = Some(Arc::new(lanes));
        Ok(())
    }
}

impl Op for VectorDepthwise {
    fn name(&self) -> StaticName {
        "VectorDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        Ok(vec![format!(
            "{}x{} stride {}x{} pad {},{} on {}x{}x{}",
            g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_top, g.pad_left, g.channels, g.in_h, g.in_w
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for VectorDepthwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let g = &self.geometry;
        ensure!(
            input.len() == g.batch * g.channels * g.in_h * g.in_w,
            "VectorDepthwise: input has {} values, expected {}x{}x{}x{}",
            input.len(),
            g.batch,
            g.channels,
            g.in_h,
            g.in_w
        );
        // SAFETY: f32 has no invalid bit patterns, and `run` writes every output
        // (each row is the bias plus its taps, border or not) before anything reads it.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.output_shape)? };
        let (kernel, bias) = (self.kernel.try_as_plain_ram()?, self.bias.try_as_plain_ram()?);
        let mut view = output.try_as_plain_ram_mut()?;
        let (kernel, bias) = (kernel.as_slice::<f32>()?, bias.as_slice::<f32>()?);
        let (blocked, kernel, bias) = match &self.lanes {
            Some(lanes) => (true, &lanes.taps[..], &lanes.bias[..]),
            None => (false, kernel, bias),
        };
        g.run(
            blocked,
            input,
            kernel,
            bias,
            self.clamp,
            view.as_slice_mut::<f32>()?,
        )?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for VectorDepthwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "VectorDepthwise takes one input");
        Ok(tvec!(f32::fact(&self.output_shape)))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geometry;
        let points = g.batch * g.channels * g.out_h * g.out_w;
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            (points * g.kernel_h * g.kernel_w).into()
        )))
    }

    as_op!();
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};

    /// A graph of one depthwise convolution, optimized by tract alone or with the swap.
    fn conv_model(
        input: &[usize],
        kernel: usize,
        stride: usize,
        padding: PaddingSpec,
        bias_per_channel: bool,
        dilation: usize,
        relu6: bool,
    ) -> TypedModel {
        let channels = input[1];
        let weights: Vec<f32> = (0..channels * kernel * kernel).map(weight).collect();
        let weights = Tensor::from_shape(&[channels, 1, kernel, kernel], &weights).unwrap();
        let bias = if bias_per_channel {
            let b: Vec<f32> = (0..channels).map(bias_of).collect();
            Tensor::from_shape(&[channels], &b).unwrap()
        } else {
            tensor0(0f32)
        };
        let spec = PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![kernel, kernel],
            padding,
            dilations: Some(tvec![dilation, dilation]),
            strides: Some(tvec![stride, stride]),
            input_channels: channels,
            output_channels: channels,
        };
        let conv = Conv {
            pool_spec: spec,
            kernel_fmt: KernelFormat::OIHW,
            group: channels,
            q_params: None,
        };
        let clamp = relu6.then_some((0.0, 0.3));
        conv_graph(&conv, input, weights.into(), bias.into(), clamp).unwrap()
    }

    fn run(model: TypedModel, input: &Tensor) -> Tensor {
        let plan = model.into_runnable().unwrap();
        plan.run(tvec!(input.clone().into_tvalue()))
            .unwrap()
            .remove(0)
            .into_tensor()
    }

    fn weight(i: usize) -> f32 {
        (i as f32 * 0.37).sin() * 0.5
    }

    fn bias_of(channel: usize) -> f32 {
        channel as f32 * 0.01 - 0.1
    }

    /// The convolution by its definition, in the order the op promises: the bias,
    /// then each in-bounds tap row by row, a multiply then an add.
    fn reference(
        input: &[usize],
        values: &[f32],
        k: usize,
        stride: usize,
        padding: &PaddingSpec,
        bias: bool,
        relu6: bool,
    ) -> Vec<f32> {
        let (n, c, h, w) = (input[0], input[1], input[2], input[3]);
        let pads = padding.compute(&[h, w], &[k, k], &[1, 1], &[stride, stride]);
        let (pt, pl) = (pads[0].pad_before as isize, pads[1].pad_before as isize);
        let mut out = Vec::new();
        for plane in 0..n * c {
            let ch = plane % c;
            for oy in 0..pads[0].convoluted {
                for ox in 0..pads[1].convoluted {
                    let mut sum = if bias { bias_of(ch) } else { 0.0 };
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * stride + ky) as isize - pt;
                            let ix = (ox * stride + kx) as isize - pl;
                            if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                let x = values[(plane * h + iy as usize) * w + ix as usize];
                                sum += weight((ch * k + ky) * k + kx) * x;
                            }
                        }
                    }
                    out.push(if relu6 { sum.clamp(0.0, 0.3) } else { sum });
                }
            }
        }
        out
    }

    /// The swapped graph equals the definition exactly, on every architecture, and
    /// tract's own op within rounding (x86_64: exactly; aarch64's tract may fuse).
    fn same_values(
        input: &[usize],
        kernel: usize,
        stride: usize,
        padding: PaddingSpec,
        bias: bool,
        relu6: bool,
    ) {
        let len: usize = input.iter().product();
        let values: Vec<f32> = (0..len).map(|i| ((i as f32) * 0.013).cos()).collect();
        let x = Tensor::from_shape(input, &values).unwrap();
        let tract = conv_model(input, kernel, stride, padding.clone(), bias, 1, relu6)
            .into_optimized()
            .unwrap();
        assert!(tract
            .nodes()
            .iter()
            .all(|n| n.op_as::<VectorDepthwise>().is_none()));
        let mut ours = conv_model(input, kernel, stride, padding.clone(), bias, 1, relu6)
            .into_decluttered()
            .unwrap();
        assert_eq!(swap_in(&mut ours).unwrap(), 1, "{input:?} k{kernel} s{stride}");
        let ours = ours.into_optimized().unwrap();
        // A Clip is folded in: the depthwise op is the graph's last node.
        let last = ours.node(ours.output_outlets().unwrap()[0].node);
        assert!(
            last.op_as::<VectorDepthwise>().is_some(),
            "{input:?} k{kernel} s{stride}"
        );
        let expected = reference(input, &values, kernel, stride, &padding, bias, relu6);
        let (theirs, got) = (run(tract, &x), run(ours, &x));
        assert_eq!(theirs.shape(), got.shape());
        let (theirs, got) = (
            theirs.try_as_plain_ram().unwrap(),
            got.try_as_plain_ram().unwrap(),
        );
        let (theirs, got) = (theirs.as_slice::<f32>().unwrap(), got.as_slice::<f32>().unwrap());
        assert_eq!(expected.len(), got.len());
        for (ix, ((e, g), t)) in expected.iter().zip(got).zip(theirs).enumerate() {
            let at = format!("{input:?} k{kernel} s{stride} relu6 {relu6} at {ix}");
            assert_eq!(e, g, "{at}");
            if cfg!(target_arch = "x86_64") {
                assert_eq!(t, g, "{at}: tract's op");
            } else {
                assert!(
                    (t - g).abs() <= 1e-6 * t.abs().max(1.0),
                    "{at}: tract's op {t} vs {g}"
                );
            }
        }
    }

    #[test]
    fn every_output_equals_tracts_own_depthwise_op() {
        let explicit = |p: usize| PaddingSpec::Explicit(tvec![p, p], tvec![p, p]);
        for relu6 in [false, true] {
            same_values(&[1, 8, 17, 19], 3, 1, explicit(1), true, relu6);
            same_values(&[1, 8, 40, 37], 3, 2, explicit(1), true, relu6);
            same_values(&[1, 5, 16, 16], 3, 2, PaddingSpec::SameUpper, false, relu6);
            same_values(&[1, 6, 14, 14], 5, 1, explicit(2), true, relu6);
            same_values(&[1, 6, 14, 13], 5, 2, PaddingSpec::SameUpper, true, relu6);
            same_values(&[2, 4, 7, 7], 5, 1, explicit(2), true, relu6);
            same_values(&[1, 3, 4, 4], 5, 1, explicit(2), true, relu6);
            same_values(&[1, 4, 9, 9], 3, 1, PaddingSpec::Valid, true, relu6);
            // Other kernels and strides take the tap-by-tap rows, on planes as
            // wide as `lanes` leaves to them.
            same_values(&[1, 4, 20, 20], 7, 1, explicit(3), true, relu6);
            same_values(&[1, 4, 50, 50], 3, 3, explicit(1), true, relu6);
            // 5×5 on planes as wide as `lanes` leaves to `square`.
            same_values(&[2, 4, 18, 18], 5, 1, explicit(2), true, relu6);
            same_values(&[1, 6, 20, 33], 5, 2, PaddingSpec::SameUpper, true, relu6);
            // Small planes, 32 channels at a time (`lanes`): groups that end
            // short and that cross from one image of the batch to the next.
            same_values(&[2, 5, 7, 7], 5, 1, explicit(2), true, relu6);
            same_values(&[1, 11, 14, 14], 5, 2, PaddingSpec::SameUpper, false, relu6);
            same_values(&[1, 4, 12, 12], 7, 1, explicit(3), true, relu6);
            same_values(&[1, 4, 12, 12], 3, 3, explicit(1), true, relu6);
        }
    }

    #[test]
    fn planes_shared_among_threads_give_the_same_outputs() {
        use tract_linalg::multithread::{multithread_tract_scope, Executor};
        // Above tract's threading threshold (32,768 values), so the planes are split.
        multithread_tract_scope(Executor::multithread(3), || {
            same_values(&[2, 12, 48, 48], 3, 2, PaddingSpec::SameUpper, true, true);
            same_values(&[1, 20, 40, 40], 5, 1, PaddingSpec::SameUpper, true, false);
            // Small planes: chunks of planes that start inside a group of 32.
            let explicit = PaddingSpec::Explicit(tvec![2, 2], tvec![2, 2]);
            same_values(&[1, 701, 7, 7], 5, 1, explicit, true, true);
        });
    }

    /// A swapped-in op over `[1, 8, 16, 16]` (3×3, ReLU6), for other modules' tests.
    pub(in crate::runtime) fn example_op() -> VectorDepthwise {
        let mut model = conv_model(&[1, 8, 16, 16], 3, 1, PaddingSpec::SameUpper, true, 1, true)
            .into_decluttered()
            .unwrap();
        swap_in(&mut model).unwrap();
        let node = model.nodes().iter().find_map(|n| n.op_as::<VectorDepthwise>());
        node.expect("the convolution was swapped").clone()
    }

    #[test]
    fn other_convolutions_keep_tracts_op() {
        let mut dilated = conv_model(&[1, 4, 8, 8], 3, 1, PaddingSpec::SameUpper, true, 2, false);
        assert_eq!(swap_in(&mut dilated).unwrap(), 0);
    }
}
