//! A small ONNX graph builder over `tract_onnx::pb` (the prost-generated protobuf
//! types): named values in, named values out, weights as initializers. Every block
//! exporter in `blocks.rs` is written against it.

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{self, attribute_proto::AttributeType, type_proto};

use super::quantize::{quantize_per_channel, WeightFormat};

/// The opset the graphs are written for: LayerNormalization needs 17, Gelu 20.
pub const OPSET: i64 = 20;
/// ONNX IR version of opset 20 (ONNX 1.15).
pub const IR_VERSION: i64 = 9;

/// A dimension of a graph input or output.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(usize),
    Named(&'static str),
}

/// An attribute value of a node.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

pub struct GraphBuilder {
    name: String,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    next_id: usize,
    /// How weight matrices are stored (f32, or int8 with per-channel scales).
    pub weights: WeightFormat,
}

fn value_info(name: &str, elem_type: DataType, dims: &[Dim]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                Dim::Named(s) => dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem_type as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl GraphBuilder {
    pub fn new(name: &str, weights: WeightFormat) -> Self {
        Self {
            name: name.to_string(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            next_id: 0,
            weights,
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next_id += 1;
        format!("{hint}_{}", self.next_id)
    }

    pub fn input_f32(&mut self, name: &str, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, DataType::Float, dims));
        name.to_string()
    }

    pub fn input_i64(&mut self, name: &str, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, DataType::Int64, dims));
        name.to_string()
    }

    /// Names `value` as a graph output (through an Identity node, so that any
    /// intermediate value can be exposed under a stable name).
    pub fn output(&mut self, value: &str, name: &str, dims: &[Dim]) {
        self.nodes.push(pb::NodeProto {
            input: vec![value.to_string()],
            output: vec![name.to_string()],
            name: format!("output_{name}"),
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.outputs.push(value_info(name, DataType::Float, dims));
    }

    /// An f32 constant.
    pub fn constant(&mut self, hint: &str, values: &[f32], dims: &[usize]) -> String {
        assert_eq!(
            values.len(),
            dims.iter().product::<usize>(),
            "constant {hint}: values vs dims"
        );
        let name = self.fresh(hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// An int64 constant (shapes, axes, indices).
    pub fn constant_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// A weight tensor: stored as f32, or as int8 with one scale per slice along
    /// `channel_axis` (the output channel) and dequantized in the graph.
    pub fn weight(&mut self, hint: &str, values: &[f32], dims: &[usize], channel_axis: usize) -> String {
        match self.weights {
            WeightFormat::F32 => self.constant(hint, values, dims),
            WeightFormat::Int8 => {
                let q = quantize_per_channel(values, dims, channel_axis);
                let name = self.fresh(hint);
                let quantized = format!("{name}_int8");
                self.initializers.push(pb::TensorProto {
                    name: quantized.clone(),
                    dims: dims.iter().map(|&d| d as i64).collect(),
                    data_type: DataType::Int8 as i32,
                    raw_data: q.values.iter().map(|&v| v as u8).collect(),
                    ..Default::default()
                });
                let scales = self.constant(&format!("{hint}_scale"), &q.scales, &[q.scales.len()]);
                self.nodes.push(pb::NodeProto {
                    input: vec![quantized, scales],
                    output: vec![name.clone()],
                    name: format!("dequantize_{name}"),
                    op_type: "DequantizeLinear".into(),
                    attribute: vec![attribute("axis", Attr::Int(channel_axis as i64))],
                    ..Default::default()
                });
                name
            }
        }
    }

    /// Rows `ids` of an embedding table `[rows, d]`. An int8 table stays int8 on
    /// the device: its rows are gathered first and then scaled by their own
    /// scales, the same products `DequantizeLinear` would compute, so a 30k-word
    /// vocabulary is never expanded to f32, at load or per call.
    pub fn gather_rows(&mut self, hint: &str, values: &[f32], dims: &[usize], ids: &str) -> String {
        let axis0 = || vec![("axis", Attr::Int(0))];
        match self.weights {
            WeightFormat::F32 => {
                let table = self.constant(hint, values, dims);
                self.node("Gather", &[&table, ids], axis0())
            }
            WeightFormat::Int8 => {
                let q = quantize_per_channel(values, dims, 0);
                let table = self.constant_i8(&format!("{hint}_int8"), &q.values, dims);
                let scales = self.constant(&format!("{hint}_scale"), &q.scales, &[dims[0], 1]);
                let rows = self.node("Gather", &[&table, ids], axis0());
                // ONNX TensorProto.DataType FLOAT.
                let rows = self.node("Cast", &[&rows], vec![("to", Attr::Int(1))]);
                let row_scales = self.node("Gather", &[&scales, ids], axis0());
                self.mul(&rows, &row_scales)
            }
        }
    }

    /// Builds part of the graph with f32 weights whatever the graph's format.
    pub fn f32_weights<T>(&mut self, build: impl FnOnce(&mut Self) -> T) -> T {
        let format = std::mem::replace(&mut self.weights, WeightFormat::F32);
        let out = build(self);
        self.weights = format;
        out
    }

    /// An int8 constant (quantized weights used directly by integer operators).
    pub fn constant_i8(&mut self, hint: &str, values: &[i8], dims: &[usize]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int8 as i32,
            raw_data: values.iter().map(|&v| v as u8).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds a node with `outputs` outputs and returns their names.
    pub fn node_multi(&mut self, op: &str, inputs: &[&str], outputs: usize) -> Vec<String> {
        let base = self.fresh(&op.to_lowercase());
        let names: Vec<String> = (0..outputs).map(|i| format!("{base}_{i}")).collect();
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: names.clone(),
            name: base,
            op_type: op.into(),
            ..Default::default()
        });
        names
    }

    /// Adds a node with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.into(),
            attribute: attrs.into_iter().map(|(n, a)| attribute(n, a)).collect(),
            ..Default::default()
        });
        out
    }

    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.node("Add", &[a, b], vec![])
    }

    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.node("Mul", &[a, b], vec![])
    }

    pub fn matmul(&mut self, a: &str, b: &str) -> String {
        self.node("MatMul", &[a, b], vec![])
    }

    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", &[x], vec![("perm", Attr::Ints(perm.to_vec()))])
    }

    /// Reshape; 0 keeps the input's dimension, -1 infers one.
    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let shape = self.constant_i64("shape", shape);
        self.node("Reshape", &[x, &shape], vec![])
    }

    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        let axes = self.constant_i64("axes", axes);
        self.node("Unsqueeze", &[x, &axes], vec![])
    }

    /// `x[.., start..end, ..]` along one axis (`end` may be a value name holding
    /// a one-element int64 tensor).
    pub fn slice(&mut self, x: &str, axis: i64, start: i64, end: SliceEnd) -> String {
        let starts = self.constant_i64("starts", &[start]);
        let ends = match end {
            SliceEnd::Fixed(e) => self.constant_i64("ends", &[e]),
            SliceEnd::Value(name) => name,
        };
        let axes = self.constant_i64("axes", &[axis]);
        self.node("Slice", &[x, &starts, &ends, &axes], vec![])
    }

    /// The size of `x` along `axis`, as a one-element int64 tensor.
    pub fn dim(&mut self, x: &str, axis: i64) -> String {
        self.node(
            "Shape",
            &[x],
            vec![("start", Attr::Int(axis)), ("end", Attr::Int(axis + 1))],
        )
    }

    pub fn finish(self) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "edgevlm".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(pb::GraphProto {
                name: self.name,
                node: self.nodes,
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

pub enum SliceEnd {
    Fixed(i64),
    Value(String),
}

fn attribute(name: &str, value: Attr) -> pb::AttributeProto {
    let mut a = pb::AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = AttributeType::Int as i32;
            a.i = i;
        }
        Attr::Ints(v) => {
            a.r#type = AttributeType::Ints as i32;
            a.ints = v;
        }
        Attr::Float(f) => {
            a.r#type = AttributeType::Float as i32;
            a.f = f;
        }
    }
    a
}
