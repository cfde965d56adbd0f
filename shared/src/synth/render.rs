//! Rasterises a scene: hard-edged shapes on a white canvas, pixel centres sampled,
//! so the same scene always gives the same bytes on every machine.

use image::{Rgb, RgbImage};

use super::scene::{Object, Scene, Shape};

pub const BACKGROUND: [u8; 3] = [255, 255, 255];

pub fn render(scene: &Scene) -> RgbImage {
    let mut image = RgbImage::from_pixel(scene.size, scene.size, Rgb(BACKGROUND));
    for object in &scene.objects {
        draw(&mut image, object);
    }
    image
}

fn draw(image: &mut RgbImage, o: &Object) {
    let reach = o.bounding_radius().ceil() as i64 + 1;
    let (cx, cy) = (o.x.floor() as i64, o.y.floor() as i64);
    let (w, h) = (image.width() as i64, image.height() as i64);
    for py in (cy - reach).max(0)..(cy + reach + 1).min(h) {
        for px in (cx - reach).max(0)..(cx + reach + 1).min(w) {
            if covers(o, px as f32 + 0.5, py as f32 + 0.5) {
                image.put_pixel(px as u32, py as u32, Rgb(o.colour.rgb()));
            }
        }
    }
}

/// Whether the point (x, y) lies inside the object.
pub(crate) fn covers(o: &Object, x: f32, y: f32) -> bool {
    let (dx, dy) = (x - o.x, y - o.y);
    let r = o.radius;
    match o.shape {
        Shape::Circle => dx * dx + dy * dy <= r * r,
        Shape::Square => dx.abs() <= r && dy.abs() <= r,
        // Apex up at (0, -r), base from (-r, r) to (r, r): half-width grows from 0 to r.
        Shape::Triangle => (-r..=r).contains(&dy) && dx.abs() <= (dy + r) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::scene::{Colour, Size};

    #[test]
    fn shapes_cover_the_expected_pixels() {
        let square = Object {
            colour: Colour::Red,
            shape: Shape::Square,
            size: Size::Small,
            x: 10.0,
            y: 10.0,
            radius: 3.0,
        };
        let scene = Scene {
            size: 20,
            objects: vec![square],
        };
        let img = render(&scene);
        let red = img.pixels().filter(|p| p.0 == Colour::Red.rgb()).count();
        assert_eq!(red, 36, "a 6x6 square");
        assert_eq!(img.get_pixel(0, 0).0, BACKGROUND);

        let tri = Object {
            shape: Shape::Triangle,
            radius: 4.0,
            ..scene.objects[0].clone()
        };
        // Apex pixel row is narrow, base row is wide.
        assert!(covers(&tri, 10.0, 6.5) && !covers(&tri, 11.5, 6.5));
        assert!(covers(&tri, 6.5, 13.5) && covers(&tri, 13.5, 13.5));
    }
}
