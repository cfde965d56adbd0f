//! Caption-decoder dropout against burn's device generator. Its own test binary: the
//! generator is global to the process, so tests drawing random tensors on other
//! threads would interleave with the draws compared here.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use edgevlm::model::decoder::{CaptionDecoder, CaptionDecoderConfig};

fn config() -> CaptionDecoderConfig {
    CaptionDecoderConfig::new(20, 12)
        .with_d_model(16)
        .with_heads(2)
        .with_d_intermediate(32)
}

fn logits(decoder: &CaptionDecoder, device: &Device, seed: u64) -> Vec<f32> {
    device.seed(seed);
    let ids = Tensor::<2, Int>::from_data(TensorData::from([[2i64, 5, 7], [2, 9, 4]]), device);
    let image = Tensor::<3>::from_data(
        TensorData::new(
            (0..120).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
            [2, 5, 12],
        ),
        device,
    );
    decoder.forward(ids, image).into_data().try_to_vec().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn dropout_draws_from_the_device_seed_while_training_and_is_off_for_inference() {
    let device = Device::flex().autodiff();
    let dropped = config().with_dropout(Some(0.3)).init(&device);
    // The same weights (burn initialises parameters lazily, at first use).
    let plain = config().init(&device).load_record(dropped.clone().into_record());

    let training = logits(&dropped, &device, 11);
    // The same seed draws the same masks (what makes a resumed run repeat a step) ...
    assert_eq!(training, logits(&dropped, &device, 11));
    // ... another seed other masks, and no mask at all changes the logits too.
    assert!(max_diff(&training, &logits(&dropped, &device, 12)) > 1e-3);
    let undropped = logits(&plain, &device, 11);
    assert!(max_diff(&training, &undropped) > 1e-3);
    // For inference the dropped decoder is the plain one.
    let inference = logits(&dropped.valid(), &Device::flex(), 11);
    assert!(max_diff(&inference, &undropped) < 1e-5);
}
