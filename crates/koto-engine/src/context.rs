//! Prompt assembly: system prompt + recalled memories + the session's window + the new input.
//!
//! Interrupted replies go in as what the listener actually heard, without "..." markers (a peer
//! found such markers made later replies degrade to "..."); empty ones are left out.

use koto_core::llm::{ChatMessage, Role};
use koto_store::ContextTurn;

pub(crate) fn build_messages(
    system_prompt: &str,
    memories: &[String],
    history: &[ContextTurn],
    user_text: &str,
) -> Vec<ChatMessage> {
    let mut messages = Vec::with_capacity(history.len() * 2 + 3);
    if !system_prompt.trim().is_empty() {
        messages.push(ChatMessage::new(Role::System, system_prompt));
    }
    if !memories.is_empty() {
        let mut recalled = String::from("Things you remember from earlier conversations:\n");
        for memory in memories {
            recalled.push_str("- ");
            recalled.push_str(memory);
            recalled.push('\n');
        }
        messages.push(ChatMessage::new(Role::System, recalled));
    }
    for turn in history {
        messages.push(ChatMessage::new(Role::User, turn.user_text.clone()));
        if !turn.reply_text.trim().is_empty() {
            messages.push(ChatMessage::new(Role::Assistant, turn.reply_text.clone()));
        }
    }
    messages.push(ChatMessage::new(Role::User, user_text));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use koto_core::TurnNo;

    fn turn(n: u64, user: &str, reply: &str, interrupted: bool) -> ContextTurn {
        ContextTurn {
            turn: TurnNo(n),
            user_text: user.into(),
            reply_text: reply.into(),
            interrupted,
        }
    }

    #[test]
    fn window_is_system_then_history_then_input() {
        let history = [
            turn(0, "hi", "hello!", false),
            turn(1, "joke?", "Why did", true),
            turn(2, "again", "", true),
        ];
        let roles_and_text: Vec<(Role, String)> = build_messages("be brief", &[], &history, "now")
            .into_iter()
            .map(|m| (m.role, m.content))
            .collect();
        assert_eq!(
            roles_and_text,
            vec![
                (Role::System, "be brief".into()),
                (Role::User, "hi".into()),
                (Role::Assistant, "hello!".into()),
                (Role::User, "joke?".into()),
                (Role::Assistant, "Why did".into()),
                (Role::User, "again".into()),
                (Role::User, "now".into()),
            ],
            "interrupted replies appear as heard, unmarked; empty ones are skipped"
        );
    }

    #[test]
    fn memories_become_one_system_message_before_the_history() {
        let messages = build_messages("sys", &["likes cats".into()], &[], "hi");
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1].role, Role::System);
        assert!(
            messages[1].content.contains("likes cats"),
            "the recalled fact is in the prompt"
        );
    }
}
