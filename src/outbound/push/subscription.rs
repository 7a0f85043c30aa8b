//! A mediator device's Web Push subscription, parsed once from the JSON of the
//! browser's `PushSubscription` (`{"endpoint": …, "keys": {"p256dh": …,
//! "auth": …}}`) into checked parts.
//!
//! Untrusted input: all of it comes from a browser. The endpoint is where the
//! gateway will send requests, so it must be an `https` URL with a DNS name
//! (no IP literal, no `localhost`, no user info): a subscription must not turn
//! the gateway into a client of its own network. The name is only text here;
//! where it resolves is checked when the client connects (`crate::outbound::egress`). The endpoint also identifies
//! one device to its push service, so it is never logged: logs carry
//! [`Subscription::endpoint_id`], a hash, or nothing.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use p256::PublicKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use reqwest::Url;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::outbound::push::ece::{AUTH_SECRET_LEN, PUBLIC_KEY_LEN};

/// Longest endpoint accepted. Real ones (FCM, Mozilla, Apple, WNS) are a few
/// hundred characters.
pub const MAX_ENDPOINT_LEN: usize = 2048;
/// Longest subscription JSON read at all, before any parsing.
pub const MAX_JSON_LEN: usize = 4096;

/// Browsers write base64url without padding; some libraries pad. Both decode.
const B64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub use crate::config::EndpointPolicy;

impl EndpointPolicy {
    /// The addresses a request to such an endpoint may connect to.
    pub fn addresses(self) -> crate::outbound::egress::AddressPolicy {
        match self {
            Self::HttpsOnly => crate::outbound::egress::AddressPolicy::PublicOnly,
            Self::DangerousAllowLoopbackHttp => {
                crate::outbound::egress::AddressPolicy::DangerousAllowLoopback
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("push subscription JSON is over {MAX_JSON_LEN} bytes")]
    TooLarge,
    #[error(
        r#"push subscription is not PushSubscription JSON ({{"endpoint": …, "keys": {{"p256dh": …, "auth": …}}}})"#
    )]
    Malformed,
    #[error("push subscription endpoint is longer than {MAX_ENDPOINT_LEN} characters")]
    EndpointTooLong,
    #[error("push subscription endpoint is not an https URL of a push service")]
    EndpointNotAllowed,
    #[error("push subscription keys.p256dh is not an uncompressed P-256 public key in base64url")]
    InvalidP256dh,
    #[error("push subscription keys.auth is not 16 bytes in base64url")]
    InvalidAuth,
}

/// A checked subscription. No `Clone`, and `Debug` shows only the endpoint's
/// hash: the auth secret lets a push service's observer read messages, and the
/// endpoint names a device.
pub struct Subscription {
    endpoint: Url,
    p256dh: PublicKey,
    auth: Zeroizing<[u8; AUTH_SECRET_LEN]>,
}

#[derive(serde::Deserialize)]
struct Wire {
    endpoint: String,
    keys: WireKeys,
}

#[derive(serde::Deserialize)]
struct WireKeys {
    p256dh: String,
    auth: String,
}

impl Subscription {
    /// Parses `PushSubscription.toJSON()` as the browser sends it. Other fields
    /// (`expirationTime`) are ignored.
    pub fn parse(json: &str, policy: EndpointPolicy) -> Result<Self, SubscriptionError> {
        if json.len() > MAX_JSON_LEN {
            return Err(SubscriptionError::TooLarge);
        }
        let wire: Wire = serde_json::from_str(json).map_err(|_| SubscriptionError::Malformed)?;
        Self::from_parts(&wire.endpoint, &wire.keys.p256dh, &wire.keys.auth, policy)
    }

    /// The same checks for the three parts stored separately.
    pub fn from_parts(
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        policy: EndpointPolicy,
    ) -> Result<Self, SubscriptionError> {
        if endpoint.len() > MAX_ENDPOINT_LEN {
            return Err(SubscriptionError::EndpointTooLong);
        }
        let endpoint = Url::parse(endpoint).map_err(|_| SubscriptionError::EndpointNotAllowed)?;
        if !endpoint_allowed(&endpoint, policy) {
            return Err(SubscriptionError::EndpointNotAllowed);
        }

        let point = B64URL_ANY_PADDING
            .decode(p256dh)
            .map_err(|_| SubscriptionError::InvalidP256dh)?;
        // RFC 8291 §3.2: the uncompressed form, 65 bytes starting 0x04; a
        // compressed point or anything off the curve is refused.
        if point.len() != PUBLIC_KEY_LEN || point.first() != Some(&0x04) {
            return Err(SubscriptionError::InvalidP256dh);
        }
        let p256dh =
            PublicKey::from_sec1_bytes(&point).map_err(|_| SubscriptionError::InvalidP256dh)?;

        let auth_bytes = Zeroizing::new(
            B64URL_ANY_PADDING
                .decode(auth)
                .map_err(|_| SubscriptionError::InvalidAuth)?,
        );
        let auth: [u8; AUTH_SECRET_LEN] = auth_bytes
            .as_slice()
            .try_into()
            .map_err(|_| SubscriptionError::InvalidAuth)?;

        Ok(Self {
            endpoint,
            p256dh,
            auth: Zeroizing::new(auth),
        })
    }

    /// A short stable hash of the endpoint, for logs and de-duplication.
    pub fn endpoint_id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"tipwire push endpoint\0")
            .chain_update(self.endpoint.as_str().as_bytes())
            .finalize();
        hex::encode(digest.get(..8).unwrap_or(&digest))
    }

    /// The browser's JSON shape again (canonical base64url, no padding), for
    /// storage. Holds the endpoint and auth secret: store it, never log it.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "endpoint": self.endpoint.as_str(),
            "keys": {
                "p256dh": URL_SAFE_NO_PAD.encode(self.p256dh.to_encoded_point(false).as_bytes()),
                "auth": URL_SAFE_NO_PAD.encode(self.auth.as_slice()),
            },
        })
        .to_string()
    }

    /// Where to POST. Never log it.
    pub(crate) fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub(crate) fn p256dh(&self) -> &PublicKey {
        &self.p256dh
    }

    pub(crate) fn auth_secret(&self) -> &[u8; AUTH_SECRET_LEN] {
        &self.auth
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("endpoint_id", &self.endpoint_id())
            .finish_non_exhaustive()
    }
}

/// The endpoint rule, shared by parsing and by the client before each send.
pub(crate) fn endpoint_allowed(url: &Url, policy: EndpointPolicy) -> bool {
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    let loopback = is_loopback(host);
    let dangerous = policy == EndpointPolicy::DangerousAllowLoopbackHttp;
    match url.scheme() {
        "https" => (dangerous && loopback) || is_public_dns_name(host),
        "http" => dangerous && loopback,
        _ => false,
    }
}

fn host_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host_ip(host).is_some_and(|ip| ip.is_loopback())
}

fn is_public_dns_name(host: &str) -> bool {
    let lower = host.to_ascii_lowercase();
    host_ip(host).is_none()
        && lower.contains('.')
        && lower != "localhost"
        && !lower.ends_with(".localhost")
        && !lower.ends_with(".localhost.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 8291 Appendix A's user agent key and auth secret.
    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const FCM: &str = "https://fcm.googleapis.com/fcm/send/dGVzdA:APA91bH_example";

    fn json(endpoint: &str, p256dh: &str, auth: &str) -> String {
        serde_json::json!({
            "endpoint": endpoint,
            "expirationTime": null,
            "keys": {"p256dh": p256dh, "auth": auth},
        })
        .to_string()
    }

    fn parse(endpoint: &str, p256dh: &str, auth: &str) -> Result<Subscription, SubscriptionError> {
        Subscription::parse(&json(endpoint, p256dh, auth), EndpointPolicy::HttpsOnly)
    }

    #[test]
    fn a_browser_subscription_parses_and_round_trips_to_json() {
        let sub = parse(FCM, P256DH, AUTH).unwrap();
        assert_eq!(sub.endpoint().as_str(), FCM);
        assert_eq!(sub.auth_secret().len(), 16);
        let again = Subscription::parse(&sub.to_json(), EndpointPolicy::HttpsOnly).unwrap();
        assert_eq!(again.to_json(), sub.to_json());
        assert_eq!(again.endpoint_id(), sub.endpoint_id());
        let padded = parse(FCM, &format!("{P256DH}="), &format!("{AUTH}==")).unwrap();
        assert_eq!(padded.to_json(), sub.to_json());
    }

    #[test]
    fn debug_output_shows_neither_the_endpoint_nor_the_keys() {
        let sub = parse(FCM, P256DH, AUTH).unwrap();
        let shown = format!("{sub:?}");
        assert!(shown.contains(&sub.endpoint_id()), "{shown}");
        for secret in ["fcm.googleapis.com", "APA91", AUTH, &P256DH[..20]] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn endpoints_that_are_not_https_to_a_dns_name_are_refused() {
        for endpoint in [
            "http://push.example.net/x",
            "ftp://push.example.net/x",
            "https://127.0.0.1/x",
            "https://10.0.0.7/x",
            "https://[::1]/x",
            "https://2130706433/x",
            "https://localhost/x",
            "https://api.localhost/x",
            "https://intranet/x",
            "https://user:pw@push.example.net/x",
            "https://push.example.net/x#frag",
            "http://127.0.0.1:8080/x",
            "not a url",
            "",
        ] {
            assert!(
                matches!(
                    parse(endpoint, P256DH, AUTH),
                    Err(SubscriptionError::EndpointNotAllowed)
                ),
                "{endpoint}"
            );
        }
    }

    #[test]
    fn loopback_http_is_accepted_only_behind_the_dangerous_flag() {
        for endpoint in [
            "http://127.0.0.1:8080/push",
            "http://localhost:8080/push",
            "http://[::1]:8080/push",
        ] {
            let raw = json(endpoint, P256DH, AUTH);
            assert!(Subscription::parse(&raw, EndpointPolicy::DangerousAllowLoopbackHttp).is_ok());
            assert!(Subscription::parse(&raw, EndpointPolicy::HttpsOnly).is_err());
        }
        let elsewhere = json("http://push.example.net/x", P256DH, AUTH);
        assert!(
            Subscription::parse(&elsewhere, EndpointPolicy::DangerousAllowLoopbackHttp).is_err()
        );
    }

    #[test]
    fn an_endpoint_over_2048_characters_is_refused() {
        let long = format!("https://push.example.net/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert!(matches!(
            parse(&long, P256DH, AUTH),
            Err(SubscriptionError::EndpointTooLong)
        ));
        let fits = format!(
            "https://push.example.net/{}",
            "a".repeat(MAX_ENDPOINT_LEN - 25)
        );
        assert_eq!(fits.len(), MAX_ENDPOINT_LEN);
        assert!(parse(&fits, P256DH, AUTH).is_ok());
    }

    #[test]
    fn keys_of_the_wrong_length_or_off_the_curve_are_refused() {
        let raw = URL_SAFE_NO_PAD.decode(P256DH).unwrap();
        let compressed = URL_SAFE_NO_PAD.encode(
            PublicKey::from_sec1_bytes(&raw)
                .unwrap()
                .to_encoded_point(true)
                .as_bytes(),
        );
        let mut off_curve = raw.clone();
        off_curve[64] ^= 1;
        for p256dh in [
            "",
            "not base64!",
            &compressed,
            &URL_SAFE_NO_PAD.encode(&off_curve),
            &URL_SAFE_NO_PAD.encode(&raw[..64]),
            &URL_SAFE_NO_PAD.encode([raw.as_slice(), &[0]].concat()),
            &URL_SAFE_NO_PAD.encode([0u8; 65]),
        ] {
            assert!(
                matches!(
                    parse(FCM, p256dh, AUTH),
                    Err(SubscriptionError::InvalidP256dh)
                ),
                "{p256dh}"
            );
        }
        for auth in [
            "",
            "BTBZMqHH6r4Tts7J_aSI",
            "BTBZMqHH6r4Tts7J_aSIggAA",
            "BTBZMqHH6r4Tts7J/aSIgg",
        ] {
            assert!(
                matches!(
                    parse(FCM, P256DH, auth),
                    Err(SubscriptionError::InvalidAuth)
                ),
                "{auth}"
            );
        }
    }

    #[test]
    fn json_that_is_not_a_push_subscription_is_refused() {
        for raw in [
            "",
            "null",
            "[]",
            r#"{"endpoint":"https://push.example.net/x"}"#,
            r#"{"endpoint":"https://push.example.net/x","keys":{"p256dh":1,"auth":"x"}}"#,
        ] {
            assert!(
                matches!(
                    Subscription::parse(raw, EndpointPolicy::HttpsOnly),
                    Err(SubscriptionError::Malformed)
                ),
                "{raw}"
            );
        }
        let huge = json(FCM, P256DH, &"A".repeat(MAX_JSON_LEN));
        assert!(matches!(
            Subscription::parse(&huge, EndpointPolicy::HttpsOnly),
            Err(SubscriptionError::TooLarge)
        ));
    }

    proptest! {
        #[test]
        fn the_parser_never_panics_on_arbitrary_input(raw in ".{0,600}") {
            let _ = Subscription::parse(&raw, EndpointPolicy::DangerousAllowLoopbackHttp);
        }

        #[test]
        fn arbitrary_endpoints_and_keys_never_panic(
            endpoint in "(https?://)?[a-z0-9.:\\[\\]@/-]{0,80}",
            p256dh in "[A-Za-z0-9_=-]{0,100}",
            auth in "[A-Za-z0-9_=-]{0,30}",
        ) {
            let _ = Subscription::from_parts(&endpoint, &p256dh, &auth, EndpointPolicy::HttpsOnly);
        }
    }
}
