//! Building the SMS channel from checked settings: reads the secret files
//! (auth tokens, API key; operator input, mode 0600) and makes the provider
//! clients for the channel (media) and the reply relay (sending).

use std::sync::Arc;

use crate::bus::Store;
use crate::crypto::Keyring;
use crate::domain::{PhoneNumber, Priority};
use crate::intake::Intake;
use crate::telemetry::Metrics;

use super::inbound::{SmsChannel, SmsSettingsParsed, TelnyxSide, TwilioSide};
use super::language::Language;
use super::limits::SmsLimiter;
use super::signature::{TelnyxVerifier, TwilioValidator};
use crate::outbound::relay::threads::{Provider, Threads};
use crate::outbound::sms::SmsClient;

/// Provider clients made from the settings, for the channel (media) and the
/// relay worker (sending).
pub fn provider_clients(
    settings: &crate::config::Settings,
) -> Result<Vec<(Provider, SmsClient)>, crate::config::ConfigError> {
    use crate::config::Settings;
    use crate::outbound::sms::{ProviderConfig, TelnyxConfig, TwilioConfig};
    let sms = &settings.sms;
    let mut out = Vec::new();
    let client_error = |setting: &'static str| crate::config::ConfigError::Invalid {
        setting,
        problem: "the HTTP client could not be built".into(),
        fix: "check the base URL",
    };
    if sms.twilio.enabled {
        let first = sms
            .twilio
            .auth_token_files
            .first()
            .ok_or_else(|| client_error("sms.twilio.auth_token_files"))?;
        let config = ProviderConfig::Twilio(TwilioConfig {
            base_url: sms.twilio.api_base_url.trim_end_matches('/').to_owned(),
            account_sid: sms.twilio.account_sid.clone(),
            auth_token: Settings::read_secret("sms.twilio.auth_token_files", first)?,
        });
        out.push((
            Provider::Twilio,
            SmsClient::new(config).map_err(|_| client_error("sms.twilio.api_base_url"))?,
        ));
    }
    if sms.telnyx.enabled {
        let config = ProviderConfig::Telnyx(TelnyxConfig {
            base_url: sms.telnyx.api_base_url.trim_end_matches('/').to_owned(),
            api_key: Settings::read_secret("sms.telnyx.api_key_file", &sms.telnyx.api_key_file)?,
            messaging_profile_id: Some(sms.telnyx.messaging_profile_id.clone())
                .filter(|s| !s.is_empty()),
            media_base_url: sms.telnyx.media_base_url.trim_end_matches('/').to_owned(),
        });
        out.push((
            Provider::Telnyx,
            SmsClient::new(config).map_err(|_| client_error("sms.telnyx.api_base_url"))?,
        ));
    }
    Ok(out)
}

impl SmsChannel {
    /// Builds the channel from checked settings; reads the secret files.
    pub fn from_settings(
        settings: &crate::config::Settings,
        intake: Intake,
        store: Store,
        keyring: Arc<Keyring>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::config::{ConfigError, Settings};
        let sms = &settings.sms;
        let invalid = |setting: &'static str, fix: &'static str| ConfigError::Invalid {
            setting,
            problem: "is not valid".into(),
            fix,
        };
        let numbers = sms
            .numbers
            .iter()
            .map(|n| {
                PhoneNumber::parse(n)
                    .map_err(|_| invalid("sms.numbers", "use E.164, e.g. +15551234567"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut twilio = None;
        let mut telnyx = None;
        for (provider, client) in provider_clients(settings)? {
            match provider {
                Provider::Twilio => {
                    let tokens = sms
                        .twilio
                        .auth_token_files
                        .iter()
                        .map(|f| {
                            Settings::read_secret("sms.twilio.auth_token_files", f)
                                .map(|t| t.as_str().to_owned())
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    twilio = Some(TwilioSide {
                        validator: TwilioValidator::new(tokens),
                        client,
                    });
                }
                Provider::Telnyx => {
                    let verifier =
                        TelnyxVerifier::from_base64(&sms.telnyx.public_key).map_err(|_| {
                            invalid(
                                "sms.telnyx.public_key",
                                "copy the public key from the Telnyx portal",
                            )
                        })?;
                    telnyx = Some(TelnyxSide { verifier, client });
                }
                // provider_clients lists SMS providers only.
                Provider::Email => {}
            }
        }
        let (per_sender, per_number) = settings.sms_limits()?;
        Ok(Self {
            threads: Threads::new(store.clone(), keyring.clone(), settings.retention()),
            intake,
            store,
            keyring,
            settings: SmsSettingsParsed {
                numbers,
                zone_numbers: settings.sms_zone_numbers()?,
                acknowledgement: (
                    sms.acknowledgement.en.trim().to_owned(),
                    sms.acknowledgement.es.trim().to_owned(),
                ),
                program_name: sms.program_name.clone(),
                default_language: Language::parse(&sms.default_language)
                    .ok_or_else(|| invalid("sms.default_language", "use \"en\" or \"es\""))?,
                default_priority: Priority::parse(&sms.default_priority).ok_or_else(|| {
                    invalid("sms.default_priority", "use \"now\", \"today\" or \"fyi\"")
                })?,
                max_body_chars: sms.max_body_chars,
                max_media_items: sms.max_media_items,
                max_media_bytes: sms.max_media_bytes,
                media_deadline: std::time::Duration::from_millis(sms.media_deadline_ms),
                reply_ttl_secs: sms.reply_address_days.saturating_mul(86_400),
                public_base_url: sms.public_base_url.trim_end_matches('/').to_owned(),
                max_request_bytes: settings.server.max_body_bytes,
            },
            twilio,
            telnyx,
            limiter: SmsLimiter::new(per_sender, per_number),
            metrics,
        })
    }
}
