//! Bilibili's JSON commands (the web route's `DANMU_MSG`, `SEND_GIFT`, `SUPER_CHAT_MESSAGE`,
//! `GUARD_BUY`, `ROOM_BLOCK_MSG`, and the Open Platform's `LIVE_OPEN_PLATFORM_*`) mapped to
//! [`ChatEvent`]s. Amounts are fen (CNY minor units): gold gifts are priced in 1/1000 CNY.
//!
//! Pure functions over `serde_json::Value`: unknown or malformed commands map to nothing.

use koto_core::chat::{ChatAmount, ChatEvent, ChatKind, ChatRoles, ChatUser};
use serde_json::Value;

/// What one command meant.
#[derive(Debug, PartialEq)]
pub enum Mapped {
    Event(Box<ChatEvent>),
    /// Several events (a super chat deletion can name many messages).
    Events(Vec<ChatEvent>),
    /// The platform says we read as a guest: names and uids are masked.
    MaskedNames,
    Nothing,
}

pub fn map(command: &Value, room: &str, received_ms: i64) -> Mapped {
    let cmd = command["cmd"].as_str().unwrap_or_default();
    // Web commands may carry suffixes (`DANMU_MSG:4:0:2:2:2:0`).
    let cmd = cmd.split(':').next().unwrap_or_default();
    let data = &command["data"];
    let event = |message_id: String, user: ChatUser, kind: ChatKind, text: String| ChatEvent {
        platform: "bilibili".into(),
        channel: room.to_owned(),
        message_id,
        user,
        kind,
        text,
        emotes: vec![],
        amount: None,
        target_id: None,
        platform_time_ms: None,
        received_ms,
    };
    let fen = |minor_units: i64| {
        Some(ChatAmount {
            minor_units,
            currency: "CNY".into(),
        })
    };
    match cmd {
        "DANMU_MSG" => {
            let info = &command["info"];
            let Some(text) = info[1].as_str() else {
                return Mapped::Nothing;
            };
            let uid = id_text(&info[2][0]);
            let name = info[2][1].as_str().unwrap_or_default().to_owned();
            let time_ms = info[0][4].as_i64();
            let guard = info[7].as_i64().unwrap_or(0);
            // The message's id: `id_str` in the extra JSON; older rooms only give the check token.
            let extra: Value = info[0][15]["extra"]
                .as_str()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or(Value::Null);
            let message_id = extra["id_str"]
                .as_str()
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .or_else(|| info[9]["ct"].as_str().map(|ct| format!("ct:{ct}")))
                .unwrap_or_else(|| {
                    format!("dm:{uid}:{}:{}", time_ms.unwrap_or(received_ms), text.len())
                });
            let mut user = user(uid, name, guard);
            user.roles.moderator = info[2][2].as_i64() == Some(1);
            let mut e = event(message_id, user, ChatKind::Message, text.to_owned());
            e.platform_time_ms = time_ms;
            Mapped::Event(Box::new(e))
        }
        "LIVE_OPEN_PLATFORM_DM" => {
            let Some(text) = data["msg"].as_str() else {
                return Mapped::Nothing;
            };
            let Some(message_id) = data["msg_id"].as_str() else {
                return Mapped::Nothing;
            };
            let user = user(
                open_id(data),
                data["uname"].as_str().unwrap_or_default().into(),
                data["guard_level"].as_i64().unwrap_or(0),
            );
            let mut e = event(
                message_id.to_owned(),
                user,
                ChatKind::Message,
                text.to_owned(),
            );
            e.platform_time_ms = data["timestamp"].as_i64().map(|s| s * 1000);
            Mapped::Event(Box::new(e))
        }
        "SEND_GIFT" => {
            let gold = data["coin_type"].as_str() == Some("gold");
            let total = data["total_coin"].as_i64().unwrap_or(0);
            let name = data["giftName"].as_str().unwrap_or("gift");
            let num = data["num"].as_i64().unwrap_or(1);
            let message_id = data["tid"]
                .as_str()
                .or_else(|| data["batch_combo_id"].as_str())
                .map(str::to_owned)
                .or_else(|| data["rnd"].as_str().map(|rnd| format!("gift:{rnd}")))
                .unwrap_or_else(|| format!("gift:{}:{}", id_text(&data["uid"]), data["timestamp"]));
            let user = user(
                id_text(&data["uid"]),
                data["uname"].as_str().unwrap_or_default().into(),
                data["guard_level"].as_i64().unwrap_or(0),
            );
            let mut e = event(message_id, user, ChatKind::Gift, format!("{name} ×{num}"));
            e.amount = if gold && total > 0 {
                fen(total / 10)
            } else {
                None
            };
            e.platform_time_ms = data["timestamp"].as_i64().map(|s| s * 1000);
            Mapped::Event(Box::new(e))
        }
        "LIVE_OPEN_PLATFORM_SEND_GIFT" => {
            let Some(message_id) = data["msg_id"].as_str() else {
                return Mapped::Nothing;
            };
            let name = data["gift_name"].as_str().unwrap_or("gift");
            let num = data["gift_num"].as_i64().unwrap_or(1);
            // `price` is per gift in 1/1000 CNY; free gifts are not paid.
            let paid = data["paid"].as_bool().unwrap_or(false);
            let total = data["price"].as_i64().unwrap_or(0).saturating_mul(num);
            let user = user(
                open_id(data),
                data["uname"].as_str().unwrap_or_default().into(),
                data["guard_level"].as_i64().unwrap_or(0),
            );
            let mut e = event(
                message_id.to_owned(),
                user,
                ChatKind::Gift,
                format!("{name} ×{num}"),
            );
            e.amount = if paid && total > 0 {
                fen(total / 10)
            } else {
                None
            };
            e.platform_time_ms = data["timestamp"].as_i64().map(|s| s * 1000);
            Mapped::Event(Box::new(e))
        }
        "SUPER_CHAT_MESSAGE" | "LIVE_OPEN_PLATFORM_SUPER_CHAT" => {
            let open = cmd.starts_with("LIVE_OPEN");
            let text = data["message"].as_str().unwrap_or_default();
            let id = if open {
                id_text(&data["message_id"])
            } else {
                id_text(&data["id"])
            };
            if id.is_empty() {
                return Mapped::Nothing;
            }
            let yuan = if open {
                data["rmb"].as_i64()
            } else {
                data["price"].as_i64()
            }
            .unwrap_or(0);
            let (uid, name) = if open {
                (
                    open_id(data),
                    data["uname"].as_str().unwrap_or_default().to_owned(),
                )
            } else {
                (
                    id_text(&data["uid"]),
                    data["user_info"]["uname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            };
            let mut e = event(
                format!("sc:{id}"),
                user(uid, name, data["guard_level"].as_i64().unwrap_or(0)),
                ChatKind::Superchat,
                text.to_owned(),
            );
            e.amount = fen(yuan.saturating_mul(100));
            e.platform_time_ms = data["start_time"].as_i64().map(|s| s * 1000);
            Mapped::Event(Box::new(e))
        }
        "SUPER_CHAT_MESSAGE_DELETE" | "LIVE_OPEN_PLATFORM_SUPER_CHAT_DEL" => {
            let ids = data["ids"]
                .as_array()
                .or_else(|| data["message_ids"].as_array());
            let events = ids
                .into_iter()
                .flatten()
                .map(id_text)
                .filter(|id| !id.is_empty())
                .map(|id| {
                    let mut e = event(
                        format!("sc-del:{id}"),
                        ChatUser::default(),
                        ChatKind::Delete,
                        String::new(),
                    );
                    e.target_id = Some(format!("sc:{id}"));
                    e
                })
                .collect();
            Mapped::Events(events)
        }
        "GUARD_BUY" | "LIVE_OPEN_PLATFORM_GUARD" => {
            let open = cmd.starts_with("LIVE_OPEN");
            let level = data["guard_level"].as_i64().unwrap_or(0);
            let num = if open {
                data["guard_num"].as_i64()
            } else {
                data["num"].as_i64()
            }
            .unwrap_or(1);
            let (uid, name) = if open {
                (
                    open_id(&data["user_info"]),
                    data["user_info"]["uname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            } else {
                (
                    id_text(&data["uid"]),
                    data["username"].as_str().unwrap_or_default().to_owned(),
                )
            };
            let stamp = if open {
                &data["timestamp"]
            } else {
                &data["start_time"]
            };
            let message_id = data["msg_id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("guard:{uid}:{stamp}"));
            let title = match level {
                1 => "总督",
                2 => "提督",
                _ => "舰长",
            };
            let unit = if open {
                data["guard_unit"].as_str().unwrap_or("月")
            } else {
                "月"
            };
            let mut e = event(
                message_id,
                user(uid, name, level),
                ChatKind::Sub,
                format!("{title} ×{num}{unit}"),
            );
            // `price` is per unit in 1/1000 CNY on both routes.
            let total =
                data["price"]
                    .as_i64()
                    .unwrap_or(0)
                    .saturating_mul(if open { 1 } else { num });
            e.amount = if total > 0 { fen(total / 10) } else { None };
            e.platform_time_ms = stamp.as_i64().map(|s| s * 1000);
            Mapped::Event(Box::new(e))
        }
        "ROOM_BLOCK_MSG" => {
            let uid = if data.is_object() {
                id_text(&data["uid"])
            } else {
                id_text(&command["uid"])
            };
            if uid.is_empty() {
                return Mapped::Nothing;
            }
            let name = data["uname"]
                .as_str()
                .or(command["uname"].as_str())
                .unwrap_or_default();
            let mut e = event(
                format!("block:{uid}:{received_ms}"),
                user(uid.clone(), name.to_owned(), 0),
                ChatKind::Ban,
                String::new(),
            );
            e.target_id = Some(uid);
            Mapped::Event(Box::new(e))
        }
        "LOG_IN_NOTICE" => Mapped::MaskedNames,
        _ => Mapped::Nothing,
    }
}

/// Guests see uid 0 and names like `用***`.
pub fn is_masked(event: &ChatEvent) -> bool {
    event.user.id == "0"
        || event.user.id.is_empty() && !event.user.name.is_empty() && event.user.name.contains('*')
}

fn user(id: String, name: String, guard_level: i64) -> ChatUser {
    let mut badges = Vec::new();
    if guard_level > 0 {
        badges.push(format!("guard:{guard_level}"));
    }
    ChatUser {
        id,
        name,
        badges,
        roles: ChatRoles {
            subscriber: guard_level > 0,
            ..ChatRoles::default()
        },
    }
}

/// The Open Platform names viewers by `open_id` (uids are no longer sent).
fn open_id(data: &Value) -> String {
    data["open_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| id_text(&data["uid"]))
}

fn id_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(command: Value) -> ChatEvent {
        match map(&command, "123", 9) {
            Mapped::Event(event) => *event,
            other => panic!("expected one event, got {other:?}"),
        }
    }

    #[test]
    fn danmu_msg_maps_text_user_and_id() {
        let e = one(
            json!({"cmd":"DANMU_MSG:4:0:2:2:2:0","info":[[0,1,25,16777215,1700000000123i64,0,0,"h",0,0,0,"",0,"{}","{}",{"extra":"{\"id_str\":\"dm-1\"}"}],"你好",[42,"阿猫",1,0,0,10000,1,""],[],[],[],0,3]}),
        );
        assert_eq!(
            (
                e.message_id.as_str(),
                e.text.as_str(),
                e.user.id.as_str(),
                e.user.name.as_str()
            ),
            ("dm-1", "你好", "42", "阿猫")
        );
        assert!(e.user.roles.moderator && e.user.roles.subscriber);
        assert_eq!(e.user.badges, vec!["guard:3"]);
        assert_eq!(e.platform_time_ms, Some(1_700_000_000_123));
        assert!(!is_masked(&e));
    }

    #[test]
    fn a_guest_sees_masked_names() {
        let e = one(
            json!({"cmd":"DANMU_MSG","info":[[0,1,25,0,1],"hi",[0,"阿***",0],[],[],[],0,0,null,{"ct":"AB"}]}),
        );
        assert_eq!(e.message_id, "ct:AB");
        assert!(is_masked(&e));
        assert_eq!(
            map(&json!({"cmd":"LOG_IN_NOTICE","data":{}}), "1", 0),
            Mapped::MaskedNames
        );
    }

    #[test]
    fn paid_commands_carry_fen() {
        let sc = one(
            json!({"cmd":"SUPER_CHAT_MESSAGE","data":{"id":77,"uid":5,"price":30,"message":"加油","user_info":{"uname":"B"},"start_time":1700000000}}),
        );
        assert_eq!(
            (sc.kind, sc.message_id.as_str()),
            (ChatKind::Superchat, "sc:77")
        );
        assert_eq!(
            sc.amount,
            Some(ChatAmount {
                minor_units: 3000,
                currency: "CNY".into()
            })
        );
        let gift = one(
            json!({"cmd":"SEND_GIFT","data":{"uid":5,"uname":"B","giftName":"小花花","num":10,"coin_type":"gold","total_coin":1000,"tid":"t1","timestamp":1}}),
        );
        assert_eq!(
            (gift.kind, gift.text.as_str()),
            (ChatKind::Gift, "小花花 ×10")
        );
        assert_eq!(gift.amount.map(|a| a.minor_units), Some(100));
        let silver = one(
            json!({"cmd":"SEND_GIFT","data":{"uid":5,"giftName":"辣条","num":1,"coin_type":"silver","total_coin":100,"tid":"t2"}}),
        );
        assert_eq!(silver.amount, None, "silver gifts are free");
        let guard = one(
            json!({"cmd":"GUARD_BUY","data":{"uid":5,"username":"B","guard_level":3,"num":1,"price":198000,"start_time":1}}),
        );
        assert_eq!(
            (guard.kind, guard.amount.map(|a| a.minor_units)),
            (ChatKind::Sub, Some(19800))
        );
    }

    #[test]
    fn open_platform_commands_map() {
        let dm = one(
            json!({"cmd":"LIVE_OPEN_PLATFORM_DM","data":{"msg":"hi","msg_id":"m-1","open_id":"o-1","uname":"C","timestamp":1700000000,"guard_level":0}}),
        );
        assert_eq!(
            (dm.user.id.as_str(), dm.message_id.as_str()),
            ("o-1", "m-1")
        );
        let sc = one(
            json!({"cmd":"LIVE_OPEN_PLATFORM_SUPER_CHAT","data":{"message":"q?","message_id":9,"rmb":50,"open_id":"o-2","uname":"D"}}),
        );
        assert_eq!(sc.amount.map(|a| a.minor_units), Some(5000));
        let Mapped::Events(deleted) = map(
            &json!({"cmd":"LIVE_OPEN_PLATFORM_SUPER_CHAT_DEL","data":{"message_ids":[9]}}),
            "1",
            0,
        ) else {
            panic!("a deletion maps to events")
        };
        assert_eq!(
            deleted
                .iter()
                .map(|e| (e.kind, e.target_id.clone()))
                .collect::<Vec<_>>(),
            vec![(ChatKind::Delete, Some("sc:9".into()))]
        );
        let gift = one(
            json!({"cmd":"LIVE_OPEN_PLATFORM_SEND_GIFT","data":{"msg_id":"g","gift_name":"x","gift_num":2,"price":1000,"paid":true,"open_id":"o"}}),
        );
        assert_eq!(gift.amount.map(|a| a.minor_units), Some(200));
        let guard = one(
            json!({"cmd":"LIVE_OPEN_PLATFORM_GUARD","data":{"user_info":{"open_id":"o-3","uname":"E"},"guard_level":2,"guard_num":1,"guard_unit":"月","price":1998000,"msg_id":"gd","timestamp":1}}),
        );
        assert_eq!(
            (guard.user.id.as_str(), guard.text.as_str()),
            ("o-3", "提督 ×1月")
        );
    }

    #[test]
    fn a_block_is_a_ban_and_unknown_or_broken_commands_are_nothing() {
        let ban = one(json!({"cmd":"ROOM_BLOCK_MSG","data":{"uid":42,"uname":"x"},"uid":"42"}));
        assert_eq!(
            (ban.kind, ban.target_id.as_deref()),
            (ChatKind::Ban, Some("42"))
        );
        for broken in [
            json!({"cmd":"DANMU_MSG","info":"nope"}),
            json!({"cmd":"WATCHED_CHANGE","data":{}}),
            json!(null),
            json!({"cmd":5}),
        ] {
            assert_eq!(map(&broken, "1", 0), Mapped::Nothing, "{broken}");
        }
    }
}
