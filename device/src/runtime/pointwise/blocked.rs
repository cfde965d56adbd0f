//! The pointwise convolution with the channels in blocks of eight in and out
//! (`crate::runtime::blocked`): the tile's rows are runs of pixels, each reading
//! its input channels block by block, and its columns the output channels. Each
//! output is its bias plus one fused multiply-add per input channel, in order:
//! the NCHW tile's sum.

use std::sync::Arc;

use tract_linalg::multithread::par_chunks_mut;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

use super::VectorPointwise;
use crate::runtime::blocked::{Blockable, ChannelColumns, RowsAt, BLOCK};
use crate::runtime::channel_panels::ChannelPanels;
use crate::runtime::tile::{self, COLS, ROWS};

/// Weights up to which every run of pixels goes through all the output channels
/// before the next run (the weights stay in L1 and L2, the input is read once);
/// larger ones (a projection from hundreds of channels) are run a panel of
/// output channels at a time over all the pixels, so that the panel stays in L1.
const PIXELS_FIRST_MAX_BYTES: usize = 64 * 1024;

impl Blockable for VectorPointwise {
    fn can_block(&self) -> bool {
        self.batch == 1 && self.inputs.is_multiple_of(BLOCK) && self.outputs.is_multiple_of(BLOCK)
    }

    fn reads_blocked(&self) -> bool {
        true
    }

    fn set_blocked(&mut self) -> TractResult<()> {
        let columns = ChannelColumns::pack(&self.panels.weights(), self.inputs, &self.bias);
        self.columns = Some(Arc::new(columns));
        // Blocked, it never reads the NCHW panels: no second copy of the weights.
        self.panels = Arc::new(ChannelPanels::pack(&[], self.inputs));
        Ok(())
    }
}

impl VectorPointwise {
    /// Every output from the input, both blocked (their lengths checked by
    /// `run`): the blocks of output channels shared out among tract's threads
    /// when it has several.
    pub(super) fn run_blocked(
        &self,
        columns: &ChannelColumns,
        x: &[f32],
        output: &mut [f32],
    ) -> TractResult<()> {
        let p = self.pixels;
        let plane = p * BLOCK;
        ensure!(
            self.batch == 1,
            "VectorPointwise: blocked channels take one image, not {}",
            self.batch
        );
        let pixels_first = self.inputs * self.outputs * 4 <= PIXELS_FIRST_MAX_BYTES;
        par_chunks_mut(output, plane, x.len() + output.len(), |first, out| {
            let end = first + out.len() / plane;
            let mut edge = [0f32; ROWS * COLS];
            let mut run = |pixel: usize, count: usize, blocks: std::ops::Range<usize>| {
                // SAFETY: `swap_in` swaps this op in only where the tile runs; the
                // run's `count` pixels of `inputs` channels lie in `x` (its length
                // checked by `run`).
                unsafe {
                    columns.run(
                        RowsAt::blocked(x, p, pixel),
                        (pixel, count),
                        blocks,
                        first,
                        out,
                        p,
                        self.clamp,
                        &mut edge,
                    )
                };
            };
            if pixels_first {
                for (pixel, count) in tile::row_runs(p) {
                    run(pixel, count, first..end);
                }
            } else {
                let per_panel = COLS / BLOCK;
                let mut block = first;
                while block < end {
                    let panel_end = ((block / per_panel + 1) * per_panel).min(end);
                    for (pixel, count) in tile::row_runs(p) {
                        run(pixel, count, block..panel_end);
                    }
                    block = panel_end;
                }
            }
            Ok(())
        })
    }
}
