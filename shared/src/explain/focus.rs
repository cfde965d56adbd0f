//! A spatial VQA head's focus (its weights over a grid of cells) as a map over the
//! pixels of the image it read.

/// The focus over a square grid of cells (row-major) as a `side`×`side` map,
/// interpolated bilinearly between the cells' centres: the map's peak lies at the
/// centre of the heaviest cell. `None` when `focus` is not a square number of
/// weights.
pub fn focus_map(focus: &[f32], side: u32) -> Option<Vec<f32>> {
    let grid = (focus.len() as f64).sqrt().round() as usize;
    if grid == 0 || focus.len() != grid * grid {
        return None;
    }
    let last = (grid - 1) as f32;
    // Pixel centre → position in cell units, where cell i's centre is at i.
    let at = |p: u32| ((p as f32 + 0.5) * grid as f32 / side as f32 - 0.5).clamp(0.0, last);
    let cell = |x: usize, y: usize| focus[y * grid + x];
    let mut map = Vec::with_capacity((side * side) as usize);
    for py in 0..side {
        let v = at(py);
        let (y0, fy) = (v.floor() as usize, v.fract());
        let y1 = (y0 + 1).min(grid - 1);
        for px in 0..side {
            let u = at(px);
            let (x0, fx) = (u.floor() as usize, u.fract());
            let x1 = (x0 + 1).min(grid - 1);
            let top = cell(x0, y0) * (1.0 - fx) + cell(x1, y0) * fx;
            let bottom = cell(x0, y1) * (1.0 - fx) + cell(x1, y1) * fx;
            map.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::peak;

    #[test]
    fn the_peak_lies_in_the_heaviest_cell() {
        let grid = 8;
        for heaviest in [0, 7, 19, 36, 63] {
            let mut focus = vec![0.1 / 63.0; grid * grid];
            focus[heaviest] = 0.9;
            let map = focus_map(&focus, 64).unwrap();
            let (x, y) = peak(&map, 64);
            assert_eq!(((y / 8) * 8 + x / 8) as usize, heaviest, "peak ({x}, {y})");
            assert!(map.iter().all(|v| (0.0..=0.9 + 1e-6).contains(v)));
        }
        assert!(focus_map(&[1.0; 10], 64).is_none(), "not a square grid");
    }
}
