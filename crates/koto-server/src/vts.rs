//! VTube Studio (`VTS_URL`): the co-host's mouth on the streamer's avatar. A `/ws/live`-like
//! subscription to the relay follows the audio as it is released, each chunk's `mouthOpen` is
//! handed to the `koto-vts` client at the moment the chunk starts playing (the chunks' own
//! durations make the clock), and a STOP, a PAUSE or a turn's end closes the mouth at once.
//! The token VTube Studio grants lives in `<data_dir>/vts-token` (owner-only on Unix).

use std::collections::VecDeque;
use std::path::Path;

use koto_protocol::ingest::{ControlAction, RelayFrame};
use koto_relay::{ClientFilter, Relay};
use koto_vts::{VtsClient, VtsConfig, VtsStatus};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const TOKEN_FILE: &str = "vts-token";

/// The running client and its relay follower.
#[derive(Clone)]
pub struct VtsLink {
    client: VtsClient,
}

impl VtsLink {
    /// Starts the client and the follower when `url` is set; `None` when VTube Studio is off.
    pub fn start(
        url: &str,
        data_dir: &Path,
        relay: Option<&Relay>,
        shutdown: CancellationToken,
    ) -> Result<Option<VtsLink>, String> {
        if url.trim().is_empty() {
            return Ok(None);
        }
        let mut config = VtsConfig::new(data_dir.join(TOKEN_FILE));
        config.url = url.trim().to_owned();
        config.validate().map_err(|error| error.to_string())?;
        let client = VtsClient::start(config, shutdown.child_token());
        if let Some(relay) = relay {
            let live = relay.subscribe(ClientFilter::default());
            tokio::spawn(follow(live, client.clone(), shutdown));
        }
        Ok(Some(VtsLink { client }))
    }

    pub fn status(&self) -> VtsStatus {
        self.client.status()
    }
}

/// Plays the released chunks' mouth values on their own clock (a chunk starts when the one
/// before it ends, or now if the relay was idle).
async fn follow(mut live: koto_relay::LiveClient, client: VtsClient, shutdown: CancellationToken) {
    let mut due: VecDeque<(Instant, f32)> = VecDeque::new();
    let mut playing_until = Instant::now();
    loop {
        let next_due = due.front().map(|(at, _)| *at);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = sleep_until_opt(next_due) => {
                if let Some((_, open)) = due.pop_front() {
                    if open > 0.0 {
                        client.mouth(open);
                    } else {
                        client.close_mouth();
                    }
                }
            }
            frame = live.recv() => {
                let Some(frame) = frame else { return };
                match frame.frame() {
                    RelayFrame::SpeechChunk(chunk) => {
                        let rate = chunk.sample_rate.unwrap_or(24_000).max(1);
                        let samples = frame.samples().map_or(0, <[i16]>::len);
                        let start = playing_until.max(Instant::now());
                        playing_until =
                            start + Duration::from_secs_f64(samples as f64 / f64::from(rate));
                        due.push_back((start, chunk.viseme.mouth_open.clamp(0.0, 1.0)));
                    }
                    RelayFrame::Control(control) => match control.action {
                        ControlAction::Stop | ControlAction::StopAck | ControlAction::Pause => {
                            due.clear();
                            playing_until = Instant::now();
                            client.close_mouth();
                        }
                        // The turn's audio is out: the mouth closes when its last chunk ends.
                        ControlAction::End => due.push_back((playing_until, 0.0)),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
