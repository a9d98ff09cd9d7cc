//! The configuration error: which file, which field, what is wrong.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// A configuration error: the file, the field when it is about one, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file at fault.
    pub file: PathBuf,
    /// Dotted path of the offending field (`limits.cpu_ms`), when the error is about one.
    pub field: Option<String>,
    /// What is wrong, for the operator to read.
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole, such as one that cannot be read or is not valid TOML.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            field: None,
            message: message.into(),
        }
    }

    /// An error about one field of `file`, named by its dotted path.
    pub fn field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: `{field}`: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// What is wrong with one field, before it is known which file (or API request) it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field: `limits.cpu_ms`, `routes[2]`.
    pub field: String,
    /// What is wrong with the field's value.
    pub message: String,
}

impl FieldError {
    /// An error about `field` (its dotted path) saying `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// The rule every numeric setting follows: absent, it takes `default`; present, it must lie in
/// `range`, and the error names both ends.
pub(super) fn in_range(
    value: Option<u64>,
    field: impl Into<String>,
    range: RangeInclusive<u64>,
    default: u64,
) -> Result<u64, FieldError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(v),
        Some(v) => Err(FieldError::new(
            field,
            format!(
                "is {v}; it must be between {} and {}",
                range.start(),
                range.end()
            ),
        )),
    }
}
