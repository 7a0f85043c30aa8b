//! What happens to a verified inbound text, whichever provider delivered it:
//! number check, keywords (STOP/START/HELP), rate limits, media, pseudonym,
//! sealed reply address, then the intake pipeline. The message content is
//! untrusted and never logged.

use std::sync::Arc;
use std::time::SystemTime;

use crate::bus::Store;
use crate::crypto::Keyring;
use crate::domain::{
    Attachment, AttachmentKind, Channel, InboundTip, PhoneNumber, ProviderMessage, ThreadId,
    TipText, TipTextError, Withheld, WithheldReason,
};
use crate::error::AppError;
use crate::intake::{Intake, IntakeError, Submitted};
use crate::privacy::metadata;
use crate::telemetry::Metrics;

use super::language::{Keyword, Language, Texts};
use super::limits::SmsLimiter;
use super::signature::{TelnyxVerifier, TwilioValidator};
use crate::config::SmsSettings;
use crate::outbound::relay::threads::{Provider, Threads, coarse_expiry};
use crate::outbound::sms::{MediaError, SmsClient};

/// A media item as the provider lists it; fetched only after the limits.
#[derive(Clone)]
pub struct MediaRef {
    pub url: String,
    pub content_type: String,
}

/// A verified inbound message, reduced to what tipwire uses.
pub struct InboundSms {
    pub from: PhoneNumber,
    pub to: PhoneNumber,
    pub body: String,
    /// The provider's message id: used only to derive the dedupe marker.
    pub message_id: String,
    pub media: Vec<MediaRef>,
}

/// What to text back, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A carrier-required answer (keywords): sent even to opted-out numbers.
    Compliance(String),
    /// An acknowledgement or notice: never to an opted-out number.
    Reply(String),
    Silent,
}

pub struct TwilioSide {
    pub validator: TwilioValidator,
    pub client: SmsClient,
}

pub struct TelnyxSide {
    pub verifier: TelnyxVerifier,
    pub client: SmsClient,
}

pub struct SmsChannel {
    pub intake: Intake,
    pub threads: Threads,
    pub store: Store,
    pub keyring: Arc<Keyring>,
    /// `[sms]`, checked at start-up.
    pub settings: SmsSettings,
    /// The longest webhook body read (`server.max_body_bytes`).
    pub max_request_bytes: usize,
    pub twilio: Option<TwilioSide>,
    pub telnyx: Option<TelnyxSide>,
    pub limiter: SmsLimiter,
    pub metrics: Arc<Metrics>,
}

impl SmsChannel {
    fn client(&self, provider: Provider) -> Option<&SmsClient> {
        match provider {
            Provider::Twilio => self.twilio.as_ref().map(|t| &t.client),
            Provider::Telnyx => self.telnyx.as_ref().map(|t| &t.client),
            Provider::Email => None,
        }
    }

    fn refused(&self, e: AppError) -> AppError {
        self.metrics
            .tips_rejected
            .with_label_values(&[Channel::Sms.as_str(), e.info().code])
            .inc();
        e
    }

    /// Handles one verified message and says what to text back.
    #[tracing::instrument(name = "sms_inbound", skip_all, fields(provider = provider.as_str(), pseudonym))]
    pub async fn handle(&self, provider: Provider, msg: InboundSms) -> Result<Answer, AppError> {
        let s = &self.settings;
        if !s.numbers.contains(&msg.to) {
            return Err(self.refused(AppError::UnknownNumber));
        }
        // The sender under every kept pseudonym key, current first: opt-outs
        // recorded before a key rotation still hold.
        let pseudonyms = self.keyring.pseudonyms_of(msg.from.as_str().as_bytes());
        let Some(pseudonym) = pseudonyms.first().cloned() else {
            return Err(self.refused(AppError::Internal));
        };
        tracing::Span::current().record("pseudonym", pseudonym.as_str());
        let thread = ThreadId::for_pseudonym(pseudonym.as_str());
        let store_err = |e: crate::bus::StoreError| {
            tracing::warn!(code = "store-unavailable", error = %e, "sms not handled");
            AppError::StoreUnavailable
        };
        // Every signed message, keyword or tip, has a replay marker named by
        // a keyed hash of the provider's message id. A delivery seen before
        // (a provider retry, or a captured STOP or START replayed to flip an
        // opt-out) changes nothing and is answered with silence, whatever the
        // first answer was: the replayer learns nothing, and the tipster is
        // not texted again. Checked before the limits, so replays cannot use
        // up a tipster's allowance.
        // Set under the current key, looked up under every kept one: Twilio
        // signs no timestamp, so a webhook captured before a key rotation
        // can be replayed after it.
        let markers = self.keyring.pseudonyms_of(
            format!("message\0{}\0{}", provider.as_str(), msg.message_id).as_bytes(),
        );
        let Some(marker) = markers.first().cloned() else {
            return Err(self.refused(AppError::Internal));
        };
        let marker_expire_at = coarse_expiry(s.reply_address_days.saturating_mul(86_400));
        let names: Vec<&str> = markers.iter().map(|m| m.as_str()).collect();
        if self.store.marker_seen(&names).await.map_err(store_err)? {
            tracing::info!("provider message handled before; replay changes nothing");
            return Ok(Answer::Silent);
        }
        // Limits first, keywords included: a HELP flood must not become an
        // outbound flood. STOP is still honoured when limited, silently.
        let limited = self
            .limiter
            .check(pseudonym.as_str(), msg.to.as_str())
            .err();
        if let Some(limited) = limited {
            self.metrics
                .rate_limited
                .with_label_values(&[Channel::Sms.as_str(), limited.scope.as_str()])
                .inc();
            self.refused(AppError::RateLimited {
                retry_after_secs: limited.retry_after_secs(),
            });
        }

        let keyword = Keyword::classify(&msg.body);
        // START/YES/UNSTOP are keywords only for a sender who opted out; from
        // anyone else "Yes" is an answer to a mediator and goes through as a tip.
        let keyword = match keyword {
            Some((Keyword::Start, _))
                if !self
                    .threads
                    .is_opted_out(&pseudonyms)
                    .await
                    .map_err(store_err)? =>
            {
                None
            }
            other => other,
        };
        if let Some((keyword, lang)) = keyword {
            // Claimed before acting, so two deliveries of one STOP act once;
            // released when the action fails, so the provider's retry acts.
            if !self
                .store
                .claim_marker(marker.as_str(), marker_expire_at)
                .await
                .map_err(store_err)?
            {
                return Ok(Answer::Silent);
            }
            let answer = self
                .answer_keyword(
                    keyword,
                    lang,
                    limited.is_some(),
                    &pseudonyms,
                    provider,
                    &msg,
                )
                .await;
            if answer.is_err()
                && let Err(e) = self.store.release_marker(marker.as_str()).await
            {
                tracing::warn!(error = %e, "replay marker not released");
            }
            return answer.map_err(store_err);
        }

        let lang = Language::detect(&msg.body, s.default_language);
        if limited.is_some() {
            // Not stored, but handled: a replay once the limit has passed
            // must not store it after all.
            self.store
                .claim_marker(marker.as_str(), marker_expire_at)
                .await
                .map_err(store_err)?;
            let notify = self.limiter.notice_due(pseudonym.as_str())
                && !self
                    .threads
                    .is_opted_out(&pseudonyms)
                    .await
                    .map_err(store_err)?;
            return Ok(if notify {
                Answer::Reply(Texts::slow_down(lang).to_owned())
            } else {
                Answer::Silent
            });
        }
        if msg.body.chars().count() > s.max_body_chars {
            return Err(self.refused(AppError::FieldTooLong));
        }
        if msg.body.trim().is_empty() && msg.media.is_empty() {
            return Err(self.refused(AppError::EmptyText));
        }

        let (attachments, withheld) = self.fetch_media(provider, &msg.media).await;
        let media_notice = if withheld
            .iter()
            .any(|w| w.reason == WithheldReason::NotFetched)
        {
            Some(Texts::media_not_fetched(lang))
        } else if withheld.is_empty() {
            None
        } else {
            Some(Texts::media_refused(lang))
        };
        let text = if msg.body.trim().is_empty() {
            "(photo without text)".to_owned()
        } else {
            msg.body.clone()
        };
        let text = TipText::parse(text, s.max_body_chars).map_err(|e| {
            self.refused(match e {
                TipTextError::Empty => AppError::EmptyText,
                TipTextError::TooLong => AppError::FieldTooLong,
            })
        })?;
        let tip = InboundTip {
            channel: Channel::Sms,
            // Per text, not per thread: a tipster who texts another zone's
            // number files that text under the other zone.
            zone: s.zone_for(&msg.to),
            priority: s.default_priority,
            text,
            subject: None,
            pseudonym: Some(pseudonym.clone()),
            thread: thread.clone(),
            attachments,
            withheld,
            // The append also restarts the reply address's expiry and reads
            // the opt-out flag: one round trip per text.
            provider: Some(ProviderMessage {
                dedupe: marker.as_str().to_owned(),
                pseudonyms: pseudonyms.iter().map(|p| p.as_str().to_owned()).collect(),
                reply_expire_at: Some(marker_expire_at),
            }),
        };
        let submitted = self.intake.submit(tip, SystemTime::now()).await;
        let sender = match &submitted {
            Ok(Submitted::Stored(receipt)) => Some(receipt.sender),
            Ok(Submitted::Duplicate(sender)) => Some(*sender),
            Err(_) => None,
        };
        if let Some(sender) = sender
            && !sender.reply_address_kept
        {
            // First text (or the address expired): seal and store it. The tip
            // is already safe; without an address only replies must wait for
            // the tipster's next text.
            if let Err(e) = self
                .threads
                .remember(
                    &thread,
                    &pseudonym,
                    provider,
                    &msg.from,
                    &msg.to,
                    s.reply_address_days.saturating_mul(86_400),
                )
                .await
            {
                tracing::warn!(error = %e, "reply address not stored");
            }
        }
        match submitted {
            Ok(Submitted::Duplicate(_)) => Ok(Answer::Silent),
            Ok(Submitted::Stored(receipt)) => {
                if receipt.sender.opted_out {
                    return Ok(Answer::Silent);
                }
                let ack = match lang {
                    Language::En => &s.acknowledgement.en,
                    Language::Es => &s.acknowledgement.es,
                };
                Ok(match (ack.is_empty(), media_notice) {
                    (true, None) => Answer::Silent,
                    (true, Some(notice)) => Answer::Reply(notice.to_owned()),
                    (false, None) => Answer::Reply(ack.clone()),
                    (false, Some(notice)) => Answer::Reply(format!("{notice} {ack}")),
                })
            }
            Err(IntakeError::Store(e)) => Err(self.refused(store_err(e))),
            Err(e) => {
                tracing::error!(code = "internal", error = %e, "sms tip not sealed");
                Err(self.refused(AppError::Internal))
            }
        }
    }

    /// Acts on a carrier keyword (its replay marker already claimed) and
    /// says what to answer.
    async fn answer_keyword(
        &self,
        keyword: Keyword,
        lang: Option<Language>,
        limited: bool,
        pseudonyms: &[crate::domain::Pseudonym],
        provider: Provider,
        msg: &InboundSms,
    ) -> Result<Answer, crate::bus::StoreError> {
        let s = &self.settings;
        let lang = lang.unwrap_or(s.default_language);
        tracing::info!(keyword = ?keyword, "carrier keyword");
        let answer = match keyword {
            Keyword::Stop => {
                if self.threads.opt_out(pseudonyms).await? {
                    Answer::Compliance(Texts::stopped(lang, &s.program_name))
                } else {
                    Answer::Silent
                }
            }
            Keyword::Start => {
                self.threads.opt_in(pseudonyms).await?;
                Answer::Compliance(Texts::started(lang, &s.program_name))
            }
            Keyword::Help => Answer::Compliance(Texts::help(lang, &s.program_name)),
        };
        if limited && keyword != Keyword::Stop {
            return Ok(Answer::Silent);
        }
        if answer != Answer::Silent
            && let Some(pseudonym) = pseudonyms.first()
        {
            // The confirmation may go through the relay, which needs the address.
            let thread = ThreadId::for_pseudonym(pseudonym.as_str());
            self.keep_address(
                &thread,
                pseudonyms,
                provider,
                msg,
                s.reply_address_days.saturating_mul(86_400),
            )
            .await?;
        }
        Ok(answer)
    }

    /// Refreshes (or, the first time, seals and stores) the reply address;
    /// returns whether the tipster opted out.
    async fn keep_address(
        &self,
        thread: &ThreadId,
        pseudonyms: &[crate::domain::Pseudonym],
        provider: Provider,
        msg: &InboundSms,
        ttl_secs: u64,
    ) -> Result<bool, crate::bus::StoreError> {
        let touched = self.threads.touch(thread, pseudonyms, ttl_secs).await?;
        if !touched.refreshed
            && let Some(current) = pseudonyms.first()
        {
            self.threads
                .remember(thread, current, provider, &msg.from, &msg.to, ttl_secs)
                .await?;
        }
        Ok(touched.opted_out)
    }

    /// Fetches, checks and strips the media; returns what was kept and what
    /// was withheld, and why. The items are fetched together, and each must
    /// arrive by one deadline (`sms.media_deadline_ms` from now): the
    /// provider waits for this webhook's answer (Twilio gives up after 15 s),
    /// so a slow media server must not hold it. What misses the deadline is
    /// not sealed; the tip says so to the mediator and the answer asks the
    /// tipster to send it again.
    async fn fetch_media(
        &self,
        provider: Provider,
        media: &[MediaRef],
    ) -> (Vec<Attachment>, Vec<Withheld>) {
        let s = &self.settings;
        let mut withheld: Vec<Withheld> = media
            .iter()
            .skip(s.max_media_items)
            .map(|item| Withheld {
                kind: metadata::attachment_kind(&item.content_type),
                reason: WithheldReason::OverLimit,
            })
            .collect();
        let Some(client) = self.client(provider) else {
            withheld.extend(media.iter().take(s.max_media_items).map(|item| Withheld {
                kind: metadata::attachment_kind(&item.content_type),
                reason: WithheldReason::NotFetched,
            }));
            return (Vec::new(), withheld);
        };
        let deadline = tokio::time::Instant::now() + s.media_deadline;
        let fetches = media.iter().take(s.max_media_items).map(|item| async move {
            let kind = metadata::attachment_kind(&item.content_type);
            tokio::time::timeout_at(deadline, self.fetch_one(client, item))
                .await
                .unwrap_or_else(|_| {
                    tracing::warn!(code = "media-deadline", "media not fetched in time");
                    Err(Withheld {
                        kind,
                        reason: WithheldReason::NotFetched,
                    })
                })
        });
        let mut kept = Vec::new();
        for result in futures_util::future::join_all(fetches).await {
            match result {
                Ok(attachment) => kept.push(attachment),
                Err(w) => withheld.push(w),
            }
        }
        (kept, withheld)
    }

    /// One media item: its declared type must be a photo type and match the
    /// bytes (so a PDF or a script cannot ride in as "image/jpeg"), and the
    /// photo must strip cleanly.
    async fn fetch_one(&self, client: &SmsClient, item: &MediaRef) -> Result<Attachment, Withheld> {
        let kind = metadata::attachment_kind(&item.content_type);
        let withheld = |reason| Withheld { kind, reason };
        let declared = metadata::ImageKind::from_content_type(&item.content_type).ok_or(
            withheld(if kind == AttachmentKind::Pdf {
                WithheldReason::CannotClean
            } else {
                WithheldReason::NotAccepted
            }),
        )?;
        let bytes = match client
            .fetch_media(&item.url, self.settings.max_media_bytes)
            .await
        {
            Ok((_, bytes)) => bytes,
            Err(MediaError::TooLarge) => return Err(withheld(WithheldReason::OverLimit)),
            Err(e) => {
                tracing::warn!(error = %e, "media not fetched");
                return Err(withheld(WithheldReason::NotFetched));
            }
        };
        if metadata::sniff(&bytes) != Some(declared) {
            return Err(withheld(WithheldReason::NotAccepted));
        }
        let data = metadata::strip(declared, &bytes).map_err(|e| {
            tracing::info!(error = %e, "photo withheld: it could not be cleaned");
            withheld(WithheldReason::CannotClean)
        })?;
        Ok(Attachment {
            content_type: declared.content_type().to_owned(),
            data,
        })
    }
}
