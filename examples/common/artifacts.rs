//! What the training example leaves for the inference example: `model.mpk` (the trained
//! parameters) and `config.json` (precision, backend, the task and its seed, the model and
//! its sizes).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use burn_mixed::Precision;
use serde::{Deserialize, Serialize};

use super::model::{ModelSpec, Net};
use super::task::TaskSpec;

/// Parameters are stored as f32 whatever the precision: exact for f16, bf16 and f32
/// (64-true weights are rounded to f32; loading converts back for the precision).
pub type Recorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// `config.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedConfig {
    /// The precision the model was trained in (after any fallback).
    pub precision: Precision,
    /// The backend it was trained on.
    pub backend: String,
    pub data: TaskSpec,
    pub model: ModelSpec,
}

fn model_path(dir: &Path) -> PathBuf {
    // The recorder adds the `.mpk` extension.
    dir.join("model")
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}

/// Writes `model.mpk` and `config.json` into `dir`.
pub fn save<B: Backend>(dir: &Path, model: Net<B>, config: &SavedConfig) -> Result<(), String> {
    let path = model_path(dir);
    model.save_file(&path, &Recorder::new()).map_err(|e| format!("cannot save the model to {}: {e}", path.display()))?;
    let path = config_path(dir);
    let json = serde_json::to_string_pretty(config).expect("plain data serializes");
    std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads `config.json` from `dir`.
pub fn load_config(dir: &Path) -> Result<SavedConfig, String> {
    let path = config_path(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("invalid {}: {e}", path.display()))
}

/// A model with the widths of `config`, holding the parameters of `dir`'s `model.mpk`
/// (in f32; `MixedPrecision::setup_module` converts them for the precision).
pub fn load_model<B: Backend>(dir: &Path, config: &SavedConfig, device: &B::Device) -> Result<Net<B>, String> {
    let path = model_path(dir);
    config
        .model
        .init::<B>(device)
        .load_file(&path, &Recorder::new(), device)
        .map_err(|e| format!("cannot load the model from {}.mpk: {e}", path.display()))
}
