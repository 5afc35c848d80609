//! Edge and OpenAI speech clients against loopback fakes speaking their real protocols
//! (`koto_testkit::fake_edge`, `koto_testkit::fake_openai_speech`), with a real MP3 fixture.
//!
//! Timeouts around waits are failure guards (a hang becomes a failure), never "sleep long enough".

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use koto_core::ProviderError;
use koto_core::tts::{PcmBlock, PcmStream, TtsProvider, TtsRequest};
use koto_providers::audio::mp3::Mp3StreamDecoder;
use koto_providers::tts::edge::token::{TRUSTED_CLIENT_TOKEN, sec_ms_gec};
use koto_providers::tts::edge::{EdgeTts, EdgeTtsConfig};
use koto_providers::tts::openai::{OpenAiSpeechFormat, OpenAiTts, OpenAiTtsConfig};
use koto_testkit::fake_edge::{EdgeBehaviour, EdgeScript, EdgeSpeech, FakeEdge};
use koto_testkit::fake_openai_speech::{
    FakeOpenAiSpeech, SpeechAudio, SpeechResponse, SpeechScript,
};

/// MPEG-2 Layer III, 24 kHz, 48 kbit/s mono: Edge's own format. 128 frames × 576 samples.
const FIXTURE_MP3: &[u8] = include_bytes!("../fixtures/speech-24k-mono.mp3");
const FIXTURE_SAMPLES: usize = 128 * 576;
/// Generous bound on any single wait; only reached when something is broken.
const GUARD: Duration = Duration::from_secs(20);

fn request(text: &str, lang: &str) -> TtsRequest {
    TtsRequest {
        text: text.to_owned(),
        lang: Some(lang.to_owned()),
        correlation_id: "live-001#7".to_owned(),
    }
}

/// Everything a stream yields: the blocks, then the error that ended it (if any).
async fn drain(mut stream: PcmStream) -> (Vec<PcmBlock>, Option<ProviderError>) {
    let mut blocks = Vec::new();
    loop {
        let item = tokio::time::timeout(GUARD, stream.next())
            .await
            .expect("the stream must not hang");
        match item {
            Some(Ok(block)) => blocks.push(block),
            Some(Err(error)) => {
                let after = tokio::time::timeout(GUARD, stream.next())
                    .await
                    .expect("the stream must not hang");
                assert!(
                    after.is_none(),
                    "an error ends the stream; got {after:?} after it"
                );
                return (blocks, Some(error));
            }
            None => return (blocks, None),
        }
    }
}

fn samples_of(blocks: &[PcmBlock]) -> Vec<i16> {
    blocks
        .iter()
        .flat_map(|b| b.samples.iter().copied())
        .collect()
}

fn fixture_decoded_whole() -> Vec<i16> {
    let mut decoder = Mp3StreamDecoder::new();
    let mut blocks = decoder.push(FIXTURE_MP3).expect("the fixture is valid MP3");
    blocks.extend(decoder.finish().expect("the fixture is valid MP3"));
    samples_of(&blocks)
}

fn edge_provider(fake: &FakeEdge, config: EdgeTtsConfig) -> EdgeTts {
    EdgeTts::new(EdgeTtsConfig {
        endpoint: fake.endpoint(),
        ..config
    })
    .expect("a valid config")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

#[tokio::test]
async fn edge_streams_the_fixture_as_pcm_and_sends_escaped_ssml() {
    let fake = FakeEdge::start(EdgeScript::always(EdgeBehaviour::speak(FIXTURE_MP3))).await;
    let edge = edge_provider(
        &fake,
        EdgeTtsConfig {
            rate: "+10%".into(),
            ..Default::default()
        },
    );

    let before = unix_now();
    let (blocks, error) = drain(edge.synthesize(request("Tom & <Jerry> say \"hi\"", "ja"))).await;
    let after = unix_now();

    assert_eq!(error, None, "a complete turn ends without error");
    assert!(
        blocks.len() > 5,
        "audio arrives in 1000-byte messages and must come out as it arrives, not in one block"
    );
    assert!(
        blocks.iter().all(|b| b.sample_rate == 24_000),
        "Edge's default format is 24 kHz"
    );
    let samples = samples_of(&blocks);
    assert_eq!(
        samples.len(),
        FIXTURE_SAMPLES,
        "every MP3 frame of the fixture becomes PCM, duration included"
    );
    assert!(
        samples == fixture_decoded_whole(),
        "split delivery must decode to the same samples as the whole file"
    );

    assert_eq!(
        fake.violations(),
        Vec::<String>::new(),
        "the client must speak the protocol as Edge expects"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "one synthesis, one request");
    let sent = &requests[0];
    assert!(
        sent.ssml
            .contains("Tom &amp; &lt;Jerry&gt; say &quot;hi&quot;"),
        "text is XML-escaped: {}",
        sent.ssml
    );
    assert!(
        sent.ssml
            .contains("Microsoft Server Speech Text to Speech Voice (ja-JP, NanamiNeural)"),
        "lang ja picks Nanami when no voice is configured: {}",
        sent.ssml
    );
    assert!(
        sent.ssml.contains("rate='+10%'"),
        "the configured rate is sent: {}",
        sent.ssml
    );
    assert_eq!(
        sent.output_format, "audio-24khz-48kbitrate-mono-mp3",
        "the default output format is requested"
    );
    let query = &sent.handshake.query;
    assert_eq!(
        query["TrustedClientToken"], TRUSTED_CLIENT_TOKEN,
        "the public client token is sent"
    );
    let expected: Vec<String> = [before, after]
        .iter()
        .map(|&t| sec_ms_gec(t, TRUSTED_CLIENT_TOKEN))
        .collect();
    assert!(
        expected.contains(&query["Sec-MS-GEC"]),
        "the token is the one token.rs makes for the time of the handshake"
    );
    assert_eq!(
        query["ConnectionId"], sent.request_id,
        "ConnectionId and X-RequestId are the same id"
    );
}

#[tokio::test]
async fn edge_sends_each_request_with_the_voice_of_its_language() {
    let fake = FakeEdge::start(EdgeScript::always(EdgeBehaviour::speak(FIXTURE_MP3))).await;
    let edge = edge_provider(
        &fake,
        EdgeTtsConfig {
            voices: "ko=ko-KR-InJoonNeural".parse().expect("a valid list"),
            ..Default::default()
        },
    );
    for (text, lang) in [
        ("你好", "zh"),
        ("こんにちは", "ja"),
        ("안녕하세요", "ko"),
        ("Hello", "en"),
    ] {
        let (_, error) = drain(edge.synthesize(request(text, lang))).await;
        assert_eq!(error, None, "{lang}: spoken");
    }
    let voices: Vec<String> = fake
        .requests()
        .iter()
        .map(|sent| {
            let start = sent.ssml.find("<voice name='").expect("a voice element") + 13;
            let end = sent.ssml[start..].find('\'').expect("the name ends") + start;
            sent.ssml[start..end].to_owned()
        })
        .collect();
    let voice = |lang: &str, name: &str| {
        format!("Microsoft Server Speech Text to Speech Voice ({lang}, {name})")
    };
    assert_eq!(
        voices,
        vec![
            voice("zh-CN", "XiaoxiaoNeural"),
            voice("ja-JP", "NanamiNeural"),
            voice("ko-KR", "InJoonNeural"),
            voice("en-US", "AriaNeural"),
        ],
        "built-in voices for zh, ja and en; TTS_VOICES's for ko"
    );
}

#[tokio::test]
async fn edge_closing_mid_stream_yields_an_error_after_the_partial_audio() {
    let speech = EdgeSpeech::new(FIXTURE_MP3).closing_after(6000);
    let fake = FakeEdge::start(EdgeScript::always(EdgeBehaviour::Speak(speech))).await;
    let edge = edge_provider(&fake, EdgeTtsConfig::default());

    let (blocks, error) = drain(edge.synthesize(request("hello", "en"))).await;

    let n = samples_of(&blocks).len();
    assert!(
        n > 0,
        "audio received before the close is delivered, not thrown away"
    );
    assert!(n < FIXTURE_SAMPLES, "only part of the audio was sent");
    assert!(
        matches!(error, Some(ProviderError::Transport(ref m)) if m.contains("before turn.end")),
        "a close before turn.end is a transport error, got {error:?}"
    );
}

#[tokio::test]
async fn edge_403_at_the_handshake_is_an_auth_error_about_the_token() {
    let fake = FakeEdge::start(EdgeScript::always(EdgeBehaviour::forbidden())).await;
    let edge = edge_provider(&fake, EdgeTtsConfig::default());

    let (blocks, error) = drain(edge.synthesize(request("hello", "en"))).await;

    assert!(blocks.is_empty(), "no audio from a refused handshake");
    match error {
        Some(ProviderError::Auth(message)) => {
            assert!(
                message.contains("Sec-MS-GEC"),
                "the message names the token: {message}"
            );
            assert!(
                message.contains("scheme may have changed"),
                "and says what to suspect: {message}"
            );
        }
        other => panic!("403 must be ProviderError::Auth, got {other:?}"),
    }
    let handshakes = fake.handshakes();
    // The fake's Date equals our clock, so there is nothing to correct; only a >1 s stall between
    // our clock reading and the fake's could make the client try once more.
    assert!(
        (1..=2).contains(&handshakes.len()),
        "no retry loop: {} handshakes",
        handshakes.len()
    );
    assert!(
        handshakes.iter().all(|h| h.status == 403),
        "every attempt was refused"
    );
}

#[tokio::test]
async fn edge_learns_the_server_clock_from_a_403_and_retries_once() {
    let script = EdgeScript::sequence(vec![
        EdgeBehaviour::RejectHandshake {
            status: 403,
            clock_ahead_secs: Some(3600),
        },
        EdgeBehaviour::speak(FIXTURE_MP3),
    ]);
    let fake = FakeEdge::start(script).await;
    let edge = edge_provider(&fake, EdgeTtsConfig::default());

    let before = unix_now();
    let (blocks, error) = drain(edge.synthesize(request("hello", "en"))).await;
    let after = unix_now();

    assert_eq!(error, None, "the retry with the server's clock succeeds");
    assert_eq!(
        samples_of(&blocks).len(),
        FIXTURE_SAMPLES,
        "the full audio after the retry"
    );
    let handshakes = fake.handshakes();
    assert_eq!(handshakes.len(), 2, "one refused handshake, one retry");
    let expected: Vec<String> = (before..=after + 1)
        .map(|t| sec_ms_gec(t + 3600, TRUSTED_CLIENT_TOKEN))
        .collect();
    assert!(
        expected.contains(&handshakes[1].query["Sec-MS-GEC"]),
        "the retry's token is made for the server's time, an hour ahead"
    );
}

#[tokio::test]
async fn dropping_the_edge_stream_closes_the_socket() {
    let speech = EdgeSpeech::new(FIXTURE_MP3).holding_after(3000);
    let fake = FakeEdge::start(EdgeScript::always(EdgeBehaviour::Speak(speech))).await;
    let edge = edge_provider(&fake, EdgeTtsConfig::default());

    let mut stream = edge.synthesize(request("hello", "en"));
    let first = tokio::time::timeout(GUARD, stream.next())
        .await
        .expect("first audio must arrive");
    assert!(
        matches!(first, Some(Ok(_))),
        "audio flows before the drop, got {first:?}"
    );
    assert_eq!(
        fake.disconnects(),
        0,
        "the connection is still open while the stream lives"
    );
    drop(stream);

    tokio::time::timeout(GUARD, fake.wait_for_disconnects(1))
        .await
        .expect("dropping the stream must close the WebSocket, and the fake must see it");
}

#[tokio::test]
async fn edge_silence_beyond_the_receive_timeout_is_a_timeout() {
    let speech = EdgeSpeech::new(FIXTURE_MP3).holding_after(0);
    let fake = FakeEdge::start(EdgeScript::always(EdgeBehaviour::Speak(speech))).await;
    let edge = edge_provider(
        &fake,
        EdgeTtsConfig {
            receive_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    );

    let (blocks, error) = drain(edge.synthesize(request("hello", "en"))).await;

    assert!(blocks.is_empty(), "the fake sent no audio");
    assert!(
        matches!(error, Some(ProviderError::Timeout(_))),
        "a silent server is a timeout, got {error:?}"
    );
    tokio::time::timeout(GUARD, fake.wait_for_disconnects(1))
        .await
        .expect("a timed-out stream closes its socket");
}

#[tokio::test]
async fn edge_unreachable_endpoint_is_a_transport_error() {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    drop(listener); // nothing listens there now: connection refused
    let edge = EdgeTts::new(EdgeTtsConfig {
        endpoint: format!("ws://{addr}/consumer/speech/synthesize/readaloud/edge/v1"),
        ..Default::default()
    })
    .expect("a valid config");

    let (blocks, error) = drain(edge.synthesize(request("hello", "en"))).await;

    assert!(blocks.is_empty(), "nothing to hear");
    assert!(
        matches!(error, Some(ProviderError::Transport(_))),
        "refused is a transport error, got {error:?}"
    );
}

#[tokio::test]
async fn edge_wss_endpoint_speaks_tls() {
    // A loopback server that accepts and hangs up: a TLS client fails in its handshake, a client
    // built without TLS support would fail before connecting ("TLS support not compiled in").
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let edge = EdgeTts::new(EdgeTtsConfig {
        endpoint: format!("wss://{addr}/consumer/speech/synthesize/readaloud/edge/v1"),
        ..Default::default()
    })
    .expect("a valid config");

    let (_, error) = drain(edge.synthesize(request("hello", "en"))).await;
    server.abort();

    match error {
        Some(ProviderError::Transport(message)) => {
            assert!(
                !message.contains("not compiled"),
                "wss:// must be supported for the real service: {message}"
            );
        }
        other => panic!("a server that hangs up is a transport error, got {other:?}"),
    }
}

fn openai_provider(fake: &FakeOpenAiSpeech, format: OpenAiSpeechFormat) -> OpenAiTts {
    OpenAiTts::new(OpenAiTtsConfig {
        base_url: fake.base_url(),
        api_key: Some("sk-test".into()),
        response_format: format,
        idle_timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .expect("a valid config")
}

/// A deterministic non-trivial waveform with every byte value pattern, positive and negative.
fn test_tone(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ((i as f64 * 0.07).sin() * 20_000.0) as i16 ^ (i as i16 & 0x0F))
        .collect()
}

#[tokio::test]
async fn openai_pcm_split_at_odd_byte_counts_reassembles_exactly() {
    let tone = test_tone(12_000);
    let fake = FakeOpenAiSpeech::start(SpeechScript::always(SpeechResponse::pcm(&tone))).await;
    let openai = openai_provider(&fake, OpenAiSpeechFormat::Pcm);

    let (blocks, error) = drain(openai.synthesize(request("Hello there.", "en"))).await;

    assert_eq!(error, None, "a complete body ends without error");
    assert!(
        blocks.len() > 5,
        "333-byte chunks must come out as they arrive, not as one block"
    );
    assert!(
        blocks.iter().all(|b| b.sample_rate == 24_000),
        "OpenAI pcm is 24 kHz"
    );
    assert!(
        samples_of(&blocks) == tone,
        "samples straddling odd chunk boundaries are reassembled exactly"
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "one synthesis, one request");
    let body = &requests[0].body;
    assert_eq!(body["model"], "tts-1", "default model");
    assert_eq!(body["voice"], "alloy", "default voice");
    assert_eq!(body["input"], "Hello there.", "the text is the input");
    assert_eq!(body["response_format"], "pcm", "pcm requested");
    assert_eq!(body["speed"], 1.0, "default speed");
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer sk-test"),
        "the key is sent as a bearer token"
    );
}

#[tokio::test]
async fn openai_mp3_is_decoded_as_it_streams() {
    let fake =
        FakeOpenAiSpeech::start(SpeechScript::always(SpeechResponse::mp3(FIXTURE_MP3))).await;
    let openai = openai_provider(&fake, OpenAiSpeechFormat::Mp3);

    let (blocks, error) = drain(openai.synthesize(request("Hello there.", "en"))).await;

    assert_eq!(error, None, "a complete body ends without error");
    assert!(
        blocks.len() > 5,
        "frames are decoded as the 333-byte chunks arrive"
    );
    assert!(
        blocks.iter().all(|b| b.sample_rate == 24_000),
        "the fixture's rate is reported"
    );
    assert!(
        samples_of(&blocks) == fixture_decoded_whole(),
        "same samples as decoding the whole file"
    );
    assert_eq!(
        fake.requests()[0].body["response_format"],
        "mp3",
        "mp3 requested"
    );
}

#[tokio::test]
async fn openai_http_errors_map_to_the_variants_callers_branch_on() {
    let script = SpeechScript::sequence(vec![
        SpeechResponse::error(401, "Incorrect API key provided"),
        SpeechResponse::rate_limited(7),
        SpeechResponse::error(400, "voice 'nova2' is not supported"),
    ]);
    let fake = FakeOpenAiSpeech::start(script).await;
    let openai = openai_provider(&fake, OpenAiSpeechFormat::Pcm);

    let (_, unauthorized) = drain(openai.synthesize(request("a", "en"))).await;
    assert!(
        matches!(unauthorized, Some(ProviderError::Auth(ref m)) if m.contains("Incorrect API key provided")),
        "401 is Auth with the server's message, got {unauthorized:?}"
    );
    let (_, limited) = drain(openai.synthesize(request("b", "en"))).await;
    assert_eq!(
        limited,
        Some(ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }),
        "429 is RateLimited with Retry-After"
    );
    let (_, bad) = drain(openai.synthesize(request("c", "en"))).await;
    assert!(
        matches!(bad, Some(ProviderError::Protocol(ref m)) if m.contains("voice 'nova2' is not supported")),
        "other statuses are Protocol with the JSON error message, got {bad:?}"
    );
}

#[tokio::test]
async fn dropping_the_openai_stream_closes_the_connection() {
    let audio = SpeechAudio::new(FIXTURE_MP3, "audio/mpeg").holding_after(2000);
    let fake = FakeOpenAiSpeech::start(SpeechScript::always(audio.into())).await;
    let openai = openai_provider(&fake, OpenAiSpeechFormat::Mp3);

    let mut stream = openai.synthesize(request("hello", "en"));
    let first = tokio::time::timeout(GUARD, stream.next())
        .await
        .expect("first audio must arrive");
    assert!(
        matches!(first, Some(Ok(_))),
        "audio flows before the drop, got {first:?}"
    );
    assert_eq!(
        fake.disconnects(),
        0,
        "the response is still open while the stream lives"
    );
    drop(stream);

    tokio::time::timeout(GUARD, fake.wait_for_disconnects(1))
        .await
        .expect("dropping the stream must abort the HTTP request, and the fake must see the close");
}

#[tokio::test]
async fn openai_stalled_body_is_an_idle_timeout() {
    let tone = test_tone(4000);
    let pcm_bytes: Vec<u8> = tone.iter().flat_map(|s| s.to_le_bytes()).collect();
    let stalled = SpeechAudio::new(pcm_bytes, "audio/pcm").holding_after(999);
    let fake = FakeOpenAiSpeech::start(SpeechScript::always(stalled.into())).await;
    let openai = OpenAiTts::new(OpenAiTtsConfig {
        base_url: fake.base_url(),
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .expect("a valid config");

    let (blocks, error) = drain(openai.synthesize(request("hello", "en"))).await;

    assert!(
        !blocks.is_empty(),
        "the audio before the stall is delivered"
    );
    assert!(
        matches!(error, Some(ProviderError::Timeout(_))),
        "a stalled body is a timeout, got {error:?}"
    );
    tokio::time::timeout(GUARD, fake.wait_for_disconnects(1))
        .await
        .expect("a timed-out stream drops its connection");
}
