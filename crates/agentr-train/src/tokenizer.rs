//! A byte-level BPE tokenizer trained on the environments' texts, with chat rendering and
//! per-token loss masks.
//!
//! Two chat formats are supported because pretrained checkpoints only follow the format they
//! were tuned on: ChatML (`<|im_start|>role\ncontent<|im_end|>\n`, used by Qwen2.x, SmolLM and
//! our own trained tokenizer) and Llama 3 (`<|begin_of_text|>` once, then
//! `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` per turn). The format is
//! read off the vocabulary, so a Hugging Face `tokenizer.json` needs no extra configuration.

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
/// Padding and end of document in ChatML vocabularies.
pub const END_OF_TEXT: &str = "<|endoftext|>";

const LLAMA3_BEGIN_OF_TEXT: &str = "<|begin_of_text|>";
const LLAMA3_END_OF_TEXT: &str = "<|end_of_text|>";
const LLAMA3_START_HEADER: &str = "<|start_header_id|>";
const LLAMA3_END_HEADER: &str = "<|end_header_id|>";
const LLAMA3_EOT: &str = "<|eot_id|>";

/// How conversations are laid out in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFormat {
    /// `<|im_start|>role\ncontent<|im_end|>\n` per turn (Qwen2.x, SmolLM, trained here).
    ChatMl,
    /// `<|begin_of_text|>` once, then `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`
    /// per turn (Llama 3.x).
    Llama3,
}

/// The format together with the ids only that format needs, so that rendering cannot meet a
/// missing token.
#[derive(Debug, Clone, Copy)]
enum Layout {
    ChatMl,
    Llama3 {
        /// Absent from some derived vocabularies; the conversation then simply starts with a
        /// header.
        begin_of_text: Option<u32>,
        end_header: u32,
    },
}

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
    layout: Layout,
    turn_start: u32,
    turn_end: u32,
    end_of_text: u32,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("format", &self.format())
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

fn tokenizer_error(e: impl std::fmt::Display) -> TrainError {
    TrainError::Tokenizer(e.to_string())
}

/// A byte-level BPE of `vocab_size` tokens trained on `texts`, with `specials` as special added
/// tokens (matched in text, dropped when decoding).
fn train_bpe<I, S>(texts: I, vocab_size: usize, specials: &[&str]) -> Result<Tokenizer, TrainError>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let specials: Vec<AddedToken> = specials
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
    Ok(tokenizer)
}

impl ChatTokenizer {
    /// Trains a byte-level BPE of `vocab_size` tokens (chat tokens included) on `texts`. Its
    /// format is ChatML: one turn-end token doubles as the stop token without a separate
    /// header-end token, which leaves more of a small vocabulary to text.
    pub fn train<I, S>(texts: I, vocab_size: usize) -> Result<Self, TrainError>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        Self::from_tokenizer(train_bpe(
            texts,
            vocab_size,
            &[END_OF_TEXT, IM_START, IM_END],
        )?)
    }

    /// Wraps any `tokenizers` tokenizer whose vocabulary holds the tokens of a chat format:
    /// ChatML when it has [`IM_START`] and [`IM_END`] ([`END_OF_TEXT`] is optional; the turn end
    /// stands in for it), otherwise Llama 3 when it has `<|start_header_id|>`,
    /// `<|end_header_id|>` and `<|eot_id|>` (`<|begin_of_text|>` and `<|end_of_text|>` are
    /// optional). The tokenizer should treat these as special (added) tokens so that they are
    /// matched in text and dropped by [`ChatTokenizer::decode`]. Errors, naming what each format
    /// misses, when neither is complete.
    pub fn from_tokenizer(inner: Tokenizer) -> Result<Self, TrainError> {
        let id = |token: &str| inner.token_to_id(token);
        let missing = |tokens: &[&str]| -> Vec<String> {
            tokens
                .iter()
                .filter(|t| id(t).is_none())
                .map(|t| (*t).to_owned())
                .collect()
        };
        let (layout, turn_start, turn_end, end_of_text) =
            if let (Some(start), Some(end)) = (id(IM_START), id(IM_END)) {
                (Layout::ChatMl, start, end, id(END_OF_TEXT).unwrap_or(end))
            } else if let (Some(start), Some(end_header), Some(eot)) = (
                id(LLAMA3_START_HEADER),
                id(LLAMA3_END_HEADER),
                id(LLAMA3_EOT),
            ) {
                let layout = Layout::Llama3 {
                    begin_of_text: id(LLAMA3_BEGIN_OF_TEXT),
                    end_header,
                };
                (layout, start, eot, id(LLAMA3_END_OF_TEXT).unwrap_or(eot))
            } else {
                return Err(TrainError::Tokenizer(format!(
                    "the vocabulary has no known chat format: ChatML lacks {}; Llama 3 lacks {}",
                    missing(&[IM_START, IM_END]).join(", "),
                    missing(&[LLAMA3_START_HEADER, LLAMA3_END_HEADER, LLAMA3_EOT]).join(", "),
                )));
            };
        Ok(ChatTokenizer {
            inner,
            layout,
            turn_start,
            turn_end,
            end_of_text,
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

    /// The chat format found in the vocabulary.
    pub fn format(&self) -> ChatFormat {
        match self.layout {
            Layout::ChatMl => ChatFormat::ChatMl,
            Layout::Llama3 { .. } => ChatFormat::Llama3,
        }
    }

    /// The token that opens a turn (`<|im_start|>` or `<|start_header_id|>`).
    pub fn turn_start(&self) -> u32 {
        self.turn_start
    }

    /// Tokens in the vocabulary, chat tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The most bytes of text one token stands for (byte-level vocabularies spell each byte as
    /// one character; added tokens stand for their own text). A text of `b` bytes has at least
    /// `b / longest_token_bytes()` tokens: a cheap bound before tokenizing.
    pub fn longest_token_bytes(&self) -> usize {
        self.inner
            .get_vocab(true)
            .keys()
            .map(|token| token.chars().count().max(token.len()))
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// The token that ends a turn (`<|im_end|>` or `<|eot_id|>`); generation stops on it.
    pub fn turn_end(&self) -> u32 {
        self.turn_end
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

    /// Appends `ids` to `into`, none of them a loss target.
    fn push_untrained(into: &mut Rendered, ids: &[u32]) {
        into.mask.extend(std::iter::repeat_n(false, ids.len()));
        into.ids.extend(ids);
    }

    fn push_header(&self, role: Role, into: &mut Rendered) -> Result<(), TrainError> {
        let role = match role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        Self::push_untrained(into, &[self.turn_start]);
        match self.layout {
            Layout::ChatMl => Self::push_untrained(into, &self.encode(&format!("{role}\n"))?),
            Layout::Llama3 { end_header, .. } => {
                Self::push_untrained(into, &self.encode(role)?);
                Self::push_untrained(into, &[end_header]);
                Self::push_untrained(into, &self.encode("\n\n")?);
            }
        }
        Ok(())
    }

    /// The conversation in the tokenizer's [`ChatFormat`]. The content and turn-end token of
    /// every message that trains ([`Message::trains`]) are loss targets: the end token is what
    /// teaches the model to stop. Headers, `<|begin_of_text|>` and ChatML's newline after a
    /// turn are context only.
    pub fn render(&self, messages: &[Message]) -> Result<Rendered, TrainError> {
        let mut out = Rendered {
            ids: Vec::new(),
            mask: Vec::new(),
        };
        // Llama 3 has no separator between turns; ChatML puts a newline after each.
        let separator = match self.layout {
            Layout::ChatMl => self.encode("\n")?,
            Layout::Llama3 { begin_of_text, .. } => {
                Self::push_untrained(&mut out, begin_of_text.as_slice());
                Vec::new()
            }
        };
        for message in messages {
            self.push_header(message.role, &mut out)?;
            let trains = message.trains();
            let content = self.encode(&message.content)?;
            out.mask
                .extend(std::iter::repeat_n(trains, content.len() + 1));
            out.ids.extend(content);
            out.ids.push(self.turn_end);
            Self::push_untrained(&mut out, &separator);
        }
        Ok(out)
    }

    /// The prompt for the assistant's next turn: the rendered conversation plus an open
    /// assistant header (`<|im_start|>assistant\n` or
    /// `<|start_header_id|>assistant<|end_header_id|>\n\n`).
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
        assert_eq!(loaded.turn_end(), tokenizer.turn_end());
        assert_eq!(loaded.format(), ChatFormat::ChatMl);
        std::fs::remove_file(&path).unwrap();
    }

    /// No token stands for more text than `longest_token_bytes`, so a text's length bounds its
    /// token count from below.
    #[test]
    fn the_longest_token_bounds_token_counts() {
        let tokenizer = tokenizer();
        let longest = tokenizer.longest_token_bytes();
        assert!(longest >= IM_START.len(), "{longest}");
        for text in corpus() {
            let ids = tokenizer.encode(&text).unwrap();
            assert!(ids.len() >= text.len() / longest, "{text:?}");
            for id in ids {
                assert!(tokenizer.decode(&[id]).unwrap().len() <= longest);
            }
        }
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
        expected.push(tokenizer.turn_end());
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

    const LLAMA3_SPECIALS: [&str; 5] = [
        LLAMA3_BEGIN_OF_TEXT,
        LLAMA3_END_OF_TEXT,
        LLAMA3_START_HEADER,
        LLAMA3_END_HEADER,
        LLAMA3_EOT,
    ];

    /// A BPE trained on the corpus whose only special tokens are `specials`.
    fn tokenizer_with(specials: &[&str]) -> Result<ChatTokenizer, TrainError> {
        ChatTokenizer::from_tokenizer(train_bpe(corpus().into_iter(), 400, specials).unwrap())
    }

    fn llama3_once() -> &'static ChatTokenizer {
        static TOKENIZER: std::sync::OnceLock<ChatTokenizer> = std::sync::OnceLock::new();
        TOKENIZER.get_or_init(|| tokenizer_with(&LLAMA3_SPECIALS).unwrap())
    }

    fn conversation() -> Vec<Message> {
        vec![
            Message {
                role: Role::System,
                content: "You craft.".to_owned(),
                loss: None,
            },
            Message::user("Goal: craft stick."),
            Message::assistant("Action: get 1 oak logs", true),
        ]
    }

    #[test]
    fn the_format_and_its_tokens_come_from_the_vocabulary() {
        // (special tokens, expected format, turn start, turn end, end of text)
        let cases: [(&[&str], ChatFormat, &str, &str, &str); 5] = [
            (
                &[END_OF_TEXT, IM_START, IM_END],
                ChatFormat::ChatMl,
                IM_START,
                IM_END,
                END_OF_TEXT,
            ),
            (
                &[IM_START, IM_END],
                ChatFormat::ChatMl,
                IM_START,
                IM_END,
                IM_END,
            ),
            (
                &LLAMA3_SPECIALS,
                ChatFormat::Llama3,
                LLAMA3_START_HEADER,
                LLAMA3_EOT,
                LLAMA3_END_OF_TEXT,
            ),
            (
                &[LLAMA3_START_HEADER, LLAMA3_END_HEADER, LLAMA3_EOT],
                ChatFormat::Llama3,
                LLAMA3_START_HEADER,
                LLAMA3_EOT,
                LLAMA3_EOT,
            ),
            // ChatML wins when a vocabulary has both.
            (
                &[
                    IM_START,
                    IM_END,
                    LLAMA3_START_HEADER,
                    LLAMA3_END_HEADER,
                    LLAMA3_EOT,
                ],
                ChatFormat::ChatMl,
                IM_START,
                IM_END,
                IM_END,
            ),
        ];
        for (specials, format, start, end, end_of_text) in cases {
            let tokenizer = tokenizer_with(specials).unwrap();
            let id = |token| tokenizer.tokenizer().token_to_id(token).unwrap();
            assert_eq!(tokenizer.format(), format, "{specials:?}");
            assert_eq!(
                (
                    tokenizer.turn_start(),
                    tokenizer.turn_end(),
                    tokenizer.end_of_text()
                ),
                (id(start), id(end), id(end_of_text)),
                "{specials:?}"
            );
        }
    }

    #[test]
    fn a_vocabulary_without_a_chat_format_names_what_is_missing() {
        let err = tokenizer_with(&[END_OF_TEXT, IM_START, LLAMA3_START_HEADER, LLAMA3_EOT])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ChatML lacks <|im_end|>; Llama 3 lacks <|end_header_id|>"),
            "{err}"
        );
        let err = tokenizer_with(&[END_OF_TEXT]).unwrap_err().to_string();
        assert!(
            err.contains(
                "ChatML lacks <|im_start|>, <|im_end|>; \
                 Llama 3 lacks <|start_header_id|>, <|end_header_id|>, <|eot_id|>"
            ),
            "{err}"
        );
    }

    #[test]
    fn both_formats_render_exact_tokens_and_masks() {
        // Each format's rendering of `conversation()` as (text, is a loss target) pieces, each
        // piece encoded on its own.
        let cases: [(&ChatTokenizer, &[(&str, bool)]); 2] = [
            (
                tokenizer_once(),
                &[
                    ("<|im_start|>", false),
                    ("system\n", false),
                    ("You craft.", false),
                    ("<|im_end|>", false),
                    ("\n", false),
                    ("<|im_start|>", false),
                    ("user\n", false),
                    ("Goal: craft stick.", false),
                    ("<|im_end|>", false),
                    ("\n", false),
                    ("<|im_start|>", false),
                    ("assistant\n", false),
                    ("Action: get 1 oak logs", true),
                    ("<|im_end|>", true),
                    ("\n", false),
                ],
            ),
            (
                llama3_once(),
                &[
                    ("<|begin_of_text|>", false),
                    ("<|start_header_id|>", false),
                    ("system", false),
                    ("<|end_header_id|>", false),
                    ("\n\n", false),
                    ("You craft.", false),
                    ("<|eot_id|>", false),
                    ("<|start_header_id|>", false),
                    ("user", false),
                    ("<|end_header_id|>", false),
                    ("\n\n", false),
                    ("Goal: craft stick.", false),
                    ("<|eot_id|>", false),
                    ("<|start_header_id|>", false),
                    ("assistant", false),
                    ("<|end_header_id|>", false),
                    ("\n\n", false),
                    ("Action: get 1 oak logs", true),
                    ("<|eot_id|>", true),
                ],
            ),
        ];
        for (tokenizer, pieces) in cases {
            let mut expected = Rendered {
                ids: Vec::new(),
                mask: Vec::new(),
            };
            for (text, target) in pieces {
                let ids = tokenizer.encode(text).unwrap();
                expected
                    .mask
                    .extend(std::iter::repeat_n(*target, ids.len()));
                expected.ids.extend(ids);
            }
            let rendered = tokenizer.render(&conversation()).unwrap();
            assert_eq!(rendered, expected, "{:?}", tokenizer.format());
            let text: String = pieces.iter().map(|(text, _)| *text).collect();
            assert_eq!(
                tokenizer.tokenizer().decode(&rendered.ids, false).unwrap(),
                text
            );
        }
    }

    #[test]
    fn the_prompt_ends_with_an_open_assistant_header() {
        for (tokenizer, header) in [
            (tokenizer_once(), "<|im_start|>assistant\n"),
            (
                llama3_once(),
                "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ),
        ] {
            let messages = &conversation()[..2];
            let prompt = tokenizer.render_prompt(messages).unwrap();
            let rendered = tokenizer.render(messages).unwrap();
            assert_eq!(prompt[..rendered.ids.len()], rendered.ids);
            assert_eq!(
                tokenizer
                    .tokenizer()
                    .decode(&prompt[rendered.ids.len()..], false)
                    .unwrap(),
                header
            );
        }
    }

    #[test]
    fn llama3_decoding_drops_the_chat_tokens() {
        let tokenizer = llama3_once();
        let rendered = tokenizer.render(&conversation()).unwrap();
        assert_eq!(
            tokenizer.decode(&rendered.ids).unwrap(),
            "system\n\nYou craft.user\n\nGoal: craft stick.assistant\n\nAction: get 1 oak logs"
        );
        let text = "Thought: I need 3 oak logs.\nAction: get 3 oak logs";
        assert_eq!(
            tokenizer.decode(&tokenizer.encode(text).unwrap()).unwrap(),
            text
        );
    }

    proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn the_loss_targets_are_the_trained_content(
            system in any::<String>(),
            user in any::<String>(),
            assistant in any::<String>(),
        ) {
            // Chat-token strings inside content would be matched as chat tokens.
            if ![&system, &user, &assistant].iter().any(|text| text.contains("<|")) {
                let messages = [
                    Message { role: Role::System, content: system, loss: None },
                    Message::user(user),
                    Message::assistant(assistant.clone(), true),
                ];
                for tokenizer in [tokenizer_once(), llama3_once()] {
                    let rendered = tokenizer.render(&messages).unwrap();
                    prop_assert_eq!(rendered.ids.len(), rendered.mask.len());
                    let targets: Vec<u32> = rendered
                        .ids
                        .iter()
                        .zip(&rendered.mask)
                        .filter(|(_, target)| **target)
                        .map(|(id, _)| *id)
                        .collect();
                    prop_assert_eq!(targets.last(), Some(&tokenizer.turn_end()));
                    prop_assert_eq!(&tokenizer.decode(&targets).unwrap(), &assistant);
                }
            }
        }
    }
}
