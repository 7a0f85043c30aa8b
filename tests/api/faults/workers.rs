//! Delivery workers killed between sending and acknowledging: the reply
//! relay (a reply to a tipster, to the SMS provider's stand-in) and the push
//! worker (an alert notice, to a push service stand-in). The receiver holds
//! the request unanswered, the gateway is killed with SIGKILL, and the
//! restarted gateway must send the message when the dead worker's lease ends
//! (a minute boundary, one to two minutes later): delivered, and at most
//! once more than the held request, the duplicate docs/architecture.md and
//! docs/mediator-app.md state.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use tipwire::bus::names::{PUSH_GROUP, RELAY_GROUP};
use tipwire::bus::{AlertReader, Keys};
use tipwire::crypto::Keyring;
use tipwire::domain::{ThreadId, Zone};
use tipwire::mediator::DeviceId;
use tipwire::mediator::devices::{DeviceApi, Enrolment};
use tipwire::outbound::push::{EndpointPolicy, Subscription, Subscriptions};
use tipwire::outbound::relay::Kind;
use tokio::sync::Notify;

use crate::support::app::serve_stand_in;
use crate::support::faults::flood::PATIENCE;
use crate::support::faults::rig::Rig;
use crate::support::phone::Phone;
use crate::support::sms::{
    AUTH_TOKEN, Hold, PROGRAM_NUMBER, Sent, post_twilio, twilio_params, twilio_signature,
};

/// How long a restarted gateway may take to deliver what a dead worker
/// held: the lease ends within two minutes, plus a margin.
const TAKE_OVER: Duration = Duration::from_secs(180);

/// Entries in the work queue's stream and leases held on it.
fn pending(rig: &Rig, stream: &str, group: &str) -> (usize, usize) {
    let leases = Keys::new(&rig.settings.redis.key_prefix).queue_leases(stream, group);
    let mut conn = rig.redis.connection();
    let len: usize = redis::cmd("XLEN").arg(stream).query(&mut conn).unwrap();
    let leased: usize = redis::cmd("ZCARD").arg(&leases).query(&mut conn).unwrap();
    (len, leased)
}

/// Kills the gateway while a worker's send is held (its entry read and
/// leased, not acknowledged), restarts it and waits until the queue is
/// empty: the restarted worker took the entry over, sent it and
/// acknowledged it. Returns how long that took from the kill.
async fn kill_and_wait_for_take_over(rig: &mut Rig, stream: &str, group: &str) -> Duration {
    assert_eq!(
        pending(rig, stream, group),
        (1, 1),
        "read and leased, not acknowledged"
    );
    rig.kill_gateway();
    let killed = Instant::now();
    rig.start_gateway().await;
    while pending(rig, stream, group) != (0, 0) {
        assert!(
            killed.elapsed() < TAKE_OVER,
            "the restarted gateway delivered it within {TAKE_OVER:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    killed.elapsed()
}

/// The reply a mediator sends to the tipster in the relay test.
const REPLY: &str = "Thanks, someone from the team is on the way.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_whose_relay_died_before_its_acknowledgement_is_delivered_after_restart() {
    let mut rig = Rig::new("relay-kill", |_| {}).await;
    rig.start_gateway().await;
    // A text gives the thread its sealed reply address.
    let tipster = "+15550208888";
    let sid = "SM0123456789abcdef0123456789abcdef";
    let params = twilio_params(tipster, "Fight after school by the bus stop", sid);
    let signature = twilio_signature(
        AUTH_TOKEN,
        "https://tips.example.org/webhooks/sms/twilio",
        &params,
    );
    let base = format!("https://localhost:{}", rig.ports.https());
    let answer = post_twilio(&rig.client, &base, &params, &signature)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let store = rig.store();
    let alerts = AlertReader::new(store.clone())
        .range_since(0, 10)
        .await
        .unwrap();
    let thread = ThreadId::parse(&alerts[0].entry.thread).unwrap();

    // The provider holds the reply's send unanswered, for good.
    let arrived = Arc::new(Notify::new());
    rig.stand_in.state.lock().unwrap().hold = Some(Hold {
        at: 0,
        arrived: arrived.clone(),
        release: Arc::new(Notify::new()),
    });
    let keyring = Keyring::load(&rig.settings.keys.dir).unwrap();
    tipwire::outbound::relay::enqueue(&store, &keyring, &thread, REPLY, Kind::Reply)
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, arrived.notified())
        .await
        .expect("the relay sent the reply");

    let outbound = Keys::new(&rig.settings.redis.key_prefix).outbound();
    let took = kill_and_wait_for_take_over(&mut rig, &outbound, RELAY_GROUP).await;
    assert_eq!(
        rig.stand_in.sent(),
        [Sent {
            provider: "twilio",
            to: tipster.into(),
            from: PROGRAM_NUMBER.into(),
            body: REPLY.into(),
        }],
        "delivered once after the restart"
    );
    eprintln!(
        "faults relay SIGKILL: the reply reached the provider twice in all (the held send, \
         then once {took:?} after the kill)"
    );
}

/// A push service that holds the first request it gets unanswered, for
/// good, and answers every later one 201.
struct HoldingPushService {
    url: String,
    arrived: Arc<Notify>,
    requests: Arc<AtomicUsize>,
}

impl HoldingPushService {
    fn start() -> Self {
        let arrived = Arc::new(Notify::new());
        let requests = Arc::new(AtomicUsize::new(0));
        let state = web::Data::new((arrived.clone(), requests.clone()));
        let url = serve_stand_in(move |app| {
            app.app_data(state.clone()).route(
                "/push/{device}",
                web::post().to(
                    |state: web::Data<(Arc<Notify>, Arc<AtomicUsize>)>| async move {
                        if state.1.fetch_add(1, Ordering::SeqCst) == 0 {
                            state.0.notify_one();
                            std::future::pending::<()>().await;
                        }
                        HttpResponse::Created().finish()
                    },
                ),
            );
        });
        Self {
            url,
            arrived,
            requests,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_worker_died_before_its_acknowledgement_is_sent_after_restart() {
    let mut rig = Rig::new("push-kill", |_| {}).await;
    rig.push = true;
    rig.start_gateway().await;
    let service = HoldingPushService::start();

    // A phone of zone north, enrolled (on duty) and subscribed to the
    // holding service.
    let store = rig.store();
    let api = DeviceApi::from_settings(&rig.settings, store.clone()).unwrap();
    let north = [Zone::parse("north").unwrap()];
    let invite = api
        .invites
        .create("Ana Mediator", &north, false, Duration::from_secs(900))
        .await
        .unwrap();
    let phone = Phone::new();
    let enrolment = Enrolment::parse(
        invite.code.as_str(),
        &phone.recipient(),
        &phone.spki(),
        None,
    )
    .unwrap();
    let device = api
        .devices
        .enrol(&api.invites, enrolment, SystemTime::now())
        .await
        .unwrap();
    let device_id = DeviceId::parse(&device.device_id).unwrap();
    let browser_key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let subscription = serde_json::json!({
        "endpoint": format!("{}/push/{}", service.url, device.device_id),
        "keys": {
            "p256dh": URL_SAFE_NO_PAD.encode(browser_key.public_key().to_encoded_point(false).as_bytes()),
            "auth": URL_SAFE_NO_PAD.encode([7u8; 16]),
        }
    });
    let subscription = Subscription::parse(
        &subscription.to_string(),
        EndpointPolicy::DangerousAllowLoopbackHttp,
    )
    .unwrap();
    Subscriptions::new(store.clone())
        .put(&device_id, &subscription)
        .await
        .unwrap();

    // A tip for north (not urgent: no escalation push within the test).
    let answer = rig
        .client
        .post(format!("https://localhost:{}/tips", rig.ports.https()))
        .header("Accept", "application/json")
        .form(&[
            ("text", "Crews from Elm meeting at nine"),
            ("zone", "north"),
            ("urgency", "today"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    tokio::time::timeout(PATIENCE, service.arrived.notified())
        .await
        .expect("the push worker sent the notice");

    let jobs = Keys::new(&rig.settings.redis.key_prefix).push_out();
    let took = kill_and_wait_for_take_over(&mut rig, &jobs, PUSH_GROUP).await;
    assert_eq!(
        service.requests.load(Ordering::SeqCst),
        2,
        "the held push, then once after the restart"
    );
    eprintln!(
        "faults push SIGKILL: pushed twice in all (the held one, then once {took:?} after the kill)"
    );
}
