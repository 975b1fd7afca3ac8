//! Progress display: a bar with ETA on a terminal, a log line every 10 % otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use std::cell::RefCell;
use std::io::IsTerminal;

pub struct Progress {
    state: RefCell<State>,
    tty: bool,
}

struct State {
    stage: String,
    bar: Option<ProgressBar>,
    last_logged: usize,
    started: std::time::Instant,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            state: RefCell::new(State {
                stage: String::new(),
                bar: None,
                last_logged: 0,
                started: std::time::Instant::now(),
            }),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Report `step` of `total` in `stage`, with the last loss.
    pub fn update(&self, stage: &str, step: usize, total: usize, loss: f64) {
        let mut s = self.state.borrow_mut();
        if s.stage != stage {
            if let Some(b) = s.bar.take() {
                b.finish_and_clear();
            }
            s.stage = stage.to_string();
            s.last_logged = 0;
            s.started = std::time::Instant::now();
            if self.tty {
                let b = ProgressBar::new(total as u64);
                b.set_style(
                    ProgressStyle::with_template("{prefix:>18} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                b.set_prefix(stage.to_string());
                s.bar = Some(b);
            }
        }
        if let Some(b) = &s.bar {
            b.set_position(step as u64);
            b.set_message(format!("loss {loss:.4}"));
        } else {
            let tenth = (step * 10) / total.max(1);
            if tenth > s.last_logged || step == total {
                s.last_logged = tenth;
                let el = s.started.elapsed().as_secs_f64();
                eprintln!("{stage}: {step}/{total} loss {loss:.4} ({el:.0}s)");
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = self.state.borrow_mut().bar.take() {
            b.finish_and_clear();
        }
    }
}
