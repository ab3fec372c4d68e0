//! agentr-train will hold the tokenizer, the Llama-family model, the SFT trainer and
//! generation on candle. It has no content yet; see the project README's status table.
