//! The client's behaviour as VTube Studio sees it: tokens, the mouth, STOP, keep-alive,
//! refusals, VTube Studio going away and coming back, and frames it should shrug off.

use std::path::Path;
use std::time::Duration;

use koto_vts::{VtsClient, VtsConfig, VtsState, VtsStatus};
use tokio_util::sync::CancellationToken;

use crate::fake_vts::{FakeVts, Popup};

fn config(url: String, token_file: &Path) -> VtsConfig {
    let mut config = VtsConfig::new(token_file);
    config.url = url;
    // Fast reconnects so the tests do not idle; the production defaults are seconds.
    config.min_delay = Duration::from_millis(20);
    config.max_delay = Duration::from_millis(200);
    config
}

fn start(fake: &FakeVts, token_file: &Path) -> VtsClient {
    VtsClient::start(config(fake.url(), token_file), CancellationToken::new())
}

/// Wait (bounded) until the client's status satisfies `want`.
async fn until_status(
    client: &VtsClient,
    what: &str,
    want: impl Fn(&VtsStatus) -> bool,
) -> VtsStatus {
    let mut changes = client.changes();
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        changes.wait_for(|status| want(status)),
    )
    .await;
    match waited {
        Ok(Ok(status)) => status.clone(),
        _ => panic!(
            "the client never became {what}; it is {:?}",
            client.status()
        ),
    }
}

async fn until_connected(client: &VtsClient) -> VtsStatus {
    until_status(client, "connected", |status| {
        status.state == VtsState::Connected
    })
    .await
}

/// Feed `level` like playback does (a chunk every 20 ms) until the fake has seen a value
/// matching `seen`; returns how many mouth values the fake had then.
async fn feed_until(
    client: &VtsClient,
    fake: &FakeVts,
    level: f32,
    seen: impl Fn(f32) -> bool,
) -> usize {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            client.mouth(level);
            let values = fake.state().mouth_values();
            if values.iter().any(|&(_, value)| seen(value)) {
                return values.len();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| {
        panic!(
            "no wanted value; the fake has {:?}",
            fake.state().mouth_values()
        )
    })
}

#[tokio::test]
async fn first_run_asks_for_a_token_stores_it_and_the_next_client_reuses_it() {
    let fake = FakeVts::start(Popup::Allow("token-from-popup".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("vts").join("token");

    let first = start(&fake, &token_file);
    until_connected(&first).await;
    {
        let state = fake.state();
        let types: Vec<&str> = state
            .received
            .iter()
            .map(|r| r.message_type.as_str())
            .collect();
        assert_eq!(
            types[..2],
            ["AuthenticationTokenRequest", "AuthenticationRequest"],
            "no stored token: popup first, then authenticate with what it gave"
        );
        let asked = &state.received[0].data;
        assert_eq!(asked["pluginName"], "Kotodama");
        assert_eq!(asked["pluginDeveloper"], "Kotodama contributors");
        assert_eq!(
            state.received[1].data["authenticationToken"],
            "token-from-popup"
        );
        assert!(
            state.received.iter().all(|r| r.envelope_ok),
            "documented envelope on every request"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        "token-from-popup",
        "the token is stored for the next start"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token file is owner-only");
    }

    first.shutdown().await;
    assert_eq!(first.status().state, VtsState::Disconnected, "stopped");
    fake.until("the first connection closed", |s| {
        (s.n_closed >= 1).then_some(())
    })
    .await;

    let second = start(&fake, &token_file);
    until_connected(&second).await;
    let (token_requests, second_auth) = {
        let state = fake.state();
        let second_auth: Vec<_> = state
            .of_type("AuthenticationRequest")
            .into_iter()
            .filter(|r| r.connection == 2)
            .collect();
        (state.of_type("AuthenticationTokenRequest"), second_auth)
    };
    assert_eq!(
        token_requests.len(),
        1,
        "the second client asked no popup: {token_requests:?}"
    );
    assert_eq!(
        second_auth.len(),
        1,
        "one authentication, with the stored token"
    );
    assert_eq!(
        second_auth[0].data["authenticationToken"],
        "token-from-popup"
    );
    second.shutdown().await;
}

#[tokio::test]
async fn a_rejected_stored_token_is_replaced_by_a_new_one() {
    let fake = FakeVts::start(Popup::Allow("fresh".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "revoked-long-ago\n").unwrap();

    let client = start(&fake, &token_file);
    until_connected(&client).await;
    let tokens: Vec<(String, String)> = fake
        .state()
        .received
        .iter()
        .map(|r| {
            let token = r.data["authenticationToken"]
                .as_str()
                .unwrap_or("-")
                .to_owned();
            (r.message_type.clone(), token)
        })
        .take(3)
        .collect();
    assert_eq!(
        tokens,
        [
            ("AuthenticationRequest".into(), "revoked-long-ago".into()),
            ("AuthenticationTokenRequest".into(), "-".into()),
            ("AuthenticationRequest".into(), "fresh".into()),
        ],
        "stored token tried first (trimmed), rejected, so a new one is asked for and used"
    );
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        "fresh",
        "and stored"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn access_revoked_while_connected_asks_for_a_new_token() {
    let fake = FakeVts::start(Popup::Allow("before".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let client = start(&fake, &token_file);
    until_connected(&client).await;

    // The user revokes the plugin in VTube Studio's settings, then allows it again.
    {
        let mut state = fake.state();
        state.valid_tokens.clear();
        state.popup = Popup::Allow("after".into());
    }
    fake.until("a second popup", |s| {
        (s.of_type("AuthenticationTokenRequest").len() == 2).then_some(())
    })
    .await;
    until_status(&client, "connected with the new token", |s| {
        s.state == VtsState::Connected
    })
    .await;
    fake.until("the new token stored", |_| {
        (std::fs::read_to_string(&token_file).ok()? == "after").then_some(())
    })
    .await;
    client.shutdown().await;
}

#[tokio::test]
async fn a_denied_popup_is_refused_until_retry() {
    let fake = FakeVts::start(Popup::Deny).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");

    let client = start(&fake, &token_file);
    let refused = until_status(&client, "refused", |s| s.state == VtsState::Refused).await;
    assert!(
        refused.message.contains("denied"),
        "says what happened: {refused:?}"
    );
    assert!(
        refused.message.contains("Retry"),
        "and what to do: {refused:?}"
    );
    assert!(!token_file.exists(), "nothing stored after a refusal");
    let serialized = serde_json::to_value(&refused).unwrap();
    assert_eq!(serialized["state"], "refused", "as /health shows it");

    // The user changes their mind and presses Retry.
    fake.state().popup = Popup::Allow("second-thoughts".into());
    client.retry();
    until_connected(&client).await;
    assert_eq!(fake.state().of_type("AuthenticationTokenRequest").len(), 2);
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        "second-thoughts"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn mouth_levels_arrive_smoothed_and_bounded() {
    let fake = FakeVts::start(Popup::Allow("t".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir.path().join("token"));
    until_connected(&client).await;

    // Out-of-range and broken levels first: they must not reach VTube Studio as such.
    client.mouth(f32::NAN);
    client.mouth(-2.0);
    feed_until(&client, &fake, 7.5, |value| value >= 0.9).await;
    // Then silence: the mouth releases.
    feed_until(&client, &fake, 0.0, |value| value == 0.0).await;
    let after_peak = fake.state().mouth_values();
    let values: Vec<f32> = after_peak.iter().map(|&(_, value)| value).collect();
    assert!(
        values.iter().all(|value| (0.0..=1.0).contains(value)),
        "every value within 0..1: {values:?}"
    );
    let first_open = values.iter().copied().find(|&value| value > 0.0).unwrap();
    assert!(
        first_open < 0.99,
        "opening is smoothed, not a jump to the level: {values:?}"
    );
    let peak = values.iter().position(|&value| value >= 0.9).unwrap();
    let closed = peak
        + values[peak..]
            .iter()
            .position(|&value| value == 0.0)
            .unwrap();
    assert!(
        values[peak..closed]
            .iter()
            .any(|&value| value > 0.05 && value < 0.85),
        "closing passes through in-between values (release), not a jump: {values:?}"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn stop_closes_the_mouth_at_once_and_keeps_it_closed() {
    let fake = FakeVts::start(Popup::Allow("t".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir.path().join("token"));
    until_connected(&client).await;

    let before_stop = feed_until(&client, &fake, 1.0, |value| value >= 0.9).await;
    client.close_mouth();
    let zero_at = fake
        .until("a 0 after STOP", |s| {
            let values = s.mouth_values();
            values[before_stop..]
                .iter()
                .position(|&(_, value)| value == 0.0)
                .map(|at| before_stop + at)
        })
        .await;
    let values: Vec<f32> = fake
        .state()
        .mouth_values()
        .iter()
        .map(|&(_, v)| v)
        .collect();
    assert!(
        values[before_stop..zero_at]
            .iter()
            .all(|&value| value >= 0.85),
        "STOP is not a release: from open straight to 0: {:?}",
        &values[before_stop..=zero_at]
    );

    // Late silent chunks of the stopped turn do not reopen it; the keep-alive holds 0.
    let n_now = values.len();
    fake.until("two keep-alives after STOP", |s| {
        client.mouth(0.0);
        (s.mouth_values().len() >= n_now + 2).then_some(())
    })
    .await;
    let held: Vec<f32> = fake.state().mouth_values()[zero_at..]
        .iter()
        .map(|&(_, v)| v)
        .collect();
    assert!(
        held.iter().all(|&value| value == 0.0),
        "held closed: {held:?}"
    );

    // The next turn's first audible chunk opens it again.
    feed_until(&client, &fake, 0.8, |value| value > 0.3).await;
    client.shutdown().await;
}

#[tokio::test]
async fn keepalive_resends_without_new_levels() {
    let fake = FakeVts::start(Popup::Allow("t".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir.path().join("token"));
    until_connected(&client).await;

    let n_first = fake
        .until("a first value", |s| {
            let n = s.mouth_values().len();
            (n >= 1).then_some(n)
        })
        .await;
    // No `mouth` calls at all: only the keep-alive can make more frames.
    let values = fake
        .until("three keep-alives", |s| {
            let values = s.mouth_values();
            (values.len() >= n_first + 3).then_some(values)
        })
        .await;
    assert!(
        values.iter().all(|&(_, value)| value == 0.0),
        "the same closed mouth, re-sent so VTube Studio keeps it: {values:?}"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn reconnects_when_vts_comes_back_on_the_same_port() {
    let mut fake = FakeVts::start(Popup::Allow("kept".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir.path().join("token"));
    until_connected(&client).await;

    fake.stop().await;
    let lost = until_status(&client, "disconnected", |s| {
        matches!(s.state, VtsState::Disconnected | VtsState::Connecting)
    })
    .await;
    assert!(!lost.message.is_empty(), "says why: {lost:?}");
    // While VTube Studio is gone the caller is never blocked.
    for _ in 0..1000 {
        client.mouth(0.5);
    }
    client.close_mouth();
    until_status(&client, "retrying after a refused connection", |s| {
        s.state == VtsState::Disconnected && s.message.contains("not reachable")
    })
    .await;

    fake.restart().await;
    until_connected(&client).await;
    let (n, n_token_requests) = {
        let state = fake.state();
        let n_token_requests = state.of_type("AuthenticationTokenRequest").len();
        (state.n_connections, n_token_requests)
    };
    assert!(n >= 2, "a new connection");
    assert_eq!(
        n_token_requests, 1,
        "the stored token is reused after a reconnect, no second popup"
    );
    fake.until("the mouth on the new connection", |s| {
        s.mouth_values()
            .iter()
            .any(|&(connection, _)| connection == n)
            .then_some(())
    })
    .await;
    client.shutdown().await;
}

#[tokio::test]
async fn garbage_from_vts_is_skipped() {
    let fake = FakeVts::start(Popup::Allow("t".into())).await;
    fake.state().garbage = true;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir.path().join("token"));
    until_connected(&client).await;
    assert_eq!(
        fake.state().of_type("AuthenticationRequest").len(),
        1,
        "a reply to someone else's request did not count as ours"
    );
    feed_until(&client, &fake, 1.0, |value| value >= 0.5).await;
    assert_eq!(
        client.status().state,
        VtsState::Connected,
        "still connected"
    );
    assert_eq!(fake.state().n_connections, 1, "never reconnected");
    client.shutdown().await;
}

#[tokio::test]
async fn nothing_listening_is_disconnected_and_retried() {
    // A port that was just free: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = VtsClient::start(
        config(format!("ws://{addr}"), &dir.path().join("token")),
        CancellationToken::new(),
    );
    let status = until_status(&client, "disconnected", |s| {
        s.state == VtsState::Disconnected
    })
    .await;
    assert!(status.message.contains("not reachable"), "{status:?}");
    assert!(status.message.contains("retrying"), "{status:?}");
    client.mouth(1.0);
    client.close_mouth();
    client.shutdown().await;
    assert_eq!(client.status().message, "stopped");
}
