//! A convolution's weights packed for the tile as panels of `ROWS` output
//! channels, run over blocks of `COLS` output pixels: what the pointwise op and
//! the k×k convolution op share. Each gives a block of its input laid out as the
//! tile's columns (`depth` rows of `COLS` pixels: a pointwise convolution's
//! channel rows read in place, a k×k convolution's taps gathered per block), and
//! every panel runs over it while the block stays in cache.

use super::swap::Clamp;
use super::tile::{self, Bias, Columns, Tile, COLS, ROWS};

/// `weights` `[outputs][depth]` as panels of `width` outputs, `[outputs / width][depth][width]`,
/// the last panel padded with zeros: the layout the tile reads its broadcast operand
/// from (`width` = `ROWS`) or its columns from (`width` = `COLS`).
pub fn pack_panels(weights: &[f32], depth: usize, width: usize) -> Vec<f32> {
    let outputs = weights.len() / depth;
    let mut panels = vec![0f32; outputs.div_ceil(width) * depth * width];
    for (o, row) in weights.chunks_exact(depth).enumerate() {
        let panel = &mut panels[(o / width) * depth * width..][..depth * width];
        for (d, &w) in row.iter().enumerate() {
            panel[d * width + o % width] = w;
        }
    }
    panels
}

/// The `[outputs][depth]` weights `pack_panels` packed.
pub fn unpack_panels(panels: &[f32], depth: usize, width: usize, outputs: usize) -> Vec<f32> {
    let mut weights = Vec::with_capacity(outputs * depth);
    for o in 0..outputs {
        let panel = &panels[(o / width) * depth * width..][..depth * width];
        weights.extend((0..depth).map(|d| panel[d * width + o % width]));
    }
    weights
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChannelPanels {
    depth: usize,
    outputs: usize,
    /// `[outputs / ROWS][depth][ROWS]`, the last panel padded with zeros.
    panels: Vec<f32>,
}

/// The tile's columns for one block of pixels: `b[d * stride + c]` for `d <
/// depth`, `c < COLS`.
pub struct Block<'a> {
    pub b: &'a [f32],
    pub stride: usize,
}

impl ChannelPanels {
    /// Packs `weights` `[outputs][depth]`.
    pub fn pack(weights: &[f32], depth: usize) -> Self {
        Self {
            depth,
            outputs: weights.len() / depth,
            panels: pack_panels(weights, depth, ROWS),
        }
    }

    /// The weights as packed, `[outputs][depth]` (the ops keep no second copy).
    pub fn weights(&self) -> Vec<f32> {
        unpack_panels(&self.panels, self.depth, ROWS, self.outputs)
    }

    /// Output channels `first..` of `out` (rows of `pixels`), at pixels `col..col +
    /// cols`, from `block`: each its bias, then one fused multiply-add per step of
    /// the depth, in order, clamped to `clamp`. Panels that `out` holds only part
    /// of, and blocks short of `COLS`, go through `edge` and are copied out.
    ///
    /// Panics if `block` is shorter than `depth` rows of `COLS`, or `bias` than the
    /// outputs. `tile::supported()` must be true.
    #[allow(clippy::too_many_arguments)]
    pub fn run_block(
        &self,
        block: Block,
        bias: &[f32],
        clamp: Clamp,
        first: usize,
        out: &mut [f32],
        pixels: usize,
        (col, cols): (usize, usize),
        edge: &mut [f32; ROWS * COLS],
    ) {
        assert!(
            self.depth > 0 && block.b.len() >= (self.depth - 1) * block.stride + COLS,
            "a block of {} values at stride {} for depth {}",
            block.b.len(),
            block.stride,
            self.depth
        );
        assert!(tile::supported() && bias.len() >= self.outputs);
        let p = pixels;
        let rows = out.len() / p;
        let depth = self.depth;
        for panel in first / ROWS..(first + rows).div_ceil(ROWS) {
            let row0 = panel * ROWS;
            let mut panel_bias = [0f32; ROWS];
            for (b, &v) in panel_bias.iter_mut().zip(&bias[row0..self.outputs]) {
                *b = v;
            }
            // This panel's rows that are `out`'s: all of them, or at the edges a part.
            let (lo, hi) = (row0.max(first), (row0 + ROWS).min(first + rows));
            let whole = cols == COLS && lo == row0 && hi == row0 + ROWS;
            let (out_at, out_stride) = if whole {
                (
                    out[(row0 - first) * p + col..][..(ROWS - 1) * p + COLS].as_mut_ptr(),
                    p,
                )
            } else {
                (edge.as_mut_ptr(), COLS)
            };
            let tile = Tile {
                depth,
                a: self.panels[panel * depth * ROWS..][..depth * ROWS].as_ptr(),
                a_row: 1,
                a_depth: ROWS,
                a_run: Tile::NO_JUMP,
                a_jump: 0,
                b: Columns::F32(block.b.as_ptr()),
                b_stride: block.stride,
                bias: Bias::Rows(panel_bias),
                clamp,
                out: out_at,
                out_stride,
                out_half: 8,
            };
            // SAFETY: the kernel runs here (asserted); the tile reads `depth` rows
            // of `COLS` from the block (its length asserted), its panel's weights
            // (sliced above) and writes `ROWS` rows of `COLS`, whole in `out`
            // (sliced above) or into `edge`.
            unsafe { tile::run(ROWS, &tile) };
            if !whole {
                for row in lo..hi {
                    let from = &edge[(row - row0) * COLS..][..cols];
                    out[(row - first) * p + col..][..cols].copy_from_slice(from);
                }
            }
        }
    }
}
