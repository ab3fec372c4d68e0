//! `openai:MODEL@BASE_URL`: an OpenAI-compatible server as policy, judge or evaluated model.

use std::fmt;

use agentr_train::openai::{ChatClient, ClientConfig, parse_target};
use anyhow::{Context, Result};

/// The environment variable whose value, when set and not empty, is sent as the API key.
pub const API_KEY_VAR: &str = "OPENAI_API_KEY";

/// A model on an OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiSpec {
    /// The model's name on the server.
    pub model: String,
    /// The API root, e.g. `http://localhost:8000/v1`.
    pub base_url: String,
}

impl OpenAiSpec {
    /// Reads what follows `openai:`: `MODEL@BASE_URL`.
    pub fn parse(rest: &str) -> Result<Self, String> {
        match parse_target(rest) {
            Some((model, base_url)) => Ok(OpenAiSpec {
                model: model.to_owned(),
                base_url: base_url.to_owned(),
            }),
            None => Err(format!(
                "`openai:{rest}`: expected openai:MODEL@BASE_URL, e.g. \
                 openai:qwen2.5-7b@http://localhost:8000/v1"
            )),
        }
    }

    /// A client with the default settings, `max_tokens` for policy samples when given, and
    /// the API key from `OPENAI_API_KEY`.
    pub fn client(&self, max_tokens: Option<usize>) -> Result<ChatClient> {
        let mut config = ClientConfig::new(&self.model, &self.base_url);
        config.api_key = std::env::var(API_KEY_VAR).ok().filter(|k| !k.is_empty());
        if let Some(max_tokens) = max_tokens {
            config.max_tokens = max_tokens;
        }
        ChatClient::new(config).with_context(|| format!("setting up {self}"))
    }
}

impl fmt::Display for OpenAiSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "openai:{}@{}", self.model, self.base_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        let spec = OpenAiSpec::parse("qwen2.5-7b@http://localhost:8000/v1").unwrap();
        assert_eq!(spec.model, "qwen2.5-7b");
        assert_eq!(spec.base_url, "http://localhost:8000/v1");
        assert_eq!(
            spec.to_string(),
            "openai:qwen2.5-7b@http://localhost:8000/v1"
        );
        for bad in ["", "qwen", "qwen@", "@http://h/v1", "qwen@localhost:8000"] {
            assert!(OpenAiSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
