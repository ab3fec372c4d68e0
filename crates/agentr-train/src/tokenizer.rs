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

    /// The tokenizer of a model: the `tokenizer.json` of a model folder, or a GGUF file's
    /// tokenizer metadata (its weights are not read).
    pub fn of_model(path: &Path) -> Result<Self, TrainError> {
        if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
            crate::gguf::GgufFile::open(path)?.tokenizer()
        } else {
            Self::load(&path.join("tokenizer.json"))
        }
    }

    /// Writes `tokenizer.json` (atomically).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let json = self.inner.to_string(false).map_err(tokenizer_error)?;
        agentr_envs::atomic::write(path, json.as_bytes()).map_err(|source| TrainError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes what Hugging Face tools read from a model folder besides the weights, each file
    /// atomically: `tokenizer.json`; `tokenizer_config.json` with the [chat
    /// template](Self::chat_template) and the end-of-turn token as `eos_token` (so that
    /// `generate` stops where agentr stops); `special_tokens_map.json`; and
    /// `generation_config.json` with the end-of-turn and end-of-text ids as
    /// `eos_token_id`. Files already there are replaced, others left alone.
    pub fn save_pretrained(&self, dir: &Path) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(crate::error::io(dir))?;
        self.save(&dir.join("tokenizer.json"))?;
        let text = |id: u32| self.inner.id_to_token(id);
        let begin_of_text = match self.layout {
            Layout::ChatMl => None,
            Layout::Llama3 { begin_of_text, .. } => begin_of_text,
        };
        let specials = serde_json::json!({
            "bos_token": begin_of_text.and_then(text),
            "eos_token": text(self.turn_end),
            "pad_token": text(self.end_of_text),
        });
        let mut tokenizer_config = specials.clone();
        let extra = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "chat_template": self.chat_template(),
            "clean_up_tokenization_spaces": false,
            "add_bos_token": false,
            "add_eos_token": false,
        });
        if let (Some(config), serde_json::Value::Object(extra)) =
            (tokenizer_config.as_object_mut(), extra)
        {
            config.extend(extra);
        }
        let mut eos_ids = vec![self.turn_end];
        if self.end_of_text != self.turn_end {
            eos_ids.push(self.end_of_text);
        }
        let generation_config = serde_json::json!({
            "bos_token_id": begin_of_text,
            "eos_token_id": eos_ids,
            "pad_token_id": self.end_of_text,
        });
        for (name, value) in [
            ("tokenizer_config.json", tokenizer_config),
            ("special_tokens_map.json", specials),
            ("generation_config.json", generation_config),
        ] {
            let path = dir.join(name);
            let json = serde_json::to_vec_pretty(&value).map_err(|e| TrainError::BadFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
            agentr_envs::atomic::write(&path, &json).map_err(crate::error::io(&path))?;
        }
        Ok(())
    }

    /// The Jinja chat template (as Hugging Face's `apply_chat_template` reads it) that lays a
    /// conversation out as [`render`](Self::render) and
    /// [`render_prompt`](Self::render_prompt) do, `add_generation_prompt` opening the
    /// assistant's turn. The content and end token of each trained message (a message's `loss`
    /// key, or when it has none, the assistant's turns: [`Message::trains`]) sit inside
    /// `{% generation %}` blocks, so `return_assistant_tokens_mask` and TRL's
    /// `assistant_only_loss` train exactly the tokens agentr's loss mask trains.
    ///
    /// One difference is inherent: agentr encodes a turn's header and content separately while
    /// Hugging Face encodes the rendered text whole, so a content that starts with whitespace
    /// can be split into tokens differently at its first characters (the mask still covers the
    /// content). The environments' messages never start with whitespace.
    pub fn chat_template(&self) -> String {
        let token = |id: u32| self.inner.id_to_token(id).unwrap_or_default();
        let (opening, header_end, separator) = match self.layout {
            Layout::ChatMl => (String::new(), "\\n".to_owned(), "{{- '\\n' }}"),
            Layout::Llama3 {
                begin_of_text,
                end_header,
            } => (
                begin_of_text
                    .map(|id| format!("{{{{- '{}' }}}}", token(id)))
                    .unwrap_or_default(),
                format!("{}\\n\\n", token(end_header)),
                "",
            ),
        };
        let start = token(self.turn_start);
        let end = token(self.turn_end);
        format!(
            "{opening}\
{{%- for message in messages %}}\
{{%- if message.loss is defined and message.loss is not none %}}\
{{%- set trained = message.loss %}}\
{{%- else %}}\
{{%- set trained = message.role == 'assistant' %}}\
{{%- endif %}}\
{{{{- '{start}' + message.role + '{header_end}' }}}}\
{{%- if trained %}}\
{{% generation %}}{{{{- message.content + '{end}' }}}}{{% endgeneration %}}\
{{%- else %}}\
{{{{- message.content + '{end}' }}}}\
{{%- endif %}}\
{separator}\
{{%- endfor %}}\
{{%- if add_generation_prompt %}}\
{{{{- '{start}assistant{header_end}' }}}}\
{{%- endif %}}"
        )
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

    // Stand-ins for transformers' `{% generation %}` tag, which minijinja does not know:
    // private-use characters the test contents never hold.
    const GENERATION_START: char = '\u{E000}';
    const GENERATION_END: char = '\u{E001}';

    /// `messages` rendered with `tokenizer`'s chat template by a Jinja engine, tokenized
    /// whole as Hugging Face does, and masked where the text falls inside a generation block
    /// (a token is trained when it overlaps one, as `return_assistant_tokens_mask` marks it).
    fn render_with_template(
        tokenizer: &ChatTokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Rendered {
        let template = tokenizer
            .chat_template()
            .replace("{% generation %}", &GENERATION_START.to_string())
            .replace("{% endgeneration %}", &GENERATION_END.to_string());
        let mut engine = minijinja::Environment::new();
        engine.add_template("chat", &template).unwrap();
        let marked = engine
            .get_template("chat")
            .unwrap()
            .render(minijinja::context! {
                messages => minijinja::Value::from(minijinja::value::Serde(messages)),
                add_generation_prompt,
            })
            .unwrap();
        let (mut text, mut spans, mut open) = (String::new(), Vec::new(), None);
        for c in marked.chars() {
            match c {
                GENERATION_START => open = Some(text.len()),
                GENERATION_END => spans.push(open.take().unwrap()..text.len()),
                c => text.push(c),
            }
        }
        let encoding = tokenizer.tokenizer().encode(text, false).unwrap();
        let mask = encoding
            .get_offsets()
            .iter()
            .map(|&(start, end)| spans.iter().any(|s| start < s.end && end > s.start))
            .collect();
        Rendered {
            ids: encoding.get_ids().to_vec(),
            mask,
        }
    }

    /// Conversations as agentr writes them: an episode, a revision sample (the bad steps
    /// and the `Ok.` untrained), a sample with loss on an observation.
    fn golden_conversations() -> Vec<Vec<Message>> {
        let user = |text: &str, loss: Option<bool>| Message {
            role: Role::User,
            content: text.to_owned(),
            loss,
        };
        vec![
            conversation(),
            vec![
                user("You are in Minecraft.\nGoal: craft stick.", None),
                Message::assistant("Ok.", false),
                user(
                    "Crafting commands:\ncraft 4 oak planks using 1 oak logs\n\nGoal: craft stick.",
                    None,
                ),
                Message::assistant(
                    "Thought: sticks need planks.\nAction: get 2 oak planks",
                    false,
                ),
                user("Could not find 2 oak planks", None),
                Message::assistant(
                    "Thought: I took a wrong step; planks are crafted.\nAction: wait",
                    true,
                ),
                user("Ok.", None),
                Message::assistant("Action: get 1 oak logs", true),
                user("Got 1 oak logs", None),
            ],
            vec![
                user("Goal: heat water.", None),
                Message::assistant("Action: look around", true),
                user(
                    "This room is called the kitchen.\tIt has a stove, wörds and 🔥.",
                    Some(true),
                ),
                Message::assistant("", true),
            ],
        ]
    }

    #[test]
    fn the_chat_template_renders_agentr_tokens_and_masks() {
        for tokenizer in [tokenizer_once(), llama3_once()] {
            for messages in golden_conversations() {
                assert_eq!(
                    render_with_template(tokenizer, &messages, false),
                    tokenizer.render(&messages).unwrap(),
                    "{:?}: {messages:?}",
                    tokenizer.format()
                );
                assert_eq!(
                    render_with_template(tokenizer, &messages, true).ids,
                    tokenizer.render_prompt(&messages).unwrap(),
                    "{:?}",
                    tokenizer.format()
                );
            }
        }
    }

    #[test]
    fn saved_folders_carry_the_hugging_face_tokenizer_files() {
        let dir = std::env::temp_dir().join(format!("agentr-tok-hf-{}", std::process::id()));
        // (tokenizer, bos, eos, pad, generation eos ids)
        let cases = [
            (tokenizer_once(), None, IM_END, END_OF_TEXT),
            (
                llama3_once(),
                Some(LLAMA3_BEGIN_OF_TEXT),
                LLAMA3_EOT,
                LLAMA3_END_OF_TEXT,
            ),
        ];
        for (tokenizer, bos, eos, pad) in cases {
            tokenizer.save_pretrained(&dir).unwrap();
            let read = |name: &str| -> serde_json::Value {
                serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
            };
            let config = read("tokenizer_config.json");
            assert_eq!(config["chat_template"], tokenizer.chat_template());
            assert_eq!(config["eos_token"], eos);
            assert_eq!(config["pad_token"], pad);
            assert_eq!(config["bos_token"].as_str(), bos);
            let specials = read("special_tokens_map.json");
            assert_eq!(specials["eos_token"], eos);
            let generation = read("generation_config.json");
            let id = |token: &str| tokenizer.tokenizer().token_to_id(token).unwrap();
            assert_eq!(
                generation["eos_token_id"],
                serde_json::json!([id(eos), id(pad)])
            );
            assert_eq!(generation["pad_token_id"], id(pad));
            assert_eq!(
                generation["bos_token_id"].as_u64(),
                bos.map(|b| u64::from(id(b)))
            );
            let loaded = ChatTokenizer::load(&dir.join("tokenizer.json")).unwrap();
            assert_eq!(loaded.format(), tokenizer.format());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn the_chat_template_agrees_on_any_content(
            contents in proptest::collection::vec(any::<String>(), 1..5),
            losses in proptest::collection::vec(proptest::option::of(any::<bool>()), 5),
        ) {
            // Outside the documented difference (a content starting with whitespace) and
            // contents that hold chat tokens or the test's markers.
            let representable = |text: &String| {
                !text.starts_with(char::is_whitespace)
                    && !text.contains("<|")
                    && !text.contains([GENERATION_START, GENERATION_END])
            };
            if contents.iter().all(representable) {
                let messages: Vec<Message> = contents
                    .into_iter()
                    .zip(&losses)
                    .enumerate()
                    .map(|(i, (content, &loss))| Message {
                        role: [Role::System, Role::User, Role::Assistant][i % 3],
                        content,
                        loss,
                    })
                    .collect();
                for tokenizer in [tokenizer_once(), llama3_once()] {
                    prop_assert_eq!(
                        render_with_template(tokenizer, &messages, false),
                        tokenizer.render(&messages).unwrap()
                    );
                }
            }
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
