//! SMS and reply-relay settings and their checks. Operator input; secret files
//! (tokens, API keys) are read here and must be readable by their owner only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Settings, invalid};
use crate::domain::{Language, PhoneNumber, Priority, Zone, ZoneChoice};

/// `[sms]` as written (TOML and environment), before it is checked.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawSmsSettings {
    pub public_base_url: String,
    pub numbers: Vec<String>,
    #[serde(default)]
    pub zone_numbers: BTreeMap<String, String>,
    pub program_name: String,
    pub default_language: String,
    pub default_priority: String,
    pub max_body_chars: usize,
    pub max_media_items: usize,
    pub max_media_bytes: usize,
    pub media_deadline_ms: u64,
    pub reply_address_days: u64,
    pub acknowledgement: Acknowledgement,
    pub twilio: TwilioSettings,
    pub telnyx: RawTelnyxSettings,
}

/// `[sms]`, checked.
#[derive(Debug, Clone)]
pub struct SmsSettings {
    /// The public base URL the providers call, without a trailing `/`.
    pub public_base_url: String,
    /// The program's numbers.
    pub numbers: Vec<PhoneNumber>,
    /// Program numbers (each also in `numbers`) with the zone a text to that
    /// number is filed under instead of "not sure" (`sms.zone_numbers`).
    pub zone_numbers: Vec<(PhoneNumber, Zone)>,
    pub program_name: String,
    pub default_language: Language,
    pub default_priority: Priority,
    pub max_body_chars: usize,
    pub max_media_items: usize,
    pub max_media_bytes: usize,
    /// How long a webhook's answer may wait for its media.
    pub media_deadline: Duration,
    pub reply_address_days: u64,
    /// Trimmed; empty sends none.
    pub acknowledgement: Acknowledgement,
    pub twilio: TwilioSettings,
    pub telnyx: TelnyxSettings,
}

impl SmsSettings {
    /// The zone a text to `program_number` is filed under. The number is the
    /// one the provider's verified webhook says was texted: it says which of
    /// the program's lines was used, nothing about the sender.
    pub fn zone_for(&self, program_number: &PhoneNumber) -> ZoneChoice {
        self.zone_numbers
            .iter()
            .find(|(number, _)| number == program_number)
            .map_or(ZoneChoice::Unsure, |(_, zone)| {
                ZoneChoice::Known(zone.clone())
            })
    }
}

/// The per-tip acknowledgement, per language; empty sends none.
#[derive(Debug, Clone, Deserialize)]
pub struct Acknowledgement {
    pub en: String,
    pub es: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TwilioSettings {
    pub enabled: bool,
    pub account_sid: String,
    pub auth_token_files: Vec<PathBuf>,
    pub api_base_url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawTelnyxSettings {
    pub enabled: bool,
    pub public_key: String,
    pub api_key_file: PathBuf,
    pub messaging_profile_id: String,
    pub api_base_url: String,
    pub media_base_url: String,
}

/// `[sms.telnyx]`, checked.
#[derive(Debug, Clone)]
pub struct TelnyxSettings {
    pub enabled: bool,
    /// The webhook signing key; always there while Telnyx is enabled.
    pub public_key: Option<TelnyxPublicKey>,
    pub api_key_file: PathBuf,
    pub messaging_profile_id: String,
    pub api_base_url: String,
    pub media_base_url: String,
}

/// Telnyx's webhook signing key (`sms.telnyx.public_key`): the 32 bytes of an
/// Ed25519 public key, checked to be a usable (not small-order) point. The
/// SMS channel turns it into its signature verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelnyxPublicKey([u8; 32]);

impl TelnyxPublicKey {
    /// Base64 of the 32 key bytes, as the Telnyx portal shows it. `None` when
    /// the text is not that, or the key is weak.
    pub fn from_base64(text: &str) -> Option<Self> {
        use base64::Engine as _;
        // The key comes from a configuration file, where a trailing newline is
        // an accident, not an attack.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().ok()?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?;
        // A small-order key would let anyone produce signatures that verify;
        // Telnyx never issues one, so seeing one means the configuration is wrong.
        (!key.is_weak()).then_some(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// `[relay]` as written (TOML and environment).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawRelaySettings {
    max_attempts: u32,
    backoff_base_ms: u64,
    poll_interval_ms: u64,
}

/// `[relay]`, typed: how replies to tipsters are retried.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub max_attempts: u32,
    /// The first retry's delay, doubled on each further one.
    pub backoff_base: Duration,
    /// How often the relay worker looks for due replies.
    pub poll_interval: Duration,
}

impl RawRelaySettings {
    /// Types `[relay]`; [`Settings::validate`] refuses zeros.
    pub(super) fn check(&self) -> RelaySettings {
        RelaySettings {
            max_attempts: self.max_attempts,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
        }
    }
}

impl RawSmsSettings {
    /// Checks `[sms]` against the configured `zones` and types it.
    pub(super) fn check(&self, zones: &[(Zone, String)]) -> Result<SmsSettings, ConfigError> {
        let sms = self;
        let url = sms.public_base_url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains('?') {
            return Err(invalid(
                "sms.public_base_url",
                format!("{:?} is not an http(s) base URL", sms.public_base_url),
                "set the public https:// address the provider calls, e.g. https://tips.example.org",
            ));
        }
        let mut numbers = Vec::with_capacity(sms.numbers.len());
        for n in &sms.numbers {
            numbers.push(PhoneNumber::parse(n).map_err(|_| {
                invalid(
                    "sms.numbers",
                    format!("{n:?} is not an E.164 number"),
                    "write numbers as +<country code><number>, e.g. +15551234567",
                )
            })?);
        }
        let default_language = Language::parse(&sms.default_language).ok_or_else(|| {
            invalid(
                "sms.default_language",
                format!("{:?} is not supported", sms.default_language),
                "use \"en\" or \"es\"",
            )
        })?;
        let default_priority = Priority::parse(&sms.default_priority).ok_or_else(|| {
            invalid(
                "sms.default_priority",
                format!("{:?} is not a priority", sms.default_priority),
                "use \"now\", \"today\" or \"fyi\"",
            )
        })?;
        if sms.max_body_chars == 0 || sms.reply_address_days == 0 || sms.max_media_bytes == 0 {
            return Err(invalid(
                "sms.max_body_chars / sms.reply_address_days / sms.max_media_bytes",
                "is 0",
                "set positive values (defaults 1600, 30, 5242880)",
            ));
        }
        // The provider waits for the answer (Twilio gives up after 15 s, and
        // the tip would be lost with it): media must not use most of that.
        if !(100..=10_000).contains(&sms.media_deadline_ms) {
            return Err(invalid(
                "sms.media_deadline_ms",
                format!("{} is outside 100..=10000", sms.media_deadline_ms),
                "set a few seconds (default 5000); Twilio's webhook timeout is 15 s",
            ));
        }
        for (lang, text) in [
            ("en", &sms.acknowledgement.en),
            ("es", &sms.acknowledgement.es),
        ] {
            if text.chars().count() > 320 {
                return Err(invalid(
                    "sms.acknowledgement",
                    format!("the {lang} text is longer than 320 characters (two SMS)"),
                    "shorten it; one SMS holds 160 characters",
                ));
            }
        }
        if sms.twilio.enabled {
            if !sms.twilio.account_sid.starts_with("AC") {
                return Err(invalid(
                    "sms.twilio.account_sid",
                    "does not start with AC",
                    "copy the Account SID from the Twilio console",
                ));
            }
            if sms.twilio.auth_token_files.is_empty() {
                return Err(invalid(
                    "sms.twilio.auth_token_files",
                    "is empty",
                    "list the file (mode 0600) holding the auth token",
                ));
            }
        }
        let telnyx = &sms.telnyx;
        let public_key = TelnyxPublicKey::from_base64(&telnyx.public_key);
        if telnyx.enabled {
            if public_key.is_none() {
                return Err(invalid(
                    "sms.telnyx.public_key",
                    "is not a base64 Ed25519 public key",
                    "copy the public key from the Telnyx portal",
                ));
            }
            if telnyx.api_key_file.as_os_str().is_empty() {
                return Err(invalid(
                    "sms.telnyx.api_key_file",
                    "is empty",
                    "name the file (mode 0600) holding the API key",
                ));
            }
        }
        if (sms.twilio.enabled || telnyx.enabled) && numbers.is_empty() {
            return Err(invalid(
                "sms.numbers",
                "is empty while an SMS provider is enabled",
                "list the program's numbers in E.164",
            ));
        }
        let zone_numbers = self.zone_numbers(&numbers, zones)?;
        Ok(SmsSettings {
            public_base_url: url.to_owned(),
            numbers,
            zone_numbers,
            program_name: sms.program_name.clone(),
            default_language,
            default_priority,
            max_body_chars: sms.max_body_chars,
            max_media_items: sms.max_media_items,
            max_media_bytes: sms.max_media_bytes,
            media_deadline: Duration::from_millis(sms.media_deadline_ms),
            reply_address_days: sms.reply_address_days,
            acknowledgement: Acknowledgement {
                en: sms.acknowledgement.en.trim().to_owned(),
                es: sms.acknowledgement.es.trim().to_owned(),
            },
            twilio: sms.twilio.clone(),
            telnyx: TelnyxSettings {
                enabled: telnyx.enabled,
                public_key,
                api_key_file: telnyx.api_key_file.clone(),
                messaging_profile_id: telnyx.messaging_profile_id.clone(),
                api_base_url: telnyx.api_base_url.clone(),
                media_base_url: telnyx.media_base_url.clone(),
            },
        })
    }

    /// `sms.zone_numbers`, parsed: each program number with the zone its texts
    /// are filed under. Every number must be one of `sms.numbers` and every
    /// zone a configured `[[zones]]` id.
    fn zone_numbers(
        &self,
        numbers: &[PhoneNumber],
        zones: &[(Zone, String)],
    ) -> Result<Vec<(PhoneNumber, Zone)>, ConfigError> {
        let mut out: Vec<(PhoneNumber, Zone)> = Vec::with_capacity(self.zone_numbers.len());
        for (n, z) in &self.zone_numbers {
            let number = PhoneNumber::parse(n).map_err(|_| {
                invalid(
                    "sms.zone_numbers",
                    format!("{n:?} is not an E.164 number"),
                    "write each number as \"+<country code><number>\", e.g. \"+15551234567\" = \"north\"",
                )
            })?;
            if !numbers.contains(&number) {
                return Err(invalid(
                    "sms.zone_numbers",
                    format!("{n:?} is not one of sms.numbers"),
                    "add the number to sms.numbers as well, or remove it from sms.zone_numbers",
                ));
            }
            let Some(zone) = zones
                .iter()
                .map(|(zone, _)| zone)
                .find(|zone| zone.as_str() == z)
            else {
                return Err(invalid(
                    "sms.zone_numbers",
                    format!("{n:?} maps to {z:?}, which is not a configured zone id"),
                    "use the id of one of the [[zones]] tables (e.g. \"north\"), not its name",
                ));
            };
            if out.iter().any(|(seen, _)| seen == &number) {
                return Err(invalid(
                    "sms.zone_numbers",
                    format!("{n:?} is listed twice (written two ways)"),
                    "map each program number to one zone",
                ));
            }
            out.push((number, zone.clone()));
        }
        Ok(out)
    }
}

impl Settings {
    /// Reads a secret from a file that only its owner may read.
    pub fn read_secret(
        setting: &'static str,
        path: &Path,
    ) -> Result<zeroize::Zeroizing<String>, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| {
            invalid(
                setting,
                format!("{}: {e}", path.display()),
                "create the file with the secret, mode 0600",
            )
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(invalid(
                setting,
                format!("{} is readable by group or others", path.display()),
                "chmod 600 the file",
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid(
                setting,
                format!("{}: {e}", path.display()),
                "make the file readable by the gateway's user",
            )
        })?;
        let secret = zeroize::Zeroizing::new(text.trim().to_owned());
        if secret.is_empty() {
            return Err(invalid(
                setting,
                format!("{} is empty", path.display()),
                "put the secret in the file",
            ));
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_TOML;

    /// The defaults, then `extra` as an operator's `--config` file would add it.
    fn settings_with(extra: &str) -> super::super::RawSettings {
        config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(extra, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }

    const NUMBERS: &str = r#"
        [sms]
        numbers = ["+15550001001", "+15550001002", "+15550001003"]
    "#;

    fn refusal(extra: &str) -> String {
        settings_with(&format!("{NUMBERS}{extra}"))
            .validate()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn zone_numbers_default_to_none_and_a_table_maps_numbers_to_zones() {
        assert!(
            settings_with("")
                .validate()
                .unwrap()
                .sms
                .zone_numbers
                .is_empty()
        );
        let s = settings_with(&format!(
            "{NUMBERS}\n[sms.zone_numbers]\n\"+15550001001\" = \"north\"\n\"+1 555 000 1002\" = \"south\"\n"
        ));
        s.validate().unwrap();
        let mut parsed: Vec<(String, String)> = s
            .validate()
            .unwrap()
            .sms
            .zone_numbers
            .into_iter()
            .map(|(n, z)| (n.as_str().to_owned(), z.as_str().to_owned()))
            .collect();
        parsed.sort();
        assert_eq!(
            parsed,
            [
                ("+15550001001".to_owned(), "north".to_owned()),
                ("+15550001002".to_owned(), "south".to_owned()),
            ]
        );
    }

    #[test]
    fn a_media_deadline_near_the_providers_webhook_timeout_is_refused() {
        for ms in [0, 99, 10_001, 15_000] {
            let msg = refusal(&format!("media_deadline_ms = {ms}\n"));
            assert!(msg.starts_with("sms.media_deadline_ms:"), "{msg}");
            assert!(msg.contains("Twilio's webhook timeout is 15 s"), "{msg}");
        }
        settings_with(&format!("{NUMBERS}media_deadline_ms = 100\n"))
            .validate()
            .unwrap();
    }

    #[test]
    fn a_zone_number_mapped_to_an_unknown_zone_is_refused() {
        let msg = refusal("[sms.zone_numbers]\n\"+15550001001\" = \"North side\"\n");
        assert!(msg.starts_with("sms.zone_numbers:"), "{msg}");
        assert!(msg.contains("\"+15550001001\""), "{msg}");
        assert!(msg.contains("not a configured zone id"), "{msg}");
        assert!(msg.contains("Fix:"), "{msg}");
    }

    #[test]
    fn a_zone_number_missing_from_sms_numbers_is_refused() {
        let msg = refusal("[sms.zone_numbers]\n\"+15550009999\" = \"north\"\n");
        assert!(msg.starts_with("sms.zone_numbers:"), "{msg}");
        assert!(
            msg.contains("\"+15550009999\" is not one of sms.numbers"),
            "{msg}"
        );
        assert!(msg.contains("add the number to sms.numbers"), "{msg}");
    }

    #[test]
    fn a_zone_number_that_is_not_e164_is_refused() {
        let msg = refusal("[sms.zone_numbers]\n\"5550001001\" = \"north\"\n");
        assert!(msg.starts_with("sms.zone_numbers:"), "{msg}");
        assert!(
            msg.contains("\"5550001001\" is not an E.164 number"),
            "{msg}"
        );
    }

    #[test]
    fn one_number_written_two_ways_is_refused() {
        let msg = refusal(
            "[sms.zone_numbers]\n\"+15550001001\" = \"north\"\n\"+1 555 000 1001\" = \"south\"\n",
        );
        assert!(msg.contains("listed twice"), "{msg}");
    }
}
