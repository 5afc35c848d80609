//! IRCv3 lines as Twitch sends them: `@tags :prefix COMMAND params :trailing`.
//!
//! Parsing is total: any input gives a [`Line`] or `None`, never a panic (property-tested). It
//! knows nothing of Twitch's meaning of tags; `twitch/mod.rs` maps them.

/// One parsed line. Tag values are unescaped; a tag without `=` has an empty value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Line {
    pub tags: Vec<(String, String)>,
    /// `nick!user@host` or a server name, without the leading `:`.
    pub prefix: Option<String>,
    pub command: String,
    pub params: Vec<String>,
}

impl Line {
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A tag that is present and not empty.
    pub fn tag_nonempty(&self, name: &str) -> Option<&str> {
        self.tag(name).filter(|value| !value.is_empty())
    }

    pub fn param(&self, index: usize) -> Option<&str> {
        self.params.get(index).map(String::as_str)
    }

    /// The nick of `nick!user@host`.
    pub fn nick(&self) -> Option<&str> {
        let prefix = self.prefix.as_deref()?;
        let nick = prefix.split('!').next().unwrap_or(prefix);
        (!nick.is_empty()).then_some(nick)
    }
}

/// Parse one line (without its `\r\n`). `None` for an empty line or one without a command.
pub fn parse(line: &str) -> Option<Line> {
    let mut rest = line.trim_end_matches(['\r', '\n']);
    let mut parsed = Line::default();
    if let Some(after) = rest.strip_prefix('@') {
        let (tags, tail) = after.split_once(' ').unwrap_or((after, ""));
        parsed.tags = tags
            .split(';')
            .filter(|tag| !tag.is_empty())
            .map(|tag| match tag.split_once('=') {
                Some((key, value)) => (key.to_owned(), unescape_tag(value)),
                None => (tag.to_owned(), String::new()),
            })
            .collect();
        rest = tail;
    }
    rest = rest.trim_start_matches(' ');
    if let Some(after) = rest.strip_prefix(':') {
        let (prefix, tail) = after.split_once(' ').unwrap_or((after, ""));
        parsed.prefix = Some(prefix.to_owned());
        rest = tail;
    }
    rest = rest.trim_start_matches(' ');
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return None;
    }
    parsed.command = command.to_ascii_uppercase();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            parsed.params.push(trailing.to_owned());
            break;
        }
        let (param, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        parsed.params.push(param.to_owned());
        rest = tail;
    }
    Some(parsed)
}

/// IRCv3 tag value unescaping: `\:` `;`, `\s` space, `\\` `\`, `\r` CR, `\n` LF; any other
/// escaped char stands for itself and a lone trailing `\` is dropped (per the spec).
pub fn unescape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_privmsg_with_tags_parses() {
        let line = parse(
            "@badge-info=;badges=broadcaster/1;display-name=Ann\\sB;id=abc :ann!ann@ann.tmi.twitch.tv PRIVMSG #chan :hello : world\r\n",
        );
        let line = line.unwrap_or_default();
        assert_eq!(line.command, "PRIVMSG");
        assert_eq!(line.tag("display-name"), Some("Ann B"));
        assert_eq!(line.tag("badge-info"), Some(""));
        assert_eq!(line.nick(), Some("ann"));
        assert_eq!(
            line.params,
            vec!["#chan".to_owned(), "hello : world".to_owned()]
        );
    }

    #[test]
    fn escapes_unescape_per_the_spec() {
        assert_eq!(unescape_tag(r"a\:b\sc\\d\re\nf\xg\"), "a;b c\\d\re\nfxg");
    }

    #[test]
    fn lines_without_a_command_are_none() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("@a=b"), None);
        assert_eq!(parse(":prefix.only"), None);
        assert_eq!(parse("   "), None);
    }

    #[test]
    fn a_bare_command_parses() {
        let line = parse("PING :tmi.twitch.tv").unwrap_or_default();
        assert_eq!(line.command, "PING");
        assert_eq!(line.param(0), Some("tmi.twitch.tv"));
        assert_eq!(line.prefix, None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(input in ".{0,300}") {
            let _ = parse(&input);
        }

        #[test]
        fn ircish_input_never_panics(input in "[@:; =\\\\a-zA-Z0-9#!\\r\\n\u{4f60}]{0,200}") {
            if let Some(line) = parse(&input) {
                prop_assert!(!line.command.is_empty());
            }
        }

        #[test]
        fn unescaping_never_grows_the_text(value in ".{0,100}") {
            prop_assert!(unescape_tag(&value).len() <= value.len());
        }
    }
}
