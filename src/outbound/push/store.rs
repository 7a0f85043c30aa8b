//! Where each device's Web Push subscription is kept: `<prefix>:push-sub:<device
//! id>`, the browser's `PushSubscription` JSON as [`Subscription::to_json`]
//! writes it, one per device (a new one replaces the old). Not sealed: it is
//! no tip content and the worker needs it for every push. But the endpoint
//! names the phone to its push service, so it is never logged.
//!
//! Untrusted: what is read back is parsed again with the caller's endpoint
//! policy; a record that no longer parses is reported, not used.

use crate::bus::scripts::SUBSCRIPTION_PRUNE;
use crate::bus::{Store, StoreError};
use crate::mediator::DeviceId;
use crate::mediator::devices::set_if_enrolled;

use crate::outbound::push::subscription::{EndpointPolicy, Subscription};

/// A stored subscription and the exact text it was stored as (what a prune
/// compares against).
pub struct StoredSubscription {
    pub subscription: Subscription,
    pub raw: String,
}

#[derive(Clone)]
pub struct Subscriptions {
    store: Store,
}

impl Subscriptions {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Stores (or replaces) the device's subscription.
    /// Nothing is stored for a device revoked meanwhile.
    pub async fn put(&self, device: &DeviceId, sub: &Subscription) -> Result<(), StoreError> {
        let key = self.store.keys().push_sub(device.as_str());
        set_if_enrolled(&self.store, device, &key, sub.to_json().as_bytes()).await?;
        Ok(())
    }

    /// Forgets the device's subscription; true if there was one.
    pub async fn remove(&self, device: &DeviceId) -> Result<bool, StoreError> {
        let mut conn = self.store.conn().await?;
        let removed: u32 = redis::cmd("DEL")
            .arg(self.store.keys().push_sub(device.as_str()))
            .query_async(&mut conn)
            .await?;
        Ok(removed > 0)
    }

    /// The device's subscription. `Ok(None)` when there is none;
    /// `Err(Corrupt)` when the stored text no longer parses under `policy`.
    pub async fn get(
        &self,
        device: &DeviceId,
        policy: EndpointPolicy,
    ) -> Result<Option<StoredSubscription>, StoreError> {
        let mut conn = self.store.conn().await?;
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.store.keys().push_sub(device.as_str()))
            .query_async(&mut conn)
            .await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let subscription = Subscription::parse(&raw, policy)
            .map_err(|_| StoreError::Corrupt("push subscription"))?;
        Ok(Some(StoredSubscription { subscription, raw }))
    }

    /// Deletes the subscription the push service called gone, unless the
    /// device stored another one meanwhile. True if it was deleted.
    pub async fn prune(&self, device: &DeviceId, raw: &str) -> Result<bool, StoreError> {
        let mut conn = self.store.conn().await?;
        let deleted: u32 = redis::Script::new(SUBSCRIPTION_PRUNE)
            .key(self.store.keys().push_sub(device.as_str()))
            .arg(raw)
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted > 0)
    }

    /// Which of `devices` have a subscription, in the same order.
    pub async fn have(&self, devices: &[DeviceId]) -> Result<Vec<bool>, StoreError> {
        exist(&self.store, devices, |d| self.store.keys().push_sub(d)).await
    }
}

/// `EXISTS` for one key per device, in one round trip.
pub(crate) async fn exist(
    store: &Store,
    devices: &[DeviceId],
    key: impl Fn(&str) -> String,
) -> Result<Vec<bool>, StoreError> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for d in devices {
        pipe.exists(key(d.as_str()));
    }
    let mut conn = store.conn().await?;
    Ok(pipe.query_async(&mut conn).await?)
}
