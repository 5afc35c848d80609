//! The OpenAI-compatible streaming client against `koto_testkit::fake_openai` on loopback.
//! Timeouts that are the subject of a test are tens of milliseconds; nothing asserts on speed.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::StreamExt;
use koto_core::ProviderError;
use koto_core::llm::{ChatMessage, LlmDelta, LlmProvider, LlmRequest, LlmStream, Role};
use koto_providers::llm::{OpenAiConfig, OpenAiLlm};
use koto_providers::retry_after;
use koto_testkit::fake_openai::{FakeEnd, FakeOpenAi, FakeResponse, FakeScript, FakeStream};
use serde_json::json;

/// Guard against a hung test: generous, never expected to be reached.
const GUARD: Duration = Duration::from_secs(30);
/// For tests whose subject is a timeout.
const SHORT: Duration = Duration::from_millis(50);

fn config(fake: &FakeOpenAi) -> OpenAiConfig {
    OpenAiConfig {
        base_url: fake.base_url(),
        model: "test-model".to_owned(),
        ..OpenAiConfig::default()
    }
}

fn llm(config: OpenAiConfig) -> OpenAiLlm {
    OpenAiLlm::new(config).expect("a loopback http URL is a valid base")
}

fn request(user: &str) -> LlmRequest {
    LlmRequest {
        messages: vec![
            ChatMessage::new(Role::System, "You are a co-host."),
            ChatMessage::new(Role::User, user),
        ],
        lang: Some("en".to_owned()),
        correlation_id: "live-001#7".to_owned(),
    }
}

/// Everything a stream yields: its deltas and the error it ended with, if any.
#[derive(Debug)]
struct Outcome {
    /// The reply text deltas.
    deltas: Vec<String>,
    /// The reasoning deltas, concatenated.
    reasoning: String,
    /// The stream said the server's token cap ended the reply.
    capped: bool,
    error: Option<ProviderError>,
}

impl Outcome {
    fn text(&self) -> String {
        self.deltas.concat()
    }
}

async fn drain(mut stream: LlmStream) -> Outcome {
    let run = async {
        let mut outcome = Outcome {
            deltas: Vec::new(),
            reasoning: String::new(),
            capped: false,
            error: None,
        };
        while let Some(item) = stream.next().await {
            assert!(!outcome.capped, "nothing follows the cap");
            match item {
                Ok(LlmDelta::Text(delta)) => {
                    assert!(!delta.is_empty(), "empty deltas are not worth yielding");
                    outcome.deltas.push(delta);
                }
                Ok(LlmDelta::Reasoning(thought)) => {
                    assert!(!thought.is_empty(), "empty deltas are not worth yielding");
                    outcome.reasoning.push_str(&thought);
                }
                Ok(LlmDelta::Capped) => outcome.capped = true,
                Err(error) => {
                    assert!(
                        stream.next().await.is_none(),
                        "the contract: at most one Err, then the end"
                    );
                    outcome.error = Some(error);
                    return outcome;
                }
            }
        }
        outcome
    };
    tokio::time::timeout(GUARD, run)
        .await
        .expect("the stream must end")
}

async fn chat(config: OpenAiConfig, user: &str) -> Outcome {
    drain(llm(config).stream_chat(request(user))).await
}

async fn wait_for_disconnects(fake: &FakeOpenAi, n: usize) {
    tokio::time::timeout(GUARD, fake.wait_for_disconnects(n))
        .await
        .expect("the fake must see the client close its connection");
}

#[tokio::test]
async fn a_normal_stream_is_reassembled_exactly() {
    let tokens = ["Hello", ",", " 今晚", "玩什么", "？", " 🎉", " done."];
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::new(tokens)
            .with_keepalive_comments()
            .with_usage_chunk()
            .into(),
    ))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(outcome.error, None, "a complete stream ends without error");
    assert_eq!(
        outcome.deltas, tokens,
        "one delta per chunk, in order, role and usage chunks skipped"
    );
    assert_eq!(fake.request_count(), 1, "one request for one reply");
}

#[tokio::test]
async fn one_byte_writes_and_every_line_ending_reassemble_the_same_text() {
    let tokens = ["こんにちは", "、", "世界", "！", " Hi", " 你好", "。"];
    let mut responses = Vec::new();
    let mut cases = Vec::new();
    for line_ending in ["\n", "\r\n", "\r"] {
        for write_size in [1, 2, 3, 5, 7] {
            let stream = FakeStream::new(tokens)
                .with_line_ending(line_ending)
                .with_write_size(write_size);
            responses.push(stream.into());
            cases.push((line_ending, write_size));
        }
    }
    let fake = FakeOpenAi::start(FakeScript::sequence(responses)).await;
    let llm = llm(config(&fake));
    for (line_ending, write_size) in cases {
        let outcome = drain(llm.stream_chat(request("hi"))).await;
        assert_eq!(
            outcome.error, None,
            "{line_ending:?}/{write_size}: split frames are still frames"
        );
        assert_eq!(
            outcome.deltas, tokens,
            "{line_ending:?} in {write_size}-byte writes (cutting UTF-8 characters) gives the same deltas"
        );
    }
}

#[tokio::test]
async fn a_body_split_at_every_byte_gives_the_same_text() {
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n",
        ": keep-alive\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"你好，\"}}]}\r\n\r\n",
        "data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"世界 ok\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    )
    .as_bytes()
    .to_vec();
    let responses: Vec<FakeResponse> = (1..body.len())
        .map(|cut| FakeResponse::SseBytes {
            body: body.clone(),
            cuts: vec![cut],
        })
        .collect();
    let n_cuts = responses.len();
    let fake = FakeOpenAi::start(FakeScript::sequence(responses)).await;
    let llm = llm(config(&fake));
    for cut in 1..=n_cuts {
        let outcome = drain(llm.stream_chat(request("hi"))).await;
        assert_eq!(outcome.error, None, "cut at byte {cut}");
        assert_eq!(
            outcome.deltas,
            ["你好，", "世界 ok"],
            "a write boundary at byte {cut} changes nothing"
        );
    }
}

#[tokio::test]
async fn done_or_finish_reason_alone_ends_a_reply_and_reasoning_is_not_reply_text() {
    let stream =
        || FakeStream::new(["An", " answer"]).with_reasoning(["Let me think", " about it"]);
    let fake = FakeOpenAi::start(FakeScript::sequence(vec![
        stream().with_end(FakeEnd::DoneWithoutFinish).into(),
        stream()
            .with_end(FakeEnd::FinishWithoutDone)
            .with_usage_chunk()
            .into(),
        stream().without_role_chunk().into(),
    ]))
    .await;
    let llm = llm(config(&fake));
    for case in [
        "[DONE] without finish_reason",
        "finish_reason without [DONE]",
        "no role chunk",
    ] {
        let outcome = drain(llm.stream_chat(request("hi"))).await;
        assert_eq!(outcome.error, None, "{case}: a complete reply");
        assert_eq!(
            outcome.text(),
            "An answer",
            "{case}: reasoning_content is never reply text"
        );
        assert_eq!(
            outcome.reasoning, "Let me think about it",
            "{case}: read apart"
        );
    }
}

/// A reasoning model thinking for longer than the first-token timeout: its reasoning is the
/// activity that keeps the request alive, and the reply comes through.
#[tokio::test]
async fn reasoning_longer_than_the_first_token_timeout_still_answers() {
    let thoughts: Vec<String> = (0..12).map(|n| format!("step {n}. ")).collect();
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::new(["Here", " it", " is."])
            .with_reasoning(thoughts.clone())
            .with_reasoning_gap(Duration::from_millis(50))
            .into(),
    ))
    .await;
    let outcome = chat(
        OpenAiConfig {
            first_token_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            ..config(&fake)
        },
        "hi",
    )
    .await;
    assert_eq!(
        outcome.error, None,
        "600 ms of reasoning against a 300 ms first-token timeout"
    );
    assert_eq!(outcome.text(), "Here it is.");
    assert_eq!(outcome.reasoning, thoughts.concat());
}

#[tokio::test]
async fn reasoning_past_its_own_budget_fails_the_turn_with_a_clear_error() {
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::new(["Too", " late."])
            .with_reasoning((0..100).map(|n| format!("thought {n} ")))
            .with_reasoning_gap(Duration::from_millis(20))
            .into(),
    ))
    .await;
    let started = std::time::Instant::now();
    let outcome = chat(
        OpenAiConfig {
            reasoning_timeout: Duration::from_millis(300),
            ..config(&fake)
        },
        "hi",
    )
    .await;
    match &outcome.error {
        Some(ProviderError::Timeout(message)) => assert!(
            message.contains("reasoned") && message.contains("LLM_REASONING_TIMEOUT"),
            "names the setting: {message}"
        ),
        other => panic!("expected the reasoning timeout, got {other:?}"),
    }
    assert!(outcome.deltas.is_empty(), "no reply text was given");
    assert!(!outcome.reasoning.is_empty(), "the reasoning so far was");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "it fails at the budget, not when the model stops (2 s): {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_reasoning_model_gone_quiet_times_out_as_idle() {
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::new(Vec::<String>::new())
            .with_reasoning(["hmm"])
            .with_end(FakeEnd::Hang)
            .into(),
    ))
    .await;
    let outcome = chat(
        OpenAiConfig {
            idle_timeout: Duration::from_millis(200),
            ..config(&fake)
        },
        "hi",
    )
    .await;
    assert!(
        matches!(&outcome.error, Some(ProviderError::Timeout(message)) if message == "idle"),
        "{:?}",
        outcome.error
    );
    assert_eq!(outcome.reasoning, "hmm");
}

#[tokio::test]
async fn the_token_cap_is_reported_after_the_text() {
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::new(["It", " was", " a"])
            .with_end(FakeEnd::Length)
            .into(),
    ))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.text(), "It was a");
    assert!(
        outcome.capped,
        "finish_reason length becomes LlmDelta::Capped"
    );
}

#[tokio::test]
async fn a_server_ignoring_stream_true_still_gives_the_reply() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Completion {
        content: "Whole reply.".into(),
    }))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(
        outcome.error, None,
        "a non-streamed chat.completion is a valid answer"
    );
    assert_eq!(
        outcome.deltas,
        ["Whole reply."],
        "the whole reply as one delta"
    );
}

#[tokio::test]
async fn unauthorized_is_auth_and_not_retried() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::error(
        401,
        "Incorrect API key provided",
    )))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert!(
        matches!(&outcome.error, Some(ProviderError::Auth(message)) if message.contains("Incorrect API key")),
        "401 is an auth error carrying the server's message: {outcome:?}"
    );
    assert_eq!(
        fake.request_count(),
        1,
        "retrying bad credentials cannot help"
    );
}

/// llama.cpp's answer to a prompt longer than its context (its real body, checked against
/// llama-server): a clear protocol error with the server's words, not retried (it cannot fit
/// next time either).
#[tokio::test]
async fn a_context_overflow_is_a_clear_error_and_not_retried() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Status {
        status: 400,
        headers: vec![],
        body: r#"{"error":{"code":400,"message":"request (4371 tokens) exceeds the available context size (4096 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":4371,"n_ctx":4096}}"#.into(),
    }))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert!(
        matches!(&outcome.error, Some(ProviderError::Protocol(message))
            if message.contains("HTTP 400") && message.contains("exceeds the available context size")),
        "{outcome:?}"
    );
    assert_eq!(
        fake.request_count(),
        1,
        "an oversized prompt is not sent again"
    );
}

#[tokio::test]
async fn rate_limited_then_ok_is_retried() {
    let fake = FakeOpenAi::start(FakeScript::sequence(vec![
        FakeResponse::rate_limited(0),
        FakeResponse::reply("Back again."),
    ]))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(outcome.error, None, "the retry succeeded");
    assert_eq!(
        outcome.text(),
        "Back again.",
        "the reply of the successful attempt"
    );
    assert_eq!(fake.request_count(), 2, "one 429, one retry");
}

#[tokio::test]
async fn rate_limited_until_retries_run_out_is_rate_limited() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::rate_limited(0))).await;
    let outcome = chat(
        OpenAiConfig {
            max_retries: 2,
            ..config(&fake)
        },
        "hi",
    )
    .await;
    assert_eq!(
        outcome.error,
        Some(ProviderError::RateLimited {
            retry_after: Some(Duration::ZERO)
        }),
        "the last 429 is reported with its retry-after"
    );
    assert_eq!(fake.request_count(), 3, "one attempt plus max_retries");
}

#[tokio::test]
async fn a_long_retry_after_is_reported_not_waited_out() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::rate_limited(30))).await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(
        outcome.error,
        Some(ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(30))
        }),
        "retry-after seconds are parsed"
    );
    assert_eq!(
        fake.request_count(),
        1,
        "a live conversation does not pause for half a minute"
    );
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_and_garbage_is_ignored() {
    for (header, expected, requests) in [
        // Used to panic the stream's task (`Duration::from_secs_f64(1e300)`).
        ("1e300", Some(retry_after::MAX), 1),
        ("18446744073709551616", Some(retry_after::MAX), 1),
        ("120", Some(retry_after::MAX), 1),
        // No usable wait: the ordinary back-off, then the retry's 429 again.
        ("-5", None, 2),
        ("NaN", None, 2),
        ("soon", None, 2),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None, 2),
    ] {
        let fake =
            FakeOpenAi::start(FakeScript::always(FakeResponse::rate_limited_with(header))).await;
        let outcome = chat(
            OpenAiConfig {
                max_retries: 1,
                ..config(&fake)
            },
            "hi",
        )
        .await;
        assert_eq!(
            outcome.error,
            Some(ProviderError::RateLimited {
                retry_after: expected
            }),
            "retry-after: {header}"
        );
        assert_eq!(fake.request_count(), requests, "retry-after: {header}");
    }
}

#[tokio::test]
async fn server_error_then_ok_is_retried_without_duplicating_text() {
    let fake = FakeOpenAi::start(FakeScript::sequence(vec![
        FakeResponse::error(500, "The server had an error"),
        FakeResponse::error(503, "overloaded"),
        FakeResponse::reply("Only once, please."),
    ]))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(outcome.error, None, "two retries were allowed");
    assert_eq!(
        outcome.text(),
        "Only once, please.",
        "the reply appears exactly once"
    );
    assert_eq!(fake.request_count(), 3, "500, 503, then success");
}

#[tokio::test]
async fn a_server_error_reports_the_body_message() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::error(
        500,
        "The server had an error",
    )))
    .await;
    let outcome = chat(
        OpenAiConfig {
            max_retries: 0,
            ..config(&fake)
        },
        "hi",
    )
    .await;
    assert!(
        matches!(&outcome.error, Some(ProviderError::Protocol(m)) if m.contains("500") && m.contains("The server had an error")),
        "status and error.message: {outcome:?}"
    );
}

#[tokio::test]
async fn a_wrong_path_says_the_base_url_needs_its_version() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::reply("unused"))).await;
    let base_url = fake.base_url().trim_end_matches("/v1").to_owned();
    let outcome = chat(
        OpenAiConfig {
            base_url,
            ..config(&fake)
        },
        "hi",
    )
    .await;
    assert!(
        matches!(&outcome.error, Some(ProviderError::Protocol(m)) if m.contains("404") && m.contains("/v1")),
        "a 404 hints at the missing /v1: {outcome:?}"
    );
}

#[tokio::test]
async fn a_failure_after_the_first_delta_is_yielded_and_never_retried() {
    for (end, case) in [
        (FakeEnd::Close, "connection closed mid-body"),
        (FakeEnd::Reset, "connection reset"),
        (FakeEnd::Truncated, "body ended without finish or [DONE]"),
    ] {
        let fake = FakeOpenAi::start(FakeScript::always(
            FakeStream::new(["Hello", " there"]).with_end(end).into(),
        ))
        .await;
        let outcome = chat(config(&fake), "hi").await;
        assert_eq!(
            outcome.deltas,
            ["Hello", " there"],
            "{case}: the text before the failure is kept"
        );
        assert!(
            matches!(outcome.error, Some(ProviderError::Transport(_))),
            "{case}: a broken stream is a transport error: {outcome:?}"
        );
        assert_eq!(
            fake.request_count(),
            1,
            "{case}: a retry would say the text twice"
        );
    }
}

#[tokio::test]
async fn a_stream_that_ends_early_says_so() {
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::new(["Hello"])
            .with_end(FakeEnd::Truncated)
            .into(),
    ))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(
        outcome.error,
        Some(ProviderError::Transport("stream ended early".to_owned())),
        "neither [DONE] nor finish_reason: the reply was cut"
    );
}

#[tokio::test]
async fn a_failure_before_the_first_delta_is_retried() {
    let fake = FakeOpenAi::start(FakeScript::sequence(vec![
        FakeStream::new(Vec::<String>::new())
            .with_end(FakeEnd::Reset)
            .into(),
        FakeStream::new(Vec::<String>::new())
            .with_end(FakeEnd::Truncated)
            .into(),
        FakeResponse::reply("Third time lucky."),
    ]))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(
        outcome.error, None,
        "nothing was yielded before the failures, so retrying is safe"
    );
    assert_eq!(
        outcome.text(),
        "Third time lucky.",
        "only the successful attempt's text"
    );
    assert_eq!(
        fake.request_count(),
        3,
        "two failed attempts and one good one"
    );
}

#[tokio::test]
async fn garbage_data_is_a_protocol_error() {
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::new(["Fine"])
            .with_end(FakeEnd::Garbage("<html>oops</html>".into()))
            .into(),
    ))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(outcome.deltas, ["Fine"], "text before the garbage is kept");
    assert!(
        matches!(&outcome.error, Some(ProviderError::Protocol(m)) if m.contains("oops")),
        "non-JSON data is a protocol error quoting it: {outcome:?}"
    );
    assert_eq!(fake.request_count(), 1, "not retried after output");
}

#[tokio::test]
async fn first_token_timeout_covers_no_answer_and_a_silent_stream() {
    for (response, case) in [
        (FakeResponse::Hang, "no response headers"),
        (
            FakeStream::new(Vec::<String>::new())
                .with_end(FakeEnd::Hang)
                .into(),
            "role chunk, then silence",
        ),
    ] {
        let fake = FakeOpenAi::start(FakeScript::sequence(vec![
            FakeResponse::reply("Warm."),
            response,
        ]))
        .await;
        let llm = llm(OpenAiConfig {
            first_token_timeout: SHORT,
            ..config(&fake)
        });
        // A first, complete reply leaves a pooled connection, so the timed request below needs
        // no connect and surely reaches the fake before its short budget runs out.
        let warm = drain(llm.stream_chat(request("warm up"))).await;
        assert_eq!(warm.text(), "Warm.", "{case}: the warm-up reply");
        let outcome = drain(llm.stream_chat(request("hi"))).await;
        assert_eq!(
            outcome.error,
            Some(ProviderError::Timeout("first token".to_owned())),
            "{case}: the first text did not come in time"
        );
        assert_eq!(
            fake.request_count(),
            2,
            "{case}: not retried, the user already waited the whole budget"
        );
        // The timed-out attempt's connection is closed, so the upstream stops generating.
        wait_for_disconnects(&fake, 1).await;
    }
}

#[tokio::test]
async fn a_slow_first_token_within_budget_is_fine() {
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::new(["Late", " but fine"])
            .with_first_token_delay(SHORT)
            .into(),
    ))
    .await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(
        outcome.error, None,
        "the default first-token budget is 30 s"
    );
    assert_eq!(outcome.text(), "Late but fine", "whole reply");
}

#[tokio::test]
async fn idle_timeout_after_the_first_delta() {
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::new(["Hi"]).with_end(FakeEnd::Hang).into(),
    ))
    .await;
    let outcome = chat(
        OpenAiConfig {
            idle_timeout: SHORT,
            ..config(&fake)
        },
        "hi",
    )
    .await;
    assert_eq!(outcome.deltas, ["Hi"], "the delta before the silence");
    assert_eq!(
        outcome.error,
        Some(ProviderError::Timeout("idle".to_owned())),
        "silence after text is idle"
    );
    wait_for_disconnects(&fake, 1).await;
    assert_eq!(fake.request_count(), 1, "not retried after output");
}

#[tokio::test]
async fn connection_refused_is_transport() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener); // nothing listens on the port any more
    let config = OpenAiConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        max_retries: 1,
        ..OpenAiConfig::default()
    };
    let outcome = chat(config, "hi").await;
    assert!(
        matches!(&outcome.error, Some(ProviderError::Transport(m)) if m.to_lowercase().contains("connect")),
        "a refused connection is a transport error: {outcome:?}"
    );
    assert!(outcome.deltas.is_empty(), "no text");
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_connection() {
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::new(["Once", " upon"])
            .with_end(FakeEnd::Hang)
            .into(),
    ))
    .await;
    let llm = llm(config(&fake));
    let mut stream = llm.stream_chat(request("tell me a story"));
    let first = tokio::time::timeout(GUARD, stream.next())
        .await
        .expect("a first delta");
    assert_eq!(
        first,
        Some(Ok(LlmDelta::text("Once"))),
        "generation is under way"
    );
    drop(stream);
    // The fake is still generating (it hangs after its tokens), so only the client's close
    // can end the response.
    wait_for_disconnects(&fake, 1).await;
}

#[tokio::test]
async fn dropping_while_waiting_for_the_first_token_closes_the_connection() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::Hang)).await;
    let llm = llm(config(&fake));
    let mut stream = llm.stream_chat(request("hi"));
    tokio::select! {
        item = stream.next() => panic!("the fake never answers, so nothing can arrive: {item:?}"),
        () = fake.wait_for_requests(1) => {}
        () = tokio::time::sleep(GUARD) => panic!("the request must reach the fake"),
    }
    drop(stream);
    wait_for_disconnects(&fake, 1).await;
}

#[tokio::test]
async fn consecutive_streams_reuse_the_pooled_connection() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::reply("Again and again."))).await;
    let llm = llm(config(&fake));
    for turn in 0..3 {
        let outcome = drain(llm.stream_chat(request("hi"))).await;
        assert_eq!(outcome.text(), "Again and again.", "turn {turn}");
    }
    // Reading each body to its end returns the connection to the pool; against a remote
    // provider a new connection would cost a TLS handshake on every turn's first token.
    assert_eq!(
        fake.connection_count(),
        1,
        "three sequential turns over one keep-alive connection"
    );
}

#[tokio::test]
async fn a_stream_that_is_never_polled_sends_nothing() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::reply("Hi."))).await;
    let llm = llm(config(&fake));
    let unpolled = llm.stream_chat(request("first"));
    let outcome = drain(llm.stream_chat(request("second"))).await;
    assert_eq!(outcome.error, None, "the polled stream works");
    drop(unpolled);
    let bodies = fake.requests();
    assert_eq!(
        bodies.len(),
        1,
        "stream_chat is lazy: only the polled stream made a request"
    );
    assert_eq!(
        bodies[0]["messages"][1]["content"], "second",
        "and it was the polled one"
    );
}

#[tokio::test]
async fn the_request_carries_model_messages_stream_and_sampling() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::reply("Sure."))).await;
    let config = OpenAiConfig {
        api_key: Some("sk-test-123".to_owned()),
        temperature: Some(0.5),
        max_tokens: Some(64),
        ..config(&fake)
    };
    let outcome = chat(config, "今晚玩什么？").await;
    assert_eq!(outcome.error, None, "a normal reply");
    let log = fake.request_log();
    assert_eq!(log.len(), 1, "one request");
    let body = &log[0].body;
    assert_eq!(body["model"], "test-model", "the configured model");
    assert_eq!(body["stream"], true, "streaming is requested");
    assert_eq!(body["temperature"], json!(0.5), "temperature when set");
    assert_eq!(body["max_tokens"], 64, "max_tokens when set");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are a co-host."},
            {"role": "user", "content": "今晚玩什么？"},
        ]),
        "the messages, roles lower-case, text unescaped"
    );
    assert_eq!(
        log[0].header("authorization"),
        Some("Bearer sk-test-123"),
        "bearer auth with a key"
    );
    assert!(
        log[0]
            .header("accept")
            .is_some_and(|accept| accept.contains("text/event-stream")),
        "asks for SSE"
    );
}

#[tokio::test]
async fn without_key_or_sampling_none_is_sent() {
    let fake = FakeOpenAi::start(FakeScript::always(FakeResponse::reply("Sure."))).await;
    let outcome = chat(config(&fake), "hi").await;
    assert_eq!(outcome.error, None, "a normal reply");
    let log = fake.request_log();
    assert_eq!(
        log[0].header("authorization"),
        None,
        "local servers get no Authorization header"
    );
    assert!(
        log[0].body.get("temperature").is_none(),
        "server default temperature"
    );
    assert!(
        log[0].body.get("max_tokens").is_none(),
        "server default length"
    );
    assert_eq!(
        log[0].body["cache_prompt"], true,
        "a loopback server is asked to keep its prompt cache (llama.cpp)"
    );
}

#[test]
fn only_a_local_server_is_asked_to_cache_the_prompt() {
    // Decided once, when the client is built from the base URL.
    for (base_url, local) in [
        ("http://127.0.0.1:8080/v1", true),
        ("http://localhost:11434/v1", true),
        ("http://[::1]:1234/v1", true),
        ("https://api.openai.com/v1", false),
        ("https://api.groq.com/openai/v1", false),
    ] {
        let llm = llm(OpenAiConfig {
            base_url: base_url.to_owned(),
            ..OpenAiConfig::default()
        });
        assert_eq!(llm.is_local(), local, "{base_url}");
    }
}

#[tokio::test]
async fn sixteen_concurrent_streams_share_one_client() {
    let fake = FakeOpenAi::start(FakeScript::always(
        FakeStream::from_text("Everyone gets the same careful answer, 一字不差。")
            .with_token_gap(Duration::from_millis(1))
            .into(),
    ))
    .await;
    let llm = llm(config(&fake));
    let streams =
        (0..16).map(|session| drain(llm.stream_chat(request(&format!("session {session}")))));
    let outcomes = futures_util::future::join_all(streams).await;
    for outcome in outcomes {
        assert_eq!(
            outcome.error, None,
            "no interference between concurrent streams"
        );
        assert_eq!(
            outcome.text(),
            "Everyone gets the same careful answer, 一字不差。",
            "exact text"
        );
    }
    assert_eq!(fake.request_count(), 16, "one request per stream");
}

#[test]
fn invalid_base_urls_are_rejected_up_front() {
    for base_url in [
        "",
        "not a url",
        "ftp://example.com/v1",
        "http://127.0.0.1:8080/v1?x=1",
        "file:///v1",
    ] {
        let result = OpenAiLlm::new(OpenAiConfig {
            base_url: base_url.to_owned(),
            ..OpenAiConfig::default()
        });
        assert!(
            matches!(result, Err(ProviderError::Unavailable(_))),
            "{base_url:?} is not an http(s) API base"
        );
    }
    let llm = OpenAiLlm::new(OpenAiConfig {
        base_url: "http://127.0.0.1:8080/v1/".into(),
        ..OpenAiConfig::default()
    })
    .expect("a trailing slash is fine");
    assert_eq!(
        llm.endpoint_url(),
        "http://127.0.0.1:8080/v1/chat/completions",
        "no double slash, no added /v1"
    );
    assert_eq!(llm.name(), "openai", "provider name for /health");
}

#[test]
fn the_key_never_appears_in_debug_output() {
    let config = OpenAiConfig {
        api_key: Some("sk-secret-key".to_owned()),
        ..OpenAiConfig::default()
    };
    let llm = OpenAiLlm::new(config.clone()).expect("valid default base");
    for debug in [format!("{config:?}"), format!("{llm:?}")] {
        assert!(
            !debug.contains("sk-secret-key"),
            "the key would end up in logs: {debug}"
        );
    }
}
