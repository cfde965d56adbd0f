//! A convolution's weights packed for the tile as panels of `COLS` output
//! channels, run over runs of up to `ROWS` pixels into a blocked output: the tile
//! turned around from `super::super::channel_panels` (pixels down its rows,
//! output channels along its columns), so that each row of the tile is one pixel
//! of two blocks of eight channels.

use std::ops::Range;

use super::BLOCK;
use crate::runtime::channel_panels::{pack_panels, unpack_panels};
use crate::runtime::swap::Clamp;
use crate::runtime::tile::{self, Bias, Columns, Tile, COLS, ROWS};

/// Where a run of pixels reads its sums' terms: `a[r][d]` of `tile::Tile`.
#[derive(Clone, Copy)]
pub struct RowsAt {
    pub a: *const f32,
    pub a_row: usize,
    pub a_depth: usize,
    pub a_run: usize,
    pub a_jump: usize,
}

impl RowsAt {
    /// Pixel `pixel` of a blocked input of `pixels` per channel: channel `d` of
    /// the run's row `r` at `((d / 8) · pixels + pixel + r) · 8 + d % 8`.
    pub fn blocked(input: &[f32], pixels: usize, pixel: usize) -> Self {
        Self {
            a: input[pixel * BLOCK..].as_ptr(),
            a_row: BLOCK,
            a_depth: 1,
            a_run: BLOCK,
            a_jump: (pixels - 1) * BLOCK,
        }
    }
}

/// A convolution's weights and biases as the turned-around tile reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelColumns {
    depth: usize,
    outputs: usize,
    /// `[outputs / COLS][depth][COLS]`, the last panel padded with zeros.
    panels: Vec<f32>,
    /// One per output, padded with zeros to whole panels.
    bias: Vec<f32>,
}

impl ChannelColumns {
    /// Packs `weights` `[outputs][depth]` and one bias per output.
    pub fn pack(weights: &[f32], depth: usize, bias: &[f32]) -> Self {
        let outputs = weights.len() / depth;
        let mut padded = vec![0f32; outputs.div_ceil(COLS) * COLS];
        padded[..outputs].copy_from_slice(&bias[..outputs]);
        Self {
            depth,
            outputs,
            panels: pack_panels(weights, depth, COLS),
            bias: padded,
        }
    }

    /// The weights as packed, `[outputs][depth]` (the ops keep no second copy).
    pub fn weights(&self) -> Vec<f32> {
        unpack_panels(&self.panels, self.depth, COLS, self.outputs)
    }

    /// Output channel blocks `blocks` of pixels `pixel..pixel + count` (`count <=
    /// ROWS`), each its bias plus one fused multiply-add per step of the depth, in
    /// order, clamped to `clamp`: the values the NCHW tiles give. `out` holds the
    /// blocks from `first_block` on, `pixels · 8` values each. Half panels (a chunk
    /// starting or ending between a panel's two blocks, the last panel of an odd
    /// number of blocks) go through `edge`.
    ///
    /// Safety: `tile::supported()`, and `rows` reads `count` rows of `depth` in
    /// bounds.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run(
        &self,
        rows: RowsAt,
        (pixel, count): (usize, usize),
        blocks: Range<usize>,
        first_block: usize,
        out: &mut [f32],
        pixels: usize,
        clamp: Clamp,
        edge: &mut [f32; ROWS * COLS],
    ) {
        let plane = pixels * BLOCK;
        assert!(
            count <= ROWS
                && pixel + count <= pixels
                && blocks.start >= first_block
                && (blocks.end - first_block) * plane <= out.len()
                && blocks.end * BLOCK <= self.outputs.next_multiple_of(BLOCK)
        );
        let per_panel = COLS / BLOCK;
        let mut block = blocks.start;
        while block < blocks.end {
            let panel = block / per_panel;
            let half = block % per_panel;
            let whole = half == 0 && block + per_panel <= blocks.end;
            let at = (block - first_block) * plane + pixel * BLOCK;
            let (out_at, out_stride, out_half) = if whole {
                (out[at..].as_mut_ptr(), BLOCK, plane)
            } else {
                (edge.as_mut_ptr(), COLS, BLOCK)
            };
            let mut bias = [0f32; COLS];
            bias.copy_from_slice(&self.bias[panel * COLS..][..COLS]);
            let tile = Tile {
                depth: self.depth,
                a: rows.a,
                a_row: rows.a_row,
                a_depth: rows.a_depth,
                a_run: rows.a_run,
                a_jump: rows.a_jump,
                b: Columns::F32(self.panels[panel * self.depth * COLS..].as_ptr()),
                b_stride: COLS,
                bias: Bias::Cols(bias),
                clamp,
                out: out_at,
                out_stride,
                out_half,
            };
            // SAFETY: the caller's promise for `a`; the panel's `depth` rows of
            // `COLS` are packed; the writes are `count` pixels of the panel's two
            // blocks, both in `out` (asserted) or in `edge`.
            unsafe { tile::run(count, &tile) };
            if whole {
                block += per_panel;
            } else {
                for r in 0..count {
                    let from = &edge[r * COLS + half * BLOCK..][..BLOCK];
                    out[at + r * BLOCK..][..BLOCK].copy_from_slice(from);
                }
                block += 1;
            }
        }
    }
}
