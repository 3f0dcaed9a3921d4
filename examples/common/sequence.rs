//! The transformer's task: sort a short sequence of tokens.
//!
//! Each item is `SEQ_LEN` tokens drawn uniformly from `0..VOCAB`; the target at position
//! `i` is the `i`-th smallest token. Every output depends on every input (a token's place
//! is its rank among all the others), so the model has to attend across the whole
//! sequence; a model that sees one position only can do no better than guess from where
//! the position lies (about a quarter of the tokens). The items are generated from the seed in plain Rust,
//! as the blobs are, so the inference example regenerates the validation set.

use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::data::{Stream, rng};

/// Tokens per sequence.
pub const SEQ_LEN: usize = 16;
/// Distinct token values.
pub const VOCAB: usize = 32;
/// Validation sequences, fixed so the validation set depends on the seed alone.
pub const VALID_ITEMS: usize = 512;
/// Training sequences when `--steps` is not given: 1000 steps at the default batch size,
/// from half a minute (32-true) to two (16-true) on two CPU cores with Flex.
pub const DEFAULT_TRAIN_ITEMS: usize = 64_000;

/// One sequence and its sorted version.
#[derive(Clone, Debug)]
pub struct Sequence {
    pub tokens: [u8; SEQ_LEN],
    pub targets: [u8; SEQ_LEN],
}

/// What defines the data set; saved in `config.json` for the inference example.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SequenceSpec {
    pub seed: u64,
    pub seq_len: usize,
    pub vocab: usize,
    pub train_items: usize,
    pub valid_items: usize,
}

impl SequenceSpec {
    pub fn new(seed: u64, train_items: usize) -> Self {
        Self { seed, seq_len: SEQ_LEN, vocab: VOCAB, train_items, valid_items: VALID_ITEMS }
    }

    fn sequences(&self, stream: Stream, n: usize) -> Result<Vec<Sequence>, String> {
        if (self.seq_len, self.vocab) != (SEQ_LEN, VOCAB) {
            return Err(format!(
                "the data spec has sequences of {} tokens out of {}; this build makes {SEQ_LEN} out of {VOCAB}",
                self.seq_len, self.vocab
            ));
        }
        let mut rng = rng(self.seed, stream);
        Ok((0..n)
            .map(|_| {
                let tokens: [u8; SEQ_LEN] = std::array::from_fn(|_| rng.random_range(0..VOCAB as u8));
                let mut targets = tokens;
                targets.sort_unstable();
                Sequence { tokens, targets }
            })
            .collect())
    }

    pub fn train(&self) -> Result<Vec<Sequence>, String> {
        self.sequences(Stream::Train, self.train_items)
    }

    pub fn valid(&self) -> Result<Vec<Sequence>, String> {
        self.sequences(Stream::Valid, self.valid_items)
    }
}
