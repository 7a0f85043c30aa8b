//! Prometheus metrics. Labels take only fixed vocabularies (channel, reason
//! code, limit scope, route pattern, status), never request content.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub tips_accepted: IntCounterVec,
    pub tips_rejected: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub seal_seconds: Histogram,
    pub ingest_seconds: HistogramVec,
    pub http_responses: IntCounterVec,
    pub replies: IntCounterVec,
    pub signature_failures: IntCounterVec,
    pub smtp_sessions: IntCounterVec,
    pub pushes: IntCounterVec,
    pub nudges: IntCounterVec,
    /// What `/metrics` serves when it answers by the minute: the text as it
    /// stood at the last [`Self::publish`].
    published: std::sync::Mutex<String>,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("tipwire".into()), None)?;
        let tips_accepted = IntCounterVec::new(
            Opts::new(
                "tips_accepted_total",
                "Tips sealed and appended to the alert stream",
            ),
            &["channel"],
        )?;
        let tips_rejected = IntCounterVec::new(
            Opts::new("tips_rejected_total", "Tips refused, by error code"),
            &["channel", "reason"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new("rate_limited_total", "Requests refused by a rate limit"),
            &["channel", "scope"],
        )?;
        let seal_seconds = Histogram::with_opts(
            HistogramOpts::new("seal_duration_seconds", "Time to seal one tip with age")
                .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let ingest_seconds = HistogramVec::new(
            HistogramOpts::new(
                "ingest_duration_seconds",
                "Time from a parsed tip to its acknowledged XADD",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["channel"],
        )?;
        let http_responses = IntCounterVec::new(
            Opts::new(
                "http_responses_total",
                "HTTP responses by route pattern and status",
            ),
            &["route", "status"],
        )?;
        let replies = IntCounterVec::new(
            Opts::new(
                "replies_total",
                "Messages to tipsters by outcome (sent, retry, dead, suppressed)",
            ),
            &["outcome"],
        )?;
        let signature_failures = IntCounterVec::new(
            Opts::new(
                "webhook_signature_failures_total",
                "Webhooks refused for a missing, wrong or stale signature",
            ),
            &["provider"],
        )?;
        let smtp_sessions = IntCounterVec::new(
            Opts::new(
                "smtp_sessions_total",
                "SMTP connections by how they ended (quit, idle-timeout, busy, ...)",
            ),
            &["outcome"],
        )?;
        let pushes = IntCounterVec::new(
            Opts::new(
                "pushes_total",
                "Web Push deliveries by outcome (delivered, gone, retry, dead, skipped)",
            ),
            &["outcome"],
        )?;
        let nudges = IntCounterVec::new(
            Opts::new(
                "nudges_total",
                "Content-free nudges to mediators by channel and outcome (sent, retry, failed)",
            ),
            &["channel", "outcome"],
        )?;
        registry.register(Box::new(pushes.clone()))?;
        registry.register(Box::new(nudges.clone()))?;
        registry.register(Box::new(smtp_sessions.clone()))?;
        registry.register(Box::new(replies.clone()))?;
        registry.register(Box::new(signature_failures.clone()))?;
        registry.register(Box::new(tips_accepted.clone()))?;
        registry.register(Box::new(tips_rejected.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(seal_seconds.clone()))?;
        registry.register(Box::new(ingest_seconds.clone()))?;
        registry.register(Box::new(http_responses.clone()))?;
        Ok(Self {
            registry,
            tips_accepted,
            tips_rejected,
            rate_limited,
            seal_seconds,
            ingest_seconds,
            http_responses,
            replies,
            signature_failures,
            smtp_sessions,
            pushes,
            nudges,
            published: std::sync::Mutex::new(String::new()),
        })
    }

    /// Keeps the counters as they stand now for [`Self::published`]; the
    /// gateway calls it at start-up and at every minute boundary. A counter
    /// read live tells a scraper (and its time-series disk) when a tip
    /// arrived, to the scrape interval; read this way, to the minute.
    pub fn publish(&self) {
        let text = self.render();
        if let Ok(mut published) = self.published.lock() {
            *published = text;
        }
    }

    /// The text kept by the last [`Self::publish`].
    pub fn published(&self) -> String {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
