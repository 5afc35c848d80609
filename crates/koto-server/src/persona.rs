//! A co-host character: the persona file (`<data_dir>/personas/*.toml`, or `persona_file`
//! pointing at one), the prompt it gives the LLM and the settings it carries with it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shortest quick acknowledgment wait: a filler sooner than that talks over a reply
/// already on its way. Shared by the `quick_ack_ms` key and a persona's own value.
pub const QUICK_ACK_MIN_MS: u64 = 100;
/// The longest quick acknowledgment wait.
pub const QUICK_ACK_MAX_MS: u64 = 10_000;

/// One co-host character: a persona file's fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Persona {
    pub name: String,
    /// The language it speaks (`en`, `zh`, `ja`, …; `auto` = the viewer's).
    #[serde(default = "auto_lang")]
    pub lang: String,
    /// A line or two on how it talks.
    #[serde(default)]
    pub style: String,
    /// What the LLM is told; empty = made from name, language and style.
    #[serde(default)]
    pub system_prompt: String,
    /// This character's quick acknowledgment (`quick_ack_ms`): 0 = off, absent = the global
    /// setting. A shy character may never say "hmm…"; a chatty one may say it at 300 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_ack_ms: Option<u64>,
}

fn auto_lang() -> String {
    "auto".to_owned()
}

impl Persona {
    /// The system prompt this persona gives the LLM.
    pub fn prompt(&self) -> String {
        if !self.system_prompt.trim().is_empty() {
            return self.system_prompt.trim().to_owned();
        }
        let lang = match self.lang.as_str() {
            "zh" => " Always answer in Chinese.",
            "ja" => " Always answer in Japanese.",
            "en" => " Always answer in English.",
            "ko" => " Always answer in Korean.",
            _ => " Answer in the language you are spoken to.",
        };
        format!(
            "You are {}, a co-host on a live stream. {}{lang} Keep replies short and natural: they are read aloud.",
            self.name.trim(),
            self.style.trim()
        )
    }

    /// The quick acknowledgment this persona asks for: `None` = the global setting,
    /// `Some(None)` = off, `Some(Some(wait))` = its own wait.
    pub fn quick_ack(&self) -> Option<Option<Duration>> {
        self.quick_ack_ms
            .map(|ms| (ms > 0).then(|| Duration::from_millis(ms)))
    }

    /// Refuses values the `quick_ack_ms` key would refuse, with the same sentence.
    pub fn check(&self) -> Result<(), String> {
        match self.quick_ack_ms {
            Some(ms) if ms != 0 && !(QUICK_ACK_MIN_MS..=QUICK_ACK_MAX_MS).contains(&ms) => {
                Err(format!(
                    "quick_ack_ms is {ms}: expected 0 (off) or {QUICK_ACK_MIN_MS} to {QUICK_ACK_MAX_MS} ms"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Parses a persona file; the error names `shown` and the line.
pub fn parse_persona(text: &str, shown: &str) -> Result<Persona, String> {
    let persona = toml::from_str::<Persona>(text).map_err(|error| {
        let line = error
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| before.matches('\n').count() + 1);
        let message = error.message().trim_end_matches('.').to_owned();
        match line {
            Some(line) => format!("{shown}, line {line}: {message}. Fix the file or save the persona again from the panel."),
            None => format!("{shown}: {message}. Fix the file or save the persona again from the panel."),
        }
    })?;
    persona.check().map_err(|reason| {
        format!("{shown}: {reason}. Fix the file or save the persona again from the panel.")
    })?;
    Ok(persona)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_persona_file_is_named_with_its_line() {
        let error = parse_persona("name = \"Kira\"\nlang = en\n", "personas/kira.toml")
            .expect_err("invalid");
        assert!(error.starts_with("personas/kira.toml, line 2:"), "{error}");
        let unknown = parse_persona("name = \"Kira\"\nvoice = \"x\"\n", "personas/kira.toml")
            .expect_err("unknown key");
        assert!(unknown.contains("line 2"), "{unknown}");
    }

    #[test]
    fn a_persona_without_a_prompt_gets_one_from_its_fields() {
        let persona = parse_persona(
            "name = \"小雨\"\nlang = \"zh\"\nstyle = \"活泼\"\n",
            "p.toml",
        )
        .expect("valid");
        let prompt = persona.prompt();
        assert!(
            prompt.contains("小雨") && prompt.contains("Chinese") && prompt.contains("活泼"),
            "{prompt}"
        );
    }

    #[test]
    fn a_persona_carries_its_own_quick_acknowledgment_or_none() {
        let chatty =
            parse_persona("name = \"Kira\"\nquick_ack_ms = 300\n", "k.toml").expect("test setup");
        assert_eq!(chatty.quick_ack(), Some(Some(Duration::from_millis(300))));
        let shy =
            parse_persona("name = \"Sora\"\nquick_ack_ms = 0\n", "s.toml").expect("test setup");
        assert_eq!(shy.quick_ack(), Some(None));
        let plain = parse_persona("name = \"Hana\"\n", "h.toml").expect("test setup");
        assert_eq!(plain.quick_ack(), None);
        // Absent stays absent when saved again, so the global setting keeps applying.
        assert!(
            !toml::to_string(&plain)
                .expect("test setup")
                .contains("quick_ack_ms")
        );
        let error = parse_persona("name = \"Kira\"\nquick_ack_ms = 50\n", "personas/k.toml")
            .expect_err("too short");
        assert!(
            error.starts_with(
                "personas/k.toml: quick_ack_ms is 50: expected 0 (off) or 100 to 10000 ms"
            ),
            "{error}"
        );
    }
}
