//! The mediator directory: a Redis hash of mediator id → record, holding only
//! names, zones and public age recipients (never a private key). Records read
//! back from Redis are re-validated; a damaged record is skipped, not trusted.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::bus::{Store, StoreError};
use crate::crypto::RecipientKey;
use crate::domain::{Zone, ZoneChoice};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no mediator with id {0}")]
    NotFound(String),
    #[error("a mediator needs a name of 1 to 80 characters")]
    InvalidName,
    #[error("a mediator needs at least one zone, or --supervisor")]
    NoZone,
    #[error("recipient {0} is already enrolled (mediator {1})")]
    DuplicateRecipient(String, String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MediatorRecord {
    pub id: String,
    pub name: String,
    pub zones: Vec<String>,
    pub supervisor: bool,
    pub recipient: String,
    /// Unix seconds.
    pub added: u64,
}

/// A mediator to enrol, already parsed.
pub struct NewMediator {
    pub name: String,
    pub zones: Vec<Zone>,
    pub supervisor: bool,
    pub recipient: RecipientKey,
}

#[derive(Clone)]
pub struct MediatorDirectory {
    store: Store,
}

impl MediatorDirectory {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn add(
        &self,
        new: NewMediator,
        now_secs: u64,
    ) -> Result<MediatorRecord, DirectoryError> {
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
            return Err(DirectoryError::InvalidName);
        }
        if new.zones.is_empty() && !new.supervisor {
            return Err(DirectoryError::NoZone);
        }
        let recipient = new.recipient.to_string();
        if let Some(existing) = self
            .list()
            .await?
            .into_iter()
            .find(|m| m.recipient == recipient)
        {
            return Err(DirectoryError::DuplicateRecipient(recipient, existing.id));
        }
        let zones: BTreeSet<String> = new.zones.iter().map(|z| z.as_str().to_owned()).collect();
        let record = MediatorRecord {
            id: format!(
                "m_{}",
                crate::domain::TipId::random()
                    .as_str()
                    .get(..12)
                    .unwrap_or_default()
            ),
            name,
            zones: zones.into_iter().collect(),
            supervisor: new.supervisor,
            recipient,
            added: now_secs,
        };
        let json =
            serde_json::to_string(&record).map_err(|_| StoreError::Corrupt("mediator record"))?;
        let mut conn = self.store.conn().await?;
        let keys = self.store.keys();
        let _: () = redis::pipe()
            .atomic()
            .hset(keys.mediators(), &record.id, json)
            .ignore()
            .incr(keys.mediators_version(), 1)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(record)
    }

    pub async fn remove(&self, id: &str) -> Result<(), DirectoryError> {
        let mut conn = self.store.conn().await?;
        let keys = self.store.keys();
        let (removed,): (u64,) = redis::pipe()
            .atomic()
            .hdel(keys.mediators(), id)
            .incr(keys.mediators_version(), 1)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        if removed == 0 {
            return Err(DirectoryError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Every valid record, sorted by name.
    pub async fn list(&self) -> Result<Vec<MediatorRecord>, DirectoryError> {
        Ok(self.snapshot().await?.1)
    }

    /// The records and the directory version they belong to, read atomically.
    async fn snapshot(&self) -> Result<(u64, Vec<MediatorRecord>), DirectoryError> {
        let mut conn = self.store.conn().await?;
        let keys = self.store.keys();
        let (version, raw): (Option<u64>, Vec<(String, String)>) = redis::pipe()
            .atomic()
            .get(keys.mediators_version())
            .hgetall(keys.mediators())
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let mut out: Vec<MediatorRecord> = raw
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_str::<MediatorRecord>(&json).ok())
            .filter(|m| RecipientKey::parse(&m.recipient).is_ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok((version.unwrap_or(0), out))
    }

    /// Who can open tips, per zone, at the current directory version.
    pub async fn routing(&self) -> Result<Routing, DirectoryError> {
        let (version, records) = self.snapshot().await?;
        Ok(Routing::new(version, &records))
    }

    /// Who can open a tip about `zone` right now (see [`Routing::recipients_for`]).
    pub async fn recipients_for(
        &self,
        zone: &ZoneChoice,
    ) -> Result<Vec<RecipientKey>, DirectoryError> {
        Ok(self.routing().await?.recipients_for(zone))
    }
}

/// One recipient: its directory entry id and its key.
#[derive(Debug, Clone)]
struct Recipient {
    id: String,
    key: RecipientKey,
}

/// Recipients by zone at one directory version, parsed once and reused for
/// every tip until the version changes.
#[derive(Debug, Clone)]
pub struct Routing {
    pub version: u64,
    by_zone: HashMap<String, Vec<Recipient>>,
    supervisors: Vec<Recipient>,
    everyone: Vec<Recipient>,
}

impl Routing {
    fn new(version: u64, records: &[MediatorRecord]) -> Self {
        let mut by_zone: HashMap<String, Vec<Recipient>> = HashMap::new();
        let mut supervisors = Vec::new();
        let mut everyone = Vec::new();
        let mut seen = BTreeSet::new();
        for m in records {
            let Ok(key) = RecipientKey::parse(&m.recipient) else {
                continue;
            };
            if !seen.insert(m.recipient.clone()) {
                continue;
            }
            let r = Recipient {
                id: m.id.clone(),
                key,
            };
            everyone.push(r.clone());
            if m.supervisor {
                supervisors.push(r);
            } else {
                for zone in &m.zones {
                    by_zone.entry(zone.clone()).or_default().push(r.clone());
                }
            }
        }
        Self {
            version,
            by_zone,
            supervisors,
            everyone,
        }
    }

    fn selected<'a>(&'a self, zone: &ZoneChoice) -> Box<dyn Iterator<Item = &'a Recipient> + 'a> {
        match zone {
            ZoneChoice::Unsure => Box::new(self.everyone.iter()),
            ZoneChoice::Known(z) => Box::new(
                self.by_zone
                    .get(z.as_str())
                    .into_iter()
                    .flatten()
                    .chain(self.supervisors.iter()),
            ),
        }
    }

    /// The directory entry ids of [`Self::recipients_for`], in the same
    /// order: recorded with the tip (`sealed_to`), so that only a device the
    /// tip was sealed to can claim it.
    pub fn recipient_ids_for(&self, zone: &ZoneChoice) -> Vec<String> {
        self.selected(zone).map(|r| r.id.clone()).collect()
    }

    /// Who can open a tip about `zone`: its mediators and every supervisor; for
    /// "not sure", every mediator device, so an urgent tip without a place still
    /// reaches whoever is on duty. The escrow key is added by the caller.
    pub fn recipients_for(&self, zone: &ZoneChoice) -> Vec<RecipientKey> {
        self.selected(zone).map(|r| r.key.clone()).collect()
    }
}
