//! Replies to tipsters, and the thread view.
//!
//! `POST /api/v1/threads/{thread}/replies` `{text}`: for a device that sees
//! at least one tip of the thread (404 otherwise) and can open one, i.e. one
//! was sealed to it (403 `cannot-open-alert` otherwise). The reply is sealed
//! (age, like a tip) to every device and supervisor that can open the
//! thread's tips (the union over its tips' zones) and the escrow key, and
//! appended to the thread's history
//! stream `<prefix>:thread:<thread>` (coarse id; fields `kind=reply`,
//! `envelope`, and `after`, the newest tip's stream id then, which orders it
//! among the tips); then the text is handed to the reply relay (sealed to the
//! relay key) for the tipster's SMS or email thread. The tipster gets only the
//! text, from the program's number or address: never a mediator's name,
//! number or device. A thread without a live reply address (web tips, or one
//! that expired) is refused with 409 `no-reply-channel` before anything is
//! written. If the relay's queue fails after the history append, the answer
//! is 503 and the history keeps the reply the tipster did not get: the team's
//! record errs toward showing too much.
//!
//! `GET /api/v1/threads/{thread}`: `{thread, items}`, oldest first: the tips
//! of the thread this device may see (`kind=tip`, with their routing fields
//! and `can_open`, read from the alert summaries: no envelope, which the
//! phone fetches per tip from `/api/v1/alerts/{tip}/envelope`, since tips
//! can hold megabytes of photos each) and the team's replies (`kind=reply`,
//! short by construction), each with its sealed envelope in base64. The
//! phone opens them; the gateway cannot.
//!
//! Untrusted: the thread id (path) and the reply text (only its length is
//! checked; it is sealed and never logged); history entries read back from
//! Redis are parsed again and skipped if damaged.

use std::collections::{BTreeSet, HashMap};

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use redis::streams::StreamRangeReply;
use redis::{FromRedisValue, Value};
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use crate::api::alerts::{AlertsApi, Viewer, no_store, store_error, thread_id, viewer};
use crate::api::auth::AuthenticatedDevice;
use crate::bus::scripts::REPLY_RECORD;
use crate::bus::{StoredAlert, coarse_script};
use crate::crypto::{RecipientKey, seal};
use crate::domain::ThreadId;
use crate::error::AppError;
use crate::mediator::escalation::parse_zone;
use crate::mediator::live::{self, StreamPos};
use crate::mediator::{DirectoryError, MediatorDirectory};
use crate::outbound::relay::{self, Kind, RelayError};

/// Longest reply, in characters: what the relay accepts (ten SMS segments).
pub const MAX_REPLY_CHARS: usize = 1_600;
/// Tips and replies the thread view returns at most, each (the newest).
pub const MAX_THREAD_ITEMS: usize = 200;

pub(super) fn script() -> redis::Script {
    coarse_script(REPLY_RECORD)
}

/// What is sealed for the team: the reply and where it belongs. No device,
/// no name: the history is the team's, not a person's.
#[derive(Serialize)]
struct ReplyDocument<'a> {
    v: u8,
    kind: &'static str,
    thread: &'a str,
    /// Unix seconds, rounded down to the minute.
    sent: u64,
    text: &'a str,
}

#[derive(Deserialize, PartialEq)]
pub(crate) struct ReplyRequest {
    pub(crate) text: String,
}

/// The reply's text: not blank, at most [`MAX_REPLY_CHARS`] characters,
/// wiped when dropped.
pub(crate) fn reply_text(request: ReplyRequest) -> Result<Zeroizing<String>, AppError> {
    let text = Zeroizing::new(request.text);
    if text.trim().is_empty() || text.chars().count() > MAX_REPLY_CHARS {
        tracing::info!(code = "invalid-reply-text", "reply refused");
        return Err(AppError::InvalidReplyText);
    }
    Ok(text)
}

fn directory_error(e: DirectoryError) -> AppError {
    match e {
        DirectoryError::Store(s) => store_error(s),
        other => {
            tracing::error!(code = "internal", error = %other, "mediator directory refused a read");
            AppError::Internal
        }
    }
}

/// What the thread view and a reply need to know of one of the thread's
/// tips: its routing fields, never its envelope.
struct ThreadTip {
    pos: StreamPos,
    tip_id: String,
    zone: String,
    priority: String,
    channel: String,
    received: u64,
    sealed_to: Option<Vec<String>>,
}

impl ThreadTip {
    fn of_summary(s: live::AlertSummary) -> Self {
        Self {
            pos: s.pos,
            tip_id: s.tip_id.as_str().to_owned(),
            zone: s.zone,
            priority: s.priority,
            channel: s.channel,
            received: s.received,
            sealed_to: s.sealed_to,
        }
    }

    /// `None` for an entry whose id is not a stream position.
    fn of_alert(alert: StoredAlert) -> Option<Self> {
        let e = alert.entry;
        Some(Self {
            pos: StreamPos::parse(&alert.id)?,
            tip_id: e.tip_id.as_str().to_owned(),
            zone: e.zone,
            priority: e.priority,
            channel: e.channel,
            received: e.received,
            sealed_to: e.sealed_to,
        })
    }
}

/// The thread's newest tips (routing fields), read from the alert
/// summaries, so neither a reply nor the thread view reads the tips'
/// envelopes (megabytes each with photos; the phone fetches each one from
/// `/api/v1/alerts/{tip}/envelope`); only tips older than the summaries are
/// read whole, one at a time, their envelopes dropped at once.
async fn thread_routing(api: &AlertsApi, thread: &ThreadId) -> Result<Vec<ThreadTip>, AppError> {
    let ids = api
        .reader
        .thread_tip_ids(thread.as_str(), MAX_THREAD_ITEMS)
        .await
        .map_err(store_error)?;
    let summaries = live::summaries_by_ids(&api.store, &ids)
        .await
        .map_err(store_error)?;
    let found: BTreeSet<String> = summaries.iter().map(|s| s.pos.to_string()).collect();
    let older: Vec<String> = ids.into_iter().filter(|id| !found.contains(id)).collect();
    let mut tips: Vec<ThreadTip> = summaries.into_iter().map(ThreadTip::of_summary).collect();
    for id in older {
        let whole = api
            .reader
            .by_ids(std::slice::from_ref(&id))
            .await
            .map_err(store_error)?;
        tips.extend(whole.into_iter().filter_map(ThreadTip::of_alert));
    }
    Ok(tips)
}

/// Everyone who can open a tip of one of `zones`, and the escrow key.
async fn recipients(
    directory: &MediatorDirectory,
    escrow: &RecipientKey,
    zones: &[String],
) -> Result<Vec<RecipientKey>, AppError> {
    let routing = directory.routing().await.map_err(directory_error)?;
    let zones: BTreeSet<&str> = zones.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for zone in zones.into_iter().filter_map(parse_zone) {
        for key in routing.recipients_for(&zone) {
            if seen.insert(key.to_string()) {
                out.push(key);
            }
        }
    }
    out.push(escrow.clone());
    Ok(out)
}

#[tracing::instrument(name = "thread_reply", skip_all, fields(thread))]
pub(super) async fn post_reply(
    device: AuthenticatedDevice,
    path: web::Path<String>,
    body: web::Json<ReplyRequest>,
    api: web::Data<AlertsApi>,
) -> Result<HttpResponse, AppError> {
    let thread = thread_id(&path)?;
    let me = viewer(&device);
    let tips = thread_routing(&api, &thread).await?;
    if !tips.iter().any(|t| me.sees_zone(&t.zone)) {
        return Err(AppError::NotFound);
    }
    // Only someone who can read the thread may answer it.
    if !tips
        .iter()
        .any(|t| me.can_open(&t.zone, t.received, t.sealed_to.as_deref()))
    {
        tracing::info!(code = "cannot-open-alert", "reply refused");
        return Err(AppError::CannotOpenAlert);
    }
    tracing::Span::current().record("thread", thread.as_str());
    let text = reply_text(body.into_inner())?;
    let keys = api.store.keys();
    let mut conn = api.store.conn().await.map_err(store_error)?;
    let reachable: bool = redis::cmd("EXISTS")
        .arg(keys.reply_to(thread.as_str()))
        .query_async(&mut conn)
        .await
        .map_err(|e| store_error(e.into()))?;
    if !reachable {
        tracing::info!(code = "no-reply-channel", "reply refused");
        return Err(AppError::NoReplyChannel);
    }

    let now = crate::clock::now_ms();
    let minute_ms = now - now % 60_000;
    let zones: Vec<String> = tips.into_iter().map(|t| t.zone).collect();
    let recipients = recipients(&api.directory, api.keyring.escrow().1, &zones).await?;
    let plain = Zeroizing::new(
        serde_json::to_vec(&ReplyDocument {
            v: 1,
            kind: "reply",
            thread: thread.as_str(),
            sent: minute_ms / 1000,
            text: &text,
        })
        .map_err(|_| AppError::Internal)?,
    );
    let envelope = seal(&plain, &recipients).map_err(|e| {
        tracing::error!(code = "internal", error = %e, "could not seal a reply");
        AppError::Internal
    })?;
    drop(plain);
    let id: String = api
        .reply_script
        .key(keys.thread(thread.as_str()))
        .key(keys.thread_tips(thread.as_str()))
        .arg(minute_ms)
        .arg(now.saturating_sub(api.retention_secs.saturating_mul(1000)))
        .arg((minute_ms / 1000).saturating_add(api.retention_secs))
        .arg(envelope)
        .invoke_async(&mut conn)
        .await
        .map_err(|e| store_error(e.into()))?;
    relay::enqueue(&api.store, &api.keyring, &thread, &text, Kind::Reply)
        .await
        .map_err(|e| match e {
            RelayError::Store(s) => store_error(s),
            RelayError::BadText => AppError::InvalidReplyText,
        })?;
    tracing::info!(
        recipients = recipients.len(),
        "reply sealed to the team and queued for the tipster"
    );
    Ok(no_store(HttpResponse::Accepted()).json(json!({ "id": id, "thread": thread.as_str() })))
}

/// One reply read back from a thread's history.
struct Reply {
    pos: StreamPos,
    after: StreamPos,
    envelope: Vec<u8>,
}

fn parse_reply(id: &str, mut map: HashMap<String, Value>) -> Option<Reply> {
    let mut text = |name: &str| {
        map.remove(name)
            .and_then(|v| String::from_redis_value(&v).ok())
    };
    if text("kind")? != "reply" {
        return None;
    }
    let after = StreamPos::parse(&text("after")?)?;
    let envelope = map
        .remove("envelope")
        .and_then(|v| Vec::<u8>::from_redis_value(&v).ok())?;
    Some(Reply {
        pos: StreamPos::parse(id)?,
        after,
        envelope,
    })
}

/// The thread's newest replies, oldest first.
async fn replies(api: &AlertsApi, thread: &ThreadId) -> Result<Vec<Reply>, AppError> {
    let mut conn = api.store.conn().await.map_err(store_error)?;
    let reply: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(api.store.keys().thread(thread.as_str()))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(MAX_THREAD_ITEMS)
        .query_async(&mut conn)
        .await
        .map_err(|e| store_error(e.into()))?;
    let mut out: Vec<Reply> = reply
        .ids
        .into_iter()
        .filter_map(|s| {
            let parsed = parse_reply(&s.id, s.map);
            if parsed.is_none() {
                tracing::warn!(stream_id = %s.id, "skipped a thread entry tipwire did not write");
            }
            parsed
        })
        .collect();
    out.reverse();
    Ok(out)
}

/// Where an item sorts: tips by their own position; a reply right after
/// the tip that was newest when it was written, then by its own position.
/// Tips carry no envelope (the phone fetches each from
/// `/api/v1/alerts/{tip}/envelope`), and `can_open`: whether this device
/// was sealed to it. Replies, short by construction, carry theirs.
fn order(me: &Viewer, tips: Vec<&ThreadTip>, replies: Vec<Reply>) -> Vec<serde_json::Value> {
    let mut items: Vec<((StreamPos, u8, StreamPos), serde_json::Value)> = Vec::new();
    for tip in tips {
        items.push((
            (tip.pos, 0, tip.pos),
            json!({
                "kind": "tip",
                "id": tip.pos.to_string(),
                "tip_id": tip.tip_id,
                "zone": tip.zone,
                "priority": tip.priority,
                "channel": tip.channel,
                "received": tip.received,
                "can_open": me.can_open(&tip.zone, tip.received, tip.sealed_to.as_deref()),
            }),
        ));
    }
    for reply in replies {
        items.push((
            (reply.after, 1, reply.pos),
            json!({
                "kind": "reply",
                "id": reply.pos.to_string(),
                "sent": reply.pos.secs(),
                "envelope": STANDARD.encode(&reply.envelope),
            }),
        ));
    }
    items.sort_by_key(|a| a.0);
    items.into_iter().map(|(_, item)| item).collect()
}

#[tracing::instrument(name = "thread_view", skip_all)]
pub(super) async fn get_thread(
    device: AuthenticatedDevice,
    path: web::Path<String>,
    api: web::Data<AlertsApi>,
) -> Result<HttpResponse, AppError> {
    let thread = thread_id(&path)?;
    let me = viewer(&device);
    let tips = thread_routing(&api, &thread).await?;
    let visible: Vec<&ThreadTip> = tips.iter().filter(|t| me.sees_zone(&t.zone)).collect();
    if visible.is_empty() {
        return Err(AppError::NotFound);
    }
    let replies = replies(&api, &thread).await?;
    Ok(no_store(HttpResponse::Ok()).json(json!({
        "thread": thread.as_str(),
        "items": order(&me, visible, replies),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TipId;

    fn tip(id: &str) -> ThreadTip {
        ThreadTip {
            pos: StreamPos::parse(id).unwrap(),
            tip_id: TipId::random().as_str().to_owned(),
            zone: "north".into(),
            priority: "now".into(),
            channel: "sms".into(),
            received: 60,
            sealed_to: Some(vec!["m_1".into()]),
        }
    }

    fn supervisor() -> Viewer {
        Viewer {
            device_id: crate::mediator::DeviceId::parse("d_1").unwrap(),
            mediator_id: "m_2".into(),
            zones: BTreeSet::new(),
            supervisor: true,
            created: 0,
        }
    }

    fn reply(id: &str, after: &str) -> Reply {
        Reply {
            pos: StreamPos::parse(id).unwrap(),
            after: StreamPos::parse(after).unwrap(),
            envelope: vec![2],
        }
    }

    #[test]
    fn replies_sort_after_the_tip_they_followed_even_within_one_minute() {
        let (a, b) = (tip("60000-0"), tip("60000-1"));
        let items = order(
            &supervisor(),
            vec![&a, &b],
            vec![
                reply("60000-5", "60000-0"),
                reply("60000-0", "0-0"),
                reply("60000-6", "60000-1"),
            ],
        );
        let ids: Vec<(&str, &str)> = items
            .iter()
            .map(|i| (i["kind"].as_str().unwrap(), i["id"].as_str().unwrap()))
            .collect();
        assert_eq!(
            ids,
            [
                ("reply", "60000-0"),
                ("tip", "60000-0"),
                ("reply", "60000-5"),
                ("tip", "60000-1"),
                ("reply", "60000-6"),
            ]
        );
        // Tips carry no envelope, and say whether this device can open them.
        let tip = &items[1];
        assert!(tip.get("envelope").is_none(), "{tip}");
        assert_eq!(tip["can_open"], false, "sealed to m_1 only");
        assert!(items[0]["envelope"].is_string());
    }

    #[test]
    fn a_history_entry_tipwire_did_not_write_is_skipped() {
        let mut map = HashMap::new();
        map.insert("kind".to_owned(), Value::BulkString(b"note".to_vec()));
        assert!(parse_reply("1-0", map).is_none());
        let mut map = HashMap::new();
        map.insert("kind".to_owned(), Value::BulkString(b"reply".to_vec()));
        map.insert("after".to_owned(), Value::BulkString(b"0-0".to_vec()));
        map.insert("envelope".to_owned(), Value::BulkString(vec![9]));
        assert_eq!(parse_reply("1-0", map).unwrap().envelope, vec![9]);
    }
}
