//! Request signing: the Open Platform's HMAC-SHA256 `x-bili-*` headers and the web API's WBI
//! query signature (`w_rid` = md5 of the sorted query plus a mixin key from `/nav`).
//!
//! Pure functions (time and nonce are arguments) so both are checked against known vectors.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// The Open Platform's signed headers for one JSON body, `Authorization` last.
pub fn open_platform_headers(
    access_key_id: &str,
    access_key_secret: &str,
    body: &str,
    timestamp_s: u64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("x-bili-accesskeyid", access_key_id.to_owned()),
        (
            "x-bili-content-md5",
            hex::encode(Md5::digest(body.as_bytes())),
        ),
        ("x-bili-signature-method", "HMAC-SHA256".to_owned()),
        ("x-bili-signature-nonce", nonce.to_owned()),
        ("x-bili-signature-version", "1.0".to_owned()),
        ("x-bili-timestamp", timestamp_s.to_string()),
    ];
    // Already in key order, which is the order the string to sign needs.
    let to_sign = headers
        .iter()
        .map(|(key, value)| format!("{key}:{value}"))
        .collect::<Vec<_>>()
        .join("\n");
    headers.push((
        "Authorization",
        hmac_sha256_hex(access_key_secret, &to_sign),
    ));
    headers
}

pub fn hmac_sha256_hex(secret: &str, text: &str) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(text.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

const MIXIN_KEY_ENC_TAB: [usize; 32] = [
    46, 47, 18, 2, 53, 8, 23, 32, 15, 50, 10, 31, 58, 3, 45, 35, 27, 43, 5, 49, 33, 9, 42, 19, 29,
    28, 14, 39, 12, 38, 41, 13,
];

/// `img_key`/`sub_key` are the file stems of `/nav`'s `wbi_img.img_url` / `sub_url`.
pub fn mixin_key(img_key: &str, sub_key: &str) -> String {
    let raw: Vec<char> = format!("{img_key}{sub_key}").chars().collect();
    MIXIN_KEY_ENC_TAB
        .iter()
        .filter_map(|&index| raw.get(index))
        .collect()
}

/// The file stem of a `wbi_img` URL (`https://i0.hdslb.com/bfs/wbi/<key>.png` → `<key>`).
pub fn url_stem(url: &str) -> &str {
    let name = url.rsplit('/').next().unwrap_or(url);
    name.split('.').next().unwrap_or(name)
}

/// The signed query: params plus `wts`, sorted by key, values stripped of `!'()*`, and `w_rid`.
pub fn wbi_query(params: &[(&str, String)], mixin_key: &str, wts: u64) -> String {
    let mut params: Vec<(String, String)> = params
        .iter()
        .map(|(key, value)| {
            (
                (*key).to_owned(),
                value.replace(['!', '\'', '(', ')', '*'], ""),
            )
        })
        .collect();
    params.push(("wts".into(), wts.to_string()));
    params.sort();
    let query = params
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let w_rid = hex::encode(Md5::digest(format!("{query}{mixin_key}").as_bytes()));
    format!("{query}&w_rid={w_rid}")
}

/// `encodeURIComponent` for what is left after the filter above.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wbi_matches_the_documented_example() {
        // The worked example of the community WBI documentation.
        let key = mixin_key(
            "7cd084941338484aae1ad9425b84077c",
            "4932caff0ff746eab6f01bf08b70ac45",
        );
        assert_eq!(key, "ea1db124af3c7062474693fa704f4ff8");
        let query = wbi_query(
            &[
                ("foo", "114".into()),
                ("bar", "514".into()),
                ("zab", "1919810".into()),
            ],
            &key,
            1702204169,
        );
        assert_eq!(
            query,
            "bar=514&foo=114&wts=1702204169&zab=1919810&w_rid=8f6f2b5b3d485fe1886cec6a0be8c5d4"
        );
        assert_eq!(
            url_stem("https://i0.hdslb.com/bfs/wbi/7cd08494.png"),
            "7cd08494"
        );
    }

    #[test]
    fn open_platform_headers_sign_the_sorted_x_bili_headers() {
        let headers = open_platform_headers("id", "secret", "{}", 1700000000, "n1");
        let names: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
        assert_eq!(names.last(), Some(&"Authorization"));
        assert_eq!(
            headers[1].1, "99914b932bd37a50b983c5e7c90ae93b",
            "md5 of {{}}"
        );
        let signed = "x-bili-accesskeyid:id\nx-bili-content-md5:99914b932bd37a50b983c5e7c90ae93b\nx-bili-signature-method:HMAC-SHA256\nx-bili-signature-nonce:n1\nx-bili-signature-version:1.0\nx-bili-timestamp:1700000000";
        assert_eq!(headers[6].1, hmac_sha256_hex("secret", signed));
        // RFC 4231 test case 2 pins the HMAC itself.
        assert_eq!(
            hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
