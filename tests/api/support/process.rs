//! This build's `mailgate` binary as a child process (testkit's `process`, with the
//! binary Cargo built for this suite).

use std::path::Path;
use std::process::{Child, Command};

/// The `mailgate` binary of this build.
pub const MAILGATE: &str = env!("CARGO_BIN_EXE_mailgate");

/// `mailgate` on `data_dir`, on a free loopback port, with none of this process's
/// `MAILGATE_` settings.
pub fn mailgate(data_dir: &Path) -> Command {
    testkit::process::mailgate(Path::new(MAILGATE), data_dir)
}

/// Starts `mailgate` (serve) with nothing configured and reads the address and operator
/// token it prints.
pub fn start(data_dir: &Path) -> (Child, String, String) {
    testkit::process::start(Path::new(MAILGATE), data_dir)
}

/// A token for `role`, minted by `mailgate token` on `data_dir`.
pub fn token(data_dir: &Path, role: &str) -> String {
    testkit::process::token(mailgate(data_dir), role)
}
