//! `GET /api/v1/alerts/stream`: the live alert list of one device, as
//! server-sent events (`text/event-stream`, `Cache-Control: no-store`,
//! `X-Accel-Buffering: no` so proxies pass each event on at once).
//!
//! Events, each with an id `<alerts stream id>|<alert-events stream id>`
//! (how far the connection has read both streams):
//!
//! - `alert` `{tip_id, zone, priority, channel, received, thread, state,
//!   outcome, claimed_by_me, version, can_open}`: an alert the device may
//!   see; `can_open` says whether it was sealed to this device (if not, the
//!   app offers no Claim: the claim would be refused).
//! - `state` `{tip_id, state, outcome, by_me, claimed_by_me, version}`: a
//!   change to one. Versions only grow; a client keeps the highest it saw.
//! - `ready` `{mode}` once the backlog is sent: `fresh` (the newest
//!   [`LATEST`] visible alerts, oldest first, with their current state) or
//!   `resume` (what was missed since `Last-Event-ID`, then live).
//! - `end` `{code}` before the server closes the stream: `session-expired`
//!   (revoked, logged out or expired: sign in again), `store-unavailable`
//!   (the session could not be checked: reconnect) or `resync` (too far
//!   behind: reconnect).
//!
//! The stream opens with `retry: 2000` and sends a comment every
//! `mediator.stream_heartbeat_secs`; each heartbeat also checks the session,
//! and a check that fails ends the stream (fail closed). A revocation or
//! logout ends it at once, through the notice [`crate::mediator::live`]
//! broadcasts; the session is checked once more after subscribing, so a
//! revocation between sign-in check and subscription is not missed either.
//!
//! No gaps, no duplicates: the connection subscribes to the process's
//! [`LiveFeed`] before it reads the backlog from Redis, then skips every live
//! item at or below what the backlog covered. A reconnect with
//! `Last-Event-ID` replays at most [`REPLAY_MAX`] entries per stream; more
//! than that, and it starts fresh instead.
//!
//! Untrusted: `Last-Event-ID` (or `?last_event_id=`, for an app resuming
//! after a reload); one that does not parse starts fresh.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::api::alerts::{AlertsApi, Viewer, claim_error, store_error};
use crate::api::auth::AuthenticatedDevice;
use crate::error::AppError;
use crate::mediator::devices::{DeviceApi, Session};
use crate::mediator::live::{self, AlertSummary, Cursor, LiveItem, StreamPos};
use crate::mediator::{AlertEvent, AlertStatus, DeviceId, Outcome};

/// Visible alerts sent on a fresh connect.
pub const LATEST: usize = 50;
/// Newest alert summaries looked through for them. Summaries carry no
/// envelope (see [`live`]), so a catch-up reads a few hundred bytes an entry
/// whatever the tips hold.
const SCAN_MAX: usize = 500;
const SCAN_PAGE: usize = 100;
/// Entries per stream a reconnect replays at most.
pub const REPLAY_MAX: usize = 500;
/// Catch-ups (fresh starts, resumes, lagging connections) reading from Redis
/// at once in this process; more wait their turn. Each reads at most about
/// [`REPLAY_MAX`] summaries and changes (well under a megabyte with its
/// events), so a reconnect storm of every phone holds a few megabytes of
/// catch-up at a time, not one per phone.
const CATCH_UPS_AT_ONCE: usize = 8;
static CATCH_UPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CATCH_UPS_AT_ONCE);

/// How long a connection waits for the process's reader to start.
const READY_WAIT: Duration = Duration::from_secs(5);

#[derive(serde::Deserialize)]
pub(super) struct StreamQuery {
    last_event_id: Option<String>,
}

#[tracing::instrument(name = "alert_stream", skip_all)]
pub(super) async fn stream(
    req: HttpRequest,
    query: web::Query<StreamQuery>,
    device: AuthenticatedDevice,
    api: web::Data<AlertsApi>,
    devices: web::Data<DeviceApi>,
    drain: web::Data<crate::server::Drain>,
) -> Result<HttpResponse, AppError> {
    let viewer = crate::api::alerts::viewer(&device);
    let resume_from = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query.last_event_id.as_deref())
        .and_then(Cursor::parse);
    if !api.live.ready(READY_WAIT).await {
        tracing::warn!(
            code = "store-unavailable",
            "live alert reader is not running yet"
        );
        return Err(AppError::StoreUnavailable);
    }
    // Before any backlog read: whatever is appended from here on arrives
    // live, whatever came before is in the backlog.
    let rx = api.live.subscribe();
    // A revocation notice broadcast before the subscription is not in `rx`:
    // the session must still exist now, when every later one is.
    match devices.sessions.is_live(device.session()).await {
        Ok(true) => {}
        Ok(false) => return Err(AppError::SessionExpired),
        Err(e) => return Err(super::device_error(e)),
    }
    let mut out = VecDeque::from([Bytes::from_static(b"retry: 2000\n\n")]);
    let resumed = match resume_from {
        Some(from) => resume(&api, &viewer, from, &mut out).await?,
        None => None,
    };
    let (at, mode) = match resumed {
        Some(at) => (at, "resume"),
        None => (fresh(&api, &viewer, &mut out).await?, "fresh"),
    };
    out.push_back(event("ready", at, &json!({ "mode": mode })));
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + api.heartbeat, api.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let connection = Connection {
        session: device.into_session(),
        api,
        devices,
        viewer,
        rx,
        at,
        out,
        heartbeat,
        drain: drain.get_ref().clone(),
        ended: false,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::stream::unfold(
            connection,
            |mut c| async move { c.next().await.map(|chunk| (Ok::<_, Infallible>(chunk), c)) },
        )))
}

/// One open stream.
struct Connection {
    api: web::Data<AlertsApi>,
    devices: web::Data<DeviceApi>,
    session: Session,
    viewer: Viewer,
    rx: broadcast::Receiver<LiveItem>,
    /// Everything up to here was sent or is queued in `out`.
    at: Cursor,
    out: VecDeque<Bytes>,
    heartbeat: tokio::time::Interval,
    drain: crate::server::Drain,
    ended: bool,
}

impl Connection {
    /// The next chunk to write; `None` ends the response.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.out.pop_front() {
                return Some(chunk);
            }
            if self.ended {
                return None;
            }
            tokio::select! {
                // The gateway is stopping: say so, and the app reconnects
                // (with Last-Event-ID) to another replica or after the restart.
                () = self.drain.draining() => self.end("shutting-down"),
                _ = self.heartbeat.tick() => self.beat().await,
                item = self.rx.recv() => match item {
                    Ok(item) => self.live(item),
                    Err(RecvError::Lagged(_)) => self.catch_up().await,
                    // The process is stopping.
                    Err(RecvError::Closed) => self.ended = true,
                },
            }
        }
    }

    async fn beat(&mut self) {
        match self.devices.sessions.is_live(&self.session).await {
            Ok(false) => {
                tracing::info!(code = "session-expired", "alert stream ended");
                self.end("session-expired");
            }
            Ok(true) => self.out.push_back(Bytes::from_static(b": heartbeat\n\n")),
            // Fail closed: a stream whose session cannot be checked ends;
            // the app reconnects, and is let back in once Redis answers.
            Err(_) => {
                tracing::warn!(
                    code = "store-unavailable",
                    "alert stream ended: session check failed"
                );
                self.end("store-unavailable");
            }
        }
    }

    fn end(&mut self, code: &str) {
        self.out
            .push_back(event("end", self.at, &json!({ "code": code })));
        self.ended = true;
    }

    fn live(&mut self, item: LiveItem) {
        let me = &self.viewer.device_id;
        match item {
            LiveItem::Alert(alert) => {
                if alert.pos <= self.at.alerts {
                    return;
                }
                self.at.alerts = alert.pos;
                if self.viewer.sees_zone(&alert.zone) {
                    // Just appended: open. A change that raced it follows
                    // as a `state` event with a higher version.
                    self.out.push_back(event(
                        "alert",
                        self.at,
                        &alert_json(&alert, None, &self.viewer),
                    ));
                }
            }
            LiveItem::Ended(notice) => {
                if self.session.ended_by(&notice) {
                    tracing::info!(code = "session-expired", "alert stream ended: revoked");
                    self.end("session-expired");
                }
            }
            LiveItem::State(pos, change) => {
                if pos <= self.at.events {
                    return;
                }
                self.at.events = pos;
                if self.viewer.sees_event(&change) {
                    self.out
                        .push_back(event("state", self.at, &state_json(&change, me)));
                }
            }
        }
    }

    /// The broadcast ran ahead of this connection: read what it missed from
    /// Redis; if that is too much, or Redis fails, end the stream so the
    /// client reconnects and starts over from its last event id.
    async fn catch_up(&mut self) {
        // Lagging, it may have missed a revocation notice too.
        if !matches!(self.devices.sessions.is_live(&self.session).await, Ok(true)) {
            self.end("session-expired");
            return;
        }
        let mut out = VecDeque::new();
        match resume(&self.api, &self.viewer, self.at, &mut out).await {
            Ok(Some(at)) => {
                self.at = at;
                self.out.extend(out);
            }
            Ok(None) | Err(_) => self.end("resync"),
        }
    }
}

/// One SSE event. JSON never holds a raw newline, so `data` is one line.
fn event(name: &str, id: Cursor, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\nid: {id}\ndata: {data}\n\n"))
}

fn alert_json(
    a: &AlertSummary,
    status: Option<&AlertStatus>,
    viewer: &Viewer,
) -> serde_json::Value {
    let me = &viewer.device_id;
    json!({
        "tip_id": a.tip_id.as_str(),
        "zone": a.zone,
        "priority": a.priority,
        "channel": a.channel,
        "received": a.received,
        "thread": a.thread,
        "state": status.map_or("open", |s| s.state.as_str()),
        "outcome": status.and_then(|s| s.outcome).map(Outcome::as_str),
        "claimed_by_me": status.is_some_and(|s| s.device.as_ref() == Some(me)),
        "version": status.map_or(0, |s| s.version),
        "can_open": viewer.can_open(&a.zone, a.received, a.sealed_to.as_deref()),
    })
}

fn state_json(e: &AlertEvent, me: &DeviceId) -> serde_json::Value {
    json!({
        "tip_id": e.tip_id.as_str(),
        "state": e.status.state.as_str(),
        "outcome": e.status.outcome.map(Outcome::as_str),
        "by_me": &e.by == me,
        "claimed_by_me": e.status.device.as_ref() == Some(me),
        "version": e.status.version,
    })
}

/// Queues `alert` events for `alerts` (oldest first) with their current
/// state; each event's id moves the alert cursor to that alert.
async fn send_alerts(
    api: &AlertsApi,
    viewer: &Viewer,
    alerts: &[AlertSummary],
    events: StreamPos,
    out: &mut VecDeque<Bytes>,
) -> Result<(), AppError> {
    let tips: Vec<_> = alerts.iter().map(|a| a.tip_id.clone()).collect();
    let states = api.states.get_many(&tips).await.map_err(claim_error)?;
    for (alert, status) in alerts.iter().zip(&states) {
        let at = Cursor {
            alerts: alert.pos,
            events,
        };
        out.push_back(event("alert", at, &alert_json(alert, Some(status), viewer)));
    }
    Ok(())
}

/// A fresh start: the newest [`LATEST`] alerts this viewer sees, oldest
/// first, with their current state. Returns where the stream continues.
async fn fresh(
    api: &AlertsApi,
    viewer: &Viewer,
    out: &mut VecDeque<Bytes>,
) -> Result<Cursor, AppError> {
    // Never closed; a closed semaphore would only mean no waiting.
    let _turn = CATCH_UPS.acquire().await.ok();
    // Changes first: one made after this read arrives live; one made before
    // it is in the state read below (and may arrive both ways: same version).
    let events = live::events_end(&api.store).await.map_err(store_error)?;
    let mut newest = None;
    let mut before = None;
    let mut scanned = 0;
    let mut picked = Vec::new();
    while picked.len() < LATEST && scanned < SCAN_MAX {
        let page = live::alerts_before(&api.store, before, SCAN_PAGE)
            .await
            .map_err(store_error)?;
        let full = page.len() == SCAN_PAGE;
        scanned += page.len();
        for (pos, alert) in page {
            newest.get_or_insert(pos);
            before = Some(pos);
            if let Some(alert) = alert
                && picked.len() < LATEST
                && viewer.sees_zone(&alert.zone)
            {
                picked.push(alert);
            }
        }
        if !full {
            break;
        }
    }
    picked.reverse();
    send_alerts(api, viewer, &picked, events, out).await?;
    Ok(Cursor {
        alerts: newest.unwrap_or(StreamPos::START),
        events,
    })
}

/// Replays what a connection missed after `from`: alerts (with their current
/// state), then changes. `None` when more than [`REPLAY_MAX`] entries of
/// either stream were missed, or `from` is past the streams' ends (they were
/// emptied): start fresh instead.
async fn resume(
    api: &AlertsApi,
    viewer: &Viewer,
    from: Cursor,
    out: &mut VecDeque<Bytes>,
) -> Result<Option<Cursor>, AppError> {
    let _turn = CATCH_UPS.acquire().await.ok();
    // Changes before alerts: a change read here concerns an alert appended
    // before it, which the alert read below therefore sees.
    let changes = live::events_after(&api.store, from.events, REPLAY_MAX + 1)
        .await
        .map_err(store_error)?;
    let alerts = live::alerts_after(&api.store, from.alerts, REPLAY_MAX + 1)
        .await
        .map_err(store_error)?;
    if changes.len() > REPLAY_MAX || alerts.len() > REPLAY_MAX {
        return Ok(None);
    }
    if (changes.is_empty() || alerts.is_empty()) && past_the_end(api, from).await? {
        return Ok(None);
    }
    let mut at = from;
    let visible: Vec<AlertSummary> = alerts
        .iter()
        .filter_map(|(_, a)| a.as_ref())
        .filter(|a| viewer.sees_zone(&a.zone))
        .cloned()
        .collect();
    send_alerts(api, viewer, &visible, at.events, out).await?;
    if let Some((pos, _)) = alerts.last() {
        at.alerts = *pos;
    }
    for (pos, change) in changes {
        at.events = pos;
        if let Some(change) = change
            && viewer.sees_event(&change)
        {
            out.push_back(event("state", at, &state_json(&change, &viewer.device_id)));
        }
    }
    Ok(Some(at))
}

/// Whether `from` lies beyond where either stream ends now: the streams
/// were emptied (a Redis without persistence restarted), and skipping live
/// entries up to `from` would hide new ones.
async fn past_the_end(api: &AlertsApi, from: Cursor) -> Result<bool, AppError> {
    let events_end = live::events_end(&api.store).await.map_err(store_error)?;
    let alerts_end = live::alerts_before(&api.store, None, 1)
        .await
        .map_err(store_error)?
        .first()
        .map_or(StreamPos::START, |(pos, _)| *pos);
    Ok(from.events > events_end || from.alerts > alerts_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_block_with_its_name_id_and_one_line_of_json() {
        let id = Cursor::parse("60000-1|120000-2").unwrap();
        let chunk = event("state", id, &json!({"text": "a\nb"}));
        assert_eq!(
            std::str::from_utf8(&chunk).unwrap(),
            "event: state\nid: 60000-1|120000-2\ndata: {\"text\":\"a\\nb\"}\n\n"
        );
    }
}
