//! Building the SMS channel from checked settings: reads the secret files
//! (auth tokens, API key; operator input, mode 0600) and makes the provider
//! clients for the channel (media) and the reply relay (sending).

use std::sync::Arc;

use crate::bus::Store;
use crate::crypto::Keyring;
use crate::intake::Intake;
use crate::telemetry::Metrics;

use super::inbound::{SmsChannel, TelnyxSide, TwilioSide};
use super::limits::SmsLimiter;
use super::provider::SmsClient;
use super::signature::{TelnyxVerifier, TwilioValidator};
use crate::relay::threads::{Provider, Threads};

/// Provider clients made from the settings, for the channel (media) and the
/// relay worker (sending).
pub fn provider_clients(
    settings: &crate::config::Settings,
) -> Result<Vec<(Provider, SmsClient)>, crate::config::ConfigError> {
    use super::provider::{ProviderConfig, TelnyxConfig, TwilioConfig};
    use crate::config::Settings;
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
                    let verifier = sms
                        .telnyx
                        .public_key
                        .as_ref()
                        .and_then(|key| TelnyxVerifier::from_key(key).ok())
                        .ok_or_else(|| {
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
            settings: sms.clone(),
            max_request_bytes: settings.server.max_body_bytes,
            twilio,
            telnyx,
            limiter: SmsLimiter::new(per_sender, per_number),
            metrics,
        })
    }
}
