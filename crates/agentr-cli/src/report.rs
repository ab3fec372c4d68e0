//! How library calls tell a person what they are doing: the library never writes to the
//! terminal itself, it hands progress and lines to a [`Reporter`]. The `agentr` binary's
//! reporter draws bars and writes lines on stderr; [`Quiet`] drops everything.

/// Receives what a long call has to say.
pub trait Reporter: Sync {
    /// A long stage starts: `stage` names it (`"gold"`), `unit` is what `total` counts
    /// (`"tasks"`; 0 when not known yet).
    fn progress(&self, stage: &str, unit: &str, total: u64) -> Box<dyn Progress + '_>;
    /// A line a person watching wants to read (a result, a warning, a skipped task).
    fn line(&self, text: &str);
}

/// The progress of one stage; shared by worker threads.
pub trait Progress: Send + Sync {
    /// Sets the total, once it is known.
    fn set_total(&self, total: u64);
    /// Says that a resumed stage starts at `position` (units done before do not count toward
    /// its rate).
    fn start_at(&self, position: u64);
    /// Moves to `position`.
    fn set_position(&self, position: u64);
    /// Moves by `delta`.
    fn inc(&self, delta: u64);
    /// The text shown after the position (`"7 solved"`).
    fn set_message(&self, message: String);
    /// A line to read during the stage (shown above a bar).
    fn line(&self, text: &str);
    /// Ends the stage.
    fn finish(&self);
}

/// Reports nothing: for library callers that want only the results, and for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn progress(&self, _stage: &str, _unit: &str, _total: u64) -> Box<dyn Progress + '_> {
        Box::new(Quiet)
    }

    fn line(&self, _text: &str) {}
}

impl Progress for Quiet {
    fn set_total(&self, _total: u64) {}
    fn start_at(&self, _position: u64) {}
    fn set_position(&self, _position: u64) {}
    fn inc(&self, _delta: u64) {}
    fn set_message(&self, _message: String) {}
    fn line(&self, _text: &str) {}
    fn finish(&self) {}
}
