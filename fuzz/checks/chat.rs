//! Chat platform parsers (koto-chat): each line of the input as a Twitch IRC line mapped to a
//! chat event, and the whole input as a Bilibili danmaku frame (zlib and brotli bodies
//! included) whose message packets are mapped to events. Never a panic.

use koto_chat::bilibili::{event, packet};
use koto_chat::twitch::{irc, to_event};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.split("\r\n") {
        if let Some(parsed) = irc::parse(line) {
            let _ = to_event(&parsed, "#kotodama", 0);
        }
    }
    let decoded = packet::decode(data);
    for packet in &decoded.packets {
        if packet.op == packet::OP_MESSAGE
            && let Ok(command) = serde_json::from_slice::<serde_json::Value>(&packet.body)
        {
            let _ = event::map(&command, "1", 0);
        }
    }
}
