//! Small parsers of what a request's path and query carry, shared by the handlers.

use super::ApiError;

/// A whole-number id from a path (`what` names it in the 400 answer).
pub fn parse_id(text: &str, what: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("{what} id {text:?} is not a whole number")))
}
