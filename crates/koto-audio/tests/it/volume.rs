//! Volume as heard: scaled output, changed while playing.

use std::time::Duration;

use koto_core::TurnNo;

use crate::support::{LOOKAHEAD, PERIOD, advance, as_float, manual_player, push_turn, sid};

#[test]
fn volume_scales_the_output_and_a_change_is_heard_within_the_sink_buffer() {
    let (player, sink) = manual_player(0, 0.5);
    let session = sid("live-001");
    push_turn(&player, &session, 1, 0, 25, 16_000);
    player.end_turn(&session, TurnNo(1));
    advance(&sink, Duration::from_millis(200));
    let changed_at = sink.elapsed();
    player.set_volume(0.25);
    assert_eq!(player.volume(), 0.25, "the new volume is kept");
    advance(&sink, Duration::from_millis(300));

    let timeline = sink.timeline();
    let half = as_float(16_000) * 0.5;
    let quarter = as_float(16_000) * 0.25;
    let at = |time: Duration| {
        timeline
            .iter()
            .find(|(t, _)| *t >= time)
            .map(|(_, sample)| *sample)
            .unwrap()
    };
    assert_eq!(
        at(Duration::from_millis(100)),
        half,
        "half volume: half amplitude"
    );
    assert_eq!(
        at(changed_at + LOOKAHEAD + PERIOD),
        quarter,
        "the change is heard once the sink's buffer has played"
    );
    assert!(
        timeline
            .iter()
            .all(|(_, s)| *s == 0.0 || *s == half || *s == quarter),
        "no other levels: the volume scales samples exactly"
    );
}
