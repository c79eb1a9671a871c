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
