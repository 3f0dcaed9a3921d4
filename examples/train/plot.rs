//! The comparison's picture: the training loss of every step, one line per precision, as a
//! PNG. plotters draws into an RGB buffer with an embedded font (DejaVu Sans, reduced to
//! ASCII: `assets/fonts/`), so it renders the same on a machine without system fonts, and
//! `png` encodes the buffer.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::report::Outcome;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 560;
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");

/// Colours in the order the precisions run (32-true first).
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

fn register() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| "the embedded font is invalid".to_string());
    });
    result
}

/// The mean of each step's loss and the `window - 1` before it: the trend through the
/// per-batch noise.
fn smoothed(losses: &[f64], window: usize) -> Vec<f64> {
    let mut sum = 0.0;
    (0..losses.len())
        .map(|i| {
            sum += losses[i];
            if i >= window {
                sum -= losses[i - window];
            }
            sum / (i + 1).min(window) as f64
        })
        .collect()
}

/// A loss axis label: `10^exponent` with two significant digits.
fn loss_label(exponent: &f64) -> String {
    let value = 10f64.powf(*exponent);
    let decimals = (1.0 - value.log10().floor()).max(0.0) as usize;
    format!("{value:.decimals$}")
}

/// Draws `runs`' losses into `path` on a log scale (drawn as log10 on a linear axis, so
/// that every half decade gets a label however narrow the range); `title` goes on top.
pub fn losses(runs: &[Outcome], title: &str, path: &Path) -> Result<(), String> {
    register()?;
    let steps = runs.iter().map(|r| r.losses.len()).max().unwrap_or(0).max(2);
    let finite = || runs.iter().flat_map(|r| r.losses.iter().copied()).filter(|l| l.is_finite() && *l > 0.0);
    let low = finite().fold(f64::INFINITY, f64::min);
    let high = finite().fold(0.0, f64::max);
    let (low, high) = if low <= high { (low, high) } else { (0.1, 10.0) };
    // Whole half decades around the data.
    let (bottom, top) = ((low.log10() * 2.0).floor() / 2.0, (high.log10() * 2.0).ceil() / 2.0);
    let top = if top > bottom { top } else { bottom + 0.5 };
    let window = (steps / 40).max(1);
    let grey = |level: u8| RGBColor(level, level, level);

    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        let draw = |e: DrawingAreaErrorKind<_>| format!("cannot draw the plot: {e}");
        root.fill(&WHITE).map_err(draw)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1..steps, bottom..top)
            .map_err(draw)?;
        chart
            .configure_mesh()
            .x_labels(10)
            .y_labels(((top - bottom) * 2.0).round() as usize + 1)
            .y_label_formatter(&loss_label)
            .x_desc("step")
            .y_desc(match window {
                1 => "training loss (log scale)".to_string(),
                w => format!("training loss (log scale; thin: per step, thick: mean of {w})"),
            })
            .label_style(("sans-serif", 14))
            .bold_line_style(grey(215))
            .light_line_style(grey(240))
            .draw()
            .map_err(draw)?;
        for (i, run) in runs.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            // The baseline wide and pale underneath, so a run that matches it stays visible.
            let style = match i {
                0 => colour.mix(0.45).stroke_width(6),
                _ => colour.stroke_width(2),
            };
            let points = |values: Vec<f64>| {
                values.into_iter().enumerate().filter(|(_, l)| l.is_finite() && *l > 0.0).map(|(s, l)| (s + 1, l.log10()))
            };
            if window > 1 {
                chart.draw_series(LineSeries::new(points(run.losses.clone()), colour.mix(0.2))).map_err(draw)?;
            }
            chart
                .draw_series(LineSeries::new(points(smoothed(&run.losses, window)), style))
                .map_err(draw)?
                .label(run.precision.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            // Lower left: empty once the losses have dropped from their start.
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(draw)?;
        root.present().map_err(draw)?;
    }
    write_png(&pixels, path)
}

fn write_png(rgb: &[u8], path: &Path) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(|e| fail(&e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| fail(&e))?;
    writer.write_image_data(rgb).map_err(|e| fail(&e))?;
    writer.finish().map_err(|e| fail(&e))
}
