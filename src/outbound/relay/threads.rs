//! Per-tipster state of the SMS and email channels, none of it readable
//! without a key: the reply address (number or address, ours, provider, and
//! for email the threading headers) sealed to the relay key under the thread
//! id with an expiry, and an opt-out marker per pseudonym that expires (at a
//! whole hour) [`OPT_OUT_MARGIN_SECS`] after the reply address it protects
//! and is renewed with it on every contact.
//! Values read back from Redis are untrusted and re-validated after opening.

use std::sync::Arc;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::bus::{OPT_OUT_MARGIN_SECS, Store, StoreError};
use crate::crypto::{Keyring, open_with, seal};
use crate::domain::Pseudonym;
use crate::domain::{EmailAddress, PhoneNumber, ThreadId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Twilio,
    Telnyx,
    /// Mail, sent through the configured outbound relay.
    Email,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Telnyx => "telnyx",
            Self::Email => "email",
        }
    }
}

/// Where a reply goes. Exists in clear only in memory, between opening and sending.
#[derive(Clone, Serialize, Deserialize)]
pub struct ReplyAddress {
    pub provider: Provider,
    /// The tipster's number or address.
    pub to: String,
    /// The program number they texted, or the tip address they wrote to.
    pub from: String,
    pub pseudonym: String,
    /// For email: what the reply needs to join the tipster's thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailThreading>,
}

/// The headers a reply copies so the tipster's mail client threads it: the
/// subject and the ids of the tipster's latest message and its ancestors.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct EmailThreading {
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub references: Vec<String>,
}

impl std::fmt::Debug for ReplyAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ReplyAddress({}, {})",
            self.provider.as_str(),
            self.pseudonym
        )
    }
}

/// What [`Threads::touch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touched {
    /// A reply address was stored and its expiry restarted.
    pub refreshed: bool,
    pub opted_out: bool,
}

#[derive(Clone)]
pub struct Threads {
    store: Store,
    keyring: Arc<Keyring>,
    retention_secs: u64,
}

impl Threads {
    /// `retention`: `retention.days`, which bounds every reply address's
    /// lifetime (validated at start-up), and so how long an opt-out recorded
    /// now must last to outlive the address it protects.
    pub fn new(store: Store, keyring: Arc<Keyring>, retention: std::time::Duration) -> Self {
        Self {
            store,
            keyring,
            retention_secs: retention.as_secs(),
        }
    }

    fn opt_out_keys(&self, pseudonyms: &[Pseudonym]) -> Vec<String> {
        let keys = self.store.keys();
        pseudonyms
            .iter()
            .map(|p| keys.opted_out(p.as_str()))
            .collect()
    }

    /// One round trip per message: restarts the expiry of the thread's reply
    /// address, and says whether there was one to restart and whether the
    /// tipster opted out. Usually the address is there, which spares an X25519
    /// seal per message; a tipster keeps the program number they first texted
    /// until the address expires.
    pub async fn touch(
        &self,
        thread: &ThreadId,
        pseudonyms: &[Pseudonym],
        ttl_secs: u64,
    ) -> Result<Touched, StoreError> {
        let keys = self.store.keys();
        let expire_at = coarse_expiry(ttl_secs);
        let mut pipe = redis::pipe();
        pipe.cmd("EXPIREAT")
            .arg(keys.reply_to(thread.as_str()))
            .arg(expire_at);
        let opt_outs = self.opt_out_keys(pseudonyms);
        let mut conn = self.store.conn().await?;
        if opt_outs.is_empty() {
            let (refreshed,): (bool,) = pipe.query_async(&mut conn).await?;
            return Ok(Touched {
                refreshed,
                opted_out: false,
            });
        }
        pipe.cmd("EXISTS").arg(&opt_outs);
        // Renewed with the address (never shortened), so the opt-out outlives it.
        for key in &opt_outs {
            pipe.cmd("EXPIREAT")
                .arg(key)
                .arg(expire_at.saturating_add(OPT_OUT_MARGIN_SECS))
                .arg("GT")
                .ignore();
        }
        let (refreshed, opted_out): (bool, u64) = pipe.query_async(&mut conn).await?;
        Ok(Touched {
            refreshed,
            opted_out: opted_out > 0,
        })
    }

    /// Seals the reply address to the relay key and keeps it for `ttl_secs`.
    pub async fn remember(
        &self,
        thread: &ThreadId,
        pseudonym: &Pseudonym,
        provider: Provider,
        tipster: &PhoneNumber,
        program_number: &PhoneNumber,
        ttl_secs: u64,
    ) -> Result<(), StoreError> {
        let address = ReplyAddress {
            provider,
            to: tipster.as_str().to_owned(),
            from: program_number.as_str().to_owned(),
            pseudonym: pseudonym.as_str().to_owned(),
            email: None,
        };
        self.remember_address(thread, &address, ttl_secs).await
    }

    /// Seals any reply address to the relay key and keeps it for `ttl_secs`
    /// (replacing the one before: for email it carries the latest message id).
    pub async fn remember_address(
        &self,
        thread: &ThreadId,
        address: &ReplyAddress,
        ttl_secs: u64,
    ) -> Result<(), StoreError> {
        let key = self.store.keys().reply_to(thread.as_str());
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(address).map_err(|_| StoreError::Corrupt("reply address"))?,
        );
        let relay = self.keyring.relay_identity().1.to_public();
        let sealed = seal(&plain, &[relay]).map_err(|_| StoreError::Corrupt("reply address"))?;
        let mut conn = self.store.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(sealed)
            .arg("EXAT")
            .arg(coarse_expiry(ttl_secs))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Opens the reply address of a thread, if it has not expired.
    pub async fn reply_address(
        &self,
        thread: &ThreadId,
    ) -> Result<Option<ReplyAddress>, StoreError> {
        let mut conn = self.store.conn().await?;
        let sealed: Option<Vec<u8>> = conn
            .get(self.store.keys().reply_to(thread.as_str()))
            .await?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plain = open_with(&sealed, self.keyring.relay_identities())
            .map_err(|_| StoreError::Corrupt("reply address"))?;
        let plain = zeroize::Zeroizing::new(plain);
        let address: ReplyAddress =
            serde_json::from_slice(&plain).map_err(|_| StoreError::Corrupt("reply address"))?;
        let valid = match address.provider {
            Provider::Email => {
                EmailAddress::parse(&address.to).is_ok()
                    && EmailAddress::parse(&address.from).is_ok()
            }
            Provider::Twilio | Provider::Telnyx => {
                PhoneNumber::parse(&address.to).is_ok() && PhoneNumber::parse(&address.from).is_ok()
            }
        };
        if !valid {
            return Err(StoreError::Corrupt("reply address"));
        }
        Ok(Some(address))
    }

    /// Records an opt-out under the current pseudonym; returns whether the
    /// sender (under any key version) had not opted out before. The marker
    /// lasts as long as any reply address stored up to now can
    /// (`retention.days` bounds them), and every later contact renews it.
    pub async fn opt_out(&self, pseudonyms: &[Pseudonym]) -> Result<bool, StoreError> {
        let was = self.is_opted_out(pseudonyms).await?;
        if let Some(current) = pseudonyms.first() {
            let mut conn = self.store.conn().await?;
            let _: () = redis::cmd("SET")
                .arg(self.store.keys().opted_out(current.as_str()))
                .arg(1)
                .arg("EXAT")
                .arg(coarse_expiry(self.retention_secs).saturating_add(OPT_OUT_MARGIN_SECS))
                .query_async(&mut conn)
                .await?;
        }
        Ok(!was)
    }

    /// Lifts the opt-out under every key version; returns whether there was one.
    pub async fn opt_in(&self, pseudonyms: &[Pseudonym]) -> Result<bool, StoreError> {
        if pseudonyms.is_empty() {
            return Ok(false);
        }
        let mut conn = self.store.conn().await?;
        let removed: u64 = conn.del(self.opt_out_keys(pseudonyms)).await?;
        Ok(removed > 0)
    }

    /// Whether the sender opted out under any of its pseudonyms (one per kept
    /// pseudonym key version, so a key rotation never lifts an opt-out).
    pub async fn is_opted_out(&self, pseudonyms: &[Pseudonym]) -> Result<bool, StoreError> {
        if pseudonyms.is_empty() {
            return Ok(false);
        }
        let mut conn = self.store.conn().await?;
        let found: u64 = conn.exists(self.opt_out_keys(pseudonyms)).await?;
        Ok(found > 0)
    }
}

/// Expiry as an absolute time rounded up to the hour: a relative TTL would
/// tell (to the millisecond, and in the AOF as an absolute time) when the
/// tipster last texted.
pub(crate) fn coarse_expiry(ttl_secs: u64) -> u64 {
    let now = crate::clock::now_secs();
    let hour = now - now % 3600 + 3600;
    hour.saturating_add(ttl_secs)
}
