//! Multi-head scaled dot-product attention, used for self- and cross-attention.
//!
//! Parameter names follow BERT's (`query`, `key`, `value`, `output`) so pretrained
//! weights map one to one.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::Tensor;

#[derive(Config, Debug)]
pub struct AttentionConfig {
    pub d_model: usize,
    pub n_heads: usize,
    /// Width of the attended (key/value) sequence; `d_model` when absent.
    pub d_context: Option<usize>,
}

#[derive(Module, Debug)]
pub struct Attention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub output: Linear,
    n_heads: usize,
}

impl AttentionConfig {
    pub fn init(&self, device: &burn::tensor::Device) -> Attention {
        let d_context = self.d_context.unwrap_or(self.d_model);
        assert!(
            self.d_model.is_multiple_of(self.n_heads),
            "d_model {} must be a multiple of n_heads {}",
            self.d_model,
            self.n_heads
        );
        Attention {
            query: LinearConfig::new(self.d_model, self.d_model).init(device),
            key: LinearConfig::new(d_context, self.d_model).init(device),
            value: LinearConfig::new(d_context, self.d_model).init(device),
            output: LinearConfig::new(self.d_model, self.d_model).init(device),
            n_heads: self.n_heads,
        }
    }
}

impl Attention {
    pub fn heads(&self) -> usize {
        self.n_heads
    }

    pub fn d_head(&self) -> usize {
        self.query.weight.val().dims()[1] / self.n_heads
    }

    /// # Shapes
    /// - `x`: `[batch, q_len, d_model]`
    /// - `context`: `[batch, k_len, d_context]` (pass `x` for self-attention)
    /// - `bias`: added to the attention scores, broadcastable to `[batch, heads, q_len, k_len]`;
    ///   large negative values hide positions (padding, the future).
    /// - output: `[batch, q_len, d_model]`
    pub fn forward(&self, x: Tensor<3>, context: Tensor<3>, bias: Option<Tensor<4>>) -> Tensor<3> {
        let (k, v) = self.project_context(context);
        self.forward_projected(x, k, v, bias)
    }

    /// Keys and values of a context, split into heads: each `[batch, heads, k_len, d_head]`.
    /// Projected once, they can serve several query rows (rows of one image).
    pub fn project_context(&self, context: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        let [batch, k_len, _] = context.dims();
        let heads = self.n_heads;
        let d_head = self.key.weight.val().dims()[1] / heads;
        let split = |t: Tensor<3>| t.reshape([batch, k_len, heads, d_head]).swap_dims(1, 2);
        (
            split(self.key.forward(context.clone())),
            split(self.value.forward(context)),
        )
    }

    /// [`Attention::forward`] over keys and values from [`Attention::project_context`].
    pub fn forward_projected(
        &self,
        x: Tensor<3>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Option<Tensor<4>>,
    ) -> Tensor<3> {
        let [batch, q_len, d_model] = x.dims();
        let heads = self.n_heads;
        let d_head = d_model / heads;
        let q = self
            .query
            .forward(x)
            .reshape([batch, q_len, heads, d_head])
            .swap_dims(1, 2);
        let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d_head as f32).sqrt());
        if let Some(bias) = bias {
            scores = scores + bias;
        }
        let weights = softmax(scores, 3);
        let mixed = weights.matmul(v).swap_dims(1, 2).reshape([batch, q_len, d_model]);
        self.output.forward(mixed)
    }
}

/// Score bias hiding padded keys: `mask` is `[batch, k_len]` with 1 for real tokens.
/// Returns `[batch, 1, 1, k_len]`.
pub fn padding_bias(mask: Tensor<2>) -> Tensor<4> {
    let [batch, k_len] = mask.dims();
    (mask.neg().add_scalar(1.0))
        .mul_scalar(-1e4)
        .reshape([batch, 1, 1, k_len])
}

/// Score bias hiding future positions: `[1, 1, len, len]`.
pub fn causal_bias(len: usize, device: &burn::tensor::Device) -> Tensor<4> {
    // `tril_mask` is true outside the lower triangle: exactly the future positions.
    let future = Tensor::<2, burn::tensor::Bool>::tril_mask([len, len], 0, device);
    Tensor::<2>::zeros([len, len], device)
        .mask_fill(future, -1e4)
        .reshape([1, 1, len, len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    #[test]
    fn padded_keys_do_not_change_the_output() {
        let device = Device::flex();
        let attn = AttentionConfig::new(8, 2).init(&device);
        let x = Tensor::<3>::random([1, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        let extra = Tensor::<3>::random([1, 2, 8], Distribution::Normal(0.0, 1.0), &device);
        let padded = Tensor::cat(vec![x.clone(), extra], 1);
        let mask = Tensor::<2>::from_data(TensorData::from([[1.0f32, 1.0, 1.0, 0.0, 0.0]]), &device);
        let short = attn.forward(x.clone(), x.clone(), None);
        let long = attn.forward(x, padded, Some(padding_bias(mask)));
        let diff = (short - long).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn causal_bias_hides_the_future_only() {
        let bias = causal_bias(3, &Device::flex()).reshape([3, 3]).into_data();
        let v = bias.try_to_vec::<f32>().unwrap();
        // Row = query position, column = key position.
        assert_eq!(v, [0.0, -1e4, -1e4, 0.0, 0.0, -1e4, 0.0, 0.0, 0.0]);
    }
}
