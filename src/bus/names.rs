//! Every Redis key tipwire uses, in one place. The prefix is configuration
//! (`redis.key_prefix`, default `tipwire`); the suffixes are fixed here.

use crate::domain::TipId;

/// Suffix of the alert stream: one entry per tip.
pub const ALERTS: &str = "alerts";
/// Suffix of the alert stream's companion without envelopes or pseudonyms
/// (same ids, routing fields only), written by the same append script: what
/// live streams and catch-ups read, so their reads stay small whatever the
/// tips carry.
pub const ALERT_SUMMARIES: &str = "alert-summaries";
/// Suffix of the stream the summaries of alerts appended before summaries
/// existed are rebuilt in (`bus::backfill_summaries`), then renamed over
/// `alert-summaries` in one script; gone once that is done.
pub const ALERT_SUMMARIES_BACKFILL: &str = "alert-summaries-backfill";
/// Suffix of the mediator directory hash: mediator id → record (public keys only).
pub const MEDIATORS: &str = "mediators";
/// Suffix of the directory's version counter, bumped with every change so a
/// tip sealed under an outdated directory is re-sealed before it is appended.
pub const MEDIATORS_VERSION: &str = "mediators:version";

/// Suffix of the replay markers of provider messages already handled
/// (`<prefix>:seen:<keyed hash>`; the id itself is never stored), kept as
/// long as the sender's reply address.
pub const SEEN: &str = "seen";
/// Suffix of sealed reply addresses by thread (`<prefix>:reply-to:<thread>`).
pub const REPLY_TO: &str = "reply-to";
/// Suffix of the per-pseudonym opt-out markers (`<prefix>:opted-out:<pseudonym>`),
/// each expiring (at a whole hour) after the reply address it protects; every
/// contact renews it. `<prefix>:opted-out` alone is the set older versions
/// kept, moved into markers by the retention sweep.
pub const OPTED_OUT: &str = "opted-out";
/// Suffix of the outbound reply stream, its retry schedule and dead letters.
pub const OUTBOUND: &str = "outbound";
pub const OUTBOUND_RETRY: &str = "outbound:retry";
pub const OUTBOUND_DEAD: &str = "outbound:dead";
/// Work queue (`bus::queue`) of the delivery workers on the outbound stream.
pub const RELAY_GROUP: &str = "relay";

/// Suffix of the per-alert state hashes (`<prefix>:alert-state:<tip id>`):
/// open, claimed or resolved, by which device, with what outcome.
pub const ALERT_STATE: &str = "alert-state";
/// Suffix of the stream of alert state changes, one entry per change, in order.
pub const ALERT_EVENTS: &str = "alert-events";
/// Suffix of the sorted set of escalation deadlines (member `<tip id>:<stage>`,
/// score the due time in unix milliseconds).
pub const ESCALATIONS: &str = "escalations";
/// Suffix of the stream of escalation stages that fired, for the push worker.
pub const ESCALATION_EVENTS: &str = "escalation-events";
/// Suffix of the per-tip index into the alert stream
/// (`<prefix>:alert-index:<tip id>` → stream id), written by the append script.
pub const ALERT_INDEX: &str = "alert-index";
/// Suffix of the per-thread lists of alert stream ids
/// (`<prefix>:thread-tips:<thread>`), written by the append script.
pub const THREAD_TIPS: &str = "thread-tips";
/// Suffix of the per-thread history streams (`<prefix>:thread:<thread>`): the
/// team's replies, each sealed to the thread's zones and escrow.
pub const THREAD: &str = "thread";

/// Suffix of one-time enrolment invites (`<prefix>:invite:<sha256 of the
/// code, hex>`), each with its expiry; redeemed with GETDEL, so once only.
pub const INVITE: &str = "invite";
/// Suffix of enrolled device records (`<prefix>:device:<device id>`): public
/// keys, zones, on-duty flag. Never a private key.
pub const DEVICE: &str = "device";
/// Suffix of the set of enrolled device ids.
pub const DEVICES: &str = "devices";
/// Suffix of the stream of revocation notices (fields `device` or
/// `session`; coarse ids, trimmed to the newest [`REVOCATIONS_KEPT`]): every
/// replica's live reader follows it and ends the streams they name at once.
pub const REVOCATIONS: &str = "revocations";
/// Notices `<prefix>:revocations` keeps; a replica that missed more (a long
/// outage) still ends the streams at their next heartbeat check.
pub const REVOCATIONS_KEPT: usize = 10_000;
/// Suffix of the per-device sets of session hashes
/// (`<prefix>:device-sessions:<device id>`), so revoking ends every session.
pub const DEVICE_SESSIONS: &str = "device-sessions";
/// Suffix of login challenges (`<prefix>:challenge:<sha256 hex>` → device id),
/// single use, a minute each.
pub const CHALLENGE: &str = "challenge";
/// Suffix of device sessions (`<prefix>:session:<sha256 of the token, hex>`);
/// the token itself is only in the device's cookie.
pub const SESSION: &str = "session";

/// Suffix of each device's Web Push subscription (`<prefix>:push-sub:<device
/// id>`): the browser's `PushSubscription` JSON. Not tip content, but the
/// endpoint identifies the phone to its push service: never logged.
pub const PUSH_SUB: &str = "push-sub";
/// Suffix of each device's nudge addresses (`<prefix>:nudge-to:<device id>`),
/// sealed to the relay key.
pub const NUDGE_TO: &str = "nudge-to";
/// Suffix of the push delivery jobs (one entry per alert and device), their
/// retry schedule, dead letters and the nudge deadlines.
pub const PUSH_OUT: &str = "push-out";
pub const PUSH_RETRY: &str = "push:retry";
pub const PUSH_DEAD: &str = "push:dead";
pub const PUSH_NUDGES: &str = "push:nudges";
/// Work queue (`bus::queue`) of the push worker on the alert, escalation-event and
/// push-out streams.
pub const PUSH_GROUP: &str = "push";

/// Suffixes of a work queue's state on a stream (`<stream>:<group>:cursor`,
/// `…:leases`, `…:owners`; see `bus::queue`). Derived from the stream's
/// name, so they share its hash tag.
pub const QUEUE_CURSOR: &str = "cursor";
pub const QUEUE_LEASES: &str = "leases";
pub const QUEUE_OWNERS: &str = "owners";

/// Full key names for one prefix, built once. The append script touches both
/// the stream and the directory version, so under Redis Cluster the prefix must
/// be a hash tag (`{tipwire}`) to keep them in one slot.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    alerts: String,
    mediators: String,
    mediators_version: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            alerts: format!("{prefix}:{ALERTS}"),
            mediators: format!("{prefix}:{MEDIATORS}"),
            mediators_version: format!("{prefix}:{MEDIATORS_VERSION}"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn alerts(&self) -> &str {
        &self.alerts
    }

    pub fn mediators(&self) -> &str {
        &self.mediators
    }

    pub fn mediators_version(&self) -> &str {
        &self.mediators_version
    }

    pub fn dedupe(&self, marker: &str) -> String {
        format!("{}:{SEEN}:{marker}", self.prefix)
    }

    pub fn reply_to(&self, thread: &str) -> String {
        format!("{}:{REPLY_TO}:{thread}", self.prefix)
    }

    pub fn opted_out(&self, pseudonym: &str) -> String {
        format!("{}:{OPTED_OUT}:{pseudonym}", self.prefix)
    }

    /// The opt-out set of older versions (migrated by the retention sweep).
    pub fn legacy_opted_out(&self) -> String {
        format!("{}:{OPTED_OUT}", self.prefix)
    }

    pub fn alert_summaries(&self) -> String {
        format!("{}:{ALERT_SUMMARIES}", self.prefix)
    }

    pub fn alert_summaries_backfill(&self) -> String {
        format!("{}:{ALERT_SUMMARIES_BACKFILL}", self.prefix)
    }

    /// A `SCAN MATCH` pattern for every key `<prefix>:<suffix>:*`, with the
    /// prefix's glob characters escaped.
    pub fn pattern(&self, suffix: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + suffix.len() + 3);
        for c in self.prefix.chars().chain([':']).chain(suffix.chars()) {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str(":*");
        out
    }

    pub fn outbound(&self) -> String {
        format!("{}:{OUTBOUND}", self.prefix)
    }

    pub fn outbound_retry(&self) -> String {
        format!("{}:{OUTBOUND_RETRY}", self.prefix)
    }

    pub fn outbound_dead(&self) -> String {
        format!("{}:{OUTBOUND_DEAD}", self.prefix)
    }

    pub fn alert_state(&self, tip_id: &TipId) -> String {
        format!("{}:{ALERT_STATE}:{tip_id}", self.prefix)
    }

    pub fn alert_events(&self) -> String {
        format!("{}:{ALERT_EVENTS}", self.prefix)
    }

    pub fn escalations(&self) -> String {
        format!("{}:{ESCALATIONS}", self.prefix)
    }

    pub fn escalation_events(&self) -> String {
        format!("{}:{ESCALATION_EVENTS}", self.prefix)
    }

    pub fn alert_index(&self, tip_id: &TipId) -> String {
        format!("{}:{ALERT_INDEX}:{tip_id}", self.prefix)
    }

    pub fn thread_tips(&self, thread: &str) -> String {
        format!("{}:{THREAD_TIPS}:{thread}", self.prefix)
    }

    pub fn thread(&self, thread: &str) -> String {
        format!("{}:{THREAD}:{thread}", self.prefix)
    }

    pub fn invite(&self, code_hash: &str) -> String {
        format!("{}:{INVITE}:{code_hash}", self.prefix)
    }

    pub fn device(&self, device_id: &str) -> String {
        format!("{}:{DEVICE}:{device_id}", self.prefix)
    }

    pub fn devices(&self) -> String {
        format!("{}:{DEVICES}", self.prefix)
    }

    pub fn revocations(&self) -> String {
        format!("{}:{REVOCATIONS}", self.prefix)
    }

    pub fn device_sessions(&self, device_id: &str) -> String {
        format!("{}:{DEVICE_SESSIONS}:{device_id}", self.prefix)
    }

    pub fn challenge(&self, challenge_hash: &str) -> String {
        format!("{}:{CHALLENGE}:{challenge_hash}", self.prefix)
    }

    pub fn session(&self, token_hash: &str) -> String {
        format!("{}:{SESSION}:{token_hash}", self.prefix)
    }

    pub fn push_sub(&self, device_id: &str) -> String {
        format!("{}:{PUSH_SUB}:{device_id}", self.prefix)
    }

    pub fn nudge_to(&self, device_id: &str) -> String {
        format!("{}:{NUDGE_TO}:{device_id}", self.prefix)
    }

    pub fn push_out(&self) -> String {
        format!("{}:{PUSH_OUT}", self.prefix)
    }

    pub fn push_retry(&self) -> String {
        format!("{}:{PUSH_RETRY}", self.prefix)
    }

    pub fn push_dead(&self) -> String {
        format!("{}:{PUSH_DEAD}", self.prefix)
    }

    pub fn push_nudges(&self) -> String {
        format!("{}:{PUSH_NUDGES}", self.prefix)
    }

    pub fn queue_cursor(&self, stream: &str, group: &str) -> String {
        format!("{stream}:{group}:{QUEUE_CURSOR}")
    }

    pub fn queue_leases(&self, stream: &str, group: &str) -> String {
        format!("{stream}:{group}:{QUEUE_LEASES}")
    }

    pub fn queue_owners(&self, stream: &str, group: &str) -> String {
        format!("{stream}:{group}:{QUEUE_OWNERS}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_prefix_gives_the_documented_stream_name() {
        assert_eq!(Keys::new("tipwire").alerts(), "tipwire:alerts");
        assert_eq!(Keys::new("{tw}").mediators(), "{tw}:mediators");
    }

    #[test]
    fn every_key_kind_has_its_retention_in_the_architecture_docs() {
        let docs = include_str!("../../docs/architecture.md");
        let table = docs.split("## Redis keys").nth(1).unwrap();
        for suffix in [
            ALERTS,
            ALERT_SUMMARIES,
            ALERT_SUMMARIES_BACKFILL,
            MEDIATORS,
            MEDIATORS_VERSION,
            SEEN,
            REPLY_TO,
            OPTED_OUT,
            OUTBOUND,
            OUTBOUND_RETRY,
            OUTBOUND_DEAD,
            ALERT_STATE,
            ALERT_EVENTS,
            ESCALATIONS,
            ESCALATION_EVENTS,
            ALERT_INDEX,
            THREAD_TIPS,
            THREAD,
            INVITE,
            DEVICE,
            DEVICES,
            DEVICE_SESSIONS,
            CHALLENGE,
            SESSION,
            PUSH_SUB,
            NUDGE_TO,
            PUSH_OUT,
            PUSH_RETRY,
            PUSH_DEAD,
            PUSH_NUDGES,
        ] {
            assert!(
                table.lines().any(|l| l.starts_with("| `")
                    && (l.contains(&format!("`{suffix}`"))
                        || l.contains(&format!("`{suffix}:"))
                        || l.contains(&format!(", `{suffix}`")))),
                "{suffix} has no row in docs/architecture.md's Redis keys table"
            );
        }
    }

    #[test]
    fn scan_patterns_escape_the_prefix() {
        assert_eq!(Keys::new("{tw}").pattern(THREAD), "{tw}:thread:*");
        assert_eq!(Keys::new("a*b[c]").pattern(SEEN), "a\\*b\\[c\\]:seen:*");
    }

    #[test]
    fn alert_state_keys_share_the_prefix_of_the_streams_they_are_scripted_with() {
        let keys = Keys::new("{tw}");
        let tip = TipId::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            keys.alert_state(&tip),
            "{tw}:alert-state:0123456789abcdef0123456789abcdef"
        );
        assert_eq!(keys.alert_events(), "{tw}:alert-events");
        assert_eq!(keys.escalations(), "{tw}:escalations");
        assert_eq!(keys.escalation_events(), "{tw}:escalation-events");
    }
}
