//! Progress of long work (uploads, and tasks: install, import, create,
//! export), on stderr so stdout stays clean for results and `-j`:
//!
//! - stderr is a terminal: an indicatif bar with bytes, rate and ETA
//!   (a spinner with bytes and rate while the total is unknown);
//! - otherwise (logs, CI, a bootstrap script): one line every
//!   `IMGSTORE_PROGRESS_INTERVAL` seconds (default 10), in the format of
//!   [`line`], plus a last line when the work ends;
//! - `-q`: nothing.

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The seconds between progress lines when stderr is not a terminal.
pub fn line_interval() -> Duration {
    std::env::var("IMGSTORE_PROGRESS_INTERVAL")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_INTERVAL)
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Lines,
    Quiet,
}

impl Mode {
    /// `Quiet` with `-q`, else `Bar` when stderr is a terminal, else `Lines`.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// One non-terminal progress line, e.g.
/// `imgstore: upload 1f2e3d4c: 96.00 MiB of 512.00 MiB (18%), 95.10 MiB/s, ETA 4s`.
/// Without a known total: `imgstore: LABEL: 96.00 MiB, 95.10 MiB/s`.
pub fn line(label: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let rate_text = format!("{}/s", HumanBytes(rate as u64));
    match total {
        Some(t) if t > 0 => {
            let pct = (done.min(t) as u128 * 100 / t as u128) as u64;
            let eta = if rate > 0.0 {
                HumanDuration(Duration::from_secs_f64(
                    (t.saturating_sub(done)) as f64 / rate,
                ))
                .to_string()
            } else {
                "unknown".to_string()
            };
            format!(
                "imgstore: {label}: {} of {} ({pct}%), {rate_text}, ETA {eta}",
                HumanBytes(done),
                HumanBytes(t)
            )
        }
        _ => format!("imgstore: {label}: {}, {rate_text}", HumanBytes(done)),
    }
}

/// The last line: `imgstore: LABEL: OUTCOME, 512.00 MiB in 5s (95.10 MiB/s)`.
pub fn final_line(label: &str, outcome: &str, done: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    format!(
        "imgstore: {label}: {outcome}, {} in {} ({}/s)",
        HumanBytes(done),
        HumanDuration(elapsed),
        HumanBytes(rate as u64)
    )
}

pub struct Progress {
    mode: Mode,
    label: String,
    bar: Option<ProgressBar>,
    start: Instant,
    interval: Duration,
    last_line: Option<Instant>,
    done: u64,
    total: Option<u64>,
    finished: bool,
}

fn bar_style(total_known: bool) -> ProgressStyle {
    let template = if total_known {
        "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
    } else {
        "{msg} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}"
    };
    ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ")
}

impl Progress {
    pub fn new(label: impl Into<String>, mode: Mode) -> Progress {
        let label = label.into();
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(bar_style(false));
            b.set_message(label.clone());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            mode,
            label,
            bar,
            start: Instant::now(),
            interval: line_interval(),
            last_line: None,
            done: 0,
            total: None,
            finished: false,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Records progress; draws the bar, or prints a line when one is due.
    pub fn update(&mut self, done: u64, total: Option<u64>) {
        let total = total.filter(|t| *t > 0);
        if let Some(b) = &self.bar {
            if total != self.total {
                b.set_style(bar_style(total.is_some()));
                b.set_length(total.unwrap_or(0));
                if total.is_none() {
                    b.unset_length();
                }
            }
            b.set_position(done);
        }
        self.done = done;
        self.total = total;
        if self.mode == Mode::Lines {
            let due = self.last_line.is_none_or(|t| t.elapsed() >= self.interval);
            if due {
                self.last_line = Some(Instant::now());
                eprintln!("{}", line(&self.label, done, total, self.start.elapsed()));
            }
        }
    }

    /// Changes the label (e.g. "install 1f2e3d4c (pending)").
    pub fn set_label(&mut self, label: impl Into<String>) {
        self.label = label.into();
        if let Some(b) = &self.bar {
            b.set_message(self.label.clone());
        }
    }

    /// Runs `f` with the bar hidden (for prompts and messages).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// Ends the display: the bar is cleared and, unless quiet, one line says
    /// how it ended (`done`, `failed`, `cancelled`, `detached`).
    pub fn finish(&mut self, outcome: &str) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.mode != Mode::Quiet {
            eprintln!(
                "{}",
                final_line(&self.label, outcome, self.done, self.start.elapsed())
            );
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let mib = 1024 * 1024;
        assert_eq!(
            line(
                "upload 1f2e3d4c",
                100 * mib,
                Some(400 * mib),
                Duration::from_secs(2)
            ),
            "imgstore: upload 1f2e3d4c: 100.00 MiB of 400.00 MiB (25%), 50.00 MiB/s, ETA 6 seconds"
        );
        assert_eq!(
            line("export x", 3 * mib, None, Duration::from_secs(3)),
            "imgstore: export x: 3.00 MiB, 1.00 MiB/s"
        );
        assert_eq!(
            line("install y", 0, Some(10), Duration::ZERO),
            "imgstore: install y: 0 B of 10 B (0%), 0 B/s, ETA unknown"
        );
        assert_eq!(
            final_line("upload z", "done", 8 * mib, Duration::from_secs(4)),
            "imgstore: upload z: done, 8.00 MiB in 4 seconds (2.00 MiB/s)"
        );
    }
}
