//! The transformer: token and position embeddings, pre-norm encoder blocks (Burn's
//! `MultiHeadAttention`, layer norm, a GELU MLP) and a linear head giving a token per
//! position. As with the MLP, mixed precision adds `MixedPrecision::output` on the logits
//! and nothing else: the inputs are token ids, and the embeddings produce activations in
//! the parameters' own dtype.

use burn::module::Module;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{Embedding, EmbeddingConfig, Gelu, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use burn_mixed::{MixedPrecision, Precision};
use serde::{Deserialize, Serialize};

/// Sizes; saved in `config.json` so the inference example rebuilds the same model.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct TransformerSpec {
    pub vocab: usize,
    pub seq_len: usize,
    pub d_model: usize,
    pub heads: usize,
    pub layers: usize,
    pub d_ff: usize,
}

impl TransformerSpec {
    /// Freshly initialised f32 parameters, converting for 32-true until
    /// [`SequenceModel::with_precision`] says otherwise.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SequenceModel<B> {
        // No dropout: every precision then trains on exactly the same computation, and the
        // runs of a comparison differ by precision alone.
        let attention = MultiHeadAttentionConfig::new(self.d_model, self.heads).with_dropout(0.0);
        let blocks = (0..self.layers)
            .map(|_| Block {
                norm_attention: LayerNormConfig::new(self.d_model).init(device),
                attention: attention.init(device),
                norm_mlp: LayerNormConfig::new(self.d_model).init(device),
                expand: LinearConfig::new(self.d_model, self.d_ff).init(device),
                contract: LinearConfig::new(self.d_ff, self.d_model).init(device),
                activation: Gelu::new(),
            })
            .collect();
        SequenceModel {
            tokens: EmbeddingConfig::new(self.vocab, self.d_model).init(device),
            positions: EmbeddingConfig::new(self.seq_len, self.d_model).init(device),
            blocks,
            norm: LayerNormConfig::new(self.d_model).init(device),
            head: LinearConfig::new(self.d_model, self.vocab).init(device),
            precision: MixedPrecision::new(Precision::True32),
        }
    }
}

/// One pre-norm encoder block: `x + attention(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    norm_attention: LayerNorm<B>,
    attention: MultiHeadAttention<B>,
    norm_mlp: LayerNorm<B>,
    expand: Linear<B>,
    contract: Linear<B>,
    activation: Gelu,
}

impl<B: Backend> Block<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let attended = self.attention.forward(MhaInput::self_attn(self.norm_attention.forward(x.clone()))).context;
        let x = x + attended;
        let hidden = self.activation.forward(self.expand.forward(self.norm_mlp.forward(x.clone())));
        x + self.contract.forward(hidden)
    }
}

#[derive(Module, Debug)]
pub struct SequenceModel<B: Backend> {
    tokens: Embedding<B>,
    positions: Embedding<B>,
    blocks: Vec<Block<B>>,
    norm: LayerNorm<B>,
    head: Linear<B>,
    /// Not a parameter: how outputs are converted for the run's precision.
    #[module(skip)]
    precision: MixedPrecision,
}

impl<B: Backend> SequenceModel<B> {
    pub fn with_precision(mut self, precision: MixedPrecision) -> Self {
        self.precision = precision;
        self
    }

    /// f32 logits `[batch * seq_len, vocab]` for tokens `[batch, seq_len]`, one row per
    /// position (so burn-train's accuracy counts tokens).
    pub fn forward_f32(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [batch, seq_len] = tokens.dims();
        let positions = Tensor::<B, 1, Int>::arange(0..seq_len as i64, &tokens.device()).reshape([1, seq_len]).repeat_dim(0, batch);
        let mut x = self.tokens.forward(tokens) + self.positions.forward(positions);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let logits = self.head.forward(self.norm.forward(x));
        let vocab = logits.dims()[2];
        self.precision.output(logits.reshape([batch * seq_len, vocab]))
    }

    /// The token embedding table, e.g. to read the dtype parameters are stored in.
    pub fn first_weight(&self) -> Tensor<B, 2> {
        self.tokens.weight.val()
    }
}
