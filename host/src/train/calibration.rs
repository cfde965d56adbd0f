//! Precise BatchNorm statistics for the grid encoder at the end of a run.

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::store::ImageStore;
use crate::model::EdgeVlm;

/// Training images whose statistics the grid encoder's BatchNorm keeps.
const CALIBRATION_IMAGES: usize = 2000;

/// The model with its grid encoder's BatchNorm statistics recomputed exactly on
/// the first [`CALIBRATION_IMAGES`] training images
/// ([`GridEncoder::recalibrate`](crate::model::grid::GridEncoder::recalibrate));
/// unchanged without a grid encoder.
pub fn recalibrate_grid(mut model: EdgeVlm, store: &ImageStore, device: &Device) -> EdgeVlm {
    if let Some(grid) = model.grid.take() {
        model.grid = Some(grid.recalibrate(&calibration_images(store, device)));
    }
    model
}

fn calibration_images(store: &ImageStore, device: &Device) -> Vec<Tensor<4>> {
    let s = store.config().image_size as usize;
    let indices: Vec<usize> = (0..store.len().min(CALIBRATION_IMAGES)).collect();
    indices
        .chunks(100)
        .map(|chunk| {
            Tensor::from_data(
                TensorData::new(store.batch(chunk), [chunk.len(), 3, s, s]),
                device,
            )
        })
        .collect()
}
