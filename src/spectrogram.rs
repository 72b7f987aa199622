//! Spectrogram images: a short-time Fourier transform of mono samples, magnitudes in decibels
//! through a perceptual colour map, with a time axis (seconds) and a frequency axis (Hz / kHz)
//! labelled in a tiny built-in bitmap font, encoded as PNG. Pure: samples in, bytes out.

use realfft::RealFftPlanner;

pub const MIN_WIDTH: u32 = 160;
pub const MAX_WIDTH: u32 = 2400;
pub const MIN_HEIGHT: u32 = 100;
pub const MAX_HEIGHT: u32 = 1200;
/// How many decibels below the loudest cell are still drawn above the darkest colour.
pub const DYNAMIC_RANGE_DB: f64 = 80.0;
/// The darkest colour sits at most this far below the median level (the noise floor).
pub const NOISE_FLOOR_MARGIN_DB: f64 = 10.0;

/// Space around the plot for the axes and their labels.
const LEFT_MARGIN: u32 = 52;
const RIGHT_MARGIN: u32 = 10;
const TOP_MARGIN: u32 = 8;
const BOTTOM_MARGIN: u32 = 26;
/// Each font pixel is drawn as a square of this many image pixels.
const FONT_SCALE: u32 = 2;

const BACKGROUND: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [34, 40, 49];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpectrogramError {
    #[error("width {0} is outside {MIN_WIDTH}..={MAX_WIDTH} pixels")]
    BadWidth(u32),
    #[error("height {0} is outside {MIN_HEIGHT}..={MAX_HEIGHT} pixels")]
    BadHeight(u32),
    #[error("sample rate must be positive")]
    BadSampleRate,
    #[error("encoding the png failed: {0}")]
    Png(String),
}

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpectrogramRequest {
    pub sample_rate: u32,
    /// Where the samples start in the recording (the time axis is labelled from here).
    pub start_seconds: f64,
    pub width: u32,
    pub height: u32,
    /// The highest frequency shown; `None` (or anything above the Nyquist frequency) shows all.
    pub max_frequency_hz: Option<f64>,
}

impl SpectrogramRequest {
    /// The frequency at the top of the plot.
    pub fn top_frequency_hz(&self) -> f64 {
        let nyquist = f64::from(self.sample_rate) / 2.0;
        match self.max_frequency_hz {
            Some(max) if max.is_finite() && max > 0.0 => max.min(nyquist),
            _ => nyquist,
        }
    }
}

/// An RGB image, row by row, three bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    pub fn filled(width: u32, height: u32, colour: [u8; 3]) -> RgbImage {
        let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
        for _ in 0..width as usize * height as usize {
            pixels.extend_from_slice(&colour);
        }
        RgbImage { width, height, pixels }
    }

    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = (y as usize * self.width as usize + x as usize) * 3;
        Some([self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]])
    }

    pub fn set(&mut self, x: u32, y: u32, colour: [u8; 3]) {
        if x < self.width && y < self.height {
            let at = (y as usize * self.width as usize + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&colour);
        }
    }

    pub fn encode_png(&self) -> Result<Vec<u8>, SpectrogramError> {
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, self.width, self.height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(|error| SpectrogramError::Png(error.to_string()))?;
            writer.write_image_data(&self.pixels).map_err(|error| SpectrogramError::Png(error.to_string()))?;
            writer.finish().map_err(|error| SpectrogramError::Png(error.to_string()))?;
        }
        Ok(bytes)
    }
}

/// Where the spectrogram itself sits inside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlotArea {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

impl PlotArea {
    pub fn for_image(width: u32, height: u32) -> PlotArea {
        PlotArea {
            left: LEFT_MARGIN,
            top: TOP_MARGIN,
            width: width.saturating_sub(LEFT_MARGIN + RIGHT_MARGIN).max(1),
            height: height.saturating_sub(TOP_MARGIN + BOTTOM_MARGIN).max(1),
        }
    }

    /// The image row showing `frequency_hz` when the top row shows `top_frequency_hz`.
    pub fn row_of_frequency(&self, frequency_hz: f64, top_frequency_hz: f64) -> u32 {
        let fraction = (frequency_hz / top_frequency_hz).clamp(0.0, 1.0);
        self.top + ((1.0 - fraction) * f64::from(self.height - 1)).round() as u32
    }
}

fn validate(request: &SpectrogramRequest) -> Result<(), SpectrogramError> {
    if !(MIN_WIDTH..=MAX_WIDTH).contains(&request.width) {
        return Err(SpectrogramError::BadWidth(request.width));
    }
    if !(MIN_HEIGHT..=MAX_HEIGHT).contains(&request.height) {
        return Err(SpectrogramError::BadHeight(request.height));
    }
    if request.sample_rate == 0 {
        return Err(SpectrogramError::BadSampleRate);
    }
    Ok(())
}

/// FFT length for a sample rate: about 40 ms, a power of two.
pub fn fft_length(sample_rate: u32) -> usize {
    let target = (f64::from(sample_rate) * 0.04).max(64.0) as usize;
    target.next_power_of_two().clamp(64, 8192)
}

/// Decibel magnitudes: one column per plot column, `bins` values each (lowest frequency first).
fn stft_decibels(samples: &[f32], n_fft: usize, columns: usize) -> Vec<Vec<f64>> {
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(n_fft);
    let window: Vec<f64> =
        (0..n_fft).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n_fft as f64).cos()).collect();
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut result = Vec::with_capacity(columns);
    for column in 0..columns {
        // The frame is centred on the column's time; outside the signal counts as silence.
        let centre = ((column as f64 + 0.5) / columns as f64 * samples.len() as f64) as i64;
        let first = centre - (n_fft as i64) / 2;
        for (i, value) in input.iter_mut().enumerate() {
            let index = first + i as i64;
            let sample =
                if index >= 0 && (index as usize) < samples.len() { f64::from(samples[index as usize]) } else { 0.0 };
            *value = sample * window[i];
        }
        let decibels = match fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch) {
            Ok(()) => spectrum.iter().map(|bin| 20.0 * (bin.norm() / n_fft as f64 + 1e-12).log10()).collect(),
            Err(_) => vec![-240.0; spectrum.len()],
        };
        result.push(decibels);
    }
    result
}

/// Draws the spectrogram with its axes into an image.
pub fn render_spectrogram(samples: &[f32], request: &SpectrogramRequest) -> Result<RgbImage, SpectrogramError> {
    validate(request)?;
    let mut image = RgbImage::filled(request.width, request.height, BACKGROUND);
    let plot = PlotArea::for_image(request.width, request.height);
    let n_fft = fft_length(request.sample_rate);
    let columns = stft_decibels(samples, n_fft, plot.width as usize);
    let bins = n_fft / 2 + 1;
    let bin_hz = f64::from(request.sample_rate) / n_fft as f64;
    let top_frequency = request.top_frequency_hz();
    let floor = colour_floor(&columns);
    for row in 0..plot.height {
        // The band of bins this row covers (row 0 is the top, the highest frequencies).
        let from_top = f64::from(row);
        let upper = 1.0 - from_top / f64::from(plot.height);
        let lower = 1.0 - (from_top + 1.0) / f64::from(plot.height);
        let last_bin = bins - 1;
        let low_bin = ((lower * top_frequency / bin_hz).round() as usize).min(last_bin);
        let high_bin = ((upper * top_frequency / bin_hz).round() as usize).clamp(low_bin, last_bin);
        for (x, column) in columns.iter().enumerate() {
            let value = column[low_bin..=high_bin].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let fraction = ((value - floor) / DYNAMIC_RANGE_DB).clamp(0.0, 1.0);
            image.set(plot.left + x as u32, plot.top + row, viridis(fraction));
        }
    }
    draw_axes(&mut image, &plot, request, samples.len());
    Ok(image)
}

/// The level drawn darkest: `DYNAMIC_RANGE_DB` below the loudest cell, but never far below the
/// typical (median) level, so a window of faint noise looks faint instead of being stretched to
/// bright colours; a call stands out against the noise either way.
pub fn colour_floor(columns: &[Vec<f64>]) -> f64 {
    let mut levels: Vec<f64> = columns.iter().flatten().copied().filter(|level| level.is_finite()).collect();
    if levels.is_empty() {
        return -200.0 - DYNAMIC_RANGE_DB;
    }
    let loudest = levels.iter().copied().fold(f64::NEG_INFINITY, f64::max).max(-200.0);
    let middle = levels.len() / 2;
    let (_, median, _) = levels.select_nth_unstable_by(middle, f64::total_cmp);
    (loudest - DYNAMIC_RANGE_DB).max(*median - NOISE_FLOOR_MARGIN_DB)
}

/// Renders and encodes as PNG.
pub fn render_spectrogram_png(samples: &[f32], request: &SpectrogramRequest) -> Result<Vec<u8>, SpectrogramError> {
    render_spectrogram(samples, request)?.encode_png()
}

/// Anchors of the viridis colour map, evenly spaced from 0 to 1.
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

/// A perceptually ordered colour for `fraction` in 0..=1 (dark purple to yellow).
pub fn viridis(fraction: f64) -> [u8; 3] {
    let position = fraction.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let index = (position.floor() as usize).min(VIRIDIS.len() - 2);
    let blend = position - index as f64;
    let (from, to) = (VIRIDIS[index], VIRIDIS[index + 1]);
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * blend).round() as u8;
    [mix(from[0], to[0]), mix(from[1], to[1]), mix(from[2], to[2])]
}

/// A tick spacing from a list of pleasant steps giving at most `max_ticks` ticks over `span`.
pub fn tick_step(span: f64, max_ticks: f64, steps: &[f64]) -> f64 {
    steps.iter().copied().find(|step| span / step <= max_ticks).unwrap_or_else(|| steps.last().copied().unwrap_or(1.0))
}

const TIME_STEPS: [f64; 20] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    7200.0,
];
const FREQUENCY_STEPS: [f64; 15] =
    [5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 250.0, 500.0, 1000.0, 2000.0, 2500.0, 5000.0, 10000.0, 20000.0, 50000.0];

/// A time label: `12s`, `1.5s`, `0.25s` under a minute, then `1:05`, `12:30.5`, `1:02:03`.
pub fn time_label(seconds: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else if step >= 0.1 {
        1
    } else {
        2
    };
    let scale = 10f64.powi(decimals as i32);
    // Adding zero turns -0 (from rounding a tiny negative) into 0.
    let rounded = (seconds * scale).round() / scale + 0.0;
    if rounded < 60.0 {
        return format!("{rounded:.decimals$}s");
    }
    let hours = (rounded / 3600.0).floor();
    let minutes = ((rounded - hours * 3600.0) / 60.0).floor();
    let rest = rounded - hours * 3600.0 - minutes * 60.0;
    let width = if decimals > 0 { 3 + decimals } else { 2 };
    let rest = format!("{rest:0width$.decimals$}");
    if hours > 0.0 {
        format!("{hours}:{minutes:02}:{rest}")
    } else {
        format!("{minutes}:{rest}")
    }
}

/// A frequency label: `500Hz`, `2kHz`, `2.5kHz`.
pub fn frequency_label(hertz: f64) -> String {
    if hertz >= 1000.0 {
        let kilohertz = hertz / 1000.0;
        if (kilohertz - kilohertz.round()).abs() < 1e-9 {
            format!("{}kHz", kilohertz.round() as u64)
        } else {
            format!("{kilohertz:.1}kHz")
        }
    } else {
        format!("{}Hz", hertz.round() as u64)
    }
}

/// A tick on the time axis: where it is and where its label starts.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeTick {
    pub x: u32,
    pub label_left: u32,
    pub label: String,
}

/// The time ticks for a plot: the finest pleasant step whose labels do not touch, each label
/// centred under its tick and kept inside the image.
pub fn time_ticks(plot: &PlotArea, image_width: u32, start_seconds: f64, duration: f64) -> Vec<TimeTick> {
    if duration.is_nan() || duration <= 0.0 || !start_seconds.is_finite() || plot.width < 2 {
        return Vec::new();
    }
    let span_pixels = f64::from(plot.width - 1);
    let widest = |step: f64| {
        text_width(&time_label(start_seconds + duration, step)).max(text_width(&time_label(start_seconds, step)))
    };
    // Labels are centred on their ticks, and the last may be pushed left by up to half its width
    // to stay inside the image, so neighbours need one and a half label widths between them.
    let step =
        TIME_STEPS.iter().copied().find(|step| step / duration * span_pixels >= f64::from(widest(*step)) * 1.5 + 6.0);
    // Too narrow for two labels, or no pleasant tick inside the range: one label at the start.
    let only_the_start = || {
        let label = time_label(start_seconds, 0.1);
        let label_left =
            plot.left.saturating_sub(text_width(&label) / 2).min(image_width.saturating_sub(text_width(&label)));
        vec![TimeTick { x: plot.left, label_left, label }]
    };
    let Some(step) = step else {
        return only_the_start();
    };
    let mut ticks = Vec::new();
    let mut index = (start_seconds / step - 1e-9).ceil();
    loop {
        let tick = index * step;
        if tick > start_seconds + duration + 1e-9 {
            break;
        }
        let fraction = ((tick - start_seconds) / duration).clamp(0.0, 1.0);
        let x = plot.left + (fraction * span_pixels).round() as u32;
        let label = time_label(tick, step);
        let label_width = text_width(&label);
        let label_left = x.saturating_sub(label_width / 2).min(image_width.saturating_sub(label_width));
        ticks.push(TimeTick { x, label_left, label });
        index += 1.0;
    }
    if ticks.is_empty() {
        return only_the_start();
    }
    ticks
}

fn draw_axes(image: &mut RgbImage, plot: &PlotArea, request: &SpectrogramRequest, sample_count: usize) {
    let bottom = plot.top + plot.height;
    // Axis lines: left of and below the plot.
    for y in plot.top..=bottom {
        image.set(plot.left - 1, y, INK);
    }
    for x in plot.left - 1..plot.left + plot.width {
        image.set(x, bottom, INK);
    }
    let glyph_height = 5 * FONT_SCALE;
    // Time ticks, labelled in seconds from the start of the recording.
    let duration = sample_count as f64 / f64::from(request.sample_rate);
    for tick in time_ticks(plot, image.width, request.start_seconds, duration) {
        for y in bottom..bottom + 4 {
            image.set(tick.x, y, INK);
        }
        draw_text(image, tick.label_left, bottom + 6, &tick.label, INK);
    }
    // Frequency ticks up to the top of the plot.
    let top_frequency = request.top_frequency_hz();
    let max_ticks = (f64::from(plot.height) / (f64::from(glyph_height) * 2.5)).max(2.0);
    let step = tick_step(top_frequency, max_ticks, &FREQUENCY_STEPS);
    let mut tick = 0.0;
    while tick <= top_frequency + 1e-9 {
        let y = plot.row_of_frequency(tick, top_frequency);
        for x in plot.left.saturating_sub(5)..plot.left - 1 {
            image.set(x, y, INK);
        }
        let label = frequency_label(tick);
        let label_width = text_width(&label);
        let left = plot.left.saturating_sub(7 + label_width);
        let top = y.saturating_sub(glyph_height / 2).min(image.height.saturating_sub(glyph_height));
        draw_text(image, left, top, &label, INK);
        tick += step;
    }
}

/// A 3x5 bitmap glyph: five rows, three bits each (the high bit is the left pixel).
fn glyph(character: char) -> Option<[u8; 5]> {
    Some(match character {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        'H' => [0b101, 0b101, 0b111, 0b101, 0b101],
        'k' => [0b100, 0b101, 0b110, 0b101, 0b101],
        'z' => [0b000, 0b111, 0b001, 0b010, 0b111],
        's' => [0b000, 0b011, 0b110, 0b001, 0b110],
        ' ' => [0; 5],
        _ => return None,
    })
}

/// Width in image pixels of `text` drawn with [`draw_text`].
pub fn text_width(text: &str) -> u32 {
    let count = text.chars().count() as u32;
    (count * 4).saturating_sub(1) * FONT_SCALE
}

/// Draws `text` with its top-left corner at (`left`, `top`); unknown characters are skipped.
pub fn draw_text(image: &mut RgbImage, left: u32, top: u32, text: &str, colour: [u8; 3]) {
    for (index, character) in text.chars().enumerate() {
        let Some(rows) = glyph(character) else { continue };
        let origin = left + index as u32 * 4 * FONT_SCALE;
        for (row, bits) in rows.iter().enumerate() {
            for column in 0..3u32 {
                if bits & (0b100 >> column) == 0 {
                    continue;
                }
                for dy in 0..FONT_SCALE {
                    for dx in 0..FONT_SCALE {
                        image.set(origin + column * FONT_SCALE + dx, top + row as u32 * FONT_SCALE + dy, colour);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frequency_hz: f64, sample_rate: u32, seconds: f64) -> Vec<f32> {
        let count = (f64::from(sample_rate) * seconds) as usize;
        (0..count)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * frequency_hz * i as f64 / f64::from(sample_rate)).sin()) as f32
            })
            .collect()
    }

    fn request(width: u32, height: u32) -> SpectrogramRequest {
        SpectrogramRequest { sample_rate: 8000, start_seconds: 0.0, width, height, max_frequency_hz: None }
    }

    #[test]
    fn the_image_has_the_requested_size() {
        let image = render_spectrogram(&tone(1000.0, 8000, 2.0), &request(400, 200)).unwrap();
        assert_eq!((image.width, image.height), (400, 200));
        assert_eq!(image.pixels.len(), 400 * 200 * 3);
    }

    #[test]
    fn the_png_decodes_to_the_requested_size() {
        let bytes = render_spectrogram_png(&tone(1000.0, 8000, 2.0), &request(321, 123)).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (321, 123));
    }

    #[test]
    fn rendering_is_deterministic() {
        let samples = tone(440.0, 8000, 1.5);
        let first = render_spectrogram_png(&samples, &request(300, 150)).unwrap();
        let second = render_spectrogram_png(&samples, &request(300, 150)).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn a_tone_is_brightest_in_its_frequency_row() {
        let image = render_spectrogram(&tone(1000.0, 8000, 2.0), &request(400, 300)).unwrap();
        let plot = PlotArea::for_image(400, 300);
        let x = plot.left + plot.width / 2;
        // Viridis grows greener monotonically, so the green channel orders loudness.
        let brightest = (plot.top..plot.top + plot.height).max_by_key(|y| image.pixel(x, *y).unwrap()[1]).unwrap();
        let expected = plot.row_of_frequency(1000.0, 4000.0);
        assert!(brightest.abs_diff(expected) <= 2, "brightest row {brightest}, expected about {expected}");
    }

    #[test]
    fn the_axes_and_their_labels_are_drawn() {
        let image = render_spectrogram(&tone(1000.0, 8000, 2.0), &request(400, 200)).unwrap();
        let plot = PlotArea::for_image(400, 200);
        // The vertical axis line runs the height of the plot.
        for y in plot.top..plot.top + plot.height {
            assert_eq!(image.pixel(plot.left - 1, y), Some(INK));
        }
        // The horizontal axis line runs its width.
        for x in plot.left..plot.left + plot.width {
            assert_eq!(image.pixel(x, plot.top + plot.height), Some(INK));
        }
        // Labels: ink in the left margin and below the axis.
        let ink_in = |x_range: std::ops::Range<u32>, y_range: std::ops::Range<u32>| {
            x_range
                .flat_map(|x| y_range.clone().map(move |y| (x, y)))
                .filter(|(x, y)| image.pixel(*x, *y) == Some(INK))
                .count()
        };
        assert!(ink_in(0..plot.left - 8, plot.top..plot.top + plot.height) > 50);
        assert!(ink_in(plot.left..400, plot.top + plot.height + 5..200) > 50);
    }

    #[test]
    fn silence_renders_without_failing() {
        let image = render_spectrogram(&vec![0.0; 4000], &request(200, 120)).unwrap();
        assert_eq!(image.width, 200);
        let empty = render_spectrogram(&[], &request(200, 120)).unwrap();
        assert_eq!(empty.height, 120);
    }

    #[test]
    fn sizes_outside_the_bounds_are_refused() {
        assert_eq!(render_spectrogram(&[], &request(10, 200)), Err(SpectrogramError::BadWidth(10)));
        assert_eq!(render_spectrogram(&[], &request(400, 5000)), Err(SpectrogramError::BadHeight(5000)));
    }

    #[test]
    fn labels_read_as_people_write_them() {
        assert_eq!(frequency_label(500.0), "500Hz");
        assert_eq!(frequency_label(2000.0), "2kHz");
        assert_eq!(frequency_label(2500.0), "2.5kHz");
        assert_eq!(time_label(12.0, 5.0), "12s");
        assert_eq!(time_label(1.5, 0.5), "1.5s");
        assert_eq!(time_label(59.96, 0.1), "1:00.0");
        assert_eq!(time_label(65.0, 5.0), "1:05");
        assert_eq!(time_label(-0.0, 1.0), "0s");
        assert_eq!(time_label(-1e-12, 0.5), "0.0s");
        assert_eq!(time_label(750.5, 0.5), "12:30.5");
        assert_eq!(time_label(3723.0, 1.0), "1:02:03");
        assert_eq!(tick_step(10.0, 5.0, &TIME_STEPS), 2.0);
        assert!("0123456789.:-Hkzs ".chars().all(|c| glyph(c).is_some()));
    }

    #[test]
    fn a_window_of_faint_noise_is_drawn_dark_and_a_call_in_it_bright() {
        let mut seed = 7u32;
        let mut noise = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (f64::from(seed >> 8) / f64::from(1u32 << 24) - 0.5) as f32 * 0.002
        };
        let faint: Vec<f32> = (0..8000).map(|_| noise()).collect();
        let mean_green = |image: &RgbImage| {
            let plot = PlotArea::for_image(image.width, image.height);
            let mut total = 0u64;
            for y in plot.top..plot.top + plot.height {
                for x in plot.left..plot.left + plot.width {
                    total += u64::from(image.pixel(x, y).unwrap()[1]);
                }
            }
            total as f64 / f64::from(plot.width * plot.height)
        };
        let image = render_spectrogram(&faint, &request(300, 150)).unwrap();
        // Viridis green runs from 1 (darkest) to 231 (brightest).
        assert!(mean_green(&image) < 80.0, "faint noise is dark: mean green {}", mean_green(&image));
        let with_call: Vec<f32> = tone(1000.0, 8000, 1.0).iter().zip(&faint).map(|(t, n)| t + n).collect();
        let image = render_spectrogram(&with_call, &request(300, 150)).unwrap();
        let plot = PlotArea::for_image(300, 150);
        let row = plot.row_of_frequency(1000.0, 4000.0);
        assert!(image.pixel(plot.left + plot.width / 2, row).unwrap()[1] > 200, "the call is bright");
    }

    proptest::proptest! {
        #[test]
        fn time_labels_never_overlap_and_stay_inside_the_image(
            start in 0.0f64..20_000.0,
            duration in 0.05f64..600.0,
            width in MIN_WIDTH..=MAX_WIDTH,
        ) {
            let plot = PlotArea::for_image(width, 200);
            let ticks = time_ticks(&plot, width, start, duration);
            proptest::prop_assert!(!ticks.is_empty(), "some tick for {duration} s");
            for pair in ticks.windows(2) {
                let right_of_first = pair[0].label_left + text_width(&pair[0].label);
                proptest::prop_assert!(right_of_first < pair[1].label_left, "{:?} overlaps {:?}", pair[0], pair[1]);
            }
            for tick in &ticks {
                proptest::prop_assert!(tick.label_left + text_width(&tick.label) <= width);
                proptest::prop_assert!(tick.x >= plot.left && tick.x < plot.left + plot.width);
            }
        }
    }

    #[test]
    fn a_lower_top_frequency_spreads_a_tone_over_the_plot() {
        let samples: Vec<f32> =
            (0..16000).map(|i| (0.5 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 8000.0).sin()) as f32).collect();
        let request = SpectrogramRequest {
            sample_rate: 8000,
            start_seconds: 0.0,
            width: 400,
            height: 300,
            max_frequency_hz: Some(1000.0),
        };
        assert_eq!(request.top_frequency_hz(), 1000.0);
        let image = render_spectrogram(&samples, &request).unwrap();
        let plot = PlotArea::for_image(400, 300);
        let x = plot.left + plot.width / 2;
        let brightest = (plot.top..plot.top + plot.height).max_by_key(|y| image.pixel(x, *y).unwrap()[1]).unwrap();
        let expected = plot.row_of_frequency(500.0, 1000.0);
        assert!(brightest.abs_diff(expected) <= 3, "brightest row {brightest}, expected about {expected}");
        let above_nyquist = SpectrogramRequest { max_frequency_hz: Some(1e9), ..request };
        assert_eq!(above_nyquist.top_frequency_hz(), 4000.0);
    }
}
