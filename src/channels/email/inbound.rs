//! What happens to a received message: rate limits, MIME parsing and
//! redaction, pseudonym, sealed reply address, then the intake pipeline. The
//! SMTP reply is positive only after the tip is in the stream; on Redis
//! trouble the client gets a 451 and its server retries later. The message
//! and its envelope are untrusted and never logged.

use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use crate::channels::sms::Keyword;
use crate::config::{CheckedQuota, ConfigError, Settings};
use crate::crypto::Keyring;
use crate::domain::{
    Channel, EmailAddress, InboundTip, Priority, ProviderMessage, ThreadId, TipText, ZoneChoice,
};
use crate::intake::{Intake, IntakeError, Submitted};
use crate::outbound::relay::threads::{
    EmailThreading, Provider, ReplyAddress, Threads, coarse_expiry,
};
use crate::privacy::ClientKey;
use crate::ratelimit::{GlobalLimiter, HashedLimiter, KeyedLimiter, Scope};
use crate::telemetry::Metrics;

use super::message::{self, MessageError, MessageLimits, ParsedMessage};
use super::replies::{
    ACCEPTED, ACCEPTED_PARTLY, AUTOMATIC, EMPTY, MALFORMED, NESTED_MESSAGE, NOT_CONFIRMED,
    OPTED_IN, OPTED_OUT, OWN_ADDRESS, Reply, SLOW_DOWN, TEXT_TOO_LONG, TOO_COMPLEX, TRY_LATER,
};
use super::session::{Envelope, Mailbox};

/// Rate limits: per sender (pseudonym), per connecting address, and for the
/// whole channel. Keys are salted hashes, in memory only.
pub struct EmailLimiter {
    per_sender: HashedLimiter,
    per_address: KeyedLimiter<ClientKey>,
    global: GlobalLimiter,
}

impl EmailLimiter {
    pub fn new(per_sender: CheckedQuota, per_address: CheckedQuota, global: CheckedQuota) -> Self {
        Self {
            per_sender: HashedLimiter::new(per_sender, Scope::Client),
            per_address: KeyedLimiter::new(per_address, Scope::Client),
            global: GlobalLimiter::new(global, Scope::Global),
        }
    }

    /// At MAIL FROM: the connecting address's own limit only. The channel's
    /// limit waits for a message worth sealing ([`Self::check_global`]):
    /// charged here, every MAIL FROM of an oversized, malformed or
    /// abandoned message from many addresses would use it up and silence
    /// every real sender (benches/abuse.rs measured mail falling to 0.48 of
    /// its rate under such a flood).
    fn check_client(&self, client: ClientKey) -> Result<(), Scope> {
        self.per_address.check(&client).map_err(|l| l.scope)
    }

    /// The channel's limit, for a received and parsed message from a sender
    /// within its own limit.
    fn check_global(&self) -> Result<(), Scope> {
        self.global.check().map_err(|l| l.scope)
    }

    fn check_sender(&self, pseudonym: &str, client: ClientKey) -> bool {
        self.per_sender.check((pseudonym, client)).is_ok()
    }

    pub fn forget_idle(&self) {
        self.per_sender.forget_idle();
        self.per_address.forget_idle();
    }
}

pub struct EmailChannel {
    intake: Intake,
    threads: Threads,
    keyring: Arc<Keyring>,
    limits: MessageLimits,
    pub limiter: EmailLimiter,
    metrics: Arc<Metrics>,
    priority: Priority,
    reply_ttl_secs: u64,
    tip_addresses: Vec<EmailAddress>,
    parsers: tokio::sync::Semaphore,
}

/// Messages parsed at once; more wait their turn.
const PARSERS: usize = 2;

impl EmailChannel {
    pub fn from_settings(
        settings: &Settings,
        intake: Intake,
        threads: Threads,
        keyring: Arc<Keyring>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConfigError> {
        let e = &settings.email;
        let limits = settings.rate_limits.email;
        let (per_sender, per_address, global) =
            (limits.per_client, limits.per_address, limits.global);
        Ok(Self {
            intake,
            threads,
            keyring,
            limits: MessageLimits {
                max_text_chars: e.max_text_chars,
                max_attachments: e.max_attachments,
                max_attachment_bytes: e.max_attachment_bytes,
                redact: e.redact,
            },
            limiter: EmailLimiter::new(per_sender, per_address, global),
            metrics,
            priority: e.default_priority,
            reply_ttl_secs: e.reply_address_days.saturating_mul(86_400),
            tip_addresses: e.addresses.clone(),
            parsers: tokio::sync::Semaphore::new(PARSERS),
        })
    }

    fn refused(&self, code: &str, reply: Reply) -> Reply {
        self.metrics
            .tips_rejected
            .with_label_values(&[Channel::Email.as_str(), code])
            .inc();
        reply
    }

    fn limited(&self, scope: Scope) -> Reply {
        self.metrics
            .rate_limited
            .with_label_values(&[Channel::Email.as_str(), scope.as_str()])
            .inc();
        self.refused("rate-limited", SLOW_DOWN)
    }
}

impl EmailChannel {
    /// MIME parsing, photo stripping and redaction on a blocking thread, at
    /// most `PARSERS` at once: they take milliseconds of CPU per message,
    /// which must not stall the runtime that serves every other client.
    /// Also returns the SHA-256 of the raw message, for dedupe.
    async fn parse(
        &self,
        raw: Vec<u8>,
        envelope_sender: Option<EmailAddress>,
    ) -> Result<(ParsedMessage, [u8; 32]), Reply> {
        let Ok(_permit) = self.parsers.acquire().await else {
            return Err(self.refused("internal", TRY_LATER));
        };
        let limits = self.limits;
        let parsed = tokio::task::spawn_blocking(move || {
            let raw = zeroize::Zeroizing::new(raw);
            let digest: [u8; 32] = Sha256::digest(raw.as_slice()).into();
            message::parse(&raw, envelope_sender.as_ref(), &limits).map(|p| (p, digest))
        })
        .await;
        match parsed {
            Ok(Ok(parsed)) => Ok(parsed),
            Ok(Err(MessageError::Malformed)) => Err(self.refused("malformed-message", MALFORMED)),
            Ok(Err(MessageError::NestedMessage)) => {
                Err(self.refused("nested-message", NESTED_MESSAGE))
            }
            Ok(Err(MessageError::TooComplex)) => Err(self.refused("too-complex", TOO_COMPLEX)),
            Ok(Err(MessageError::Empty)) => Err(self.refused("empty-text", EMPTY)),
            Ok(Err(MessageError::TooLong)) => Err(self.refused("field-too-long", TEXT_TOO_LONG)),
            Err(_) => {
                tracing::error!(code = "internal", "email parser task failed");
                Err(self.refused("internal", TRY_LATER))
            }
        }
    }
}

impl EmailChannel {
    /// STOP or START through a thread token: acts on the address the
    /// thread's replies go to (which received the token), under every kept
    /// pseudonym key. A thread with no address left has nothing to change.
    async fn set_opt_out(
        &self,
        thread: &ThreadToken,
        out: bool,
    ) -> Result<(), crate::bus::StoreError> {
        let Some(address) = self.threads.reply_address(&thread.thread()).await? else {
            return Ok(());
        };
        let identifier = EmailAddress::parse(&address.to)
            .map(|a| a.canonical())
            .unwrap_or(address.to);
        let pseudonyms = self.keyring.pseudonyms_of(identifier.as_bytes());
        if out {
            self.threads.opt_out(&pseudonyms).await?;
        } else {
            self.threads.opt_in(&pseudonyms).await?;
        }
        Ok(())
    }

    /// Seals the thread's reply address again with the newest threading ids:
    /// replies come from the tip address with the thread's token.
    async fn renew_address(
        &self,
        thread: &ThreadToken,
        tip_address: &EmailAddress,
        sender: &EmailAddress,
        pseudonym: &crate::domain::Pseudonym,
        threading: EmailThreading,
    ) -> Result<(), crate::bus::StoreError> {
        let id = thread.thread();
        let address = match self.threads.reply_address(&id).await? {
            Some(existing) => ReplyAddress {
                email: Some(threading),
                ..existing
            },
            None => ReplyAddress {
                provider: Provider::Email,
                to: sender.as_str().to_owned(),
                from: thread.address(tip_address),
                pseudonym: pseudonym.as_str().to_owned(),
                // No subject: it is part of the tip, and the relay key must
                // open addresses, never tip content. Replies thread by
                // In-Reply-To and References.
                email: Some(threading),
            },
        };
        self.threads
            .remember_address(&id, &address, self.reply_ttl_secs)
            .await
    }
}

/// The capability that names an email thread: 96 random bits, carried as
/// the tag of the tip address our replies come from
/// (`tips+<token>@domain`), so only someone who received a reply can write
/// into that thread, or stop and restart its replies. The thread id is a
/// hash of the token, so neither Redis nor the stream holds the token; the
/// token itself is kept only inside the sealed reply address.
#[derive(Clone)]
struct ThreadToken(String);

const TOKEN_HEX: usize = 24;

impl ThreadToken {
    fn random() -> Self {
        let bytes: [u8; TOKEN_HEX / 2] = rand::random();
        Self(hex::encode(bytes))
    }

    /// The token in a recipient `local+token@domain`, if well-formed.
    fn of(recipient: &EmailAddress) -> Option<Self> {
        let (local, _) = recipient.as_str().rsplit_once('@')?;
        let (_, tag) = local.split_once('+')?;
        let tag = tag.to_ascii_lowercase();
        (tag.len() == TOKEN_HEX && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(Self(tag))
    }

    /// `local@domain` without any tag.
    fn base_address(recipient: &EmailAddress) -> EmailAddress {
        recipient
            .as_str()
            .rsplit_once('@')
            .and_then(|(local, domain)| {
                let base = local.split_once('+').map_or(local, |(base, _)| base);
                EmailAddress::parse(&format!("{base}@{domain}")).ok()
            })
            .unwrap_or_else(|| recipient.clone())
    }

    /// `text` with every occurrence of the token (any case) replaced.
    fn strip_from(&self, text: &str) -> String {
        // ASCII lowercasing keeps every byte offset, and the token is ASCII,
        // so a match in the lowercased text is a char-boundary range here.
        let lower = text.to_ascii_lowercase();
        let mut out = String::with_capacity(text.len());
        let mut from = 0;
        for (at, _) in lower.match_indices(self.0.as_str()) {
            out.push_str(text.get(from..at).unwrap_or_default());
            out.push_str("[thread token]");
            from = at + self.0.len();
        }
        out.push_str(text.get(from..).unwrap_or_default());
        out
    }

    fn thread(&self) -> ThreadId {
        ThreadId::for_pseudonym(&format!("email-thread-token\0{}", self.0))
    }

    /// The tip address with this token as its tag (the tip address alone
    /// when the tagged form would be too long to be an address).
    fn address(&self, tip_address: &EmailAddress) -> String {
        tip_address
            .as_str()
            .rsplit_once('@')
            .and_then(|(local, domain)| {
                EmailAddress::parse(&format!("{local}+{}@{domain}", self.0)).ok()
            })
            .map_or_else(
                || tip_address.as_str().to_owned(),
                |a| a.as_str().to_owned(),
            )
    }
}

impl Mailbox for EmailChannel {
    fn admit(&self, client: ClientKey) -> Result<(), Reply> {
        self.limiter
            .check_client(client)
            .map_err(|scope| self.limited(scope))
    }

    #[tracing::instrument(name = "email_inbound", skip_all, fields(pseudonym))]
    async fn receive(&self, envelope: Envelope, raw: Vec<u8>) -> Reply {
        let parsed = match self.parse(raw, envelope.sender.clone()).await {
            Ok(parsed) => parsed,
            Err(reply) => return reply,
        };
        let (mut parsed, digest) = parsed;
        if parsed.auto_submitted {
            return self.refused("auto-submitted", AUTOMATIC);
        }
        if self
            .tip_addresses
            .iter()
            .any(|a| a.canonical() == ThreadToken::base_address(&parsed.sender).canonical())
        {
            // Mail "from" the tip line itself: a loop or a forgery.
            return self.refused("invalid-sender", OWN_ADDRESS);
        }
        let pseudonyms = self
            .keyring
            .pseudonyms_of(parsed.sender.canonical().as_bytes());
        let Some(pseudonym) = pseudonyms.first().cloned() else {
            return self.refused("internal", TRY_LATER);
        };
        tracing::Span::current().record("pseudonym", pseudonym.as_str());
        // Keyed by sender and connecting address together: a stranger who
        // forges a tipster's From line can neither use up the tipster's
        // allowance nor learn from a 450 that the tipster wrote recently.
        if !self
            .limiter
            .check_sender(pseudonym.as_str(), envelope.client)
        {
            return self.limited(Scope::Client);
        }
        if let Err(scope) = self.limiter.check_global() {
            return self.limited(scope);
        }
        let store_err = |e: crate::bus::StoreError| {
            tracing::warn!(code = "store-unavailable", error = %e, "email not handled");
            self.refused("store-unavailable", NOT_CONFIRMED)
        };
        // The sender's address is unauthenticated, so it names no thread and
        // no opt-out: only the thread token in the recipient does (see
        // `ThreadToken`). A message to the bare tip address starts a thread
        // of its own and is never a keyword.
        let token = envelope.recipients.iter().find_map(ThreadToken::of);
        if let Some(thread) = &token {
            match Keyword::classify(&parsed.text).map(|(k, _)| k) {
                Some(Keyword::Stop) => {
                    return match self.set_opt_out(thread, true).await {
                        Ok(()) => OPTED_OUT,
                        Err(e) => store_err(e),
                    };
                }
                // Whether or not the thread had opted out: the answer tells
                // nothing about its state.
                Some(Keyword::Start) => {
                    return match self.set_opt_out(thread, false).await {
                        Ok(()) => OPTED_IN,
                        Err(e) => store_err(e),
                    };
                }
                Some(Keyword::Help) | None => {}
            }
        }
        // Only a token we issued joins a thread: one whose thread has a
        // sealed reply address. A well-formed token anyone can make up; if it
        // started a thread, the stranger who made it up would hold the token
        // of a thread whose replies go to the (forged) sender, and could stop
        // and restart that person's replies through it. A made-up or expired
        // token gets what the bare address gets: a thread of its own, with
        // the same answer.
        let issued = match &token {
            Some(t) => match self.threads.reply_address(&t.thread()).await {
                Ok(address) => address.is_some(),
                Err(e) => return store_err(e),
            },
            None => false,
        };
        let thread = match &token {
            Some(t) if issued => t.clone(),
            _ => ThreadToken::random(),
        };
        // An answer quotes our reply, and with it the token in its From
        // address: a capability over the thread, kept off the mediators'
        // phones.
        if let Some(t) = &token {
            parsed.text = t.strip_from(&parsed.text);
            parsed.subject = parsed.subject.as_deref().map(|s| t.strip_from(s));
        }
        let Ok(text) = TipText::parse(parsed.text.clone(), usize::MAX) else {
            return self.refused("empty-text", EMPTY);
        };
        let thread_id = thread.thread();
        // A server that lost our 250 sends the same message again: the same
        // sender and Message-ID (or, without one, the same bytes) is stored once.
        let dedupe_source = match &parsed.message_id {
            Some(id) => format!("message\0email\0{}\0{id}", parsed.sender.canonical()),
            None => format!("bytes\0email\0{}", hex::encode(digest)),
        };
        let dedupe = self
            .keyring
            .pseudonym_key()
            .pseudonym(dedupe_source.as_bytes());
        let tip_address = envelope.recipients.first().map(ThreadToken::base_address);
        let tip = InboundTip {
            channel: Channel::Email,
            zone: ZoneChoice::Unsure,
            priority: self.priority,
            text,
            subject: parsed
                .subject
                .clone()
                .and_then(|s| TipText::parse(s, usize::MAX).ok()),
            pseudonym: Some(pseudonym.clone()),
            thread: thread_id.clone(),
            attachments: parsed.attachments,
            withheld: parsed.withheld,
            provider: Some(ProviderMessage {
                dedupe: dedupe.as_str().to_owned(),
                pseudonyms: pseudonyms.iter().map(|p| p.as_str().to_owned()).collect(),
                reply_expire_at: Some(coarse_expiry(self.reply_ttl_secs)),
            }),
        };
        let stored = match self.intake.submit(tip, SystemTime::now()).await {
            Ok(Submitted::Stored(_)) => true,
            Ok(Submitted::Duplicate(_)) => false,
            Err(IntakeError::Store(e)) => return store_err(e),
            Err(e) => {
                tracing::error!(code = "internal", error = %e, "email tip not sealed");
                return self.refused("internal", TRY_LATER);
            }
        };
        // Every message carries a new Message-ID, so the sealed reply address
        // is renewed each time: replies join the tipster's latest message.
        // Within a thread the address replies go to stays the one that
        // started it: a token forwarded to someone else cannot redirect them.
        if stored && let Some(tip_address) = tip_address {
            let threading = EmailThreading {
                subject: None,
                message_id: parsed.message_id,
                references: parsed.references,
            };
            if let Err(e) = self
                .renew_address(&thread, &tip_address, &parsed.sender, &pseudonym, threading)
                .await
            {
                // The tip is safe; only replies wait for the next message.
                tracing::warn!(error = %e, "reply address not stored");
            }
        }
        if parsed.attachments_refused {
            ACCEPTED_PARTLY
        } else {
            ACCEPTED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn only_a_well_formed_tag_is_a_thread_token_and_it_round_trips() {
        let tip = address("tips@tips.example.org");
        let token = ThreadToken::random();
        let tagged = address(&token.address(&tip));
        let read = ThreadToken::of(&tagged).unwrap();
        assert_eq!(read.thread(), token.thread());
        assert_eq!(ThreadToken::base_address(&tagged), tip);
        // Case does not matter; length and alphabet do.
        let upper = address(
            &tagged
                .as_str()
                .to_uppercase()
                .replace("@TIPS.EXAMPLE.ORG", "@tips.example.org"),
        );
        assert_eq!(ThreadToken::of(&upper).unwrap().thread(), token.thread());
        for bad in [
            "tips@tips.example.org",
            "tips+@tips.example.org",
            "tips+abc@tips.example.org",
            "tips+zzzzzzzzzzzzzzzzzzzzzzzz@tips.example.org",
            "tips+0123456789abcdef012345678@tips.example.org",
        ] {
            assert!(ThreadToken::of(&address(bad)).is_none(), "{bad}");
        }
        assert_ne!(ThreadToken::random().thread(), token.thread());
    }
}
