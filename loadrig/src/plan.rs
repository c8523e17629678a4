//! The plan: what load to offer and when to stop, kept as data so one worker loop serves
//! every mode (closed, open, staged ramps, segments of a split run).

use std::time::Duration;

use anyhow::{Context, bail, ensure};

/// How requests arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrivals {
    /// Closed model: every connection sends its next request as soon as the previous
    /// response has been read (what wrk and oha do by default).
    Closed,
    /// Open model: requests are due on a fixed schedule whatever the server does, and
    /// latency is measured from the time each one was due (wrk2's correction of
    /// coordinated omission).
    Open(Schedule),
}

/// A piecewise-linear arrival rate: the integral of the rate says when request `k` is due.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    ramps: Vec<Ramp>,
}

/// One stretch of the schedule: the rate moves linearly from `from` to `to` requests per
/// second over `duration` (`None`: forever, at a constant rate).
#[derive(Debug, Clone, PartialEq)]
struct Ramp {
    /// Seconds since the start of the run at which this ramp begins.
    start: f64,
    duration: Option<f64>,
    from: f64,
    to: f64,
    /// Requests due before this ramp begins.
    before: f64,
}

/// A stage of a ramp, as given by `--stage DURATION:RATE`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// How long the stage lasts.
    pub duration: Duration,
    /// The rate (requests per second) reached at the end of the stage.
    pub target: f64,
}

impl Schedule {
    /// A constant rate for `duration` (or forever).
    pub fn constant(rate: f64, duration: Option<Duration>) -> Self {
        Self {
            ramps: vec![Ramp {
                start: 0.0,
                duration: duration.map(|d| d.as_secs_f64()),
                from: rate,
                to: rate,
                before: 0.0,
            }],
        }
    }

    /// Linear ramps through `stages`, starting from `start_rate`.
    pub fn staged(start_rate: f64, stages: &[Stage]) -> Self {
        let (mut start, mut from, mut before) = (0.0, start_rate, 0.0);
        let mut ramps = Vec::with_capacity(stages.len());
        for stage in stages {
            let d = stage.duration.as_secs_f64();
            ramps.push(Ramp {
                start,
                duration: Some(d),
                from,
                to: stage.target,
                before,
            });
            before += (from + stage.target) / 2.0 * d;
            start += d;
            from = stage.target;
        }
        Self { ramps }
    }

    /// The total length of the schedule, if it ends.
    pub fn length(&self) -> Option<Duration> {
        let last = self.ramps.last()?;
        last.duration
            .map(|d| Duration::from_secs_f64(last.start + d))
    }

    /// When request `k` (counting from 0) is due, as an offset from the start of the run;
    /// `None` once the schedule has ended.
    pub fn due(&self, k: u64) -> Option<Duration> {
        let k = k as f64;
        let ramp = self.ramps.iter().rev().find(|r| r.before <= k)?;
        let m = k - ramp.before;
        // Requests due after t seconds into the ramp: n(t) = from·t + a·t², a = (to − from)/2D.
        // Solve n(t) = m in the form that stays exact when a is 0 or negative.
        let a = match ramp.duration {
            Some(d) if d > 0.0 => (ramp.to - ramp.from) / (2.0 * d),
            _ => 0.0,
        };
        let disc = ramp.from * ramp.from + 4.0 * a * m;
        if disc < 0.0 {
            return None;
        }
        let denom = ramp.from + disc.sqrt();
        let t = if m == 0.0 {
            0.0
        } else if denom > 0.0 {
            2.0 * m / denom
        } else {
            return None;
        };
        if let Some(d) = ramp.duration
            && t >= d
        {
            return None;
        }
        Some(Duration::from_secs_f64(ramp.start + t))
    }
}

/// The slice of a run one generator (or one worker thread of it) is responsible for:
/// requests whose global index `k` satisfies `k % count == index`. The union of all shares
/// is exactly the whole run, which is what makes split runs mergeable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// This share's position, from 0.
    pub index: u64,
    /// How many shares the run is split into.
    pub count: u64,
}

/// The environment variable `--segment JOB_COMPLETION_INDEX/n` reads its segment from.
pub const JOB_INDEX: &str = "JOB_COMPLETION_INDEX";

impl Share {
    /// The whole run.
    pub const WHOLE: Share = Share { index: 0, count: 1 };

    /// Parses `i/n` (1-based, as `--segment 1/2` and `--segment 2/2`). `i` may be
    /// [`JOB_INDEX`]: the segment is then that environment variable (0-based, as a
    /// Kubernetes Indexed Job sets it in each pod) plus one, so a Job needs no shell.
    pub fn parse_segment(s: &str) -> anyhow::Result<Self> {
        let (i, n) = s
            .split_once('/')
            .with_context(|| format!("segment `{s}` is not of the form i/n, e.g. 1/2"))?;
        let from_job;
        let i = match i.trim() {
            JOB_INDEX => {
                let index = std::env::var(JOB_INDEX).with_context(|| {
                    format!(
                        "segment `{s}`: {JOB_INDEX} is not set (Kubernetes sets it in the pods \
                         of an Indexed Job)"
                    )
                })?;
                let index: u64 = index.trim().parse().with_context(|| {
                    format!("segment `{s}`: {JOB_INDEX}=`{index}` is not a whole number")
                })?;
                from_job = (index + 1).to_string();
                from_job.as_str()
            }
            i => i,
        };
        let i: u64 = i
            .trim()
            .parse()
            .with_context(|| format!("segment `{s}`: `{i}` is not a whole number"))?;
        let n: u64 = n
            .trim()
            .parse()
            .with_context(|| format!("segment `{s}`: `{n}` is not a whole number"))?;
        ensure!(
            n >= 1 && (1..=n).contains(&i),
            "segment `{s}` must satisfy 1 <= i <= n"
        );
        Ok(Share {
            index: i - 1,
            count: n,
        })
    }

    /// The `i/n` text of this share as a segment (1-based), as the JSON records it.
    pub fn segment_text(self) -> String {
        format!("{}/{}", self.index + 1, self.count)
    }

    /// Splits this share into `parts` shares (one per worker thread).
    pub fn split(self, part: u64, parts: u64) -> Share {
        Share {
            index: self.index + self.count * part,
            count: self.count * parts,
        }
    }

    /// How many of `total` items (numbered from 0) fall in this share.
    pub fn of(self, total: u64) -> u64 {
        if self.index >= total {
            0
        } else {
            (total - self.index - 1) / self.count + 1
        }
    }

    /// The global index of this share's `local`-th item.
    pub fn global(self, local: u64) -> u64 {
        self.index + self.count * local
    }
}

/// A validated plan for one run (or one segment of it).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// How requests arrive.
    pub arrivals: Arrivals,
    /// Stop issuing requests after this long.
    pub duration: Option<Duration>,
    /// Stop after this many requests in total (across all segments).
    pub requests: Option<u64>,
    /// Connections opened at the start (in total, across all segments).
    pub connections: u64,
    /// Under the open model, more connections are opened while every one is busy and a
    /// request is overdue, up to this many (in total).
    pub max_connections: u64,
    /// The part of the run this process executes.
    pub share: Share,
}

impl Plan {
    /// The run's length when it is known in advance.
    pub fn length(&self) -> Option<Duration> {
        length(&self.arrivals, self.duration)
    }
}

/// How long a load lasts, when known in advance: the shorter of `duration` and the open
/// schedule's stages.
pub fn length(arrivals: &Arrivals, duration: Option<Duration>) -> Option<Duration> {
    let schedule = match arrivals {
        Arrivals::Open(s) => s.length(),
        Arrivals::Closed => None,
    };
    match (duration, schedule) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The load `-r RATE`, `--stage DURATION:RATE` and `-d DURATION` describe: the starting
/// rate, the arrivals, and the duration as given (callers pick their default).
pub fn parse_load(
    rate: Option<&str>,
    stages: &[String],
    duration: Option<&str>,
) -> anyhow::Result<(Option<f64>, Arrivals, Option<Duration>)> {
    let rate = rate.map(parse_rate).transpose()?;
    let stages = stages
        .iter()
        .map(|s| parse_stage(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let duration = duration.map(parse_duration).transpose()?;
    let arrivals = match (rate, stages.is_empty()) {
        (None, true) => Arrivals::Closed,
        (Some(r), true) => {
            ensure!(r > 0.0, "--rate must be above zero");
            Arrivals::Open(Schedule::constant(r, None))
        }
        (r, false) => {
            ensure!(
                duration.is_none(),
                "--duration and --stage both set the run's length: use one"
            );
            Arrivals::Open(Schedule::staged(r.unwrap_or(0.0), &stages))
        }
    };
    Ok((rate, arrivals, duration))
}

/// Parses a duration such as `10s`, `1m30s`, `250ms`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let d = humantime::parse_duration(s.trim()).with_context(|| {
        format!("duration `{s}` is not valid: use a number and a unit, e.g. 30s, 1m30s, 250ms")
    })?;
    ensure!(!d.is_zero(), "duration `{s}` must be longer than zero");
    Ok(d)
}

/// Parses a rate in requests per second: `1000`, `1000/s`, `2.5k`, `600/m`.
pub fn parse_rate(s: &str) -> anyhow::Result<f64> {
    let bad =
        || format!("rate `{s}` is not valid: use requests per second, e.g. 1000, 2.5k, 600/m");
    let t = s.trim();
    let (number, per) = match t.split_once('/') {
        Some((n, unit)) => (
            n,
            match unit.trim() {
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => bail!(bad()),
            },
        ),
        None => (t, 1.0),
    };
    let (number, scale) = match number.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1000.0),
        None => (number, 1.0),
    };
    let rate: f64 = number.trim().parse().with_context(bad)?;
    let rate = rate * scale / per;
    ensure!(rate.is_finite() && rate >= 0.0, bad());
    Ok(rate)
}

/// Parses a stage `DURATION:RATE`, e.g. `30s:2000`.
pub fn parse_stage(s: &str) -> anyhow::Result<Stage> {
    let (d, r) = s
        .split_once(':')
        .with_context(|| format!("stage `{s}` is not of the form DURATION:RATE, e.g. 30s:2000"))?;
    Ok(Stage {
        duration: parse_duration(d).with_context(|| format!("in stage `{s}`"))?,
        target: parse_rate(r).with_context(|| format!("in stage `{s}`"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let s = Schedule::constant(1000.0, Some(Duration::from_secs(1)));
        assert_eq!(s.due(0), Some(Duration::ZERO));
        assert_eq!(s.due(500), Some(Duration::from_millis(500)));
        assert_eq!(s.due(999).unwrap().as_micros(), 999_000);
        assert_eq!(s.due(1000), None);
    }

    #[test]
    fn ramps_integrate_the_rate() {
        // 0 → 100/s over 10 s is 500 requests; then 100/s for 5 s is 500 more.
        let s = Schedule::staged(
            0.0,
            &[
                parse_stage("10s:100").unwrap(),
                parse_stage("5s:100").unwrap(),
            ],
        );
        assert_eq!(s.length(), Some(Duration::from_secs(15)));
        // n(t) = 5 t², so request 125 is due at t = 5 s.
        assert!((s.due(125).unwrap().as_secs_f64() - 5.0).abs() < 1e-9);
        assert!((s.due(500).unwrap().as_secs_f64() - 10.0).abs() < 1e-9);
        assert!((s.due(750).unwrap().as_secs_f64() - 12.5).abs() < 1e-9);
        assert_eq!(s.due(1000), None);
        // Ramping down works too: 100 → 0 over 10 s is 500 requests.
        let down = Schedule::staged(100.0, &[parse_stage("10s:0").unwrap()]);
        assert!(down.due(499).is_some());
        assert_eq!(down.due(500), None);
    }

    #[test]
    fn shares_partition_the_run() {
        let seg = Share::parse_segment("2/3").unwrap();
        assert_eq!(seg, Share { index: 1, count: 3 });
        let total = 100;
        let mut seen = vec![0; total as usize];
        for s in 1..=3 {
            let seg = Share::parse_segment(&format!("{s}/3")).unwrap();
            for w in 0..2 {
                let share = seg.split(w, 2);
                for local in 0..share.of(total) {
                    seen[share.global(local) as usize] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        for bad in ["0/2", "3/2", "1", "a/b", "1/0"] {
            assert!(Share::parse_segment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_and_durations_parse_or_explain() {
        assert_eq!(parse_rate("1000").unwrap(), 1000.0);
        assert_eq!(parse_rate("2.5k").unwrap(), 2500.0);
        assert_eq!(parse_rate("600/m").unwrap(), 10.0);
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        for bad in ["fast", "-5", "10/d", ""] {
            let e = parse_rate(bad).unwrap_err().to_string();
            assert!(e.contains("is not valid"), "{e}");
        }
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_stage("10s").is_err());
    }
}
