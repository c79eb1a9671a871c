//! From flags to the library's option types.

use std::path::{Path, PathBuf};

use instrec::data::cache::default_cache_dir;
use instrec::data::mix::{CalibrationConfig, MixConfig};
use instrec::data::spec_augment::SpecAugmentConfig;
use instrec::demo::DemoOptions;
use instrec::eval::EvalOptions;
use instrec::tag::LibraryOptions;
use instrec::util::all_cores;
use instrec::walk::WalkOptions;

use super::{DemoArgs, EvaluateArgs, MixArgs, TagArgs, TrainArgs, WalkArgs};

impl TrainArgs {
    /// The run these flags describe.
    pub fn config(&self, data: PathBuf) -> instrec::train::TrainConfig {
        let mut c = instrec::train::TrainConfig::paper(
            data,
            self.arch,
            &self.init,
            self.channels,
            self.seed,
        );
        c.recipe = instrec::train::Recipe {
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            optimizer: self.optimizer,
            warmup_epochs: self.warmup_epochs,
            max_epochs: self.max_epochs,
            patience: self.patience,
            val_fraction: self.val_fraction,
            split: self.split,
        };
        c.val_data = self.val_data.clone();
        c.backend = self.compute.backend;
        c.device = self.compute.device;
        c.precision = self.precision;
        c.label_chords = self.label_chords;
        c.loss = self.loss;
        (c.follow, c.hidden) = (self.walk.follow, self.walk.hidden);
        if let Some(d) = &self.cache_dir {
            c.cache_dir = d.clone();
        }
        self.mixing.apply(&mut c);
        c.spec_augment = self.spec_augment.then(|| SpecAugmentConfig {
            level_db: self.spec_level_db,
            colour_db: self.spec_colour_db,
            freq_masks: self.spec_freq_masks,
            time_masks: self.spec_time_masks,
            warp: self.spec_warp,
            ..SpecAugmentConfig::default()
        });
        c
    }
}

impl MixArgs {
    pub fn apply(&self, c: &mut instrec::train::TrainConfig) {
        c.mix = self.mix.then_some(MixConfig {
            prob: self.mix_prob,
            max_sources: self.mix_sources,
            gain_db: self.mix_gain_db,
            partners: self.mix_partners,
            match_level: self.mix_match_level,
        });
        c.calibration = CalibrationConfig {
            mixtures: self.calib_mixtures,
            shares: self.calib_shares.clone(),
            gain_db: self.calib_gain_db,
            match_level: self.calib_match_level,
        };
    }
}

impl EvaluateArgs {
    /// The evaluation these flags describe.
    pub fn options(&self) -> EvalOptions {
        EvalOptions {
            aggregation: self.aggregation,
            fixed_threshold: self.threshold,
            hop: self.hop,
            walk: self.walk.options(),
            ..EvalOptions::paper(cache_dir(&self.cache_dir))
        }
    }
}

impl TagArgs {
    /// The library run these flags describe, into `out`.
    pub fn library_options(&self, out: &Path) -> LibraryOptions {
        LibraryOptions {
            out: out.to_path_buf(),
            resume: self.resume,
            shard: self.shard,
            timeline: !self.no_timeline,
            threads: self.threads.unwrap_or_else(all_cores),
        }
    }

    /// `--extensions` as the walk compares them: lowercase, without the dot.
    pub fn extension_list(&self) -> Vec<String> {
        self.extensions
            .iter()
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .collect()
    }
}

impl DemoArgs {
    /// The demo these flags describe.
    pub fn options(&self) -> DemoOptions {
        DemoOptions {
            dir: self.dir.clone(),
            train_per_class: self.train_per_class,
            test_clips: self.test_clips,
            epochs: self.epochs,
            backend: self.compute.backend,
            device: self.compute.device,
        }
    }
}

impl WalkArgs {
    /// The walk rules these flags describe.
    pub fn options(self) -> WalkOptions {
        WalkOptions {
            follow: self.follow,
            hidden: self.hidden,
        }
    }
}

/// `--cache-dir`, else the library's default cache folder.
pub fn cache_dir(flag: &Option<PathBuf>) -> PathBuf {
    flag.clone().unwrap_or_else(default_cache_dir)
}
