//! `Retry-After` as providers send it: `retry-after-ms` (OpenAI's precise variant) or
//! `retry-after` in seconds. Total over any header value: negative, NaN, inf, garbage and
//! HTTP-dates (which LLM and TTS APIs do not send) count as absent, and a huge number is capped
//! at [`MAX`]. It decides nothing about whether to wait; callers do.

use std::time::Duration;

use http::HeaderMap;

/// The longest wait a header can ask for: an upstream's `retry-after: 1e300` is an hour-long
/// pause to nobody, and a `Duration` cannot hold it.
pub const MAX: Duration = Duration::from_secs(60);

/// The wait `headers` ask for: `retry-after-ms` if it is usable, else `retry-after`.
pub fn from_headers(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name)?.to_str().ok();
    text("retry-after-ms")
        .and_then(parse_millis)
        .or_else(|| text("retry-after").and_then(parse_seconds))
}

/// A `retry-after` value in seconds (fractions accepted).
pub fn parse_seconds(text: &str) -> Option<Duration> {
    parse(text, 1.0)
}

/// A `retry-after-ms` value.
pub fn parse_millis(text: &str) -> Option<Duration> {
    parse(text, 1e-3)
}

fn parse(text: &str, seconds_per_unit: f64) -> Option<Duration> {
    let number: f64 = text.trim().parse().ok()?;
    if !(number.is_finite() && number >= 0.0) {
        return None;
    }
    // Finite and non-negative, so the only failure left is "too long to hold": the cap.
    let wait = Duration::try_from_secs_f64(number * seconds_per_unit).unwrap_or(MAX);
    Some(wait.min(MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_capped_and_garbage_is_absent() {
        let cases: [(&str, Option<Duration>); 12] = [
            ("7", Some(Duration::from_secs(7))),
            (" 0.5 ", Some(Duration::from_millis(500))),
            ("0", Some(Duration::ZERO)),
            ("1e300", Some(MAX)),
            ("18446744073709551616", Some(MAX)),
            ("1e-300", Some(Duration::ZERO)),
            ("-1", None),
            ("NaN", None),
            ("inf", None),
            ("soon", None),
            ("", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_seconds(text), expected, "retry-after: {text:?}");
        }
    }

    #[test]
    fn milliseconds_win_when_usable() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().expect("header"));
        assert_eq!(from_headers(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after-ms", "1500".parse().expect("header"));
        assert_eq!(from_headers(&headers), Some(Duration::from_millis(1500)));
        headers.insert("retry-after-ms", "garbage".parse().expect("header"));
        assert_eq!(
            from_headers(&headers),
            Some(Duration::from_secs(7)),
            "an unusable retry-after-ms falls back to retry-after"
        );
        assert_eq!(from_headers(&HeaderMap::new()), None, "absent");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// What an upstream might put in the header: numbers of every size and form, HTTP-dates,
        /// and anything printable.
        fn header_text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<f64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|n| format!("{n:e}")),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<u128>().prop_map(|n| n.to_string()),
                (0.0..100.0f64).prop_map(|n| n.to_string()),
                "[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
                "[ -~]{0,24}",
                "\\PC{0,12}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn any_header_is_a_capped_wait_or_absent(text in header_text()) {
                let number = text.trim().parse::<f64>().ok();
                let seconds = parse_seconds(&text);
                let millis = parse_millis(&text);
                for wait in [seconds, millis].into_iter().flatten() {
                    prop_assert!(wait <= MAX, "{text:?} → {wait:?} is capped");
                }
                match number {
                    Some(n) if n.is_finite() && n >= 0.0 => {
                        let expected = if n >= MAX.as_secs_f64() {
                            MAX
                        } else {
                            Duration::from_secs_f64(n)
                        };
                        prop_assert_eq!(seconds, Some(expected), "{:?} is read", text);
                        prop_assert!(millis.is_some(), "{text:?} in ms is read");
                    }
                    _ => {
                        prop_assert_eq!(seconds, None, "{:?} is no wait", text);
                        prop_assert_eq!(millis, None, "{:?} is no wait", text);
                    }
                }
                if let Ok(value) = http::HeaderValue::from_str(&text) {
                    let mut headers = HeaderMap::new();
                    headers.insert("retry-after", value);
                    prop_assert_eq!(from_headers(&headers), seconds);
                }
            }
        }
    }
}
