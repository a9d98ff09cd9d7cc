//! Leveled log lines. Anything written to stdout or stderr becomes a log line on the node, tagged
//! with the app and the request id; a line that starts with `[debug]`, `[info]`, `[warn]` or
//! `[error]` is logged at that level (stdout defaults to info, stderr to warn).

use std::fmt::Display;
use std::io::Write;

fn emit(level: &str, message: impl Display) {
    // One write per line keeps concurrent lines whole; a failed log write is not worth a trap.
    let line = format!("[{level}] {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Log `message` at debug level: one `[debug]` line on stderr.
pub fn debug(message: impl Display) {
    emit("debug", message)
}

/// Log `message` at info level: one `[info]` line on stderr. See also [`info!`](crate::info!).
pub fn info(message: impl Display) {
    emit("info", message)
}

/// Log `message` at warn level: one `[warn]` line on stderr. See also [`warn!`](crate::warn!).
pub fn warn(message: impl Display) {
    emit("warn", message)
}

/// Log `message` at error level: one `[error]` line on stderr. See also [`error!`](crate::error!).
pub fn error(message: impl Display) {
    emit("error", message)
}

/// `outpost_sdk::info!("cart {id} updated")`, like `println!`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(format_args!($($arg)*)) };
}

/// `outpost_sdk::warn!(...)`, like `println!`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(format_args!($($arg)*)) };
}

/// `outpost_sdk::error!(...)`, like `println!`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(format_args!($($arg)*)) };
}
