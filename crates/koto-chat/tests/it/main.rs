//! koto-chat's one integration-test binary: the supervisor with scripted sources, and each
//! adapter against a loopback fake speaking the platform's real wire format.

mod bilibili;
mod fake_bili;
mod fake_irc;
mod fake_youtube;
mod supervisor;
mod twitch;
mod util;
mod youtube;
