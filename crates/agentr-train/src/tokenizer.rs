//! A byte-level BPE tokenizer trained on the environments' texts, with ChatML rendering and
//! per-token loss masks.

use std::path::Path;

use agentr_envs::{Message, Role};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, NormalizerWrapper, PostProcessorWrapper, Tokenizer, TokenizerBuilder, TokenizerImpl,
};

use crate::TrainError;

/// Opens a ChatML turn: `<|im_start|>role\n`.
pub const IM_START: &str = "<|im_start|>";
/// Ends a ChatML turn; generation stops on it.
pub const IM_END: &str = "<|im_end|>";
/// Padding and end of document.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// A tokenized conversation with its loss mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `true` where the token is a training target (content and end token of trained turns).
    pub mask: Vec<bool>,
}

/// The tokenizer plus the ids of its chat tokens.
#[derive(Clone)]
pub struct ChatTokenizer {
    inner: Tokenizer,
    im_start: u32,
    im_end: u32,
    end_of_text: u32,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

fn tokenizer_error(e: impl std::fmt::Display) -> TrainError {
    TrainError::Tokenizer(e.to_string())
}

impl ChatTokenizer {
    /// Trains a byte-level BPE of `vocab_size` tokens (chat tokens included) on `texts`.
    pub fn train<I, S>(texts: I, vocab_size: usize) -> Result<Self, TrainError>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let specials: Vec<AddedToken> = [END_OF_TEXT, IM_START, IM_END]
            .iter()
            .map(|t| AddedToken::from(*t, true))
            .collect();
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(specials.clone())
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut tokenizer: TokenizerImpl<
            BPE,
            NormalizerWrapper,
            ByteLevel,
            PostProcessorWrapper,
            ByteLevelDecoder,
        > = TokenizerBuilder::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_post_processor(None)
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_decoder(Some(ByteLevelDecoder::default()))
            .build()
            .map_err(tokenizer_error)?;
        tokenizer
            .train(&mut trainer, texts)
            .map_err(tokenizer_error)?;
        let mut tokenizer = Tokenizer::from(tokenizer);
        tokenizer
            .add_special_tokens(specials)
            .map_err(tokenizer_error)?;
        Self::from_tokenizer(tokenizer)
    }

    /// Wraps any `tokenizers` tokenizer whose vocabulary holds the three chat tokens
    /// ([`IM_START`], [`IM_END`], [`END_OF_TEXT`]); it should treat them as special (added)
    /// tokens so that they are matched in text and dropped by [`ChatTokenizer::decode`].
    /// Errors when one of them is missing.
    pub fn from_tokenizer(inner: Tokenizer) -> Result<Self, TrainError> {
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| TrainError::Tokenizer(format!("the vocabulary lacks {token}")))
        };
        Ok(ChatTokenizer {
            im_start: id(IM_START)?,
            im_end: id(IM_END)?,
            end_of_text: id(END_OF_TEXT)?,
            inner,
        })
    }

    /// Reads a `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let inner = Tokenizer::from_file(path).map_err(|e| TrainError::BadFile {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::from_tokenizer(inner)
    }

    /// Writes `tokenizer.json` (atomically).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let json = self.inner.to_string(false).map_err(tokenizer_error)?;
        agentr_envs::atomic::write(path, json.as_bytes()).map_err(|source| TrainError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner
    }

    /// The start-of-turn token.
    pub fn im_start(&self) -> u32 {
        self.im_start
    }

    /// Tokens in the vocabulary, chat tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The end-of-turn token.
    pub fn im_end(&self) -> u32 {
        self.im_end
    }

    /// The padding / end-of-text token.
    pub fn end_of_text(&self) -> u32 {
        self.end_of_text
    }

    /// Token ids of plain text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TrainError> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(tokenizer_error)?
            .get_ids()
            .to_vec())
    }

    /// Text of token ids (chat tokens dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TrainError> {
        self.inner.decode(ids, true).map_err(tokenizer_error)
    }

    fn push_header(&self, role: Role, into: &mut Rendered) -> Result<(), TrainError> {
        let role = match role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        into.ids.push(self.im_start);
        into.mask.push(false);
        let header = self.encode(&format!("{role}\n"))?;
        into.mask.extend(std::iter::repeat_n(false, header.len()));
        into.ids.extend(header);
        Ok(())
    }

    /// ChatML for `messages`: `<|im_start|>role\ncontent<|im_end|>\n` per turn. The content and
    /// end token of every message that trains ([`Message::trains`]) are loss targets.
    pub fn render(&self, messages: &[Message]) -> Result<Rendered, TrainError> {
        let mut out = Rendered {
            ids: Vec::new(),
            mask: Vec::new(),
        };
        let newline = self.encode("\n")?;
        for message in messages {
            self.push_header(message.role, &mut out)?;
            let trains = message.trains();
            let content = self.encode(&message.content)?;
            out.mask
                .extend(std::iter::repeat_n(trains, content.len() + 1));
            out.ids.extend(content);
            out.ids.push(self.im_end);
            out.mask.extend(std::iter::repeat_n(false, newline.len()));
            out.ids.extend(&newline);
        }
        Ok(out)
    }

    /// The prompt for the assistant's next turn: the rendered conversation plus
    /// `<|im_start|>assistant\n`.
    pub fn render_prompt(&self, messages: &[Message]) -> Result<Vec<u32>, TrainError> {
        let mut rendered = self.render(messages)?;
        self.push_header(Role::Assistant, &mut rendered)?;
        Ok(rendered.ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert_eq, proptest};

    fn corpus() -> Vec<String> {
        let mut texts = vec![agentr_envs::textcraft::INSTRUCTION.to_owned()];
        for i in 0..40 {
            texts.push(format!(
                "Crafting commands:\ncraft 4 oak planks using 1 oak logs\ncraft {i} stick using 2 planks\n\nGoal: craft stick."
            ));
            texts.push(format!(
                "Thought: I need {i} oak logs.\nAction: get {i} oak logs"
            ));
            texts.push("Could not find stick".to_owned());
        }
        texts
    }

    fn tokenizer() -> ChatTokenizer {
        ChatTokenizer::train(corpus().into_iter(), 400).unwrap()
    }

    #[test]
    fn trains_round_trips_and_saves() {
        let tokenizer = tokenizer();
        assert!(tokenizer.vocab_size() <= 400 && tokenizer.vocab_size() > 260);
        let text = "Thought: craft 4 oak planks.\nAction: get 3 oak logs, unseen wörds";
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
        // Frequent words become single tokens.
        assert!(ids.len() < text.len() / 2, "{} tokens", ids.len());
        let path = std::env::temp_dir().join(format!("agentr-tok-{}.json", std::process::id()));
        tokenizer.save(&path).unwrap();
        let loaded = ChatTokenizer::load(&path).unwrap();
        assert_eq!(loaded.encode(text).unwrap(), ids);
        assert_eq!(loaded.im_end(), tokenizer.im_end());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn chat_rendering_masks_trained_turns_only() {
        let tokenizer = tokenizer();
        let messages = vec![
            Message::user("Goal: craft stick."),
            Message::assistant("Ok.", false),
            Message::assistant("Action: get 1 oak logs", true),
        ];
        let rendered = tokenizer.render(&messages).unwrap();
        assert_eq!(rendered.ids.len(), rendered.mask.len());
        let text = tokenizer.inner.decode(&rendered.ids, false).unwrap();
        assert_eq!(
            text,
            "<|im_start|>user\nGoal: craft stick.<|im_end|>\n<|im_start|>assistant\nOk.<|im_end|>\n<|im_start|>assistant\nAction: get 1 oak logs<|im_end|>\n"
        );
        let trained: Vec<u32> = rendered
            .ids
            .iter()
            .zip(&rendered.mask)
            .filter(|(_, m)| **m)
            .map(|(id, _)| *id)
            .collect();
        let mut expected = tokenizer.encode("Action: get 1 oak logs").unwrap();
        expected.push(tokenizer.im_end());
        assert_eq!(trained, expected);
        let prompt = tokenizer.render_prompt(&messages[..1]).unwrap();
        assert!(
            tokenizer
                .inner
                .decode(&prompt, false)
                .unwrap()
                .ends_with("<|im_start|>assistant\n")
        );
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let err = ChatTokenizer::load(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/tokenizer.json"),
            "{err}"
        );
    }

    proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn any_text_round_trips(text in any::<String>()) {
            let tokenizer = tokenizer_once();
            // Chat tokens in the text stay special; everything else must survive exactly.
            if !text.contains("<|") {
                let ids = tokenizer.encode(&text).unwrap();
                prop_assert_eq!(tokenizer.decode(&ids).unwrap(), text);
            }
        }
    }

    fn tokenizer_once() -> &'static ChatTokenizer {
        static TOKENIZER: std::sync::OnceLock<ChatTokenizer> = std::sync::OnceLock::new();
        TOKENIZER.get_or_init(tokenizer)
    }
}
