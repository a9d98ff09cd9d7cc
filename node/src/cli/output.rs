//! What a command that answers with data prints: text for a person, or with `--json` the
//! admin API's own type (see `outpost_core::api`) as one JSON document on stdout, for scripts.
//! Messages about progress go to stderr either way when `--json` is given.

use std::io::Write;

use clap::Args;
use serde::Serialize;

/// The `--json` flag.
#[derive(Args, Clone, Copy, Default)]
pub(super) struct Output {
    /// Print the answer as JSON (the admin API's own shape) instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Output {
    /// `value` as JSON with `--json`, else as `text` words it.
    pub(super) fn print<T: Serialize>(
        &self,
        value: &T,
        text: impl FnOnce(&T),
    ) -> anyhow::Result<()> {
        if !self.json {
            text(value);
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, value)?;
        writeln!(stdout)?;
        Ok(())
    }

    /// A message for a person: on stdout, or with `--json` on stderr (stdout is the JSON's).
    pub(super) fn say(&self, message: &str) {
        match self.json {
            true => eprintln!("{message}"),
            false => println!("{message}"),
        }
    }
}
