//! `hello`: answers every request with a short greeting.

use crate::{Reply, Request};

/// The greeting.
pub const BODY: &[u8] = b"Hello from edge!\n";

/// Says hello.
pub fn handle(_request: &Request<'_>) -> Reply {
    Reply::new(200, "text/plain; charset=utf-8", BODY)
}
