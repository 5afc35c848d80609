//! A loopback fake of YouTube over HTTP/2 (h2c): `videos.list` (REST, JSON) and the gRPC
//! `StreamList` server stream with real length-prefixed protobuf messages and trailers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use koto_chat::youtube::grpc;
use koto_chat::youtube::proto::{self, LiveChatMessageListRequest, LiveChatMessageListResponse};
use prost::Message as _;
use tokio::sync::mpsc;

pub const API_KEY: &str = "fake-api-key";

pub enum Videos {
    Live(&'static str),
    NotLive,
    BadKey,
}

/// What one stream sends next.
pub enum Send {
    Page(LiveChatMessageListResponse),
    Raw(Vec<u8>),
    /// Trailers with this grpc-status (ends the call).
    End(u32, &'static str),
}

pub struct Script {
    pub videos: Videos,
    /// Answer StreamList with a trailers-only error instead of a stream.
    pub refuse_stream: Option<(u32, &'static str)>,
}

pub struct FakeStream {
    pub request: LiveChatMessageListRequest,
    pub api_key: String,
    pub to_client: mpsc::Sender<Send>,
}

impl FakeStream {
    pub async fn send(&self, item: Send) {
        let _ = self.to_client.send(item).await;
    }
}

pub struct FakeYouTube {
    pub url: String,
    pub script: Arc<Mutex<Script>>,
    pub streams: mpsc::Receiver<FakeStream>,
    pub video_calls: mpsc::Receiver<String>,
}

impl FakeYouTube {
    pub async fn next_stream(&mut self) -> FakeStream {
        match tokio::time::timeout(Duration::from_secs(600), self.streams.recv()).await {
            Ok(Some(stream)) => stream,
            _ => panic!("the adapter never opened StreamList"),
        }
    }

    pub fn set(&self, change: impl FnOnce(&mut Script)) {
        if let Ok(mut script) = self.script.lock() {
            change(&mut script);
        }
    }
}

pub async fn start(videos: Videos) -> FakeYouTube {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(error) => panic!("bind: {error}"),
    };
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let script = Arc::new(Mutex::new(Script {
        videos,
        refuse_stream: None,
    }));
    let (streams_tx, streams) = mpsc::channel(8);
    let (videos_tx, video_calls) = mpsc::channel(8);
    let shared = script.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let script = shared.clone();
            let streams_tx = streams_tx.clone();
            let videos_tx = videos_tx.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = connection.accept().await {
                    tokio::spawn(handle(
                        request,
                        respond,
                        script.clone(),
                        streams_tx.clone(),
                        videos_tx.clone(),
                    ));
                }
            });
        }
    });
    FakeYouTube {
        url,
        script,
        streams,
        video_calls,
    }
}

fn response(status: u16, content_type: &str) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert("content-type", value);
    }
    response
}

fn status_trailers(code: u32, message: &str) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_str(&code.to_string()) {
        trailers.insert("grpc-status", value);
    }
    if let Ok(value) = http::HeaderValue::from_str(&message.replace(' ', "%20")) {
        trailers.insert("grpc-message", value);
    }
    trailers
}

async fn handle(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    script: Arc<Mutex<Script>>,
    streams: mpsc::Sender<FakeStream>,
    videos: mpsc::Sender<String>,
) {
    let path = request.uri().path().to_owned();
    let api_key = request
        .headers()
        .get("x-goog-api-key")
        .and_then(|k| k.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let mut body = request.into_body();
    let mut received = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        received.extend_from_slice(&chunk);
    }
    if path == "/youtube/v3/videos" {
        let _ = videos.send(query.clone()).await;
        let (status, json) = match script.lock().map(|s| match s.videos {
            Videos::Live(id) => (200, format!(r#"{{"items":[{{"id":"v","liveStreamingDetails":{{"activeLiveChatId":"{id}"}}}}]}}"#)),
            Videos::NotLive => (200, r#"{"items":[{"id":"v","liveStreamingDetails":{}}]}"#.to_owned()),
            Videos::BadKey => (400, r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","errors":[{"reason":"badRequest"}]}}"#.to_owned()),
        }) {
            Ok(reply) if api_key == API_KEY => reply,
            _ => (403, r#"{"error":{"code":403,"message":"no key","errors":[{"reason":"forbidden"}]}}"#.to_owned()),
        };
        if let Ok(mut send) = respond.send_response(response(status, "application/json"), false) {
            let _ = send.send_data(Bytes::from(json), true);
        }
        return;
    }
    if path != proto::STREAM_LIST_PATH {
        let _ = respond.send_response(response(404, "text/plain"), true);
        return;
    }
    if let Some((code, message)) = script.lock().ok().and_then(|s| s.refuse_stream) {
        // Trailers-only: the status travels in the response headers.
        let mut reply = response(200, "application/grpc");
        reply.headers_mut().extend(status_trailers(code, message));
        let _ = respond.send_response(reply, true);
        return;
    }
    let mut deframer = grpc::Deframer::default();
    deframer.push(&received);
    let request = match deframer.next_message() {
        Ok(Some(message)) => {
            LiveChatMessageListRequest::decode(message.as_slice()).unwrap_or_default()
        }
        _ => LiveChatMessageListRequest::default(),
    };
    let Ok(mut send) = respond.send_response(response(200, "application/grpc"), false) else {
        return;
    };
    let (to_client, mut items) = mpsc::channel(16);
    if streams
        .send(FakeStream {
            request,
            api_key,
            to_client,
        })
        .await
        .is_err()
    {
        return;
    }
    while let Some(item) = items.recv().await {
        match item {
            Send::Page(page) => {
                if send
                    .send_data(Bytes::from(grpc::frame(&page.encode_to_vec())), false)
                    .is_err()
                {
                    return;
                }
            }
            Send::Raw(bytes) => {
                if send.send_data(Bytes::from(bytes), false).is_err() {
                    return;
                }
            }
            Send::End(code, message) => {
                let _ = send.send_trailers(status_trailers(code, message));
                return;
            }
        }
    }
    // The test dropped the stream: reset it, as a dying server would.
    send.send_reset(h2::Reason::INTERNAL_ERROR);
}
