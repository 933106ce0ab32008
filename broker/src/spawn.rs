//! Starting programs: never through a shell, with an explicit argv, an empty
//! environment (plus a fixed PATH), `/` as working directory and standard
//! input on /dev/null unless the caller says otherwise. Every descriptor the
//! broker holds is close-on-exec, so a child gets its standard streams and
//! nothing else.

use std::path::Path;
use std::process::{Command, Stdio};

/// The PATH programs the broker starts see.
pub const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", CHILD_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}
