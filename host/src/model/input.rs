//! Token ids and masks as the model's input tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};

/// A batch of texts as device tensors.
pub struct TextInput {
    pub ids: Tensor<2, Int>,
    pub mask: Tensor<2>,
}

pub fn text_input(ids: &[u32], mask: &[u32], batch: usize, len: usize, device: &Device) -> TextInput {
    TextInput {
        ids: Tensor::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [batch, len]),
            device,
        ),
        mask: Tensor::from_data(
            TensorData::new(mask.iter().map(|&m| m as f32).collect::<Vec<_>>(), [batch, len]),
            device,
        ),
    }
}
