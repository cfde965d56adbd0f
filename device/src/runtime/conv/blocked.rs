//! The convolution writing its output with the channels in blocks of eight
//! (`crate::runtime::blocked`): the taps of each run of `COLS` pixels gathered as
//! in NCHW, then the tile turned around, its rows the run's pixels and its
//! columns the output channels, each output the same sum in the same order.

use std::sync::Arc;

use tract_linalg::multithread::par_chunks_mut;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

use super::VectorConv;
use crate::runtime::blocked::{Blockable, ChannelColumns, RowsAt, BLOCK};
use crate::runtime::channel_panels::ChannelPanels;
use crate::runtime::tile::{Tile, COLS, ROWS};

impl Blockable for VectorConv {
    fn can_block(&self) -> bool {
        self.geometry.batch == 1 && self.outputs.is_multiple_of(BLOCK)
    }

    fn reads_blocked(&self) -> bool {
        false
    }

    fn set_blocked(&mut self) -> TractResult<()> {
        let columns = ChannelColumns::pack(&self.panels.weights(), self.depth(), &self.bias);
        self.columns = Some(Arc::new(columns));
        // Blocked, it never reads the NCHW panels: no second copy of the weights.
        self.panels = Arc::new(ChannelPanels::pack(&[], self.depth()));
        Ok(())
    }
}

impl VectorConv {
    /// Every output, blocked, from one image in NCHW (its length checked by
    /// `run`): the blocks of channels shared out among tract's threads when it
    /// has several.
    pub(super) fn run_blocked(
        &self,
        columns: &ChannelColumns,
        x: &[f32],
        output: &mut [f32],
    ) -> TractResult<()> {
        let g = &self.geometry;
        let pixels = g.out_h * g.out_w;
        let plane = pixels * BLOCK;
        ensure!(
            g.batch == 1,
            "VectorConv: blocked channels take one image, not {}",
            g.batch
        );
        let split = self.split_columns(x);
        par_chunks_mut(output, plane, x.len() + output.len(), |first, out| {
            let blocks = first..first + out.len() / plane;
            let mut block = vec![0f32; self.depth() * COLS];
            let mut edge = [0f32; ROWS * COLS];
            for col in (0..pixels).step_by(COLS) {
                let cols = COLS.min(pixels - col);
                self.gather(x, &split, col, cols, &mut block);
                for r0 in (0..cols).step_by(ROWS) {
                    let rows = RowsAt {
                        a: block[r0..].as_ptr(),
                        a_row: 1,
                        a_depth: COLS,
                        a_run: Tile::NO_JUMP,
                        a_jump: 0,
                    };
                    let count = ROWS.min(cols - r0);
                    // SAFETY: `swap_in` swaps this op in only where the tile runs;
                    // the run's `count` pixels of the gathered block are `depth`
                    // rows of `COLS` from `r0`.
                    unsafe {
                        columns.run(
                            rows,
                            (col + r0, count),
                            blocks.clone(),
                            first,
                            out,
                            pixels,
                            self.clamp,
                            &mut edge,
                        )
                    };
                }
            }
            Ok(())
        })
    }
}
