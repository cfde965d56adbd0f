//! Exporters of the spatial VQA head's two parts: the grid encoder that reads the
//! pixels and the head that routes the question over its cells. Each mirrors its
//! burn module's `forward`; parity in `tests.rs`.

use burn::nn::Linear;

use super::blocks::{bias, eps, layer_norm, linear, mean_over_tokens, values};
use super::conv;
use super::onnx::{Attr, GraphBuilder};
use crate::model::grid::{cell_coordinates, GridEncoder};
use crate::model::spatial::{SpatialVqa, DISTANCE_FLOOR, POOL_SCALE};

/// `x · W[rows] ` for a slice of a linear layer's input rows, no bias (the layer
/// applied to one part of a concatenated input).
fn linear_rows(g: &mut GraphBuilder, x: &str, linear: &Linear, rows: std::ops::Range<usize>) -> String {
    let (w, dims) = values(&linear.weight);
    let part: Vec<f32> = w[rows.start * dims[1]..rows.end * dims[1]].to_vec();
    let w = g.weight("linear_rows", &part, &[rows.len(), dims[1]], 1);
    g.matmul(x, &w)
}

/// `[n, k, m]` softmax weights over axis 1 → `[n, 1, k]` read-out weights.
fn softmax_over_cells(g: &mut GraphBuilder, logits: &str) -> String {
    let weights = g.node("Softmax", &[logits], vec![("axis", Attr::Int(1))]);
    g.transpose(&weights, &[0, 2, 1])
}

/// Mirrors [`GridEncoder`]: images `[n, 3, s, s]` → cell vectors `[n, cells, d]`.
/// Coordinates are constants, so the cell layer's coordinate rows become one
/// constant `[cells, d]` added to every image.
pub fn grid_encoder(g: &mut GraphBuilder, images: &str, encoder: &GridEncoder, image_size: usize) -> String {
    let grid = encoder.grid();
    let cells = grid * grid;
    let coordinates = cell_coordinates(grid);
    let (mut x, mut size) = (images.to_string(), image_size);
    for block in &encoder.convs {
        x = conv::conv_bn_relu(g, &x, block, size);
        size = conv::output_size(&block.conv, size);
    }
    let features = g.reshape(&x, &[0, 0, -1]);
    let features = g.transpose(&features, &[0, 2, 1]); // [n, cells, c]
    let channels = encoder.cell.weight.val().dims()[0] - 2;
    let from_features = linear_rows(g, &features, &encoder.cell, 0..channels);
    let (w, dims) = values(&encoder.cell.weight);
    let d = dims[1];
    let from_xy: Vec<f32> = (0..cells)
        .flat_map(|c| {
            let (px, py) = (coordinates[2 * c], coordinates[2 * c + 1]);
            let w = &w;
            (0..d).map(move |j| px * w[channels * d + j] + py * w[(channels + 1) * d + j])
        })
        .collect();
    let from_xy = g.constant("cell_xy_projected", &from_xy, &[cells, d]);
    let cell = g.add(&from_features, &from_xy);
    let cell = bias(g, &cell, &encoder.cell);
    let cell = g.node("Relu", &[&cell], vec![]);
    layer_norm(g, &cell, &encoder.cell_norm, eps::GRID)
}

/// Mirrors [`SpatialVqa`]: cell vectors `[n, cells, d]` ([`grid_encoder`]) and
/// question states `[n, len, d]` with their mask → answer logits, and the head's
/// focus: its weights over the cells `[n, cells]`.
pub fn spatial_vqa(
    g: &mut GraphBuilder,
    cell: &str,
    states: &str,
    mask: &str,
    head: &SpatialVqa,
) -> (String, String) {
    let relu = |g: &mut GraphBuilder, x: &str| g.node("Relu", &[x], vec![]);
    let grid = head.grid();
    let cells = grid * grid;
    let coordinates_value = g.constant("cell_xy", &cell_coordinates(grid), &[cells, 2]);
    let d = head.anchor_key.weight.val().dims()[1];

    // The question: its states averaged over its tokens, then a LayerNorm.
    let question = mean_over_tokens(g, states, mask);
    let question = layer_norm(g, &question, &head.question_norm, eps::SPATIAL);

    // 1. The anchor.
    let keys = linear(g, cell, &head.anchor_key);
    let query = linear(g, &question, &head.anchor_query);
    let query = g.unsqueeze(&query, &[2]);
    let logits = g.matmul(&keys, &query);
    let scale = g.constant("sqrt_d", &[(d as f32).sqrt()], &[]);
    let logits = g.node("Div", &[&logits, &scale], vec![]);
    let anchor_weights = softmax_over_cells(g, &logits);
    let anchor = g.matmul(&anchor_weights, cell);
    let anchor = g.reshape(&anchor, &[0, -1]);
    let anchor_at = g.matmul(&anchor_weights, &coordinates_value);
    let anchor_at = g.reshape(&anchor_at, &[0, -1]);

    // 2. Every cell scored relative to it.
    let anchor_row = g.unsqueeze(&anchor_at, &[1]);
    let offsets = g.node("Sub", &[&coordinates_value, &anchor_row], vec![]);
    let squared = g.mul(&offsets, &offsets);
    let axes2 = g.constant_i64("axes", &[2]);
    let squared = g.node("ReduceSum", &[&squared, &axes2], vec![("keepdims", Attr::Int(1))]);
    let floor = g.constant("distance_floor", &[DISTANCE_FLOOR], &[]);
    let squared = g.add(&squared, &floor);
    let distance = g.node("Sqrt", &[&squared], vec![]);
    let offsets = g.node("Concat", &[&offsets, &distance], vec![("axis", Attr::Int(2))]);
    let context = g.node(
        "Concat",
        &[&question, &anchor, &anchor_at],
        vec![("axis", Attr::Int(1))],
    );
    let from_cell = linear(g, cell, &head.scored_cell);
    let from_context = linear(g, &context, &head.scored_context);
    let from_context = g.unsqueeze(&from_context, &[1]);
    let from_offset = linear(g, &offsets, &head.scored_offset);
    let scored = g.add(&from_cell, &from_context);
    let scored = g.add(&scored, &from_offset);
    let scored = relu(g, &scored);
    let scored = linear(g, &scored, &head.scored_hidden);
    let scored = relu(g, &scored);
    let scores = linear(g, &scored, &head.score);
    let best_weights = softmax_over_cells(g, &scores);
    let best = g.matmul(&best_weights, cell);
    let best = g.reshape(&best, &[0, -1]);

    // 3. Pooled.
    let axes = g.constant_i64("axes", &[1]);
    let total = g.node("ReduceSum", &[&scored, &axes], vec![("keepdims", Attr::Int(0))]);
    let sixteen = g.constant("pool_scale", &[POOL_SCALE], &[]);
    let total = g.node("Div", &[&total, &sixteen], vec![]);
    let largest = g.node("ReduceMax", &[&scored, &axes], vec![("keepdims", Attr::Int(0))]);

    let joined = g.node(
        "Concat",
        &[&question, &anchor, &anchor_at, &best, &total, &largest],
        vec![("axis", Attr::Int(1))],
    );
    let hidden = linear(g, &joined, &head.answer_hidden);
    let hidden = relu(g, &hidden);
    let focus = g.reshape(&best_weights, &[0, cells as i64]);
    (linear(g, &hidden, &head.answer), focus)
}
