//! How library calls tell a person what they are doing: the library never writes to the
//! terminal itself, it hands progress and lines to a [`Reporter`]. The `agentr` binary's
//! reporter draws bars and writes lines on stderr; [`Quiet`] drops everything; [`Traced`]
//! turns everything into `tracing` events, for programs that log that way.

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

/// Reports as `tracing` events, for programs that log through `tracing`: each line an info
/// event, each stage's start and end an info event and every move of its position a debug
/// event, all with the stage's name as a field (target `agentr`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Traced;

impl Reporter for Traced {
    fn progress(&self, stage: &str, unit: &str, total: u64) -> Box<dyn Progress + '_> {
        tracing::info!(target: "agentr", stage, total, unit, "started");
        Box::new(TracedProgress {
            stage: stage.to_owned(),
            unit: unit.to_owned(),
            state: std::sync::Mutex::new((0, total, String::new())),
        })
    }

    fn line(&self, text: &str) {
        tracing::info!(target: "agentr", "{text}");
    }
}

/// A stage reported by [`Traced`].
struct TracedProgress {
    stage: String,
    unit: String,
    /// Position, total, message.
    state: std::sync::Mutex<(u64, u64, String)>,
}

impl TracedProgress {
    fn update(&self, change: impl FnOnce(&mut (u64, u64, String))) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut state);
        let (position, total, message) = &*state;
        tracing::debug!(target: "agentr", stage = %self.stage, position, total, unit = %self.unit, "{message}");
    }
}

impl Progress for TracedProgress {
    fn set_total(&self, total: u64) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = total;
    }

    fn start_at(&self, _position: u64) {}

    fn set_position(&self, position: u64) {
        self.update(|state| state.0 = position);
    }

    fn inc(&self, delta: u64) {
        self.update(|state| state.0 += delta);
    }

    fn set_message(&self, message: String) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).2 = message;
    }

    fn line(&self, text: &str) {
        tracing::info!(target: "agentr", stage = %self.stage, "{text}");
    }

    fn finish(&self) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        tracing::info!(target: "agentr", stage = %self.stage, position = state.0, total = state.1, unit = %self.unit, "finished: {}", state.2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what a `tracing` subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn traced_reports_become_events_with_the_stage() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let progress = Traced.progress("collect", "tasks", 2);
            progress.set_message("1 with a success".into());
            progress.inc(1);
            progress.line("task 7 failed: no plan");
            progress.inc(1);
            progress.finish();
            Traced.line("searched 2 tasks");
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 6, "{log}");
        assert!(
            lines[0].contains("INFO") && lines[0].contains("started"),
            "{log}"
        );
        assert!(
            lines[1].contains("DEBUG") && lines[1].contains("position=1"),
            "{log}"
        );
        assert!(lines[2].contains("task 7 failed") && lines[2].contains("stage=collect"));
        assert!(lines[4].contains("finished: 1 with a success") && lines[4].contains("position=2"));
        assert!(lines[5].ends_with("searched 2 tasks"), "{log}");
    }
}
