//! One HTTP exchange on an admin connection: the request read (parsed by `httparse`,
//! bounded in size and time), the credentials checked, one response written, the
//! connection closed. The admin port serves GET and HEAD only.

use std::io::{self, Read, Write};

use base64::Engine as _;

/// Most bytes of a request's head.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Most headers in a request.
const MAX_HEADERS: usize = 64;

/// A request the admin port serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without its query string.
    pub(crate) path: String,
    /// The query string's `key=value` pairs, decoded.
    pub(crate) query: Vec<(String, String)>,
    /// `user:password` from a Basic `Authorization` header, if any.
    pub(crate) basic: Option<String>,
    /// The `Origin` header, if any (a page of another origin asking).
    pub(crate) origin: Option<String>,
}

/// Why a request was not read.
#[derive(Debug)]
pub(crate) enum Bad {
    /// The connection failed or closed.
    Io(io::Error),
    /// Not HTTP, or over the bounds: answered 400 (or 431).
    Request(u16, &'static str),
}

impl From<io::Error> for Bad {
    fn from(e: io::Error) -> Bad {
        Bad::Io(e)
    }
}

/// Reads one request's head from `stream` (its body, if any, is never read).
pub(crate) fn read_request(stream: &mut impl Read) -> Result<Request, Bad> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(Bad::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or_default().to_string();
                let target = req.path.unwrap_or("/");
                let target = target.split('#').next().unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let query = form_urlencoded::parse(query.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let path = path.to_string();
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                };
                let basic = header("authorization")
                    .and_then(|v| v.trim().split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                    .and_then(|(_, b)| {
                        base64::engine::general_purpose::STANDARD
                            .decode(b.trim())
                            .ok()
                    })
                    .and_then(|b| String::from_utf8(b).ok());
                let origin = header("origin").map(|o| o.trim().to_string());
                return Ok(Request {
                    method,
                    path,
                    query,
                    basic,
                    origin,
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(Bad::Request(431, "request head too large"))
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Bad::Request(431, "too many headers"))
            }
            Err(_) => return Err(Bad::Request(400, "not an HTTP request")),
        }
    }
}

/// A response.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
    /// Asks for credentials (401).
    pub(crate) challenge: bool,
    /// The origin (another member's admin page) allowed to read it, with the browser's
    /// credentials.
    pub(crate) allow_origin: Option<String>,
}

impl Response {
    pub(crate) fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<Vec<u8>>,
    ) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            challenge: false,
            allow_origin: None,
        }
    }

    pub(crate) fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    /// 401, asking for Basic credentials.
    pub(crate) fn unauthorized() -> Response {
        Response {
            challenge: true,
            ..Response::text(401, "credentials needed")
        }
    }

    /// Writes the response (without its body for HEAD) and flushes.
    pub(crate) fn write(&self, out: &mut impl Write, head_only: bool) -> io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        head.push_str("Vary: Origin\r\n");
        if let Some(origin) = &self.allow_origin {
            head.push_str(&format!(
                "Access-Control-Allow-Origin: {origin}\r\nAccess-Control-Allow-Credentials: true\r\n"
            ));
        }
        if self.challenge {
            head.push_str("WWW-Authenticate: Basic realm=\"zkraft\", charset=\"UTF-8\"\r\n");
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if !head_only {
            out.write_all(&self.body)?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_and_bounded() {
        let req = read_request(
            &mut &b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Basic dTpw\r\n\r\n"[..],
        )
        .unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/metrics");
        assert_eq!(req.query, [("x".to_string(), "1".to_string())]);
        assert_eq!(req.basic.as_deref(), Some("u:p"));
        assert!(matches!(
            read_request(&mut &b"\x16\x03\x01garbage\r\n\r\n"[..]),
            Err(Bad::Request(400, _))
        ));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(
            read_request(&mut long.as_bytes()),
            Err(Bad::Request(431, _))
        ));
        assert!(matches!(
            read_request(&mut &b"GET / HT"[..]),
            Err(Bad::Io(_))
        ));
    }
}
