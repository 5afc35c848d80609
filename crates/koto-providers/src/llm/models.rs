//! "Test connection" for an OpenAI-compatible server: `GET {base}/models` with the key, and
//! either the model ids it lists or what went wrong, told apart (unreachable, refused key, not
//! an OpenAI-compatible API, too slow) so the panel can say it as a sentence.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::Value;

/// Why the model list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelsError {
    #[error("the base URL {0:?} is not a valid http(s) URL")]
    BadUrl(String),
    #[error("nothing answers at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("no answer from {url} within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url} refused the API key (HTTP {status})")]
    Unauthorized { url: String, status: u16 },
    #[error("{url} answered HTTP {status}: {detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url} answered, but not like an OpenAI-compatible API: {detail}")]
    NotOpenAi { url: String, detail: String },
}

/// The model ids `GET {base_url}/models` lists (sorted as the server sent them).
pub async fn list_models(
    base_url: &str,
    api_key: Option<&str>,
    timeout: Duration,
) -> Result<Vec<String>, ModelsError> {
    let trimmed = base_url.trim().trim_end_matches('/');
    let url = format!("{trimmed}/models");
    let parsed = reqwest::Url::parse(&url).map_err(|_| ModelsError::BadUrl(base_url.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ModelsError::BadUrl(base_url.to_owned()));
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|error| ModelsError::Unreachable {
            url: url.clone(),
            detail: error.to_string(),
        })?;
    let mut request = client.get(parsed).header(ACCEPT, "application/json");
    if let Some(key) = api_key.filter(|key| !key.is_empty()) {
        request = request.header(AUTHORIZATION, format!("Bearer {key}"));
    }
    let response = request.send().await.map_err(|error| {
        if error.is_timeout() {
            ModelsError::Timeout {
                url: url.clone(),
                secs: timeout.as_secs().max(1),
            }
        } else {
            ModelsError::Unreachable {
                url: url.clone(),
                detail: root_cause(&error),
            }
        }
    })?;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(ModelsError::Unauthorized {
            url,
            status: status.as_u16(),
        });
    }
    let body = response.text().await.map_err(|error| {
        if error.is_timeout() {
            ModelsError::Timeout {
                url: url.clone(),
                secs: timeout.as_secs().max(1),
            }
        } else {
            ModelsError::Unreachable {
                url: url.clone(),
                detail: root_cause(&error),
            }
        }
    })?;
    if status == StatusCode::NOT_FOUND {
        return Err(ModelsError::NotOpenAi {
            url,
            detail: "there is no /models here (does the base URL end in /v1?)".to_owned(),
        });
    }
    if !status.is_success() {
        return Err(ModelsError::Status {
            url,
            status: status.as_u16(),
            detail: body.chars().take(200).collect(),
        });
    }
    parse_models(&body).ok_or_else(|| ModelsError::NotOpenAi {
        url,
        detail: "the answer is not a model list ({\"data\": [{\"id\": …}]})".to_owned(),
    })
}

/// `{"data":[{"id":"…"}]}` (OpenAI, LM Studio, llama.cpp, DeepSeek, Ollama's /v1) → ids.
fn parse_models(body: &str) -> Option<Vec<String>> {
    let value: Value = serde_json::from_str(body).ok()?;
    let data = value.get("data")?.as_array()?;
    Some(
        data.iter()
            .filter_map(|model| model.get("id")?.as_str().map(str::to_owned))
            .collect(),
    )
}

/// The innermost error text ("Connection refused (os error 111)"), not reqwest's wrapper.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_list_is_read_and_anything_else_is_not() {
        assert_eq!(
            parse_models(r#"{"object":"list","data":[{"id":"a"},{"id":"b"}]}"#),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(parse_models("<html>hi</html>"), None);
        assert_eq!(parse_models(r#"{"models":[]}"#), None);
    }
}
