//! Every duration, size and the log filter checked when the settings are read, so a value the
//! agent cannot work with (`--resync-interval 0s`, `--log-level garbage`) is an error at start
//! naming the flag or the config file, not a busy loop or silence later.

use std::time::Duration;

use super::{ConfigError, Resolver};
use crate::defaults;

/// An allowed range and how to say it.
pub(super) type Range<T> = (T, T, &'static str);

/// `--parser-timeout`: the parser needs time to start at all; a day is a hang, not a compile.
pub(super) const PARSER_TIMEOUT_RANGE: Range<Duration> =
    (Duration::from_millis(100), Duration::from_secs(86_400), "between 100ms and 1 day");
/// `--resync-interval`: zero would resync in a busy loop (and cannot drive a timer).
pub(super) const RESYNC_RANGE: Range<Duration> =
    (Duration::from_secs(1), Duration::from_secs(7 * 86_400), "between 1s and 7 days");
/// `--debounce`: zero is allowed (no coalescing); longer than a minute delays every change.
pub(super) const DEBOUNCE_RANGE: Range<Duration> = (Duration::ZERO, Duration::from_secs(60), "at most 1m");
/// `--parser-jobs`: each job costs a few MB of the pod's memory.
pub(super) const PARSER_JOBS_RANGE: Range<u32> = (1, 64, "between 1 and 64");
/// `--max-file-size`: a profile file holds at least one byte.
pub(super) const MAX_FILE_SIZE_RANGE: Range<u64> = (1, u64::MAX, "a profile file holds at least one byte");
/// `--cache-size`: 0 turns the cache off; more than the bound is a typo, not a plan.
pub(super) const CACHE_SIZE_RANGE: Range<u64> = (0, defaults::MAX_CACHE_SIZE, "at most 16 GiB (0 turns the cache off)");
/// `--denials-buffer`: GET /denials needs room for one record.
pub(super) const DENIALS_BUFFER_RANGE: Range<usize> = (1, usize::MAX, "GET /denials needs room for at least one record");

/// The levels a bare word of the log filter may be.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl Resolver {
    /// Where a setting came from, for messages: the flag, else the config file.
    fn origin(&self, from_flag: bool, key: &str) -> String {
        match (&self.file.path, from_flag) {
            (Some(p), false) => format!("config file {}", p.display()),
            _ => format!("--{}", key.replace('_', "-")),
        }
    }

    /// A duration from the flag, else the file, else the default; it must lie in `range`.
    pub(super) fn duration(
        &self,
        flag: Option<humantime::Duration>,
        key: &'static str,
        file: Option<humantime::Duration>,
        default: Duration,
        range: Range<Duration>,
    ) -> Result<Duration, ConfigError> {
        let d = flag.or(file).map_or(default, Duration::from);
        let (min, max, why) = range;
        if d < min || d > max {
            let value = humantime::format_duration(d).to_string();
            return Err(ConfigError::Range { origin: self.origin(flag.is_some(), key), key, value, why });
        }
        Ok(d)
    }

    /// A count or size from the flag, else the file, else the default; it must lie in `range`.
    pub(super) fn within<T: Copy + PartialOrd + std::fmt::Display>(
        &self,
        flag: Option<T>,
        key: &'static str,
        file: Option<T>,
        default: T,
        (min, max, why): Range<T>,
    ) -> Result<T, ConfigError> {
        let v = flag.or(file).unwrap_or(default);
        if v < min || v > max {
            return Err(ConfigError::Range { origin: self.origin(flag.is_some(), key), key, value: v.to_string(), why });
        }
        Ok(v)
    }

    /// The log filter, checked now rather than silently replaced by the default later.
    pub(super) fn log_level(&self, flag: Option<&String>) -> Result<String, ConfigError> {
        let Some(v) = flag.or(self.file.global.log_level.as_ref()) else { return Ok(crate::defaults::LOG_LEVEL.into()) };
        let err = |message: String| ConfigError::LogLevel {
            origin: self.origin(flag.is_some(), "log_level"),
            value: v.clone(),
            message,
        };
        tracing_subscriber::EnvFilter::builder().parse(v).map_err(|e| err(e.to_string()))?;
        // The filter syntax reads a bare word as a target name (`garbage`: log only target
        // `garbage`, so nothing at all); a bare word must be a level, targets take `=LEVEL`.
        if let Some(word) =
            v.split(',').map(str::trim).find(|d| !d.contains(['=', '[']) && !LEVELS.contains(&d.to_ascii_lowercase().as_str()))
        {
            return Err(err(format!(
                "{word:?} is not a level (trace, debug, info, warn, error, off); a target takes TARGET=LEVEL"
            )));
        }
        Ok(v.clone())
    }
}
