//! Starting the segments of a split run together: `--start-at`.
//!
//! Each machine (or Kubernetes pod) runs its segment with the same `--start-at`; each
//! sleeps until that wall-clock time, so the segments overlap and their merge is one run.
//! A segment that is already later than `--start-grace` does not run at all (exit code
//! [`START_MISSED_EXIT`]): a late segment would measure a different load than the one
//! planned. The clocks must agree (NTP keeps them within milliseconds); `loadrig merge`
//! warns when the recorded starts are far apart.

use std::time::{Duration, SystemTime};

use anyhow::Context;

/// Default for `--start-grace`.
pub const DEFAULT_START_GRACE: &str = "1s";

/// The exit code of a run that missed its `--start-at` by more than `--start-grace`.
pub const START_MISSED_EXIT: u8 = 110;

/// A run that was too late to start (exit code [`START_MISSED_EXIT`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartMissed(pub String);

/// The start flags every command that can be split shares.
#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    /// Wait until this UTC wall-clock time to start, in RFC 3339 (`2026-12-05T10:00:00Z`,
    /// fractions allowed), so segments on several machines start together. The JSON
    /// records it beside the actual start. An empty `LOADRIG_START_AT` starts at once.
    #[arg(long, value_name = "TIME", env = "LOADRIG_START_AT")]
    pub start_at: Option<String>,
    /// How late past `--start-at` the run may still start; later, it exits 110 without
    /// running.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_START_GRACE)]
    pub start_grace: String,
}

/// A validated `--start-at`.
#[derive(Debug, Clone, Copy)]
pub struct StartAt {
    at: SystemTime,
    grace: Duration,
}

impl StartArgs {
    /// Checks the flags: `None` when the run starts at once.
    pub fn validate(&self) -> anyhow::Result<Option<StartAt>> {
        let grace = humantime::parse_duration(&self.start_grace).with_context(|| {
            format!(
                "--start-grace `{}` is not a duration (try 1s)",
                self.start_grace
            )
        })?;
        let Some(text) = self.start_at.as_ref().filter(|t| !t.trim().is_empty()) else {
            return Ok(None);
        };
        let at = humantime::parse_rfc3339_weak(text.trim()).with_context(|| {
            format!("--start-at `{text}` is not an RFC 3339 UTC time, e.g. 2026-12-05T10:00:00Z")
        })?;
        Ok(Some(StartAt { at, grace }))
    }
}

impl StartAt {
    /// Sleeps until the start time and returns it (seconds since the Unix epoch), or fails
    /// with [`StartMissed`] if it passed more than the grace ago. `say` tells the user how
    /// long the wait is.
    pub fn wait(&self, say: bool) -> anyhow::Result<f64> {
        let planned = epoch(self.at);
        match self.at.duration_since(SystemTime::now()) {
            Ok(ahead) => {
                if say {
                    eprintln!(
                        "loadrig: starting in {:.1} s (--start-at)",
                        ahead.as_secs_f64()
                    );
                }
                // Sleep in steps: the wall clock may be adjusted while we wait.
                while let Ok(left) = self.at.duration_since(SystemTime::now()) {
                    std::thread::sleep(left.min(Duration::from_secs(1)));
                }
                Ok(planned)
            }
            Err(late) if late.duration() <= self.grace => Ok(planned),
            Err(late) => Err(StartMissed(format!(
                "--start-at was {:.3} s ago, more than --start-grace {:?}: not running",
                late.duration().as_secs_f64(),
                self.grace
            ))
            .into()),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Now, in seconds since the Unix epoch.
pub fn now() -> f64 {
    epoch(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(at: Option<&str>, grace: &str) -> StartArgs {
        StartArgs {
            start_at: at.map(str::to_string),
            start_grace: grace.to_string(),
        }
    }

    #[test]
    fn parses_rfc3339_utc_and_refuses_the_rest() {
        assert!(args(None, "1s").validate().unwrap().is_none());
        let s = args(Some("2026-12-05T10:00:00.250Z"), "1s")
            .validate()
            .unwrap()
            .unwrap();
        assert_eq!(epoch(s.at), 1_796_464_800.25);
        for bad in ["tomorrow", "2026-12-05 10:00", "2026-13-05T10:00:00Z"] {
            assert!(args(Some(bad), "1s").validate().is_err(), "{bad}");
        }
        assert!(
            args(Some("2026-12-05T10:00:00Z"), "soon")
                .validate()
                .is_err()
        );
    }

    #[test]
    fn a_past_start_runs_within_the_grace_and_not_after() {
        let past = |secs: f64| StartAt {
            at: SystemTime::now() - Duration::from_secs_f64(secs),
            grace: Duration::from_secs(1),
        };
        assert!(past(0.2).wait(false).is_ok());
        let e = past(5.0).wait(false).unwrap_err();
        assert!(e.downcast_ref::<StartMissed>().is_some(), "{e:#}");
    }
}
