//! The binary's [`Reporter`]: progress bars (or plain progress lines in a log) and lines on
//! stderr.

use agentr_cli::report::{self, Reporter};

use crate::progress::Progress;

/// Reports on stderr.
pub struct Terminal;

impl Reporter for Terminal {
    fn progress(&self, stage: &str, unit: &str, total: u64) -> Box<dyn report::Progress + '_> {
        Box::new(Progress::new(stage, unit, total))
    }

    fn line(&self, text: &str) {
        eprintln!("{text}");
    }
}

impl report::Progress for Progress {
    fn set_total(&self, total: u64) {
        Progress::set_total(self, total);
    }

    fn start_at(&self, position: u64) {
        Progress::start_at(self, position);
    }

    fn set_position(&self, position: u64) {
        Progress::set_position(self, position);
    }

    fn inc(&self, delta: u64) {
        Progress::inc(self, delta);
    }

    fn set_message(&self, message: String) {
        Progress::set_message(self, message);
    }

    fn line(&self, text: &str) {
        self.println(text);
    }

    fn finish(&self) {
        Progress::finish(self);
    }
}
