//! The provider clients made from the settings, for the SMS channel (media)
//! and the reply relay and nudges (sending). Reads the secret files (auth
//! tokens, API key): operator input, mode 0600.

use super::SmsClient;
use crate::outbound::relay::threads::Provider;

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
