//! One-time enrolment invites. `tipwire mediator invite` makes one: a 128-bit
//! random code (26 base32 characters) and a link to the mediator app with the
//! code in the fragment (`/m/#invite=…`), so it never reaches a server log, a
//! proxy or a `Referer`. Redis keeps only the code's SHA-256 with the name,
//! zones and role it grants, under an expiry; redeeming is one `GETDEL`, so of
//! two phones racing with one code exactly one gets the grant.
//!
//! Untrusted: codes come from phones (normalised and checked before they are
//! hashed); records read back from Redis are checked again.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::DeviceError;
use crate::bus::{Store, StoreError};
use crate::clock;
use crate::domain::Zone;

/// RFC 4648 base32, lower case: no `0/O` or `1/l` confusion, readable aloud.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// 128 bits in 5-bit characters.
pub const CODE_CHARS: usize = 26;

/// An invite code. A bearer secret until it is redeemed or expires: no
/// `Debug`, `Clone` or `Serialize`, wiped on drop.
pub struct InviteCode(Zeroizing<String>);

impl InviteCode {
    fn random() -> Self {
        let mut bytes = Zeroizing::new([0u8; 16]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut_slice());
        Self(Zeroizing::new(base32(bytes.as_slice())))
    }

    /// Accepts the code as printed or typed: any case, with the dashes or
    /// spaces of [`Self::grouped`]. Anything else is no code.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > 64 {
            return None;
        }
        let code: String = s
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let ok = code.len() == CODE_CHARS && code.bytes().all(|b| ALPHABET.contains(&b));
        ok.then(|| Self(Zeroizing::new(code)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code in groups of four, for reading out or typing.
    pub fn grouped(&self) -> String {
        let mut out = String::with_capacity(CODE_CHARS + CODE_CHARS / 4);
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out
    }

    /// What Redis holds instead of the code.
    fn hash_hex(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            push_symbol(&mut out, buffer >> bits);
        }
        // Keep only the bits not yet written (fewer than 5).
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        push_symbol(&mut out, buffer << (5 - bits));
    }
    out
}

fn push_symbol(out: &mut String, value: u32) {
    let index = usize::try_from(value & 31).unwrap_or_default();
    out.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'a')));
}

/// A freshly made invite, for the administrator to hand over.
pub struct Invite {
    pub code: InviteCode,
    /// `<public_base_url>/m/#invite=<code>`.
    pub link: String,
    /// When it stops working.
    pub expires: SystemTime,
}

/// What an invite grants, as stored (JSON) under its code's hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InviteGrant {
    pub name: String,
    pub zones: Vec<String>,
    pub supervisor: bool,
    /// Unix milliseconds.
    pub expires_ms: u64,
}

impl InviteGrant {
    /// The zones, parsed again (the record came back from Redis).
    pub fn parsed_zones(&self) -> Result<Vec<Zone>, DeviceError> {
        self.zones
            .iter()
            .map(|z| Zone::parse(z).map_err(|_| StoreError::Corrupt("invite zones").into()))
            .collect()
    }

    /// Redis expires the key; this also refuses a record that outlived its
    /// expiry (a restore racing the clock, a copied database).
    fn usable_at(&self, now_ms: u64) -> bool {
        now_ms < self.expires_ms
    }
}

/// Checks what an invite will grant before it is made, with the directory's
/// rules, so a bad name fails at the administrator's keyboard, not on a phone.
pub fn check_grant(name: &str, zones: &[Zone], supervisor: bool) -> Result<String, DeviceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(DeviceError::InvalidName);
    }
    if zones.is_empty() && !supervisor {
        return Err(DeviceError::NoZone);
    }
    Ok(name.to_owned())
}

#[derive(Clone)]
pub struct Invites {
    store: Store,
    base_url: String,
    default_ttl: Duration,
}

impl Invites {
    /// `base_url` is the checked `mediator.public_base_url`.
    pub fn new(store: Store, base_url: &str, default_ttl: Duration) -> Self {
        Self {
            store,
            base_url: base_url.trim_end_matches('/').to_owned(),
            default_ttl,
        }
    }

    /// `mediator.invite_ttl_secs`.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// Makes and stores an invite that enrols one device for `zones` (or every
    /// zone, as a supervisor) until `ttl` has passed.
    pub async fn create(
        &self,
        name: &str,
        zones: &[Zone],
        supervisor: bool,
        ttl: Duration,
    ) -> Result<Invite, DeviceError> {
        let name = check_grant(name, zones, supervisor)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let expires = SystemTime::now() + Duration::from_millis(ttl_ms);
        let mut zone_ids: Vec<String> = zones.iter().map(|z| z.as_str().to_owned()).collect();
        zone_ids.sort();
        zone_ids.dedup();
        let grant = InviteGrant {
            name,
            zones: zone_ids,
            supervisor,
            expires_ms: clock::unix_ms(expires),
        };
        let json = serde_json::to_string(&grant).map_err(|_| StoreError::Corrupt("invite"))?;
        let code = InviteCode::random();
        let mut conn = self.store.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(self.store.keys().invite(&code.hash_hex()))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let mut link = self.base_url.clone();
        let _ = write!(link, "/m/#invite={}", code.as_str());
        Ok(Invite {
            code,
            link,
            expires,
        })
    }

    /// What the invite would grant, without using it up: the first check of
    /// an enrolment, before anything else is read or said. The code is found
    /// by its hash, so no comparison of secret bytes can leak by timing.
    pub async fn peek(&self, code: &InviteCode) -> Result<InviteGrant, DeviceError> {
        self.grant(code, "GET").await
    }

    /// Uses the invite up: returns its grant once, then never again.
    pub async fn redeem(&self, code: &InviteCode) -> Result<InviteGrant, DeviceError> {
        self.grant(code, "GETDEL").await
    }

    /// Reads the invite with `command` (`GET` or `GETDEL`) and checks that it
    /// is still usable.
    async fn grant(&self, code: &InviteCode, command: &str) -> Result<InviteGrant, DeviceError> {
        let mut conn = self.store.conn().await?;
        let raw: Option<String> = redis::cmd(command)
            .arg(self.store.keys().invite(&code.hash_hex()))
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let grant: InviteGrant = match raw {
            None => return Err(DeviceError::InviteInvalid),
            Some(json) => serde_json::from_str(&json).map_err(|_| StoreError::Corrupt("invite"))?,
        };
        if !grant.usable_at(clock::now_ms()) {
            return Err(DeviceError::InviteInvalid);
        }
        Ok(grant)
    }

    /// Puts a redeemed invite back for the rest of its lifetime, after an
    /// enrolment that was refused for a reason the phone can fix (its key was
    /// already enrolled). `NX`: a code is never stored twice.
    pub async fn restore(&self, code: &InviteCode, grant: &InviteGrant) -> Result<(), DeviceError> {
        let left = grant.expires_ms.saturating_sub(clock::now_ms());
        if left == 0 {
            return Ok(());
        }
        let json = serde_json::to_string(grant).map_err(|_| StoreError::Corrupt("invite"))?;
        let mut conn = self.store.conn().await?;
        let _: Option<String> = redis::cmd("SET")
            .arg(self.store.keys().invite(&code.hash_hex()))
            .arg(json)
            .arg("PX")
            .arg(left)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }
}

/// Deletes every pending invite made for `name` (offboarding: a person
/// being removed must not be able to enrol a phone afterwards). Returns how
/// many there were.
pub async fn cancel_named(store: &Store, name: &str) -> Result<usize, DeviceError> {
    let keys = store.scan_kind(crate::bus::names::INVITE).await?;
    if keys.is_empty() {
        return Ok(0);
    }
    let mut conn = store.conn().await?;
    let mut get = redis::cmd("MGET");
    for key in &keys {
        get.arg(key);
    }
    let raw: Vec<Option<String>> = get.query_async(&mut conn).await.map_err(StoreError::from)?;
    let doomed: Vec<&String> = keys
        .iter()
        .zip(raw)
        .filter(|(_, json)| {
            json.as_deref()
                .and_then(|j| serde_json::from_str::<InviteGrant>(j).ok())
                .is_some_and(|g| g.name == name)
        })
        .map(|(key, _)| key)
        .collect();
    if doomed.is_empty() {
        return Ok(0);
    }
    let deleted: usize = redis::cmd("DEL")
        .arg(&doomed)
        .query_async(&mut conn)
        .await
        .map_err(StoreError::from)?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_26_base32_characters_and_differ_every_time() {
        let a = InviteCode::random();
        let b = InviteCode::random();
        assert_eq!(a.as_str().len(), CODE_CHARS);
        assert!(a.as_str().bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn base32_matches_rfc_4648_test_vectors() {
        // RFC 4648 section 10, lower-cased and without padding.
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"fo"), "mzxq");
        assert_eq!(base32(b"foo"), "mzxw6");
        assert_eq!(base32(b"foob"), "mzxw6yq");
        assert_eq!(base32(b"fooba"), "mzxw6ytb");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn a_code_typed_in_groups_or_capitals_is_the_same_code() {
        let code = InviteCode::random();
        let typed = code.grouped().to_uppercase().replace('-', " ");
        let parsed = InviteCode::parse(&typed).unwrap();
        assert_eq!(parsed.as_str(), code.as_str());
        assert_eq!(parsed.hash_hex(), code.hash_hex());
        assert_eq!(code.grouped().len(), CODE_CHARS + 6);
    }

    #[test]
    fn anything_but_26_base32_characters_is_no_code() {
        for bad in [
            "",
            "abc",
            &"a".repeat(25),
            &"a".repeat(27),
            "a0cdefghijklmnopqrstuvwxyz",
            "a1cdefghijklmnopqrstuvwxyz",
            "abcdefghijklmnopqrstuvwxy\u{e9}",
            &"a".repeat(100),
        ] {
            assert!(InviteCode::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_code_is_hashed_before_it_names_a_key() {
        let code = InviteCode::parse("abcdefghijklmnopqrstuvwxyz").unwrap();
        let hash = code.hash_hex();
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(code.as_str()));
    }

    #[test]
    fn a_grant_is_usable_only_before_its_expiry() {
        let grant = InviteGrant {
            name: "Ana".into(),
            zones: vec!["north".into()],
            supervisor: false,
            expires_ms: 1_000,
        };
        assert!(grant.usable_at(999));
        assert!(!grant.usable_at(1_000));
        assert_eq!(grant.parsed_zones().unwrap().len(), 1);
        let damaged = InviteGrant {
            zones: vec!["North Side!".into()],
            ..grant
        };
        assert!(damaged.parsed_zones().is_err());
    }

    #[test]
    fn an_invite_needs_a_plain_name_and_a_zone_unless_it_is_for_a_supervisor() {
        let north = vec![Zone::parse("north").unwrap()];
        assert_eq!(check_grant("  Ana ", &north, false).unwrap(), "Ana");
        assert!(matches!(
            check_grant("", &north, false),
            Err(DeviceError::InvalidName)
        ));
        assert!(matches!(
            check_grant("A\u{7}na", &north, false),
            Err(DeviceError::InvalidName)
        ));
        assert!(matches!(
            check_grant(&"x".repeat(81), &north, false),
            Err(DeviceError::InvalidName)
        ));
        assert!(matches!(
            check_grant("Ana", &[], false),
            Err(DeviceError::NoZone)
        ));
        assert!(check_grant("Ana", &[], true).is_ok());
    }
}
