//! Writing a torchvision-layout state dict as PyTorch's own `.pth` (what `torch.save(model
//! .state_dict(), path)` writes): a ZIP archive of a protocol-2 pickle of an `OrderedDict` whose
//! values rebuild tensors from raw little-endian storages. `torch.load(path, weights_only=True)`
//! accepts it, and so does instrec's `.pth` reader.

use super::safetensors;
use crate::error::Reason;

/// A tensor of a state dict: name, dtype (`F32` or `I64`), shape and little-endian bytes.
struct Entry<'a> {
    name: &'a str,
    dtype: &'a str,
    shape: Vec<usize>,
    data: &'a [u8],
}

/// Converts safetensors bytes (F32 and I64 tensors) into `.pth` bytes, tensors in name order.
pub fn safetensors_to_pth(bytes: &[u8]) -> Result<Vec<u8>, Reason> {
    let (header, start) = safetensors::header(bytes)?;
    let mut entries = Vec::new();
    for (name, e) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let dtype = e["dtype"].as_str().unwrap_or("");
        if dtype != "F32" && dtype != "I64" {
            return Err(format!("{name}: dtype {dtype} cannot be exported").into());
        }
        let shape: Vec<usize> =
            serde_json::from_value(e["shape"].clone()).map_err(|_| format!("{name}: no shape"))?;
        let off = |i: usize| e["data_offsets"][i].as_u64().map(|v| v as usize);
        let data = off(0)
            .zip(off(1))
            .and_then(|(a, b)| bytes.get(start.checked_add(a)?..start.checked_add(b)?))
            .ok_or_else(|| format!("{name}: data outside the file"))?;
        entries.push(Entry {
            name,
            dtype,
            shape,
            data,
        });
    }
    let mut files: Vec<(String, Vec<u8>)> = vec![("archive/data.pkl".into(), pickle(&entries))];
    files.push(("archive/byteorder".into(), b"little".to_vec()));
    for (k, e) in entries.iter().enumerate() {
        files.push((format!("archive/data/{k}"), e.data.to_vec()));
    }
    files.push(("archive/version".into(), b"3\n".to_vec()));
    Ok(zip_stored(&files))
}

/// The pickle of `OrderedDict([(name, _rebuild_tensor_v2(storage, 0, size, stride, False,
/// OrderedDict())), ...])`, storage `k` persisted as `("storage", FloatStorage|LongStorage, "k",
/// "cpu", numel)`.
fn pickle(entries: &[Entry]) -> Vec<u8> {
    let mut p = vec![0x80, 2]; // PROTO 2
    let global = |p: &mut Vec<u8>, module: &str, name: &str| {
        p.push(b'c');
        p.extend(format!("{module}\n{name}\n").as_bytes());
    };
    let string = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X'); // BINUNICODE
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    };
    let int = |p: &mut Vec<u8>, v: usize| {
        p.push(b'J'); // BININT
        p.extend((v as i32).to_le_bytes());
    };
    let tuple = |p: &mut Vec<u8>, items: &[usize]| {
        p.push(b'(');
        for &v in items {
            int(p, v);
        }
        p.push(b't');
    };
    global(&mut p, "collections", "OrderedDict");
    p.extend([b')', b'R', b'(']); // OrderedDict(), MARK
    for (k, e) in entries.iter().enumerate() {
        string(&mut p, e.name);
        global(&mut p, "torch._utils", "_rebuild_tensor_v2");
        p.push(b'(');
        p.push(b'(');
        string(&mut p, "storage");
        let storage = if e.dtype == "F32" {
            "FloatStorage"
        } else {
            "LongStorage"
        };
        global(&mut p, "torch", storage);
        string(&mut p, &k.to_string());
        string(&mut p, "cpu");
        int(&mut p, e.shape.iter().product());
        p.extend([b't', b'Q']); // TUPLE, BINPERSID
        int(&mut p, 0);
        tuple(&mut p, &e.shape);
        // Contiguous strides: the product of the later dimensions.
        let strides: Vec<usize> = (0..e.shape.len())
            .map(|i| e.shape[i + 1..].iter().product())
            .collect();
        tuple(&mut p, &strides);
        p.push(0x89); // NEWFALSE: requires_grad
        global(&mut p, "collections", "OrderedDict");
        p.extend([b')', b'R', b't', b'R']); // OrderedDict(), TUPLE, REDUCE
    }
    p.extend([b'u', b'.']); // SETITEMS, STOP
    p
}

/// A ZIP archive of stored (uncompressed) files, each file's data aligned to 64 bytes as
/// PyTorch aligns them (padding in an extra field).
fn zip_stored(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let u16le = |v: usize| (v as u16).to_le_bytes();
    let u32le = |v: usize| (v as u32).to_le_bytes();
    for (name, data) in files {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = out.len();
        let unpadded = offset + 30 + name.len() + 4;
        let pad = (64 - unpadded % 64) % 64;
        // Local file header: version 2.0, no flags, stored, 1980-01-01.
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        out.extend(crc.sum().to_le_bytes());
        out.extend(u32le(data.len()));
        out.extend(u32le(data.len()));
        out.extend(u16le(name.len()));
        out.extend(u16le(4 + pad));
        out.extend(name.as_bytes());
        out.extend(b"FB");
        out.extend(u16le(pad));
        out.extend(std::iter::repeat_n(b'Z', pad));
        out.extend(data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        central.extend(crc.sum().to_le_bytes());
        central.extend(u32le(data.len()));
        central.extend(u32le(data.len()));
        central.extend(u16le(name.len()));
        central.extend([0; 12]); // extra, comment, disk, attributes
        central.extend(u32le(offset));
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len();
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0, 0, 0, 0]);
    out.extend(u16le(files.len()));
    out.extend(u16le(files.len()));
    out.extend(u32le(central.len()));
    out.extend(u32le(cd_offset));
    out.extend([0, 0]);
    out
}

/// Writes a ResNet bundle's weights as a plain torchvision state dict: `.pth` (as `torch.save`
/// writes it) or `.safetensors`, by `out`'s extension. The bundle is loaded first (checksum,
/// classes and values checked), so bundles from before the torchvision layout are converted.
/// Returns the bundle's config.
pub fn export_bundle(
    dir: &std::path::Path,
    out: &std::path::Path,
) -> Result<super::bundle::BundleConfig, crate::error::FileError> {
    use crate::error::FileError;
    if super::bundle::read_config(dir)?
        .arch
        .resnet_depth()
        .is_none()
    {
        return Err(FileError::at(
            dir,
            "the Han CNN has no torchvision original; its model.safetensors is the export",
        ));
    }
    let (model, config) = super::bundle::load_bundle(dir, &burn::tensor::Device::flex())?;
    let bytes = super::bundle::model_to_safetensors(&model, &config.classes)
        .map_err(|e| FileError::at(dir, e))?;
    let data = match out.extension().and_then(|e| e.to_str()) {
        Some("pth") | Some("pt") => {
            safetensors_to_pth(&bytes).map_err(|e| FileError::at(out, e))?
        }
        Some("safetensors") => bytes,
        _ => {
            return Err(FileError::at(
                out,
                "the name must end in .pth or .safetensors",
            ));
        }
    };
    crate::util::write_atomic(out, &data).map_err(|e| FileError::at(out, e))?;
    Ok(config)
}
