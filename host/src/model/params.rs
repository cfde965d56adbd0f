//! Reading a module's parameters by path: for comparing checkpoints, importing
//! pretrained weights and exporting graphs.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// A parameter's dotted path (e.g. `vision.blocks.0.attention.query.weight`), shape
/// and values.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedParam {
    pub path: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

#[derive(Default)]
struct Collector {
    stack: Vec<String>,
    params: Vec<NamedParam>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        self.params.push(NamedParam {
            path: self.stack.join("."),
            shape: tensor.dims().to_vec(),
            values: tensor
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default(),
        });
    }
}

/// Every float parameter of `module`, in visiting order.
pub fn named_parameters<M: Module>(module: &M) -> Vec<NamedParam> {
    let mut collector = Collector::default();
    module.visit(&mut collector);
    collector.params
}

/// Largest absolute difference between two modules' parameters, or an error naming
/// the first path or shape that differs.
pub fn max_difference<M: Module>(a: &M, b: &M) -> Result<f32, String> {
    let (pa, pb) = (named_parameters(a), named_parameters(b));
    if pa.len() != pb.len() {
        return Err(format!("{} vs {} parameters", pa.len(), pb.len()));
    }
    let mut worst = 0f32;
    for (x, y) in pa.iter().zip(&pb) {
        if x.path != y.path || x.shape != y.shape {
            return Err(format!("{} {:?} vs {} {:?}", x.path, x.shape, y.path, y.shape));
        }
        for (u, v) in x.values.iter().zip(&y.values) {
            worst = worst.max((u - v).abs());
        }
    }
    Ok(worst)
}
