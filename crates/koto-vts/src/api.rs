//! The VTube Studio public API's JSON: the request envelope we send and the replies we read.
//! The only module that knows JSON shapes; the session deals in [`Request`] and [`Reply`].
//!
//! It does not validate more than we use: unknown fields and message types are tolerated (VTube
//! Studio adds fields without bumping `apiVersion`), and nothing here touches a socket.

use serde::{Deserialize, Serialize};

pub(crate) const API_NAME: &str = "VTubeStudioPublicAPI";
pub(crate) const API_VERSION: &str = "1.0";

/// `errorID`s we branch on (VTube Studio's `ErrorID.cs`).
pub(crate) mod error_id {
    /// The session is not (or no longer) authenticated.
    pub const REQUIRES_AUTHENTICATION: i64 = 8;
    /// The user clicked "Deny" in the popup, or revoked the plugin's access later.
    pub const TOKEN_REQUEST_DENIED: i64 = 50;
}

/// What we ask of VTube Studio.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Request<'a> {
    /// Shows the "allow this plugin?" popup; the reply comes when the user clicks.
    AuthenticationToken {
        plugin_name: &'a str,
        plugin_developer: &'a str,
        plugin_icon: Option<&'a str>,
    },
    /// Authenticates this session with a token from an earlier popup.
    Authentication {
        plugin_name: &'a str,
        plugin_developer: &'a str,
        token: &'a str,
    },
    /// Sets one tracking parameter (ours: `MouthOpen`) for about a second.
    InjectParameter { parameter: &'a str, value: f32 },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, D> {
    api_name: &'static str,
    api_version: &'static str,
    #[serde(rename = "requestID")]
    request_id: &'a str,
    message_type: &'static str,
    data: D,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequestData<'a> {
    plugin_name: &'a str,
    plugin_developer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin_icon: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationData<'a> {
    plugin_name: &'a str,
    plugin_developer: &'a str,
    authentication_token: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InjectData<'a> {
    /// `false`: our value must not hide the "tracking lost" state of the user's own tracking.
    face_found: bool,
    /// `set` (not `add`): we own the parameter while we send it.
    mode: &'static str,
    parameter_values: [ParameterValue<'a>; 1],
}

#[derive(Serialize)]
struct ParameterValue<'a> {
    id: &'a str,
    value: f32,
}

impl Request<'_> {
    pub(crate) fn message_type(self) -> &'static str {
        match self {
            Request::AuthenticationToken { .. } => "AuthenticationTokenRequest",
            Request::Authentication { .. } => "AuthenticationRequest",
            Request::InjectParameter { .. } => "InjectParameterDataRequest",
        }
    }

    /// The request as one text frame.
    pub(crate) fn to_json(self, request_id: &str) -> Result<String, serde_json::Error> {
        let message_type = self.message_type();
        match self {
            Request::AuthenticationToken {
                plugin_name,
                plugin_developer,
                plugin_icon,
            } => envelope(
                request_id,
                message_type,
                TokenRequestData {
                    plugin_name,
                    plugin_developer,
                    plugin_icon,
                },
            ),
            Request::Authentication {
                plugin_name,
                plugin_developer,
                token,
            } => envelope(
                request_id,
                message_type,
                AuthenticationData {
                    plugin_name,
                    plugin_developer,
                    authentication_token: token,
                },
            ),
            Request::InjectParameter { parameter, value } => envelope(
                request_id,
                message_type,
                InjectData {
                    face_found: false,
                    mode: "set",
                    parameter_values: [ParameterValue {
                        id: parameter,
                        value,
                    }],
                },
            ),
        }
    }
}

fn envelope<D: Serialize>(
    request_id: &str,
    message_type: &'static str,
    data: D,
) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Envelope {
        api_name: API_NAME,
        api_version: API_VERSION,
        request_id,
        message_type,
        data,
    })
}

/// One message from VTube Studio, as far as we care.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    TokenIssued(String),
    Authenticated {
        authenticated: bool,
        reason: String,
    },
    Injected,
    ApiError {
        id: i64,
        message: String,
    },
    /// A message type we do not use (an event, a newer response): ignored by the session.
    Other(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incoming {
    message_type: String,
    #[serde(rename = "requestID", default)]
    request_id: Option<String>,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenReplyData {
    authentication_token: String,
}

#[derive(Deserialize)]
struct AuthenticationReplyData {
    authenticated: bool,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct ApiErrorData {
    #[serde(rename = "errorID")]
    error_id: i64,
    #[serde(default)]
    message: String,
}

/// Parse one text frame: the reply's `requestID` (if any) and what it says. `Err` is a reason
/// for the log when the frame is not a VTube Studio message at all.
pub(crate) fn parse(text: &str) -> Result<(Option<String>, Reply), String> {
    let incoming: Incoming = serde_json::from_str(text).map_err(|error| error.to_string())?;
    let field_error = |error: serde_json::Error| format!("{}: {error}", incoming.message_type);
    let reply = match incoming.message_type.as_str() {
        "AuthenticationTokenResponse" => {
            let data: TokenReplyData =
                serde_json::from_value(incoming.data.clone()).map_err(field_error)?;
            Reply::TokenIssued(data.authentication_token)
        }
        "AuthenticationResponse" => {
            let data: AuthenticationReplyData =
                serde_json::from_value(incoming.data.clone()).map_err(field_error)?;
            Reply::Authenticated {
                authenticated: data.authenticated,
                reason: data.reason,
            }
        }
        "InjectParameterDataResponse" => Reply::Injected,
        "APIError" => {
            let data: ApiErrorData =
                serde_json::from_value(incoming.data.clone()).map_err(field_error)?;
            Reply::ApiError {
                id: data.error_id,
                message: data.message,
            }
        }
        other => Reply::Other(other.to_owned()),
    };
    Ok((incoming.request_id, reply))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;

    fn sent(request: Request<'_>) -> Value {
        let text = request.to_json("koto-1").unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn token_request_matches_the_documented_envelope() {
        let request = Request::AuthenticationToken {
            plugin_name: "Kotodama",
            plugin_developer: "Kotodama contributors",
            plugin_icon: None,
        };
        assert_eq!(
            sent(request),
            json!({
                "apiName": "VTubeStudioPublicAPI",
                "apiVersion": "1.0",
                "requestID": "koto-1",
                "messageType": "AuthenticationTokenRequest",
                "data": {"pluginName": "Kotodama", "pluginDeveloper": "Kotodama contributors"}
            }),
            "no pluginIcon key when there is no icon"
        );
        let with_icon = Request::AuthenticationToken {
            plugin_name: "Kotodama",
            plugin_developer: "Kotodama contributors",
            plugin_icon: Some("iVBORw0KGgo="),
        };
        assert_eq!(sent(with_icon)["data"]["pluginIcon"], "iVBORw0KGgo=");
    }

    #[test]
    fn authentication_request_carries_the_token() {
        let request = Request::Authentication {
            plugin_name: "Kotodama",
            plugin_developer: "Kotodama contributors",
            token: "abc-123",
        };
        let value = sent(request);
        assert_eq!(value["messageType"], "AuthenticationRequest");
        assert_eq!(
            value["data"],
            json!({
                "pluginName": "Kotodama",
                "pluginDeveloper": "Kotodama contributors",
                "authenticationToken": "abc-123"
            })
        );
    }

    #[test]
    fn inject_sets_one_parameter_without_claiming_a_face() {
        let value = sent(Request::InjectParameter {
            parameter: "MouthOpen",
            value: 0.25,
        });
        assert_eq!(value["messageType"], "InjectParameterDataRequest");
        assert_eq!(
            value["data"],
            json!({
                "faceFound": false,
                "mode": "set",
                "parameterValues": [{"id": "MouthOpen", "value": 0.25}]
            })
        );
    }

    #[test]
    fn replies_we_use() {
        let token = r#"{"apiName":"VTubeStudioPublicAPI","apiVersion":"1.0","timestamp":1,
            "requestID":"koto-1","messageType":"AuthenticationTokenResponse",
            "data":{"authenticationToken":"tok","extra":1}}"#;
        assert_eq!(
            parse(token),
            Ok((Some("koto-1".into()), Reply::TokenIssued("tok".into())))
        );
        let denied = r#"{"requestID":"koto-2","messageType":"APIError",
            "data":{"errorID":50,"message":"User has denied API access for your plugin."}}"#;
        assert_eq!(
            parse(denied),
            Ok((
                Some("koto-2".into()),
                Reply::ApiError {
                    id: error_id::TOKEN_REQUEST_DENIED,
                    message: "User has denied API access for your plugin.".into()
                }
            ))
        );
        let rejected = r#"{"messageType":"AuthenticationResponse",
            "data":{"authenticated":false,"reason":"Token invalid."}}"#;
        assert_eq!(
            parse(rejected),
            Ok((
                None,
                Reply::Authenticated {
                    authenticated: false,
                    reason: "Token invalid.".into()
                }
            ))
        );
        let injected = r#"{"messageType":"InjectParameterDataResponse","data":{}}"#;
        assert_eq!(parse(injected), Ok((None, Reply::Injected)));
        let no_data = r#"{"messageType":"InjectParameterDataResponse"}"#;
        assert_eq!(
            parse(no_data),
            Ok((None, Reply::Injected)),
            "older versions omit data"
        );
    }

    #[test]
    fn unknown_and_broken_messages_are_not_fatal() {
        let event = r#"{"messageType":"ModelLoadedEvent","data":{"modelLoaded":true}}"#;
        assert_eq!(
            parse(event),
            Ok((None, Reply::Other("ModelLoadedEvent".into())))
        );
        assert!(parse("}{ not json").is_err());
        assert!(parse(r#"{"no":"type"}"#).is_err());
        assert!(
            parse(r#"{"messageType":"AuthenticationTokenResponse","data":{}}"#).is_err(),
            "a token reply without a token is unusable"
        );
    }
}
