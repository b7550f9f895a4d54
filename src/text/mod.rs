//! Tokenizer (byte-level BPE trained with the `tokenizers` crate on training text only, or a
//! pretrained model's own) and the prompt templates every model role shares.
//!
//! A [`Template`] holds the token ids of the markup around prompts and responses: one special token
//! per marker for the trained tokenizer, the model's own chat markup (ChatML) for a pretrained one,
//! so that an instruct model sees the format it was tuned on.

use anyhow::{Context, Result, anyhow};
use std::path::Path;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerImpl};

/// Special tokens, in id order (ids 0..=6).
pub const SPECIALS: [&str; 7] =
    ["<pad>", "<eos>", "<bos>", "<|user|>", "<|assistant|>", "<|response|>", "<|rewrite|>"];
pub const PAD: u32 = 0;
pub const EOS: u32 = 1;
pub const BOS: u32 = 2;
pub const USER: u32 = 3;
pub const ASSISTANT: u32 = 4;
pub const RESPONSE: u32 = 5;
pub const REWRITE: u32 = 6;

pub struct Text {
    pub tokenizer: Tokenizer,
    pub tpl: Template,
    /// Ids that `encode` never yields and `decode` never shows (the tokenizer's special tokens).
    special: Vec<bool>,
}

/// Markup of the prompt templates, as token ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// Ends a response (generation stops here).
    pub eos: u32,
    /// Before the prompt.
    pub user: Vec<u32>,
    /// Between prompt and the policy's response.
    pub assistant: Vec<u32>,
    /// Seq2seq RM input: between prompt and the response to rewrite.
    pub response: Vec<u32>,
    /// Seq2seq RM input: after the response to rewrite; the rewrite follows.
    pub rewrite: Vec<u32>,
}

impl Template {
    /// One special token per marker (the trained tokenizer).
    pub fn builtin() -> Self {
        Self { eos: EOS, user: vec![USER], assistant: vec![ASSISTANT], response: vec![RESPONSE], rewrite: vec![REWRITE] }
    }

    /// Chat template of the policy: `user prompt assistant`; the response follows, then `eos`.
    pub fn policy_prefix(&self, prompt: &[u32], max_prompt: usize) -> Vec<u32> {
        let mut v = Vec::with_capacity(prompt.len().min(max_prompt) + self.user.len() + self.assistant.len());
        v.extend(&self.user);
        v.extend(keep_tail(prompt, max_prompt));
        v.extend(&self.assistant);
        v
    }

    /// Input of the seq2seq RM: `user prompt response <response> rewrite`; its target (the
    /// rewritten or copied response, then `eos`) follows.
    pub fn seq2seq_prefix(&self, prompt: &[u32], response: &[u32], max_prompt: usize, max_response: usize) -> Vec<u32> {
        let mut v = self.user.clone();
        v.extend(keep_tail(prompt, max_prompt));
        v.extend(&self.response);
        v.extend(response.iter().take(max_response));
        v.extend(&self.rewrite);
        v
    }

    /// A response as a training target: at most `max_response` tokens; `eos` appended only when
    /// the whole response fits, so that the model never learns to stop where the text did not.
    pub fn response_target(&self, response: &[u32], max_response: usize) -> Vec<u32> {
        if response.len() < max_response {
            let mut v = response.to_vec();
            v.push(self.eos);
            v
        } else {
            response[..max_response].to_vec()
        }
    }

    /// Tokens the markup adds around a policy prompt and a seq2seq input (for length checks).
    pub fn overhead(&self) -> (usize, usize) {
        (self.user.len() + self.assistant.len(), self.user.len() + self.response.len() + self.rewrite.len())
    }
}

/// Instruction the seq2seq RM reads after the response, in the ChatML template.
pub const REWRITE_INSTRUCTION: &str = "Rewrite your answer so that it is helpful and harmless.";

impl Text {
    /// Trains a byte-level BPE tokenizer of `vocab_size` on `texts`.
    pub fn train(texts: &[String], vocab_size: usize) -> Result<Self> {
        let mut trainer = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size)
            .min_frequency(2)
            .special_tokens(SPECIALS.iter().map(|s| AddedToken::from(s.to_string(), true)).collect())
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut imp: TokenizerImpl<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel> =
            TokenizerImpl::new(BPE::default());
        imp.with_pre_tokenizer(Some(ByteLevel::default()));
        imp.with_decoder(Some(ByteLevel::default()));
        imp.train(&mut trainer, texts.iter())
            .map_err(|e| anyhow!("tokenizer training failed: {e}"))?;
        let tokenizer = Tokenizer::from(imp);
        Self::builtin(tokenizer)
    }

    fn builtin(tokenizer: Tokenizer) -> Result<Self> {
        let n = tokenizer.get_vocab_size(true);
        let special = (0..n).map(|i| i < SPECIALS.len()).collect();
        let text = Self { tokenizer, tpl: Template::builtin(), special };
        text.check_specials()?;
        Ok(text)
    }

    /// A trained tokenizer saved by [`Text::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
        Self::builtin(tokenizer).with_context(|| format!("tokenizer {}", path.display()))
    }

    /// A pretrained chat model's tokenizer with its ChatML markup (`<|im_start|>`, `<|im_end|>`).
    pub fn chatml(tokenizer: Tokenizer) -> Result<Self> {
        let id = |s: &str| tokenizer.token_to_id(s).ok_or_else(|| anyhow!("pretrained tokenizer has no `{s}` token (ChatML expected)"));
        let eos = id("<|im_end|>")?;
        id("<|im_start|>")?;
        let n = tokenizer.get_vocab_size(true);
        let mut special = vec![false; n];
        for (&i, tok) in tokenizer.get_added_tokens_decoder().iter() {
            if tok.special && (i as usize) < n {
                special[i as usize] = true;
            }
        }
        let enc = |s: &str| -> Result<Vec<u32>> {
            Ok(tokenizer.encode(s, false).map_err(|e| anyhow!("cannot encode template `{s}`: {e}"))?.get_ids().to_vec())
        };
        let tpl = Template {
            eos,
            user: enc("<|im_start|>user\n")?,
            assistant: enc("<|im_end|>\n<|im_start|>assistant\n")?,
            response: enc("<|im_end|>\n<|im_start|>assistant\n")?,
            rewrite: enc(&format!("\n<|im_start|>user\n{REWRITE_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n"))?,
        };
        Ok(Self { tokenizer, tpl, special })
    }

    /// The tokenizer a pretrained checkpoint carries, with its ChatML markup.
    pub fn from_checkpoint(ckpt: &crate::pretrained::Checkpoint) -> Result<Self> {
        Self::chatml(ckpt.tokenizer.clone().ok_or_else(|| anyhow!("the checkpoint carries no tokenizer"))?)
    }

    fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self
            .tokenizer
            .to_string(false)
            .map_err(|e| anyhow!("cannot serialise tokenizer: {e}"))?;
        crate::util::write_atomic(path, json.as_bytes())
    }

    fn check_specials(&self) -> Result<()> {
        for (i, s) in SPECIALS.iter().enumerate() {
            if self.tokenizer.token_to_id(s) != Some(i as u32) {
                return Err(anyhow!("special token {s} must have id {i}"));
            }
        }
        Ok(())
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Token ids of plain text (no special tokens are recognised inside `s`).
    pub fn encode(&self, s: &str) -> Vec<u32> {
        match self.tokenizer.encode(s, false) {
            Ok(enc) => enc.get_ids().iter().copied().filter(|&id| !self.is_special(id)).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Text of ids, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let plain: Vec<u32> = ids.iter().copied().filter(|&id| !self.is_special(id)).collect();
        self.tokenizer.decode(&plain, true).unwrap_or_default().trim().to_string()
    }
}

/// Long prompts keep their end (the question usually sits there).
fn keep_tail(ids: &[u32], n: usize) -> &[u32] {
    &ids[ids.len().saturating_sub(n)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_tokenizer_round_trips_and_keeps_special_ids() {
        let texts: Vec<String> = (0..200)
            .map(|i| format!("How do I bake bread number {i}? You mix flour, water and salt, then wait."))
            .collect();
        let text = Text::train(&texts, 300).unwrap();
        let ids = text.encode("How do I bake bread?");
        assert!(!ids.is_empty());
        assert!(ids.iter().all(|&i| i as usize >= SPECIALS.len()));
        assert_eq!(text.decode(&ids), "How do I bake bread?");
        // Special tokens are dropped on decode, and text that spells a special is not mapped to it.
        let mut with_eos = ids.clone();
        with_eos.push(EOS);
        assert_eq!(text.decode(&with_eos), "How do I bake bread?");
        assert!(!text.encode("<eos>").contains(&EOS));
        // Unseen characters still encode (byte-level alphabet).
        assert_eq!(text.decode(&text.encode("naïve ☃")), "naïve ☃");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok.json");
        text.save(&path).unwrap();
        let again = Text::load(&path).unwrap();
        assert_eq!(again.encode("How do I bake bread?"), ids);
    }

    #[test]
    fn templates_place_markers_and_eos() {
        let t = Template::builtin();
        assert_eq!(t.policy_prefix(&[10, 11, 12], 2), vec![USER, 11, 12, ASSISTANT]);
        assert_eq!(t.seq2seq_prefix(&[10], &[20, 21, 22], 5, 2), vec![USER, 10, RESPONSE, 20, 21, REWRITE]);
        assert_eq!(t.response_target(&[7, 8], 3), vec![7, 8, EOS]);
        assert_eq!(t.response_target(&[7, 8, 9], 3), vec![7, 8, 9]);
        assert_eq!(t.overhead(), (2, 3));
    }
}
