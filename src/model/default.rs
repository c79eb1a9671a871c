//! The model instrec ships (`models/default`, described in `MODEL.md`): a compact bundle built
//! into the binary, so that `instrec tag song.mp3` needs no `--model` and no network.

use std::path::Path;

use burn::tensor::Device;

use super::bundle::{BundleConfig, load_bundle_bytes};
use super::network::Model;
use crate::error::FileError;

const CONFIG: &str = include_str!("../../models/default/config.json");
const WEIGHTS: &[u8] = include_bytes!("../../models/default/model.safetensors");

/// How errors and reports name the built-in model.
pub const NAME: &str = "built-in model (models/default, see MODEL.md)";

/// Loads the built-in model onto `device`.
pub fn load(device: &Device) -> Result<(Model, BundleConfig), FileError> {
    load_bundle_bytes(Path::new(NAME), CONFIG, WEIGHTS.to_vec(), device)
}

/// The built-in model as a bundle directory's two files (config, weights).
pub fn files() -> (&'static str, &'static [u8]) {
    (CONFIG, WEIGHTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::library::licence_is_shippable;

    /// The built-in model loads from the binary alone, its weights are the compact kind, and
    /// every library it was trained or validated on is recorded with a licence that lets it ship.
    #[test]
    fn the_built_in_model_loads_and_every_source_may_ship() {
        let (_, config) = load(&Device::flex()).unwrap();
        assert_eq!(config.classes, crate::CLASSES);
        assert!(super::super::safetensors::has_f16(WEIGHTS));
        let p = &config.provenance;
        assert!(!p.sources.is_empty(), "the training sources are recorded");
        for s in p.all_sources() {
            let licence = s.licence.as_deref().unwrap_or("none");
            assert!(licence_is_shippable(licence), "{}: {licence}", s.name);
            assert!(s.source.is_some() && s.sha256.is_some(), "{}", s.name);
        }
    }
}
