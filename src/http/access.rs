//! Who may talk to the server, and with how large a request.
//!
//! Every request passes [`guard`] before it reaches a handler:
//! 1. **Known hosts only.** A `Host` that is not the bound address, a loopback name with the
//!    bound port, or a name given with `--public-host` is refused (421), so a page that
//!    rebinds its own DNS name to 127.0.0.1 reads nothing.
//! 2. **Same-origin writes only.** A state-changing request (POST, PUT, PATCH, DELETE) whose
//!    `Origin` (or, without one, `Referer`) is another site is refused (403), token or not.
//!    Requests with neither header (curl, scripts, the CLI) cannot be cross-site and pass.
//! 3. **A token when one is configured.** Writes, the event stream and (unless reads are left
//!    open) every read need `Authorization: Bearer TOKEN` or the session cookie that `/login`
//!    sets. `/health`, `/login` and the static assets never do.
//! 4. **Bounded bodies.** A body that is not a multipart upload is read up to
//!    [`MAX_REQUEST_BODY_BYTES`]; past that the rest is read on (up to
//!    [`DRAIN_AFTER_REFUSAL_BYTES`]) and discarded so that the client reads the 413.
//!
//! The decisions are pure ([`check_host`], [`check_origin`], [`needs_token`]) and tested
//! directly; [`guard`] is the shell around them.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use futures_util::StreamExt;
use serde::Deserialize;

use super::{ApiError, ApiState};

/// The largest JSON or form body a request may carry (multipart uploads have their own limits).
pub const MAX_REQUEST_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How much of a refused body is read and discarded so that its sender sees the 413 instead
/// of a reset connection.
pub const DRAIN_AFTER_REFUSAL_BYTES: usize = 64 * 1024 * 1024;
/// The name of the session cookie `/login` sets.
pub const SESSION_COOKIE: &str = "humpback_session";

pub use crate::access_settings::{AccessSettings, AccessToken};

/// The access rules of one running server: its settings, the address it is bound to, and the
/// browser sessions opened through `/login`.
#[derive(Debug)]
pub struct AccessPolicy {
    settings: AccessSettings,
    /// `None` when no socket is bound (a router driven in-process by tests).
    bound: Option<SocketAddr>,
    sessions: Mutex<HashSet<String>>,
}

impl AccessPolicy {
    pub fn new(settings: AccessSettings, bound: Option<SocketAddr>) -> AccessPolicy {
        AccessPolicy { settings, bound, sessions: Mutex::new(HashSet::new()) }
    }

    pub fn token_required(&self) -> bool {
        self.settings.token.is_some()
    }

    fn is_authenticated(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.settings.token else { return true };
        if let Some(offered) = bearer_token(headers) {
            return token.matches(offered);
        }
        match session_cookie(headers) {
            Some(session) => {
                let sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                // Hash lookups on random 256-bit values: timing reveals nothing usable.
                sessions.contains(session)
            }
            None => false,
        }
    }

    fn open_session(&self) -> Result<String, std::io::Error> {
        let session = random_hex(32)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.insert(session.clone());
        Ok(session)
    }

    fn close_session(&self, headers: &HeaderMap) {
        if let Some(session) = session_cookie(headers) {
            let mut sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            sessions.remove(session);
        }
    }
}

fn random_hex(bytes: usize) -> Result<String, std::io::Error> {
    use std::io::Read;
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// A request the guard refuses, with the status and a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

/// Splits `host[:port]` (`[::1]:8080` for IPv6); the port is `None` when absent.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim().to_ascii_lowercase();
    if authority.is_empty() {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((format!("[{host}]"), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn host_is_ip_literal(host: &str) -> bool {
    host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok()
}

/// Whether a request's `Host` names this server. `None` (no header: not a browser, which always
/// sends one) passes. Loopback names must carry the bound port; a `--public-host` without a
/// port matches any port. A server bound to every interface (`0.0.0.0`, `::`) also answers to
/// any IP address with its port: a literal address cannot be rebound by a foreign DNS name.
pub fn check_host(host: Option<&str>, bound: Option<SocketAddr>, public_hosts: &[String]) -> Result<(), Refusal> {
    let Some(host) = host else { return Ok(()) };
    let refuse = || Refusal {
        status: StatusCode::MISDIRECTED_REQUEST,
        reason: format!(
            "this server does not answer to the host name {host:?}: use localhost or 127.0.0.1, or start the server \
             with --public-host NAME to allow another name"
        ),
    };
    let Some((name, port)) = split_host_port(host) else { return Err(refuse()) };
    let port = port.unwrap_or(80);
    for public in public_hosts {
        if let Some((public_name, public_port)) = split_host_port(public) {
            if public_name == name && public_port.is_none_or(|public_port| public_port == port) {
                return Ok(());
            }
        }
    }
    let bound_port_matches = bound.is_none_or(|bound| bound.port() == port);
    let loopback_name = matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]");
    if loopback_name && bound_port_matches {
        return Ok(());
    }
    if let Some(bound) = bound {
        let bound_name = match bound.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        if bound_port_matches && (name == bound_name || (bound.ip().is_unspecified() && host_is_ip_literal(&name))) {
            return Ok(());
        }
    }
    Err(refuse())
}

/// The `scheme://authority` origin of a URL (an `Origin` or `Referer` value).
fn origin_authority(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some((scheme, authority))
}

/// Whether a state-changing request comes from this server's own pages. The page's origin
/// comes from `Origin`, or from `Referer` when a browser sent no `Origin`; a request with
/// neither is not from a browser page and passes. `host` is the request's own (already
/// checked) `Host`.
pub fn check_origin(
    method: &Method,
    origin: Option<&str>,
    referer: Option<&str>,
    host: Option<&str>,
) -> Result<(), Refusal> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
        return Ok(());
    }
    let (source, header_name) = match (origin, referer) {
        (Some(origin), _) => (origin, "Origin"),
        (None, Some(referer)) => (referer, "Referer"),
        (None, None) => return Ok(()),
    };
    let refuse = |what: &str| Refusal {
        status: StatusCode::FORBIDDEN,
        reason: format!(
            "cross-site request refused: its {header_name} is {what}, not this server's own pages; humpback accepts \
             changes only from its own pages or from clients that send no Origin (curl, scripts, the CLI)"
        ),
    };
    let Some((scheme, authority)) = origin_authority(source) else { return Err(refuse(&format!("{source:?}"))) };
    let default_port = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
    let same_host = match (host.and_then(split_host_port), split_host_port(authority)) {
        (Some((host_name, host_port)), Some((name, port))) => {
            host_name == name
                && match (host_port, port) {
                    (None, None) => true,
                    (Some(host_port), Some(port)) => host_port == port,
                    (None, Some(port)) | (Some(port), None) => port == default_port,
                }
        }
        _ => false,
    };
    if matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") && same_host {
        Ok(())
    } else {
        Err(refuse(&format!("{scheme}://{authority}")))
    }
}

/// Whether a request needs the token (when one is configured).
pub fn needs_token(method: &Method, path: &str, open_reads: bool) -> bool {
    let always_open = path == "/health" || path == "/login" || path == "/logout" || path.starts_with("/assets/");
    if always_open {
        return false;
    }
    let is_read = matches!(*method, Method::GET | Method::HEAD);
    // The event stream is what a worker or page follows live: always behind the token.
    !is_read || !open_reads || path == "/api/events/stream"
}

fn refusal_response(refusal: Refusal) -> Response {
    ApiError::new(refusal.status, refusal.reason).into_response()
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The middleware: host, origin, token, then the body limit.
pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let access = state.access.clone();
    let headers = request.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|value| value.to_str().ok());
    let host = text(header::HOST);
    if let Err(refusal) = check_host(host, access.bound, &access.settings.public_hosts) {
        return refusal_response(refusal);
    }
    if let Err(refusal) = check_origin(request.method(), text(header::ORIGIN), text(header::REFERER), host) {
        return refusal_response(refusal);
    }
    let path = request.uri().path();
    if access.token_required()
        && needs_token(request.method(), path, access.settings.open_reads)
        && !access.is_authenticated(headers)
    {
        if request.method() == Method::GET && wants_html(headers) && !path.starts_with("/api/") {
            let next_page = request.uri().path_and_query().map(|target| target.as_str()).unwrap_or("/");
            return Redirect::to(&format!("/login?next={}", crate::views::url_encode(next_page))).into_response();
        }
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this server needs its access token: send `Authorization: Bearer TOKEN` (the CLI reads HUMPBACK_TOKEN \
             or --token), or log in at /login",
        )
        .into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    match bound_body(request).await {
        Ok(request) => next.run(request).await,
        Err(response) => *response,
    }
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().to_ascii_lowercase().starts_with("multipart/"))
}

/// Reads a non-multipart body into memory up to [`MAX_REQUEST_BODY_BYTES`]. A larger one is
/// answered 413 after the rest has been read on (up to [`DRAIN_AFTER_REFUSAL_BYTES`]), so that
/// the client reads the answer instead of a reset.
async fn bound_body(request: Request) -> Result<Request, Box<Response>> {
    if is_multipart(request.headers()) || matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(request);
    }
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut kept: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    let too_large = declared.is_some_and(|length| length > MAX_REQUEST_BODY_BYTES as u64);
    let mut over = too_large;
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                return Err(Box::new(
                    ApiError::bad_request(format!("the request body could not be read: {error}")).into_response(),
                ))
            }
        };
        total += chunk.len() as u64;
        if !over && total <= MAX_REQUEST_BODY_BYTES as u64 {
            kept.extend_from_slice(&chunk);
        } else {
            over = true;
            kept = Vec::new();
        }
        if over && total > (MAX_REQUEST_BODY_BYTES + DRAIN_AFTER_REFUSAL_BYTES) as u64 {
            break;
        }
    }
    if over {
        let mut response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} MiB; send less at a time (uploads of recordings use multipart \
                 /api/audio)",
                MAX_REQUEST_BODY_BYTES / (1024 * 1024)
            ),
        )
        .into_response();
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Err(Box::new(response));
    }
    Ok(Request::from_parts(parts, Body::from(kept)))
}

#[derive(Debug, Deserialize, Default)]
pub struct LoginQuery {
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub token: String,
    pub next: Option<String>,
}

/// Only a path on this server (`/x`, never `//host` or `https://...`) may be returned to.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => next.to_string(),
        _ => "/".to_string(),
    }
}

/// `GET /login`: the token form.
pub async fn login_page(
    State(state): State<ApiState>,
    query: Result<axum::extract::Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = query.ok().and_then(|query| query.0.next);
    let next = safe_next(next.as_deref());
    (StatusCode::OK, crate::views::login_page(&next, None, state.access.token_required())).into_response()
}

/// `POST /login` (form: `token`, `next`): a correct token opens a session (an `HttpOnly`,
/// `SameSite=Strict` cookie) and returns to `next`.
pub async fn login(
    State(state): State<ApiState>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return (StatusCode::UNPROCESSABLE_ENTITY, crate::views::login_page("/", Some("send the token field"), true))
            .into_response();
    };
    let next = safe_next(form.next.as_deref());
    let Some(token) = &state.access.settings.token else {
        return Redirect::to(&next).into_response();
    };
    if !token.matches(&form.token) {
        tracing::warn!("a login with a wrong token was refused");
        return (StatusCode::UNAUTHORIZED, crate::views::login_page(&next, Some("that token is not right"), true))
            .into_response();
    }
    match state.access.open_session() {
        Ok(session) => {
            let cookie = format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict");
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => ApiError::internal(anyhow::anyhow!("opening a session: {error}")).into_response(),
    }
}

/// `POST /logout`: ends this browser's session.
pub async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    state.access.close_session(&headers);
    let mut response = Redirect::to("/login").into_response();
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The access policy a router without a bound socket uses (tests driving it in-process).
pub fn unbound_policy(settings: &AccessSettings) -> Arc<AccessPolicy> {
    Arc::new(AccessPolicy::new(settings.clone(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(address: &str) -> Option<SocketAddr> {
        Some(address.parse().unwrap())
    }

    #[test]
    fn loopback_names_with_the_bound_port_and_the_bound_address_are_known_hosts() {
        for host in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080", "[::1]:8080"] {
            assert_eq!(check_host(Some(host), bound("127.0.0.1:8080"), &[]), Ok(()), "{host}");
        }
        assert_eq!(check_host(Some("10.1.2.3:8080"), bound("10.1.2.3:8080"), &[]), Ok(()));
        assert_eq!(check_host(None, bound("127.0.0.1:8080"), &[]), Ok(()), "no Host: not a browser");
    }

    #[test]
    fn foreign_names_and_other_ports_are_refused_with_421() {
        for host in ["evil.example", "evil.example:8080", "localhost:9999", "127.0.0.1", "", "a:b:c", "[::1"] {
            let refusal = check_host(Some(host), bound("127.0.0.1:8080"), &[]).unwrap_err();
            assert_eq!(refusal.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        }
        assert!(check_host(Some("10.9.9.9:8080"), bound("10.1.2.3:8080"), &[]).is_err());
    }

    #[test]
    fn public_hosts_match_by_name_and_by_port_when_given_one() {
        let public = vec!["whales.lab.example".to_string(), "proxy.example:443".to_string()];
        let at = bound("0.0.0.0:8080");
        assert_eq!(check_host(Some("whales.lab.example:8080"), at, &public), Ok(()));
        assert_eq!(check_host(Some("Whales.Lab.Example"), at, &public), Ok(()));
        assert_eq!(check_host(Some("proxy.example:443"), at, &public), Ok(()));
        assert!(check_host(Some("proxy.example:8443"), at, &public).is_err());
        assert!(check_host(Some("evil.example:8080"), at, &public).is_err());
    }

    #[test]
    fn a_server_bound_to_every_interface_answers_ip_literals_on_its_port_but_no_foreign_name() {
        let at = bound("0.0.0.0:8080");
        assert_eq!(check_host(Some("192.168.1.5:8080"), at, &[]), Ok(()));
        assert!(check_host(Some("192.168.1.5:9090"), at, &[]).is_err());
        assert!(check_host(Some("rebound.evil.example:8080"), at, &[]).is_err());
    }

    #[test]
    fn writes_from_another_origin_are_refused_and_from_our_own_or_no_browser_pass() {
        let host = Some("127.0.0.1:8080");
        let post = Method::POST;
        let refused = check_origin(&post, Some("https://evil.example"), None, host).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.reason.contains("evil.example"), "{}", refused.reason);
        assert!(check_origin(&post, None, Some("https://evil.example/page"), host).is_err());
        assert!(check_origin(&post, Some("null"), None, host).is_err());
        assert!(check_origin(&post, Some("http://127.0.0.1:9999"), None, host).is_err());
        assert!(check_origin(&post, Some("http://localhost:8080"), None, host).is_err(), "another origin name");
        assert!(check_origin(&Method::DELETE, Some("http://evil.example"), None, host).is_err());
        assert!(check_origin(&Method::PATCH, Some("http://evil.example"), None, host).is_err());
        assert!(check_origin(&Method::PUT, Some("http://evil.example"), None, host).is_err());
        assert_eq!(check_origin(&post, Some("http://127.0.0.1:8080"), None, host), Ok(()));
        assert_eq!(check_origin(&post, None, Some("http://127.0.0.1:8080/audio?x=1"), host), Ok(()));
        assert_eq!(check_origin(&post, None, None, host), Ok(()), "curl and scripts");
        assert_eq!(check_origin(&Method::GET, Some("https://evil.example"), None, host), Ok(()), "reads");
        assert_eq!(check_origin(&post, Some("https://whales.example"), None, Some("whales.example")), Ok(()));
        assert!(check_origin(&post, Some("http://127.0.0.1:8080"), None, None).is_err(), "no Host to match");
    }

    #[test]
    fn the_token_guards_writes_and_the_stream_always_and_reads_unless_left_open() {
        for (method, path, open_reads, needed) in [
            (Method::POST, "/api/audio", true, true),
            (Method::DELETE, "/api/annotations/1", true, true),
            (Method::GET, "/api/events/stream", true, true),
            (Method::GET, "/api/audio", true, false),
            (Method::GET, "/api/audio", false, true),
            (Method::GET, "/audio", false, true),
            (Method::GET, "/health", false, false),
            (Method::GET, "/login", false, false),
            (Method::POST, "/login", false, false),
            (Method::GET, "/assets/style.css", false, false),
        ] {
            assert_eq!(needs_token(&method, path, open_reads), needed, "{method} {path} open_reads={open_reads}");
        }
    }

    #[test]
    fn tokens_compare_whole_and_never_show_in_debug_output() {
        let token = AccessToken::new("  s3cret-token ").unwrap();
        assert!(token.matches("s3cret-token"));
        assert!(!token.matches("s3cret-toke"));
        assert!(!token.matches("s3cret-token2"));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "AccessToken(***)");
        assert!(!format!("{:?}", AccessSettings { token: Some(token), ..Default::default() }).contains("s3cret"));
        assert!(AccessToken::new("   ").is_none());
    }

    #[test]
    fn bearer_tokens_and_session_cookies_are_found_in_their_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("theme=dark; humpback_session=f00d; x=y"));
        assert_eq!(bearer_token(&headers), Some("abc"));
        assert_eq!(session_cookie(&headers), Some("f00d"));
    }

    #[test]
    fn login_returns_only_to_paths_on_this_server() {
        assert_eq!(safe_next(Some("/audio/3?x=1")), "/audio/3?x=1");
        for hostile in ["//evil.example", "https://evil.example", "/\\evil.example", "evil", ""] {
            assert_eq!(safe_next(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
