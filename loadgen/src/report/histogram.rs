//! One histogram in a report: its serde type (summary figures, the requested percentiles and the
//! exact HdrHistogram V2 compressed encoding, base64), the encoding itself, and the one way a
//! microsecond figure is printed. A leaf of the format: `schema` builds on it.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::{new_histogram, Error};
use serde::{Deserialize, Serialize};

/// One histogram: summary figures, the requested percentiles, and the exact encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramReport {
    pub count: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    pub stddev_us: f64,
    /// Median, always present whatever `percentiles` lists (0 when empty).
    pub p50_us: u64,
    /// 99th percentile, always present whatever `percentiles` lists (0 when empty).
    pub p99_us: u64,
    /// The configured percentiles (`--percentiles`).
    pub percentiles: Vec<PercentileValue>,
    /// HdrHistogram V2 compressed encoding, base64 (1 us .. 60 s, 3 significant digits).
    pub hdr: String,
}

/// The value at one percentile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PercentileValue {
    pub percentile: f64,
    pub value_us: u64,
}

/// Encodes a histogram as V2 compressed base64.
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, Error> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| Error::Merge(format!("cannot encode histogram: {e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Decodes a V2 (compressed or not) base64 histogram into the shared range.
pub fn decode_histogram(b64: &str) -> Result<Histogram<u64>, Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| Error::Merge(format!("histogram is not base64: {e}")))?;
    let decoded: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| Error::Merge(format!("histogram cannot be decoded: {e:?}")))?;
    // Re-home into the shared range so histograms from any loadgen add without surprises.
    let mut h = new_histogram();
    for v in decoded.iter_recorded() {
        h.saturating_record_n(v.value_iterated_to(), v.count_at_value());
    }
    Ok(h)
}

impl HistogramReport {
    /// Summarizes `h` at `percentiles`.
    pub fn from_histogram(h: &Histogram<u64>, percentiles: &[f64]) -> Result<Self, Error> {
        let empty = h.is_empty();
        Ok(HistogramReport {
            count: h.len(),
            min_us: if empty { 0 } else { h.min() },
            max_us: if empty { 0 } else { h.max() },
            mean_us: if empty { 0.0 } else { h.mean() },
            stddev_us: if empty { 0.0 } else { h.stdev() },
            p50_us: if empty {
                0
            } else {
                h.value_at_percentile(50.0)
            },
            p99_us: if empty {
                0
            } else {
                h.value_at_percentile(99.0)
            },
            percentiles: percentiles
                .iter()
                .map(|&p| PercentileValue {
                    percentile: p,
                    value_us: if empty { 0 } else { h.value_at_percentile(p) },
                })
                .collect(),
            hdr: encode_histogram(h)?,
        })
    }

    /// The exact histogram behind this summary.
    pub fn histogram(&self) -> Result<Histogram<u64>, Error> {
        decode_histogram(&self.hdr)
    }

    /// The value at any percentile (not only the listed ones), from the encoded histogram;
    /// `None` if the histogram is empty or cannot be decoded.
    pub fn value_at_percentile_us(&self, percentile: f64) -> Option<u64> {
        let h = self.histogram().ok()?;
        (!h.is_empty()).then(|| h.value_at_percentile(percentile))
    }
}

/// A microsecond value for humans: `830us`, `1.25ms`, `2.500s`.
pub fn format_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.3}s", us as f64 / 1e6)
    }
}
