//! loadrig: an HTTP load generator in the class of wrk2, oha and k6.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//! plan (closed | open schedule, stages, stop, segment)
//!   → drive (worker threads, one loop per connection, timestamps from the socket)
//!   → record (HDR histograms per worker, merged exactly)
//!   → summary (k6-shaped metrics) → report (text | JSON | HTML) → threshold → exit code
//! ```
//!
//! `ws` drives WebSocket connections through the same record → summary → report stages.
//!
//! Latency is measured from when each request was *due* (wrk2's correction for
//! coordinated omission); the uncorrected histogram is kept beside it.

pub mod commands;
pub mod compare;
pub mod drive;
pub mod h1;
pub mod metrics;
pub mod plan;
pub mod record;
pub mod report;
pub mod scenario;
pub mod start;
pub mod summary;
pub mod threshold;
pub mod ws;
