//! Parity of every exported block and graph with the burn modules they mirror:
//! tract runs the ONNX, burn runs the module, on the same inputs.

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use edgevlm_shared::bundle::io;
use prost::Message;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::{Framework, InferenceModelExt, IntoRunnable, TValue, Tensor as TractTensor};

use super::blocks;
use super::graphs;
use super::onnx::{Dim, GraphBuilder};
use super::quantize::WeightFormat;
use crate::model::fusion::FusionKind;
use crate::model::image_tower::ImageTowerConfig;
use crate::model::{EdgeVlm, EdgeVlmConfig, VqaHeadKind};

fn run(model: ModelProto, inputs: Vec<TractTensor>) -> Vec<Vec<f32>> {
    let bytes = model.encode_to_vec();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("graph loads in tract");
    let inputs: tract_onnx::prelude::TVec<TValue> = inputs.into_iter().map(TValue::from).collect();
    plan.run(inputs)
        .expect("graph runs")
        .iter()
        .map(|v| v.to_plain_array_view::<f32>().unwrap().iter().copied().collect())
        .collect()
}

fn burn_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn f32_tensor<const D: usize>(t: &Tensor<D>) -> TractTensor {
    TractTensor::from_shape(&t.dims(), &burn_values(t.clone())).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const IDS: [i64; 10] = [2, 7, 9, 11, 3, 2, 5, 3, 0, 0];
const MASK: [f32; 10] = [1., 1., 1., 1., 1., 1., 1., 1., 0., 0.];

fn text_inputs(device: &Device) -> (Tensor<2, Int>, Tensor<2>, TractTensor, TractTensor) {
    (
        Tensor::from_data(TensorData::new(IDS.to_vec(), [2, 5]), device),
        Tensor::from_data(TensorData::new(MASK.to_vec(), [2, 5]), device),
        TractTensor::from_shape(&[2, 5], &IDS).unwrap(),
        TractTensor::from_shape(&[2, 5], &MASK).unwrap(),
    )
}

/// A tiny model whose weights are random but fixed, with a stem, a VQA head and
/// non-trivial LayerNorm parameters (trained-looking, not all ones).
fn model(kind: FusionKind, device: &Device) -> EdgeVlm {
    device.seed(7);
    let mut cfg = EdgeVlmConfig::tiny(30).with_answers(6);
    cfg.fusion.kind = kind;
    // The cross-attention model's VQA head counts too: both heads are exported.
    cfg.vqa_count = kind == FusionKind::CrossAttention;
    if let ImageTowerConfig::Vit(vit) = &mut cfg.vision {
        vit.stem_channels = vec![4];
        vit.patch_size = 8;
    }
    cfg.init(device)
}

#[test]
fn blocks_match_burn() {
    let device = Device::flex();
    let m = model(FusionKind::CrossAttention, &device);
    let x = Tensor::<3>::random([2, 5, 32], Distribution::Normal(0.0, 1.0), &device);
    let image = Tensor::<3>::random([2, 3, 32], Distribution::Normal(0.0, 1.0), &device);
    let (_, mask, _, tract_mask) = text_inputs(&device);
    let d = Dim::Fixed(32);
    let build = |f: &dyn Fn(&mut GraphBuilder, &str, &str, &str) -> String| {
        let mut g = GraphBuilder::new("block", WeightFormat::F32);
        let x = g.input_f32("x", &[Dim::Fixed(2), Dim::Fixed(5), d.clone()]);
        let c = g.input_f32("c", &[Dim::Fixed(2), Dim::Fixed(3), d.clone()]);
        let mask = g.input_f32("mask", &[Dim::Fixed(2), Dim::Fixed(5)]);
        let y = f(&mut g, &x, &c, &mask);
        g.output(&y, "y", &[Dim::Named("a"), Dim::Named("b"), d.clone()]);
        g.finish()
    };
    let inputs = || vec![f32_tensor(&x), f32_tensor(&image), tract_mask.clone()];
    let layer = &m.fusion.layers[0];
    let cases: Vec<(&str, ModelProto, Tensor<3>)> = vec![
        (
            "feed_forward",
            build(&|g, x, _, _| blocks::feed_forward(g, x, &layer.feed_forward)),
            layer.feed_forward.forward(x.clone()),
        ),
        (
            "layer_norm",
            build(&|g, x, _, _| blocks::layer_norm(g, x, &m.decoder.norm, blocks::eps::DECODER)),
            m.decoder.norm.forward(x.clone()),
        ),
        (
            "cross_attention",
            build(&|g, x, c, _| blocks::attention(g, x, c, None, layer.cross_attention.as_ref().unwrap())),
            layer
                .cross_attention
                .as_ref()
                .unwrap()
                .forward(x.clone(), image.clone(), None),
        ),
        (
            "bert_layer_with_padding_and_cross_attention",
            build(&|g, x, c, mask| {
                let bias = blocks::padding_bias(g, mask);
                blocks::bert_layer(g, x, Some(&bias), Some((c, None)), layer, blocks::eps::BERT)
            }),
            layer.forward(
                x.clone(),
                Some(crate::model::attention::padding_bias(mask.clone())),
                Some((image.clone(), None)),
            ),
        ),
    ];
    for (name, graph, expected) in cases {
        let got = run(graph, inputs());
        let diff = max_diff(&got[0], &burn_values(expected));
        assert!(diff < 1e-5, "{name}: max |tract - burn| = {diff}");
    }
}

fn check_graphs(kind: FusionKind, weights: WeightFormat, tolerance: f32) {
    let device = Device::flex();
    let m = model(kind, &device);
    let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let (ids, mask, t_ids, t_mask) = text_inputs(&device);
    let check = |what: &str, got: &[f32], expected: Tensor<2>| {
        let diff = max_diff(got, &burn_values(expected));
        assert!(
            diff < tolerance,
            "{kind:?} {weights:?} {what}: max |tract - burn| = {diff}"
        );
    };

    let tokens = m.encode_image(images.clone());
    let out = run(graphs::image_encoder(&m, 16, weights), vec![f32_tensor(&images)]);
    let [b, n, d] = tokens.dims();
    check("image tokens", &out[0], tokens.clone().reshape([b, n * d]));
    check("image embedding", &out[1], m.image_embedding(tokens.clone()));

    let states = m.encode_text(ids.clone(), mask.clone());
    let out = run(
        graphs::text_encoder(&m, weights),
        vec![t_ids.clone(), t_mask.clone()],
    );
    check(
        "text embedding",
        &out[0],
        m.text_embedding(states.clone(), mask.clone()),
    );
    let [b, len, d_text] = states.dims();
    check("text states", &out[1], states.reshape([b, len * d_text]));

    // The VQA graph reads the text encoder's states, as the device feeds them.
    let text_states = TractTensor::from_shape(&[b, len, d_text], &out[1]).unwrap();
    let out = run(
        graphs::vqa(&m, graphs::token_shape(&m, 16), 16, weights).unwrap(),
        vec![f32_tensor(&tokens), text_states, t_mask.clone()],
    );
    check(
        "vqa logits",
        &out[0],
        m.vqa_logits_from(tokens.clone(), ids.clone(), mask),
    );

    // The decoder over the whole prefix, then step by step through the KV cache:
    // two rows (beams) of one image, whose tokens the graphs broadcast.
    let [_, n, d] = tokens.dims();
    let tokens = tokens.narrow(0, 0, 1);
    let logits = m.decoder.forward(ids.clone(), tokens.clone().expand([2, n, d]));
    let vocab = logits.dims()[2];
    let full = run(
        graphs::caption_decoder(
            io::CAPTION_DECODER,
            &m.decoder,
            graphs::token_shape(&m, 16),
            weights,
        ),
        vec![f32_tensor(&tokens), t_ids.clone()],
    );
    check("decoder logits", &full[0], logits.clone().reshape([2, 5 * vocab]));
    let prefix = TractTensor::from_shape(&[2, 2], &[IDS[0], IDS[1], IDS[5], IDS[6]]).unwrap();
    let mut prefix_out = run(
        graphs::caption_decoder(
            io::CAPTION_DECODER,
            &m.decoder,
            graphs::token_shape(&m, 16),
            weights,
        ),
        vec![f32_tensor(&tokens), prefix],
    );
    let layers = m.decoder.layers.len();
    assert_eq!(
        prefix_out.len(),
        1 + 4 * layers,
        "logits, the cache and the image's keys/values"
    );
    // The image's cross-attention keys/values, projected once by the prefix graph.
    let memory = prefix_out.split_off(1 + 2 * layers);
    let mut cache = prefix_out.split_off(1);
    let a = &m.decoder.layers[0].self_attention;
    let c = &m.decoder.layers[0].cross_attention;
    for position in 2..5 {
        let step_ids = TractTensor::from_shape(&[2, 1], &[IDS[position], IDS[5 + position]]).unwrap();
        let mut inputs = vec![
            step_ids,
            TractTensor::from_shape(&[1], &[position as i64]).unwrap(),
        ];
        for kv in &cache {
            inputs.push(TractTensor::from_shape(&[2, a.heads(), position, a.d_head()], kv).unwrap());
        }
        for kv in &memory {
            inputs.push(TractTensor::from_shape(&[1, c.heads(), n, c.d_head()], kv).unwrap());
        }
        let mut out = run(
            graphs::caption_decoder_step(io::CAPTION_STEP, &m.decoder, graphs::token_shape(&m, 16), weights),
            inputs,
        );
        let expected = logits.clone().narrow(1, position, 1).reshape([2, vocab]);
        check(&format!("decoder step {position}"), &out[0], expected);
        cache = out.split_off(1);
        assert_eq!(cache.len(), 2 * layers);
    }
}

#[test]
fn every_graph_matches_burn_in_f32() {
    check_graphs(FusionKind::CrossAttention, WeightFormat::F32, 1e-4);
    check_graphs(FusionKind::Linear, WeightFormat::F32, 1e-4);
}

#[test]
fn int8_graphs_stay_close_to_burn() {
    // Weight-only int8 with per-channel scales: a rounding error of at most half a
    // step per weight, which on these random weights moves outputs by a few 1e-2.
    check_graphs(FusionKind::CrossAttention, WeightFormat::Int8, 0.05);
}

/// A tiny model with a spatial VQA head whose grid encoder's BatchNorm statistics
/// and affine parameters are not the initial ones, so that folding them into the
/// convolutions is exercised.
fn spatial_model(device: &Device) -> EdgeVlm {
    use burn::module::RunningState;
    device.seed(11);
    let cfg = EdgeVlmConfig::tiny(30)
        .with_answers(6)
        .with_vqa_head_kind(VqaHeadKind::Spatial);
    let mut m = cfg.init(device);
    let grid = m.grid.as_mut().unwrap();
    for block in &mut grid.convs {
        let n = block.norm.gamma.val().dims()[0];
        let random = |low, high| Tensor::<1>::random([n], Distribution::Uniform(low, high), device);
        block.norm.running_mean = RunningState::new(random(-0.5, 0.5));
        block.norm.running_var = RunningState::new(random(0.5, 2.0));
        block.norm.gamma = burn::module::Param::from_tensor(random(0.5, 1.5));
        block.norm.beta = burn::module::Param::from_tensor(random(-0.5, 0.5));
    }
    m
}

/// The spatial VQA graph (images and question in, logits out) against burn.
fn check_spatial_vqa(weights: WeightFormat, tolerance: f32) {
    let device = Device::flex();
    let m = spatial_model(&device);
    let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let (ids, mask, t_ids, t_mask) = text_inputs(&device);
    let states = run(graphs::text_encoder(&m, weights), vec![t_ids, t_mask.clone()]);
    let [b, len] = mask.dims();
    let d_text = states[1].len() / (b * len);
    let out = run(
        graphs::vqa(&m, graphs::token_shape(&m, 16), 16, weights).unwrap(),
        vec![
            f32_tensor(&images),
            TractTensor::from_shape(&[b, len, d_text], &states[1]).unwrap(),
            t_mask,
        ],
    );
    let states = m.encode_text(ids, mask.clone());
    let (expected, focus) = m.answer_logits_with_focus(m.encode_vqa_image(images), states, mask);
    let diff = max_diff(&out[0], &burn_values(expected));
    assert!(
        diff < tolerance,
        "spatial vqa {weights:?}: max |tract - burn| = {diff}"
    );
    let focus = burn_values(focus.expect("a spatial head has a focus"));
    let diff = max_diff(&out[1], &focus);
    assert!(diff < tolerance, "spatial vqa focus {weights:?}: {diff}");
}

#[test]
fn spatial_vqa_graph_matches_burn() {
    check_spatial_vqa(WeightFormat::F32, 1e-4);
    check_spatial_vqa(WeightFormat::Int8, 0.05);
}

/// An int8 embedding table gathered as int8 rows then scaled gives exactly the
/// rows of the table dequantized whole (what the graphs computed before), while
/// the device never holds the table in f32.
#[test]
fn int8_embedding_rows_equal_the_dequantized_table_rows() {
    let (rows, d) = (50, 8);
    let table: Vec<f32> = (0..rows * d)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / (1.0 + (i / d) as f32))
        .collect();
    let ids = [3i64, 0, 49, 3, 17];
    let graph = |gathered_as_int8: bool| {
        let mut g = GraphBuilder::new("rows", WeightFormat::Int8);
        let x = g.input_i64("ids", &[Dim::Fixed(1), Dim::Fixed(ids.len())]);
        let y = if gathered_as_int8 {
            g.gather_rows("table", &table, &[rows, d], &x)
        } else {
            let w = g.weight("table", &table, &[rows, d], 0);
            g.node("Gather", &[&w, &x], vec![("axis", super::onnx::Attr::Int(0))])
        };
        g.output(&y, "y", &[Dim::Fixed(1), Dim::Fixed(ids.len()), Dim::Fixed(d)]);
        g.finish()
    };
    let input = || vec![TractTensor::from_shape(&[1, ids.len()], &ids).unwrap()];
    let int8_rows = run(graph(true), input());
    assert_eq!(int8_rows, run(graph(false), input()));
    let first = &table[3 * d..4 * d];
    assert!(max_diff(&int8_rows[0][..d], first) < 0.5 / 127.0 * 50.0);
}

#[test]
fn graph_names_are_the_shared_ones() {
    let device = Device::flex();
    let m = model(FusionKind::CrossAttention, &device);
    let g = graphs::caption_decoder_step(
        io::CAPTION_STEP,
        &m.decoder,
        graphs::token_shape(&m, 16),
        WeightFormat::F32,
    );
    let graph = g.graph.unwrap();
    let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        inputs,
        [
            io::IDS,
            io::POSITION,
            "past_key_0",
            "past_value_0",
            "image_key_0",
            "image_value_0"
        ]
    );
    assert_eq!(graph.output[0].name, io::LOGITS);

    // The VQA graph reads the text encoder's states: the bundle's one text tower.
    let g = graphs::vqa(&m, graphs::token_shape(&m, 16), 16, WeightFormat::F32).unwrap();
    let graph = g.graph.unwrap();
    let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inputs, [io::IMAGE_TOKENS, io::TEXT_STATES, io::MASK]);
    assert!(
        !graph
            .initializer
            .iter()
            .any(|t| t.name.contains("word_embeddings")),
        "the VQA graph holds no text tower"
    );
    let g = graphs::text_encoder(&m, WeightFormat::F32).graph.unwrap();
    let outputs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, [io::EMBEDDING, io::TEXT_STATES]);
}

mod photo;

/// The temporal graph gives burn's clip memory (f32 within 1e-4), frames in order.
#[test]
fn the_temporal_graph_matches_burn() {
    let device = Device::flex();
    let mut m = model(FusionKind::CrossAttention, &device);
    let mut cfg = EdgeVlmConfig::tiny(30);
    cfg.temporal = Some(cfg.default_temporal(4).with_heads(2).with_layers(2));
    m = m.with_temporal(&cfg, &device);
    let [n, d] = graphs::token_shape(&m, 16);
    let frames = Tensor::<3>::random([4, n, d], Distribution::Normal(0.0, 1.0), &device);
    let graph = graphs::temporal(&m, [n, d], WeightFormat::F32).expect("a temporal graph");
    let out = run(graph, vec![f32_tensor(&frames)]);
    let expected = burn_values(m.clip_memory(frames));
    assert_eq!(out[0].len(), 4 * n * d);
    assert!(
        max_diff(&out[0], &expected) < 1e-4,
        "{}",
        max_diff(&out[0], &expected)
    );
}
