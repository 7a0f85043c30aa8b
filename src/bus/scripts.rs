//! Every Lua script tipwire runs in Redis, one `.lua` file each under
//! `scripts/`, loaded with `include_str!`. Scripts that call a shared
//! function (`coarse_xadd`, `queue_ack`, `timer_take`, …) are composed with
//! `format!` from the function's constant and the body's, function first.
//! Nothing here is untrusted: these are tipwire's own texts.

/// Lua: `queue_ack(leases, owners, id)` ends an entry's lease.
pub(crate) const QUEUE_ACK_FN: &str = include_str!("scripts/queue_ack_fn.lua");

/// Lua: `queue_owns(owners, id, consumer)`, whether `consumer` holds `id`.
pub(crate) const QUEUE_OWNS_FN: &str = include_str!("scripts/queue_owns_fn.lua");

/// `KEYS[1]` the stream, `KEYS[2]` the cursor, `KEYS[3]` the leases,
/// `KEYS[4]` the owners; `ARGV[1]` the consumer, `ARGV[2]` now (ms; only
/// compared, never written), `ARGV[3]` the new lease end (a minute
/// boundary), `ARGV[4]` at most how many entries of each kind, `ARGV[5]`
/// where a new queue starts (an id). Entries whose lease ended come first;
/// one that is gone from the stream (trimmed, deleted) is forgotten. Returns
/// entries as `XRANGE` does.
pub(crate) const QUEUE_TAKE: &str = include_str!("scripts/queue_take.lua");

/// `KEYS[1]` the leases, `KEYS[2]` the owners; `ARGV[1]` the consumer,
/// `ARGV[2]` the id, `ARGV[3]` the new lease end. 1 if the consumer still
/// holds the entry (its lease is extended), else 0.
pub(crate) const QUEUE_OWN: &str = include_str!("scripts/queue_own.lua");

/// Moves a consumer group of the same name left by an older tipwire into
/// the queue: its last-delivered id becomes the cursor (unless there is one),
/// its pending entries leases that have ended (so they are retried), and the
/// group, with the times it holds, is destroyed. `KEYS` as for
/// [`QUEUE_TAKE`]; `ARGV[1]` the group name.
pub(crate) const QUEUE_MIGRATE: &str = include_str!("scripts/queue_migrate.lua");

/// `KEYS[1]` the stream, `KEYS[2]` the leases, `KEYS[3]` the owners,
/// `KEYS[4]` the retry schedule; `ARGV[1]` the id, `ARGV[2]` the consumer,
/// `ARGV[3]` the member, `ARGV[4]` its due time. Only the entry's holder
/// schedules it again: a worker whose lease was taken over leaves the entry
/// to the new holder, which may be sending it right now. 1 if scheduled.
pub(crate) const QUEUE_RETRY: &str = include_str!("scripts/queue_retry.lua");

/// `KEYS[1]` the stream, `KEYS[2]` the dead letters, `KEYS[3]` the leases,
/// `KEYS[4]` the owners; `ARGV[1]` the id, `ARGV[2]` the minute (ms) for the
/// dead letter's id, then its fields. Appends, ends the lease and deletes
/// the entry, atomically.
pub(crate) const QUEUE_DEAD: &str = include_str!("scripts/queue_dead.lua");

/// A Lua function appending with an id whose time part is `ms` (a minute
/// boundary), or the stream's newest time if that is later, so ids stay
/// increasing when replicas' clocks disagree; if deleted entries left the
/// last-generated id ahead of every remaining entry, it continues after that.
/// Stream ids carry time, so every tipwire stream uses this instead of `*`.
pub(crate) const COARSE_XADD_FN: &str = include_str!("scripts/coarse_xadd_fn.lua");

/// Refuses (`{0, version}`) when the mediator directory changed since the tip
/// was sealed, and (`{2, ''}`) a provider message or web submission already
/// stored (eighth key, the dedupe marker). Otherwise appends and, in the same script, schedules
/// the tip's escalation deadlines (`schedule_escalation`, shared with
/// `mediator::escalation`), indexes the entry by tip id and by thread, and
/// then sets the marker, so a failed append never leaves a marker behind. The
/// marker expires with the reply address (argument 3, a whole hour; `''` for
/// a web submission, which has none), and no
/// sooner than a day after the hour the message came in: a provider that signs
/// no timestamp (Twilio) lets a captured webhook be replayed at any time, and
/// the marker is what refuses it. Its TTL says nothing finer than the hour.
/// Returns `{1, id}`.
///
/// Keys: 1 the stream, 2 the directory version, 3 the escalation deadlines,
/// 4 the alert's state hash, 5 its index entry, 6 the thread's list of entries,
/// 7 the summary stream (the entry again under the same id, without envelope,
/// pseudonym and key version); for provider messages also 8 the dedupe
/// marker, 9 the thread's sealed reply address and 10.. the `n` opt-out
/// markers of the sender's pseudonyms.
///
/// Arguments: 1 the directory version the tip was sealed at, 2 the minute (ms)
/// for the id, 3 the reply address's new expiry (`''` for other tips), 4 the
/// expiry of the state hash and indexes (unix seconds: the minute plus the
/// retention), 5 zone, 6 priority, 7 the number `n` of sender pseudonyms, 8
/// the number `m` of deadlines, then the `n` pseudonyms, `m` pairs of due time
/// and member, and the fields.
///
/// For provider messages it reads whether the reply address and an opt-out
/// marker of the sender exist (both answers are appended to the reply) and
/// restarts their expiry (the markers' to two hours past the address's
/// unless they already last longer, so an opt-out always outlives the
/// address it protects, even when the address is stored again in the next
/// hour), whatever the outcome.
///
/// The append is the script's first write, the expiries come after it (or
/// on the way out): Redis at `maxmemory` under `noeviction` refuses a
/// script's first write that may grow memory (`OOM`) but lets every write
/// after any first one through, so an `EXPIREAT` first would let a provider
/// message be stored past the limit while web tips are refused.
pub(crate) const ALERT_APPEND: &str = include_str!("scripts/alert_append.lua");

/// A Lua function giving an alert entry's fields (a flat name, value list)
/// without envelope, pseudonym and key version: its summary.
pub(crate) const SUMMARY_OF_FN: &str = include_str!("scripts/summary_of_fn.lua");

/// One step of rebuilding the summaries of alerts appended before the
/// summary stream existed (an upgrade). Keys: 1 the alerts, 2 the
/// summaries, 3 the rebuild stream. Arguments: 1 alerts, 2 summaries to copy
/// at most.
///
/// The rebuild stream gets, in id order, the summaries of the alerts older
/// than the oldest summary (or of every alert, when there are none), and
/// then the summaries themselves; once a step has copied the last summary,
/// it renames the rebuild over the summaries in the same script, so no
/// append is lost. Each step continues after the rebuild's newest entry, so
/// steps may be interrupted and run by several processes. Returns `{more,
/// copied}`: more is 0 when nothing is left to do. An alert read here carries its
/// envelope (Redis cannot read part of an entry), hence the small first
/// argument.
pub(crate) const SUMMARY_BACKFILL_STEP: &str = include_str!("scripts/summary_backfill_step.lua");

/// Appends `ARGV[2..]` to `KEYS[1]` with a coarse id at minute `ARGV[1]` (ms).
pub(crate) const COARSE_APPEND: &str = include_str!("scripts/coarse_append.lua");

/// Drops the items of a list of stream ids (oldest first, as the append
/// script pushes them) whose time is before `ARGV[1]` (ms); returns how many.
pub(crate) const TRIM_ID_LIST: &str = include_str!("scripts/trim_id_list.lua");

/// `KEYS[1]` the notices; `ARGV[1]` the minute (ms), `ARGV[2]` the most kept,
/// then field/value pairs.
pub(crate) const REVOCATION_ANNOUNCE: &str = include_str!("scripts/revocation_announce.lua");

/// Shared by every operation. `KEYS[1]` is the state hash, `KEYS[2]` the event
/// stream; `ARGV[1]` the tip id, `ARGV[2]` the minute (ms) for the event id,
/// `ARGV[3]` the trim cutoff (ms), `ARGV[4]` the hash's expiry (unix seconds,
/// a minute plus the retention: a relative TTL would tell the claim's second),
/// `ARGV[5]` the acting device. Every script answers
/// `{code, state, device, outcome, version}` with the state after the call.
/// For the device operations `KEYS[3]` is the acting device's record and
/// `KEYS[4]` the record of the device that would hold the alert (the same
/// for all but reassign): `enrolled()` refuses when either is gone, in the
/// same script as the change, so a request that passed its session check
/// just before an offboarding cannot make a gone device the holder after
/// the offboarding handed its claims back (it deletes the record first).
pub(crate) const CLAIM_PREAMBLE: &str = include_str!("scripts/claim_preamble.lua");

/// Claims an open alert for the acting device `ARGV[5]` (keys and
/// arguments as for [`CLAIM_PREAMBLE`]); `same` when it already holds it,
/// `taken` when another device does.
pub(crate) const CLAIM: &str = include_str!("scripts/claim.lua");

/// Hands a claimed alert back to open, only by its claimant `ARGV[5]` (keys
/// and arguments as for [`CLAIM_PREAMBLE`]).
pub(crate) const CLAIM_RELEASE: &str = include_str!("scripts/claim_release.lua");

/// `ARGV[6]` is the outcome. Resolving again with the same outcome is a no-op,
/// so a phone may retry after a lost answer.
pub(crate) const CLAIM_RESOLVE: &str = include_str!("scripts/claim_resolve.lua");

/// `ARGV[5]` is the supervisor, `ARGV[6]` the new claimant.
pub(crate) const CLAIM_REASSIGN: &str = include_str!("scripts/claim_reassign.lua");

/// Offboarding: the alert goes back to open if `ARGV[5]` (the device ended)
/// still holds it, and `KEYS[3]` (the escalation deadlines) gets the pairs
/// of due time and member from `ARGV[6]` on, each kept at the earlier of its
/// old and new due time, so escalation resumes for an alert nobody holds.
pub(crate) const CLAIM_REOPEN: &str = include_str!("scripts/claim_reopen.lua");

/// `KEYS[1]` the thread's history, `KEYS[2]` its list of tips; `ARGV[1]` the
/// minute (ms) for the id, `ARGV[2]` the trim cutoff (ms), `ARGV[3]` the
/// history's expiry (unix seconds: this minute plus the retention),
/// `ARGV[4]` the envelope. Records the newest tip at this moment, in the same
/// script, so the reply sorts after exactly the tips that came before it.
pub(crate) const REPLY_RECORD: &str = include_str!("scripts/reply_record.lua");

/// `SET KEYS[2] ARGV[1]` only while the device record `KEYS[1]` exists.
pub(crate) const SET_IF_ENROLLED: &str = include_str!("scripts/set_if_enrolled.lua");

/// A Lua function writing a tip's escalation schedule: the alert's state
/// hash `state` gets its zone and priority (and `open` at version 0 unless a
/// claim got in first: only missing fields are filled in) and expires at
/// `expire_at` (unix seconds) unless it already expires; then each
/// `(due, member)` pair in `pairs` is added to the deadlines `deadlines`.
/// The zone field doubles as the "scheduled" marker, so a second call adds
/// nothing even once the first call's stages have fired and left the set;
/// `ZADD NX` alone could not tell. Returns how many stages were added.
///
/// Shared by `mediator::Escalations::schedule` and the alert append script
/// (`bus::AlertProducer`), which runs it in the same script as the tip's XADD:
/// a tip is then in the stream with its deadlines, or neither is.
pub(crate) const ESCALATION_SCHEDULE_FN: &str = include_str!("scripts/escalation_schedule_fn.lua");

/// `KEYS[1]` the deadlines, `KEYS[2]` the alert's state hash; `ARGV[1]` the
/// hash's expiry (unix seconds), `ARGV[2]` zone, `ARGV[3]` priority, then
/// pairs of due time and member.
pub(crate) const ESCALATION_SCHEDULE: &str = include_str!("scripts/escalation_schedule.lua");

/// `KEYS[1]` the deadlines, `KEYS[2]` the escalation-events stream, `KEYS[3..]`
/// the state hash of each candidate member `ARGV[4..]` (`KEYS[i - 1]` goes with
/// `ARGV[i]`); `ARGV[1]` now (ms), `ARGV[2]` the minute (ms) for event ids,
/// `ARGV[3]` the trim cutoff (ms). Another worker may have taken a candidate
/// since it was listed, so each is checked again and removed here
/// (`timer_take`, after [`TIMER_FNS`]): only the script whose `ZREM` removed
/// it may fire it. Fires only for an open alert
/// whose zone is known; a missing hash means the tip is gone.
pub(crate) const ESCALATION_FIRE: &str = include_str!("scripts/escalation_fire.lua");

/// `KEYS[1]` the deadlines, `KEYS[i]` the state hash of the alert of member
/// `ARGV[i]` (i ≥ 2), `ARGV[1]` now (ms). Only the script whose `ZREM`
/// (`timer_take`, after [`TIMER_FNS`]) removed a member may send it; it is
/// reported only for an open alert (a missing hash is an alert nobody
/// touched: open).
pub(crate) const NUDGE_FIRE: &str = include_str!("scripts/nudge_fire.lua");

/// `KEYS[1]` the source stream, `KEYS[2]` push-out, `KEYS[3]` the nudge
/// deadlines, `KEYS[4]` and `KEYS[5]` the source queue's leases and owners.
/// `ARGV[1]` group, `ARGV[2]` consumer, `ARGV[3]` the event id, `ARGV[4]`
/// the minute (ms) for job ids, `ARGV[5]` the nudges' due time (a minute
/// boundary), `ARGV[6..10]` kind, tip id, zone, priority, stage, `ARGV[11]`
/// the number n of devices, `ARGV[12..11+n]` the devices, then nudge members.
/// Returns -1, doing nothing, when the event is no longer leased to this
/// consumer.
pub(crate) const PUSH_FAN_OUT: &str = include_str!("scripts/push_fan_out.lua");

/// Deletes `KEYS[1]` only while it still holds `ARGV[1]`: a phone that
/// subscribed again since the push service said "gone" keeps its new
/// subscription.
pub(crate) const SUBSCRIPTION_PRUNE: &str = include_str!("scripts/subscription_prune.lua");

/// Lua functions over a timer set (a deadline sorted set, see
/// [`super::timers`]): `timer_schedule(timers, due, member)` adds a member
/// unless it is there (`ZADD NX`; 1 if added), `timer_advance(timers, due,
/// member)` adds it or moves it earlier (`ZADD LT`), `timer_due(timers, now,
/// n)` lists up to `n` due members, earliest first, `timer_take(timers,
/// member, now)` removes a member that is due and is true only for the call
/// that removed it, `timer_take_due(timers, now, n)` removes and returns up
/// to `n` due members, earliest first.
pub(crate) const TIMER_FNS: &str = include_str!("scripts/timer_fns.lua");

/// `KEYS[1]` the timer set; `ARGV[1]` now (ms), `ARGV[2]` at most how many.
/// Removes and returns the due members (after [`TIMER_FNS`]).
pub(crate) const TIMER_TAKE: &str = include_str!("scripts/timer_take.lua");

/// A work queue's due retries back into its stream. `KEYS[1]` the retry
/// timer set, `KEYS[2]` the stream; `ARGV[1]` now (ms), `ARGV[2]` the minute
/// (ms) for ids, `ARGV[3]` at most how many, `ARGV[4..]` the field names.
/// Each member is a JSON object; the entry gets those fields in that order,
/// each value as a string, and the member leaves the set only after its
/// append: the append is the script's first write, so Redis at `maxmemory`
/// (noeviction) refuses the script before it changed anything, and an append
/// that fails leaves its member to be promoted again. A member that is not a
/// JSON object (nothing tipwire writes) is removed after the appends, and
/// counted. Returns `{promoted, unreadable}` (after [`COARSE_XADD_FN`] and
/// [`TIMER_FNS`]).
pub(crate) const QUEUE_PROMOTE: &str = include_str!("scripts/queue_promote.lua");
