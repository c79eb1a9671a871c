//! The safetensors format at the byte level: a header bounded by the file's own length, written in
//! a fixed key order, and checks of the tensors' values, shared by bundles, weight import and
//! export.

use crate::error::Reason;
use std::collections::BTreeMap;

/// A safetensors file's header (tensor name → entry, and `__metadata__`) and where its data
/// starts; the header is bounded by the file's own length.
pub fn header(bytes: &[u8]) -> Result<(BTreeMap<String, serde_json::Value>, usize), Reason> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .ok_or("not a safetensors file (shorter than its header length)")?;
    let end = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&e| e <= bytes.len())
        .ok_or("not a safetensors file (header longer than the file)")?;
    let header = serde_json::from_slice(&bytes[8..end])
        .map_err(|e| format!("not a safetensors file (header: {e})"))?;
    Ok((header, end))
}

/// Safetensors bytes from a header (a sorted map, so identical content gives identical bytes;
/// burn writes its header from a hash map, in a random order) and the data it points into.
pub fn write(header: &BTreeMap<String, serde_json::Value>, data: &[u8]) -> Result<Vec<u8>, Reason> {
    let mut h = serde_json::to_vec(header).map_err(|e| e.to_string())?;
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(data);
    Ok(out)
}

/// The first float tensor holding a NaN or an infinity, if any.
pub fn first_non_finite(bytes: &[u8]) -> Result<Option<String>, Reason> {
    let (header, start) = header(bytes)?;
    for (name, entry) in &header {
        if entry["dtype"] != "F32" {
            continue;
        }
        let off = |i: usize| entry["data_offsets"][i].as_u64().map(|v| v as usize);
        let (Some(a), Some(b)) = (off(0), off(1)) else {
            return Err(format!("{name}: no data offsets").into());
        };
        let data = start
            .checked_add(a)
            .zip(start.checked_add(b))
            .and_then(|(a, b)| bytes.get(a..b))
            .ok_or_else(|| format!("{name}: data outside the file"))?;
        if data
            .chunks_exact(4)
            .any(|c| !f32::from_le_bytes(c.try_into().unwrap()).is_finite())
        {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// Whether safetensors bytes hold a torchvision-layout state dict (`conv1.weight` at the top, as
/// `safetensors.torch.save_file(model.state_dict(), ...)` writes it) rather than an instrec bundle.
pub fn is_torchvision(bytes: &[u8]) -> bool {
    header(bytes).is_ok_and(|(h, _)| h.contains_key("conv1.weight"))
}

/// A tensor's name, dtype, shape and data range.
type Entry = (String, String, Vec<u64>, std::ops::Range<usize>);

/// Each tensor's entry from a header, checked against the data, in data order.
fn entries(
    header: &BTreeMap<String, serde_json::Value>,
    data_len: usize,
) -> Result<Vec<Entry>, Reason> {
    let mut out = Vec::new();
    for (name, e) in header {
        if name == "__metadata__" {
            continue;
        }
        let off = |i: usize| e["data_offsets"][i].as_u64().map(|v| v as usize);
        let (Some(a), Some(b)) = (off(0), off(1)) else {
            return Err(format!("{name}: no data offsets").into());
        };
        if a > b || b > data_len {
            return Err(format!("{name}: data outside the file").into());
        }
        let dtype = e["dtype"].as_str().unwrap_or_default().to_string();
        let shape = e["shape"]
            .as_array()
            .map(|s| s.iter().filter_map(|d| d.as_u64()).collect())
            .unwrap_or_default();
        out.push((name.clone(), dtype, shape, a..b));
    }
    out.sort_by_key(|(_, _, _, r)| r.start);
    Ok(out)
}

/// Rewrites every tensor through `convert(name, dtype, shape)`, which returns a new dtype and a
/// function of the old bytes, or `None` to keep the tensor as it is.
#[allow(clippy::type_complexity)]
fn rewrite(
    bytes: &[u8],
    convert: impl Fn(&str, &str, &[u64]) -> Option<(&'static str, fn(&[u8]) -> Vec<u8>)>,
) -> Result<Vec<u8>, Reason> {
    let (mut header, start) = header(bytes)?;
    let data = &bytes[start..];
    let mut out = Vec::with_capacity(data.len());
    for (name, dtype, shape, range) in entries(&header, data.len())? {
        let old = &data[range];
        let (new_dtype, new) = match convert(&name, &dtype, &shape) {
            Some((d, f)) => (d.to_string(), f(old)),
            None => (dtype, old.to_vec()),
        };
        let e = header.get_mut(&name).expect("entry of this header");
        e["dtype"] = serde_json::json!(new_dtype);
        e["data_offsets"] = serde_json::json!([out.len(), out.len() + new.len()]);
        out.extend(new);
    }
    write(&header, &out)
}

/// The weights of convolutions and linear layers (F32 tensors of 2 or more dimensions) as
/// IEEE half floats; biases and BatchNorm statistics stay F32. Halves a ResNet's size.
pub fn narrow_to_f16(bytes: &[u8]) -> Result<Vec<u8>, Reason> {
    rewrite(bytes, |_, dtype, shape| {
        (dtype == "F32" && shape.len() >= 2).then_some(("F16", |b: &[u8]| {
            b.chunks_exact(4)
                .flat_map(|c| {
                    half::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes()
                })
                .collect()
        }))
    })
}

/// Every F16 tensor as F32 (exactly: each half float is an f32 value).
pub fn widen_f16(bytes: &[u8]) -> Result<Vec<u8>, Reason> {
    rewrite(bytes, |_, dtype, _| {
        (dtype == "F16").then_some(("F32", |b: &[u8]| {
            b.chunks_exact(2)
                .flat_map(|c| {
                    half::f16::from_le_bytes([c[0], c[1]])
                        .to_f32()
                        .to_le_bytes()
                })
                .collect()
        }))
    })
}

/// Whether any tensor is stored as F16.
pub fn has_f16(bytes: &[u8]) -> bool {
    header(bytes).is_ok_and(|(h, _)| h.values().any(|e| e["dtype"] == "F16"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_round_trip_and_keep_small_tensors() {
        let mut header = BTreeMap::new();
        let w: Vec<f32> = vec![0.5, -1.25, 3.0e-3, 7.0];
        let b: Vec<f32> = vec![1.0e-7, 2.0];
        let mut data: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        header.insert(
            "w".to_string(),
            serde_json::json!({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}),
        );
        data.extend(b.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            "b".to_string(),
            serde_json::json!({"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}),
        );
        let full = write(&header, &data).unwrap();
        let small = narrow_to_f16(&full).unwrap();
        assert!(has_f16(&small) && !has_f16(&full));
        assert_eq!(small.len() + 8, full.len());
        let back = widen_f16(&small).unwrap();
        let (h, start) = super::header(&back).unwrap();
        let read = |name: &str| -> Vec<f32> {
            let r = &h[name]["data_offsets"];
            let (a, b) = (
                r[0].as_u64().unwrap() as usize,
                r[1].as_u64().unwrap() as usize,
            );
            back[start + a..start + b]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        assert_eq!(read("b"), b, "1-D tensors stay exact");
        for (x, y) in read("w").iter().zip(&w) {
            assert!((x - y).abs() <= y.abs() * 1e-3, "{x} vs {y}");
        }
    }
}
