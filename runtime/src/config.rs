//! Validated server configuration: the limits every request runs under.
//!
//! Raw flags (`commands::serve::ServeArgs`) and manifests (`manifest::Manifest`) are parsed
//! into these types before any socket is bound, so a configuration error never surfaces
//! at request time.

use anyhow::{Context, Result, bail};
use std::time::Duration;

/// Default guest linear-memory cap per request: enough for typical handlers and for
/// QuickJS-sized heaps, small enough that hundreds of concurrent requests fit in RAM.
pub const DEFAULT_MEMORY_LIMIT: &str = "128MiB";
/// Default wall-clock limit for one request, from admission to the last body byte.
pub const DEFAULT_TIMEOUT: &str = "30s";
/// Default number of requests running at once, across all apps. Also sizes the instance
/// pool, so it bounds the virtual memory the server reserves up front.
pub const DEFAULT_MAX_CONCURRENCY: usize = 256;
/// Default cap on a request body. Larger bodies get `413` before any guest runs.
pub const DEFAULT_MAX_BODY_SIZE: &str = "16MiB";
/// Default time a client has to send a whole request body, from its head. A client that
/// drips its body gets `408` when it runs out, and the guest's instance is freed.
pub const DEFAULT_BODY_READ_TIMEOUT: &str = "10s";

/// What one request may use. Server-wide defaults come from flags; a manifest may override
/// each field for its app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory of the guest, in bytes.
    pub memory: u64,
    /// Wall-clock time for the whole request, response body included.
    pub timeout: Duration,
    /// Requests of this app (or of the server, for the defaults) running at once.
    pub max_concurrency: usize,
    /// Maximum request body size, in bytes.
    pub max_body_size: u64,
    /// Whether responses carry edge's `Server-Timing` header (`instantiate`, `handle`).
    pub server_timing: bool,
    /// Time the client has to send the whole request body.
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: parse_size(DEFAULT_MEMORY_LIMIT).expect("valid default"),
            timeout: parse_duration(DEFAULT_TIMEOUT).expect("valid default"),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_body_size: parse_size(DEFAULT_MAX_BODY_SIZE).expect("valid default"),
            server_timing: true,
            body_read_timeout: parse_duration(DEFAULT_BODY_READ_TIMEOUT).expect("valid default"),
        }
    }
}

/// Largest linear memory a 32-bit wasm guest can address.
pub const MAX_WASM32_MEMORY: u64 = 4 << 30;

/// Parses a size such as `128MiB`, `64MB`, `1GiB` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64> {
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("invalid size `{text}` (try `128MiB`, `64MB` or `1048576`)"))?;
    Ok(size.as_u64())
}

/// Parses a memory limit and checks it is one a wasm32 guest can use.
pub fn parse_memory_limit(text: &str) -> Result<u64> {
    let bytes = parse_size(text)?;
    if bytes < 64 * 1024 {
        bail!("memory limit `{text}` is below one wasm page (64KiB)");
    }
    if bytes > MAX_WASM32_MEMORY {
        bail!("memory limit `{text}` is above the 4GiB a wasm32 guest can address");
    }
    Ok(bytes)
}

/// Parses a duration such as `30s`, `250ms` or `2m`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let d = parse_duration_or_zero(text)?;
    if d.is_zero() {
        bail!("duration `{text}` must be greater than zero");
    }
    Ok(d)
}

/// Parses a duration where zero is meaningful (no wait at all).
pub fn parse_duration_or_zero(text: &str) -> Result<Duration> {
    humantime::parse_duration(text.trim())
        .with_context(|| format!("invalid duration `{text}` (try `30s`, `250ms` or `2m`)"))
}

/// Checks a concurrency limit.
pub fn check_concurrency(n: usize) -> Result<usize> {
    if n == 0 {
        bail!("max concurrency must be at least 1");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(
            parse_size("lots")
                .unwrap_err()
                .to_string()
                .contains("`lots`")
        );
        assert!(parse_duration("0s").is_err());
        assert!(parse_memory_limit("8GiB").is_err());
        assert!(parse_memory_limit("1KiB").is_err());
    }
}
