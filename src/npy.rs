//! Minimal reader and writer for NumPy `.npy` files holding float32 (or float64) arrays in C order,
//! the interchange format of the fixtures and of `instrec features` / `instrec forward`.

use crate::error::Reason;
use std::io::Write;
use std::path::Path;

use crate::util::write_atomic;

/// A dense n-dimensional float32 array in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Why a `.npy` file could not be read or written, naming it (an I/O error is part of the
/// reason, not a separate source: printed once).
pub type NpyError = crate::error::FileError;

/// The `.npy` version 1.0 header of a little-endian float32 array in C order.
fn header(shape: &[usize]) -> Vec<u8> {
    let shape = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

impl NpyArray {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?} does not match {} values",
            data.len()
        );
        Self { shape, data }
    }

    /// Serialises the array as `.npy` version 1.0 bytes (`<f4`, C order).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = header(&self.shape);
        out.reserve(4 * self.data.len());
        for v in &self.data {
            out.write_all(&v.to_le_bytes())
                .expect("writing to a Vec cannot fail");
        }
        out
    }

    /// Writes a `[rows, columns.len()]` array given column by column (each `rows` long), in C
    /// order, atomically, without a second copy of the data in memory.
    pub fn write_columns(path: &Path, rows: usize, columns: &[Vec<f32>]) -> Result<(), NpyError> {
        crate::util::write_atomic_with(path, |w| {
            w.write_all(&header(&[rows, columns.len()]))?;
            for r in 0..rows {
                for c in columns {
                    w.write_all(&c[r].to_le_bytes())?;
                }
            }
            Ok(())
        })
        .map_err(|error| NpyError::at(path, error))
    }

    /// Writes the array atomically (temporary file + rename).
    pub fn write(&self, path: &Path) -> Result<(), NpyError> {
        write_atomic(path, &self.to_bytes()).map_err(|error| NpyError::at(path, error))
    }

    /// Reads a `.npy` file of little-endian float32 or float64 values in C order.
    pub fn read(path: &Path) -> Result<Self, NpyError> {
        let bytes = std::fs::read(path).map_err(|error| NpyError::at(path, error))?;
        Self::from_bytes(&bytes).map_err(|reason| NpyError::at(path, reason))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Reason> {
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err("not a .npy file (bad magic)".into());
        }
        let (header_len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 => {
                if bytes.len() < 12 {
                    return Err("truncated .npy header".into());
                }
                (
                    u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                    12,
                )
            }
            v => return Err(format!("unsupported .npy version {v}").into()),
        };
        let header = bytes
            .get(start..start + header_len)
            .ok_or("truncated .npy header")?;
        let header = std::str::from_utf8(header).map_err(|_| "header is not UTF-8")?;
        let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
        let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
        let fortran_order = match fortran.trim() {
            "False" => false,
            "True" => true,
            other => return Err(format!("bad fortran_order {other}").into()),
        };
        let shape_text = dict_value(header, "shape").ok_or("header has no 'shape'")?;
        let shape: Vec<usize> = shape_text
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<usize>()
                    .map_err(|_| format!("bad shape {shape_text}"))
            })
            .collect::<Result<_, _>>()?;
        let n: usize = shape.iter().product();
        let body = &bytes[start + header_len..];
        let descr = descr.trim().trim_matches('\'').trim_matches('"');
        let data: Vec<f32> = match descr {
            "<f4" => {
                if body.len() < 4 * n {
                    return Err(format!("truncated data: {} of {} bytes", body.len(), 4 * n).into());
                }
                body.chunks_exact(4)
                    .take(n)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            "<f8" => {
                if body.len() < 8 * n {
                    return Err(format!("truncated data: {} of {} bytes", body.len(), 8 * n).into());
                }
                body.chunks_exact(8)
                    .take(n)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                    .collect()
            }
            other => return Err(format!("unsupported dtype {other} (expected <f4 or <f8)").into()),
        };
        let data = if fortran_order && shape.len() > 1 {
            fortran_to_c(&shape, &data)
        } else {
            data
        };
        Ok(Self { shape, data })
    }
}

/// Reorders column-major (Fortran) values into row-major (C) order.
fn fortran_to_c(shape: &[usize], data: &[f32]) -> Vec<f32> {
    let n = data.len();
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..n {
        // Fortran offset of the current C-order index.
        let mut offset = 0;
        for d in (0..shape.len()).rev() {
            offset = offset * shape[d] + index[d];
        }
        out.push(data[offset]);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

/// The text of one value of the Python dict literal in a `.npy` header.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find(',').unwrap_or(rest.len())
    };
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_shape_and_values() {
        for shape in [vec![5], vec![2, 3], vec![2, 3, 4, 1]] {
            let n = shape.iter().product();
            let a = NpyArray::new(shape, (0..n).map(|i| i as f32 * 0.5 - 1.0).collect());
            let bytes = a.to_bytes();
            // The data starts on a 64-byte boundary, as NumPy writes it.
            assert_eq!((bytes.len() - 4 * n) % 64, 0);
            assert_eq!(NpyArray::from_bytes(&bytes).unwrap(), a);
        }
    }

    #[test]
    fn fortran_order_is_read_as_c_order() {
        // [[1, 2, 3], [4, 5, 6]] stored column-major.
        let mut bytes = NpyArray::new(vec![2, 3], vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]).to_bytes();
        let end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let header = std::str::from_utf8(&bytes[10..end])
            .unwrap()
            .replacen("False", "True ", 1);
        bytes.splice(10..end, header.into_bytes());
        let a = NpyArray::from_bytes(&bytes).unwrap();
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(NpyArray::from_bytes(b"hello world").is_err());
        let a = NpyArray::new(vec![4], vec![1.0; 4]);
        let bytes = a.to_bytes();
        let err = NpyArray::from_bytes(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }
}
