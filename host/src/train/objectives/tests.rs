use super::*;
use crate::model::{EdgeVlm, EdgeVlmConfig};
use burn::optim::GradientsParams;
use burn::tensor::Device;
use burn::tensor::Distribution;
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::tokenizer::SpecialIds;
use edgevlm_shared::EncodedBatch;

#[test]
fn label_smoothing_mixes_the_target_and_the_mean_log_probability() {
    let device = Device::flex();
    let rows = [
        [2.0f32, 0.5, -1.0, 0.0],
        [0.1, 0.2, 0.3, 3.0],
        [1.0, 1.0, 1.0, 1.0],
    ];
    let (targets, weights) = ([0i64, 2, 1], [1.0f32, 2.0, 0.0]);
    let logits = Tensor::<2>::from_data(TensorData::from(rows), &device);
    let loss = |smoothing: f32| {
        smoothed_cross_entropy(logits.clone(), &targets, &weights, smoothing).into_scalar::<f32>()
    };
    // By hand: log-softmax per row, then (1 - s) * -log p[target] + s * mean(-log p).
    let expected = |s: f64| {
        let mut total = 0.0;
        for ((row, &t), &w) in rows.iter().zip(&targets).zip(&weights) {
            let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            let log_p: Vec<f64> = row.iter().map(|&v| v as f64 - lse).collect();
            let mean = log_p.iter().sum::<f64>() / log_p.len() as f64;
            total -= w as f64 * ((1.0 - s) * log_p[t as usize] + s * mean);
        }
        total / weights.iter().sum::<f32>() as f64
    };
    for s in [0.0, 0.1, 0.5] {
        assert!(
            (loss(s as f32) as f64 - expected(s)).abs() < 1e-5,
            "smoothing {s}"
        );
    }
    assert_eq!(
        loss(0.0),
        weighted_cross_entropy(logits.clone(), &targets, &weights).into_scalar::<f32>()
    );
}

/// Each objective can fit a fixed batch: its loss falls well below the start.
#[test]
fn contrastive_loss_fits_a_fixed_batch() {
    let device = Device::flex().autodiff();
    device.seed(1);
    let mut model = EdgeVlmConfig::tiny(30).init(&device);
    let images = Tensor::<4>::random([6, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let ids: Vec<u32> = (0..6).flat_map(|i| [2, 5 + i, 10 + i, 3]).collect();
    let text = text_input(&ids, &[1; 24], 6, 4, &device);
    let mut optim = crate::train::trainer::optimizer(&crate::train::TrainConfig::new());
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..30 {
        let image_tokens = model.tower_tokens(images.clone());
        let states = model.encode_text(text.ids.clone(), text.mask.clone());
        let (loss, _) = contrastive(&model, image_tokens, states, text.mask.clone());
        last = loss.clone().into_scalar::<f32>();
        first.get_or_insert(last);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    let first = first.unwrap();
    assert!(last < 0.5 * first, "ITC {first} -> {last}");
}

/// Share 0 draws exactly the hard negative; share 1 ignores the similarities and
/// picks every allowed index alike; in between, the mix of both. Never the
/// pair's own index or a disallowed one.
#[test]
fn random_negatives_mix_with_hard_ones_at_the_share_asked() {
    // Index 3 is far more similar than the rest; 0 is the pair itself, 5 is barred.
    let row = [0.9f32, 0.0, 0.1, 0.8, -0.2, 0.7];
    let allowed = |j: usize| j != 5;
    let (mut a, mut b) = (SplitMix64::new(9), SplitMix64::new(9));
    for _ in 0..200 {
        assert_eq!(
            negative(&row, 0, allowed, 0.0, &mut a),
            hard_negative(&row, 0, allowed, &mut b)
        );
    }
    let draws = 20_000;
    let counts = |share: f64| {
        let mut rng = SplitMix64::new(11);
        let mut counts = [0usize; 6];
        for _ in 0..draws {
            counts[negative(&row, 0, allowed, share, &mut rng).unwrap()] += 1;
        }
        counts
    };
    let uniform = counts(1.0);
    assert_eq!((uniform[0], uniform[5]), (0, 0));
    for &c in &uniform[1..5] {
        assert!((c as f64 / draws as f64 - 0.25).abs() < 0.015, "{uniform:?}");
    }
    // exp(8) dwarfs exp(1), exp(0) and exp(-2): hard sampling picks 3 almost always.
    let hard_share_of_3 = counts(0.0)[3] as f64 / draws as f64;
    assert!(hard_share_of_3 > 0.99, "{hard_share_of_3}");
    let half = counts(0.5);
    let expected = 0.5 * hard_share_of_3 + 0.5 * 0.25;
    assert!(
        (half[3] as f64 / draws as f64 - expected).abs() < 0.015,
        "{half:?}"
    );
    assert_eq!((half[0], half[5]), (0, 0));
    let mut rng = SplitMix64::new(1);
    assert_eq!(negative(&row, 0, |j| j == 0, 1.0, &mut rng), None);
}

const SPECIAL: SpecialIds = SpecialIds {
    pad: 0,
    unk: 1,
    cls: 2,
    sep: 3,
    mask: 4,
};

/// Every variant hides exactly one real token, a different one each time, and
/// keeps the rest; a caption with fewer real tokens than variants gives fewer.
#[test]
fn hiding_one_token_per_variant() {
    // [CLS] 7 8 9 [SEP] | [CLS] 11 [SEP] [PAD] [PAD]
    let ids = [2, 7, 8, 9, 3, 2, 11, 3, 0, 0];
    let mask = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    let mut rng = SplitMix64::new(4);
    let hidden = hide_one_token(&ids, &mask, 5, SPECIAL, 3, &mut rng);
    assert_eq!(hidden.caption_row, vec![0, 0, 0, 1]);
    let mut first_targets = hidden.targets[..3].to_vec();
    first_targets.sort_unstable();
    assert_eq!(first_targets, vec![7, 8, 9]);
    assert_eq!(hidden.targets[3], 11);
    for (r, row) in hidden.ids.chunks(5).enumerate() {
        let source = &ids[hidden.caption_row[r] as usize * 5..][..5];
        let changed: Vec<usize> = (0..5).filter(|&i| row[i] != source[i]).collect();
        assert_eq!(changed.len(), 1, "row {r}: {row:?}");
        assert_eq!(row[changed[0]], SPECIAL.mask);
        assert_eq!(source[changed[0]] as i64, hidden.targets[r]);
    }
    assert_eq!(hidden.mask.len(), hidden.ids.len());
}

/// The spatial head learns to name the hidden word from the image: two images,
/// the same caption, different words hidden behind it.
#[test]
fn spatial_masked_language_model_fits_a_fixed_batch() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let mut cfg = EdgeVlmConfig::tiny(30);
    cfg.grid = Some(cfg.default_grid());
    cfg.spatial_mlm = true;
    let mut model = cfg.init(&device);
    let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let hidden = HiddenTokens {
        ids: vec![2, 4, 9, 3, 2, 4, 9, 3],
        mask: vec![1; 8],
        targets: vec![12, 17],
        caption_row: vec![0, 1],
    };
    let mut optim = crate::train::trainer::optimizer(&crate::train::TrainConfig::new());
    let mut losses = Vec::new();
    for _ in 0..40 {
        let head = model.spatial_mlm.as_ref().unwrap();
        let cells = head.cells(model.grid.as_ref().unwrap().forward(images.clone()));
        let loss = spatial_masked_language_model(&model, head, cells, &hidden);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(first > 2.0, "starts near ln(30): {first}");
    assert!(last < 0.1 * first, "spatial MLM {first} -> {last}");
}

#[test]
fn masked_image_features_fit_a_fixed_batch() {
    let device = Device::flex().autodiff();
    device.seed(2);
    let mut model = EdgeVlmConfig::tiny(30).init(&device);
    let images = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let ids: Vec<u32> = (0..4).flat_map(|i| [2, 5 + i, 3]).collect();
    let text = text_input(&ids, &[1; 12], 4, 3, &device);
    let mut optim = crate::train::trainer::optimizer(&crate::train::TrainConfig::new());
    let mut losses = Vec::new();
    for step in 0..40 {
        let states = model.encode_text(text.ids.clone(), text.mask.clone());
        let mut rng = SplitMix64::new(step % 2);
        let loss = masked_image_features(&model, images.clone(), states, text.mask.clone(), 0.5, &mut rng);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    // Normalised targets: an untrained head scores about 1.
    assert!(losses[0] > 0.5 && losses[0] < 3.0, "{}", losses[0]);
    assert!(
        losses[39] < 0.7 * losses[0],
        "MIM {} -> {}",
        losses[0],
        losses[39]
    );
}

/// Encoding each distinct question once gives the loss and gradients of
/// encoding every row.
#[test]
fn shared_question_encoding_matches_row_by_row() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let model = EdgeVlmConfig::tiny(30).with_answers(4).init(&device);
    let images = Tensor::<4>::random([5, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let question = EncodedBatch {
        ids: vec![2, 7, 9, 3, 2, 8, 3, 0, 2, 7, 9, 3, 2, 7, 9, 3, 2, 8, 3, 0],
        mask: vec![1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
        batch: 5,
        seq_len: 4,
    };
    let answers = [0i64, 1, 2, 0, 3];
    // Each loss gets its own forward pass: a graph can be walked backwards once.
    let shared = vqa_loss(&model, model.encode_image(images.clone()), &question, &answers);
    let text = text_input(&question.ids, &question.mask, 5, 4, &device);
    let logits = model.vqa_logits_from(model.encode_image(images), text.ids, text.mask);
    let direct = weighted_cross_entropy(logits, &answers, &[1.0; 5]);
    let (a, b) = (
        shared.clone().into_scalar::<f32>(),
        direct.clone().into_scalar::<f32>(),
    );
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    let grad = |loss: Tensor<1>| {
        let grads = loss.backward();
        let w = model.text.word_embeddings.weight.val();
        w.grad(&grads)
            .expect("word embeddings get a gradient")
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let (ga, gb) = (grad(shared), grad(direct));
    let worst = ga
        .iter()
        .zip(&gb)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        ga.iter().any(|v| *v != 0.0) && worst < 1e-6,
        "max gradient difference {worst}"
    );
}

/// The focus loss moves the spatial head's focus onto the cell each row names,
/// different cells for the same question about different images.
#[test]
fn the_spatial_focus_learns_the_cell_of_the_named_object() {
    use crate::model::VqaHeadKind;
    let device = Device::flex().autodiff();
    device.seed(7);
    let cfg = EdgeVlmConfig::tiny(30)
        .with_answers(3)
        .with_vqa_head_kind(VqaHeadKind::Spatial);
    let mut model = cfg.init(&device);
    let grid = model.spatial_vqa.as_ref().unwrap().grid();
    let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let question = EncodedBatch {
        ids: vec![2, 7, 9, 3, 2, 7, 9, 3],
        mask: vec![1; 8],
        batch: 2,
        seq_len: 4,
    };
    let focus = [Some([0.1, 0.1]), Some([0.9, 0.6])];
    let cells: Vec<usize> = focus.iter().map(|f| focus_cell(f.unwrap(), grid)).collect();
    assert_eq!(cells, [0, (grid * 6 / 10) * grid + grid * 9 / 10]);
    let mut optim = crate::train::trainer::optimizer(&crate::train::TrainConfig::new());
    let mut losses = Vec::new();
    for _ in 0..60 {
        let encoded = model.encode_vqa_image(images.clone());
        let losses_now = vqa_losses(&model, encoded, &question, &[0, 1], &focus, &[]);
        let (answer, loss) = (losses_now.answer, losses_now.focus);
        let loss = loss.expect("rows with a focus give a focus loss");
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads((answer + loss).backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(first > 2.0, "starts near ln({}): {first}", grid * grid);
    assert!(last < 0.2 * first, "focus {first} -> {last}");
    let encoded = model.encode_vqa_image(images);
    let text = text_input(&question.ids, &question.mask, 2, 4, &device);
    let states = model.encode_text(text.ids, text.mask.clone());
    let (_, weights) = model.answer_logits_with_focus(encoded, states, text.mask);
    let weights = weights.unwrap().into_data().try_to_vec::<f32>().unwrap();
    for (row, &cell) in cells.iter().enumerate() {
        let row = &weights[row * grid * grid..(row + 1) * grid * grid];
        let best = row
            .iter()
            .enumerate()
            .fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
        assert_eq!(best, cell, "row focus {row:?}");
    }
    // A fused head has no focus: the loss is the answers' alone.
    let fused = EdgeVlmConfig::tiny(30).with_answers(3).init(&device);
    let encoded = fused.encode_image(Tensor::random(
        [2, 3, 16, 16],
        Distribution::Normal(0.0, 1.0),
        &device,
    ));
    assert!(vqa_losses(&fused, encoded, &question, &[0, 1], &focus, &[])
        .focus
        .is_none());
}

/// The counting read-out's loss averages over the rows that state a count, and
/// teaches the read-out those counts.
#[test]
fn the_count_loss_teaches_the_read_out_the_stated_counts() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let config = EdgeVlmConfig::tiny(30).with_answers(3);
    let mut model = config.clone().with_vqa_count(true).init(&device);
    let images = Tensor::<4>::random([3, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let question = EncodedBatch {
        ids: vec![2, 7, 9, 3, 2, 8, 3, 0, 2, 11, 12, 3],
        mask: vec![1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1],
        batch: 3,
        seq_len: 4,
    };
    let count = |model: &EdgeVlm, counts: &[Option<usize>]| {
        let encoded = model.encode_vqa_image(images.clone());
        vqa_losses(model, encoded, &question, &[0, 1, 2], &[], counts).count
    };
    let value = |loss: Option<Tensor<1>>| loss.expect("a count loss").into_scalar::<f32>();
    let both = value(count(&model, &[Some(3), None, Some(1)]));
    let (first, last) = (
        value(count(&model, &[Some(3), None, None])),
        value(count(&model, &[None, None, Some(1)])),
    );
    assert!(
        (both - (first + last) / 2.0).abs() < 1e-5,
        "{both} vs {first}, {last}"
    );
    assert!(count(&model, &[None, None, None]).is_none());
    let plain = config.init(&device);
    assert!(
        count(&plain, &[Some(3), None, Some(1)]).is_none(),
        "no read-out, no loss"
    );

    let mut optim = crate::train::trainer::optimizer(&crate::train::TrainConfig::new());
    let mut losses = Vec::new();
    for _ in 0..80 {
        let loss = count(&model, &[Some(3), None, Some(1)]).expect("a count loss");
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(first > 0.5, "the read-out starts far from the counts: {first}");
    assert!(last < 0.05, "the read-out learns them: {first} -> {last}");
}
