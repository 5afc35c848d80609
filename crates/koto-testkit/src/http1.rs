//! The minimal HTTP/1.1 request reading the raw-TCP fakes share: they need byte-level control
//! of their responses, so they do not use an HTTP framework; requests are simple enough.

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::ReadHalf;

/// A request as a fake received it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Value::Null` if it was not JSON).
    pub body: Value,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Reads one request (head + `content-length` body) from `buffer` and the socket. `None` on
/// EOF, a read error, a request over `max_bytes`, or one the fake cannot parse.
pub(crate) async fn read_request(
    reader: &mut ReadHalf<'_>,
    buffer: &mut Vec<u8>,
    max_bytes: usize,
) -> Option<HttpRequest> {
    let head_len = loop {
        if let Some(pos) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break pos + 4;
        }
        if buffer.len() > max_bytes {
            return None;
        }
        match reader.read_buf(buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_len]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let content_length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    if content_length > max_bytes {
        return None;
    }
    while buffer.len() < head_len + content_length {
        match reader.read_buf(buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    let body_bytes: Vec<u8> = buffer
        .drain(..head_len + content_length)
        .skip(head_len)
        .collect();
    let body = serde_json::from_slice(&body_bytes).unwrap_or(Value::Null);
    Some(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}
