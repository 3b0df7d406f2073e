//! Waiting, with a deadline, for a child process to exit: a test that
//! hangs tells nobody anything, a test that fails after a minute says which
//! process did not exit.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

pub fn wait_timeout(child: &mut Child, t: Duration) -> ExitStatus {
    let deadline = Instant::now() + t;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {t:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
