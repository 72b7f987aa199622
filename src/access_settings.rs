//! What the operator configured about access (`--token`, `--public-host`, `--open-reads`):
//! plain settings below both the services and the HTTP guard that enforces them
//! (`http::access`).

use sha2::{Digest, Sha256};

/// A secret token. Its `Debug` form never shows it, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// `None` for an empty or blank value (an unset environment variable passed through).
    pub fn new(token: &str) -> Option<AccessToken> {
        let token = token.trim();
        (!token.is_empty()).then(|| AccessToken(token.to_string()))
    }

    /// Constant-time comparison: both sides are hashed first, so neither the length nor the
    /// position of the first difference shows in the time taken.
    pub fn matches(&self, offered: &str) -> bool {
        constant_time_equal(&Sha256::digest(self.0.as_bytes()), &Sha256::digest(offered.trim().as_bytes()))
    }

    /// The token itself, for a client that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("AccessToken(***)")
    }
}

fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

/// What the operator configured about access.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// `--token`: required for writes, the event stream and (unless `open_reads`) reads.
    pub token: Option<AccessToken>,
    /// `--public-host`: further names (optionally `name:port`) the server answers to.
    pub public_hosts: Vec<String>,
    /// `--open-reads`: with a token, reads need none.
    pub open_reads: bool,
}
