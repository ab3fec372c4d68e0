//! agentr-revise will turn search trees into Agent-R training data (pairs, first-error
//! judgement, revision splicing). It has no content yet; see the project README's status table.
