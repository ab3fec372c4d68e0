//! Progress of the long commands (train, collect, revise, eval, gold).
//!
//! On a terminal (stderr is a tty) a [`Progress`] is an indicatif bar: position/total, message,
//! elapsed time and ETA. Otherwise, when stderr goes to a log file, indicatif would draw nothing,
//! so a [`Progress`] writes a plain line instead, at most every ~10 s and only when the position
//! has moved, plus one final line at [`Progress::finish`]:
//!
//! ```text
//! [train] 12/29 steps (41%), epoch 1, loss 0.4123, 812 tokens/s, elapsed 2m10s, eta 3m05s
//! ```
//!
//! Every method takes `&self`, so one `Progress` can be shared by worker threads.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often the plain lines are written, at most.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// The progress of one long stage: an indicatif bar on a terminal, plain lines otherwise.
pub struct Progress {
    inner: Inner,
}

enum Inner {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
}

/// What a clock returns: now.
type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

/// The plain-line reporter's state.
struct Lines {
    /// Stage name, e.g. `train`: the line's `[train]` prefix.
    name: String,
    /// Unit of the position, e.g. `steps`.
    unit: String,
    total: u64,
    position: u64,
    /// Position when this run started (units done before it, e.g. by a resumed run, do not
    /// count toward its rate).
    base: u64,
    message: String,
    started: Instant,
    /// When the last line was written (or the start).
    last_line: Instant,
    /// Position in the last line written (or at the start).
    last_position: u64,
    interval: Duration,
    finished: bool,
    sink: Box<dyn Write + Send>,
    clock: Clock,
}

impl Progress {
    /// A progress of `total` `unit`s (e.g. `"steps"`) for the stage `name` (e.g. `"train"`):
    /// a bar when stderr is a terminal, plain lines to stderr every ~10 s otherwise.
    pub fn new(name: &str, unit: &str, total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let template =
                format!("{{bar:40}} {{pos}}/{{len}} {unit}, {{msg}} [{{elapsed}}<{{eta}}]");
            let style = ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            Self {
                inner: Inner::Bar(ProgressBar::new(total).with_style(style)),
            }
        } else {
            Self::lines(
                name,
                unit,
                total,
                LINE_INTERVAL,
                Box::new(Stderr),
                Box::new(Instant::now),
            )
        }
    }

    /// A plain-line progress writing to `sink` at most every `interval`, with `clock` for now.
    fn lines(
        name: &str,
        unit: &str,
        total: u64,
        interval: Duration,
        sink: Box<dyn Write + Send>,
        clock: Clock,
    ) -> Self {
        let now = clock();
        Self {
            inner: Inner::Lines(Mutex::new(Lines {
                name: name.to_owned(),
                unit: unit.to_owned(),
                total,
                position: 0,
                base: 0,
                message: String::new(),
                started: now,
                last_line: now,
                last_position: 0,
                interval,
                finished: false,
                sink,
                clock,
            })),
        }
    }

    /// Runs `f` on the plain-line state (`None` for a bar).
    fn with_lines<R>(&self, f: impl FnOnce(&mut Lines) -> R) -> Option<R> {
        match &self.inner {
            Inner::Bar(_) => None,
            Inner::Lines(lines) => Some(f(&mut lines.lock().unwrap_or_else(|p| p.into_inner()))),
        }
    }

    /// Sets the total.
    pub fn set_total(&self, total: u64) {
        match &self.inner {
            Inner::Bar(bar) => bar.set_length(total),
            Inner::Lines(_) => {
                self.with_lines(|lines| lines.total = total);
            }
        }
    }

    /// Sets the position (units done) and writes a line if one is due.
    pub fn set_position(&self, position: u64) {
        match &self.inner {
            Inner::Bar(bar) => bar.set_position(position),
            Inner::Lines(_) => {
                self.with_lines(|lines| {
                    lines.position = position;
                    lines.tick();
                });
            }
        }
    }

    /// Marks `position` units as done before this run (a resumed run): the position becomes
    /// `position`, and the rate and ETA count only the units done from here on.
    pub fn start_at(&self, position: u64) {
        match &self.inner {
            Inner::Bar(bar) => {
                bar.set_position(position);
                bar.reset_eta();
            }
            Inner::Lines(_) => {
                self.with_lines(|lines| {
                    lines.position = position;
                    lines.base = position;
                    lines.last_position = position;
                });
            }
        }
    }

    /// Adds `delta` to the position and writes a line if one is due.
    pub fn inc(&self, delta: u64) {
        match &self.inner {
            Inner::Bar(bar) => bar.inc(delta),
            Inner::Lines(_) => {
                self.with_lines(|lines| {
                    lines.position += delta;
                    lines.tick();
                });
            }
        }
    }

    /// Sets the message shown after the position (e.g. `"7 solved"`). Set it before the
    /// position moves, so that a line written on the move carries it.
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        match &self.inner {
            Inner::Bar(bar) => bar.set_message(message),
            Inner::Lines(_) => {
                self.with_lines(|lines| lines.message = message);
            }
        }
    }

    /// Writes `line` to stderr (above the bar on a terminal).
    pub fn println(&self, line: &str) {
        match &self.inner {
            // Not `bar.println`: it drops its lines when the bar is hidden.
            Inner::Bar(bar) => bar.suspend(|| eprintln!("{line}")),
            Inner::Lines(_) => {
                self.with_lines(|lines| lines.write(line));
            }
        }
    }

    /// Ends the progress: clears the bar, or writes the final line (once).
    pub fn finish(&self) {
        match &self.inner {
            Inner::Bar(bar) => bar.finish_and_clear(),
            Inner::Lines(_) => {
                self.with_lines(|lines| {
                    if !lines.finished {
                        lines.finished = true;
                        let now = (lines.clock)();
                        let line = lines.line(now);
                        lines.write(&line);
                    }
                });
            }
        }
    }
}

impl Lines {
    /// Writes a line if the position moved since the last one and the interval has passed.
    fn tick(&mut self) {
        if self.finished || self.last_position == self.position {
            return;
        }
        let now = (self.clock)();
        if now.saturating_duration_since(self.last_line) < self.interval {
            return;
        }
        let line = self.line(now);
        self.write(&line);
        self.last_line = now;
        self.last_position = self.position;
    }

    /// The progress line at `now`.
    fn line(&self, now: Instant) -> String {
        let mut line = format!("[{}] {}", self.name, self.position);
        match (100 * self.position.min(self.total)).checked_div(self.total) {
            Some(percent) => line += &format!("/{} {} ({percent}%)", self.total, self.unit),
            None => line += &format!(" {}", self.unit),
        }
        if !self.message.is_empty() {
            line += ", ";
            line += &self.message;
        }
        let elapsed = now.saturating_duration_since(self.started);
        line += &format!(", elapsed {}", format_duration(elapsed));
        let done = self.position.saturating_sub(self.base);
        let left = self.total.saturating_sub(self.position);
        if let Some(eta) = eta(elapsed, done, left).filter(|_| !self.finished) {
            line += &format!(", eta {}", format_duration(eta));
        }
        line
    }

    /// Writes `line` and a newline in one write (worker threads' lines do not interleave).
    fn write(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        // Progress is best effort: a closed stderr must not fail the run.
        let _ = self.sink.write_all(&bytes);
        let _ = self.sink.flush();
    }
}

/// Stderr through `eprint!`, so that tests capture the lines like the commands' other output.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        eprint!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Time left at the rate so far: `elapsed` for `done` units, `left` to go. None before the first
/// unit is done, or when none is left.
fn eta(elapsed: Duration, done: u64, left: u64) -> Option<Duration> {
    if done == 0 || left == 0 {
        return None;
    }
    Some(elapsed.mul_f64(left as f64 / done as f64))
}

/// `45s`, `2m10s` or `1h02m03s`.
fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}h{minutes:02}m{seconds:02}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A sink whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct FakeClock(Arc<Mutex<Instant>>);

    impl FakeClock {
        fn advance(&self, seconds: u64) {
            *self.0.lock().unwrap() += Duration::from_secs(seconds);
        }
    }

    fn fake(unit: &str, total: u64) -> (Progress, Shared, FakeClock) {
        let (sink, clock) = (
            Shared::default(),
            FakeClock(Arc::new(Mutex::new(Instant::now()))),
        );
        let now = clock.clone();
        let progress = Progress::lines(
            "train",
            unit,
            total,
            Duration::from_secs(10),
            Box::new(sink.clone()),
            Box::new(move || *now.0.lock().unwrap()),
        );
        (progress, sink, clock)
    }

    #[test]
    fn lines_appear_only_after_the_interval() {
        let (progress, sink, clock) = fake("steps", 29);
        progress.set_message("epoch 1, loss 0.4123, 812 tokens/s");
        progress.set_position(1);
        clock.advance(9);
        progress.set_position(2);
        assert!(sink.lines().is_empty(), "{:?}", sink.lines());
        clock.advance(1);
        progress.set_position(3);
        assert_eq!(
            sink.lines(),
            [
                "[train] 3/29 steps (10%), epoch 1, loss 0.4123, 812 tokens/s, elapsed 10s, eta 1m26s"
            ]
        );
        // The next one waits a full interval again.
        clock.advance(9);
        progress.inc(1);
        assert_eq!(sink.lines().len(), 1);
        clock.advance(121);
        progress.inc(8);
        assert_eq!(
            sink.lines()[1],
            "[train] 12/29 steps (41%), epoch 1, loss 0.4123, 812 tokens/s, elapsed 2m20s, \
             eta 3m18s"
        );
    }

    #[test]
    fn nothing_is_written_while_the_position_stands_still() {
        let (progress, sink, clock) = fake("episodes", 10);
        clock.advance(30);
        progress.set_message("0 solved");
        progress.inc(0);
        progress.set_position(0);
        assert!(sink.lines().is_empty());
        progress.inc(1);
        assert_eq!(sink.lines().len(), 1);
        clock.advance(30);
        progress.set_position(1);
        progress.set_message("1 solved");
        progress.inc(0);
        assert_eq!(sink.lines().len(), 1, "{:?}", sink.lines());
    }

    #[test]
    fn no_eta_before_the_first_unit() {
        let (progress, _, clock) = fake("tasks", 40);
        clock.advance(3725);
        let line = progress
            .with_lines(|lines| lines.line((lines.clock)()))
            .unwrap();
        assert_eq!(line, "[train] 0/40 tasks (0%), elapsed 1h02m05s");
        // Nor at 0 of an unknown total.
        let (progress, sink, clock) = fake("steps", 0);
        clock.advance(20);
        progress.finish();
        assert_eq!(sink.lines(), ["[train] 0 steps, elapsed 20s"]);
    }

    #[test]
    fn finish_writes_one_final_line_without_eta() {
        let (progress, sink, clock) = fake("trees", 4);
        progress.inc(1);
        clock.advance(5);
        progress.set_message("12 samples");
        progress.inc(3);
        assert!(sink.lines().is_empty());
        progress.finish();
        progress.finish();
        progress.inc(1);
        assert_eq!(
            sink.lines(),
            ["[train] 4/4 trees (100%), 12 samples, elapsed 5s"]
        );
    }

    #[test]
    fn a_resumed_run_counts_only_its_own_units_toward_the_eta() {
        let (progress, sink, clock) = fake("steps", 100);
        progress.set_total(200);
        progress.start_at(100);
        clock.advance(10);
        progress.set_position(110);
        // 10 steps in 10 s, 90 to go.
        assert_eq!(
            sink.lines(),
            ["[train] 110/200 steps (55%), elapsed 10s, eta 1m30s"]
        );
    }

    #[test]
    fn println_writes_to_the_sink_at_once() {
        let (progress, sink, _) = fake("tasks", 3);
        progress.println("task 2 failed: boom");
        assert_eq!(sink.lines(), ["task 2 failed: boom"]);
    }

    #[test]
    fn worker_threads_share_one_progress() {
        let (progress, sink, clock) = fake("episodes", 400);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        clock.advance(1);
                        progress.set_message("some solved");
                        progress.inc(1);
                    }
                });
            }
        });
        progress.finish();
        let lines = sink.lines();
        // 400 s at most one line per 10 s, then the final one.
        assert!(lines.len() <= 41, "{}", lines.len());
        assert!(lines.len() >= 30, "{}", lines.len());
        assert!(lines.iter().all(|l| l.starts_with("[train] ")));
        assert_eq!(
            lines.last().unwrap(),
            "[train] 400/400 episodes (100%), some solved, elapsed 6m40s"
        );
    }

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(format_duration(Duration::from_millis(999)), "0s");
        assert_eq!(format_duration(Duration::from_secs(59)), "59s");
        assert_eq!(format_duration(Duration::from_secs(130)), "2m10s");
        assert_eq!(format_duration(Duration::from_secs(3600 + 62)), "1h01m02s");
        assert_eq!(eta(Duration::from_secs(10), 0, 5), None);
        assert_eq!(eta(Duration::from_secs(10), 5, 0), None);
        assert_eq!(
            eta(Duration::from_secs(10), 5, 5),
            Some(Duration::from_secs(10))
        );
    }
}
