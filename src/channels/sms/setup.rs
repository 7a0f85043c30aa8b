//! Building the SMS channel from checked settings: reads the secret files
//! (auth tokens, API key; operator input, mode 0600) with the provider
//! clients of `outbound::sms::provider_clients` for the media.

use std::sync::Arc;

use crate::bus::Store;
use crate::crypto::Keyring;
use crate::intake::Intake;
use crate::telemetry::Metrics;

use super::inbound::{SmsChannel, TelnyxSide, TwilioSide};
use super::limits::SmsLimiter;
use super::signature::{TelnyxVerifier, TwilioValidator};
use crate::outbound::relay::threads::{Provider, Threads};
use crate::outbound::sms::provider_clients;

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
        let limits = settings.rate_limits.sms;
        let (per_sender, per_number) = (limits.per_client, limits.global);
        Ok(Self {
            threads: Threads::new(store.clone(), keyring.clone(), settings.retention.period),
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
