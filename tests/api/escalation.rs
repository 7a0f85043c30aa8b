//! The alert state machine and the escalation engine against the real Redis:
//! several `Store`s stand for several gateway replicas sharing one Redis, and
//! time is passed in explicitly, so nothing sleeps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use tipwire::bus::Store;
use tipwire::config::Settings;
use tipwire::domain::{Priority, TipId, Zone, ZoneChoice};
use tipwire::mediator::{
    AlertState, AlertStates, Claim, ClaimError, DeviceId, EscalationPolicy, EscalationWorker,
    Escalations, Fired, Outcome, Stage,
};

use crate::support::app::{delete_prefix, require_redis, test_settings};

const RETENTION_SECS: u64 = 30 * 86_400;

/// Settings with a fresh key prefix; every key under it is deleted on drop.
struct SharedRedis {
    settings: Settings,
    _dir: tempfile::TempDir,
}

impl SharedRedis {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = test_settings(dir.path());
        require_redis(&settings.redis.url);
        Self {
            settings,
            _dir: dir,
        }
    }

    /// A new connection, as another replica (or a restarted one) would have.
    fn replica(&self) -> Store {
        Store::new(&self.settings.redis).unwrap()
    }

    /// A device id with a device record, as an enrolled phone has: the alert
    /// state scripts refuse devices that are not (or no longer) enrolled.
    fn device(&self, name: &str) -> DeviceId {
        let id = DeviceId::parse(name).unwrap();
        let _: () = redis::cmd("SET")
            .arg(self.replica().keys().device(id.as_str()))
            .arg("{}")
            .query(&mut self.redis())
            .unwrap();
        id
    }

    fn states(&self) -> AlertStates {
        AlertStates::new(self.replica(), RETENTION_SECS)
    }

    fn escalations(&self) -> Escalations {
        Escalations::new(self.replica(), EscalationPolicy::default(), RETENTION_SECS)
    }

    fn worker(&self) -> EscalationWorker {
        EscalationWorker::new(self.replica(), RETENTION_SECS)
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(self.settings.redis.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.settings.redis.key_prefix)
    }
}

impl Drop for SharedRedis {
    fn drop(&mut self) {
        delete_prefix(&self.settings.redis.url, &self.settings.redis.key_prefix);
    }
}

fn north() -> ZoneChoice {
    ZoneChoice::Known(Zone::parse("north").unwrap())
}

/// When stage `n` (1 or 2) of a tip of `priority` that arrived at `t0` is
/// due under the shipped policy: minute boundaries, never early.
fn due(priority: Priority, t0: u64, n: usize) -> u64 {
    EscalationPolicy::default().deadlines(priority, t0)[n - 1].1
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// (tip, state, device, outcome, version, by) of every entry in alert-events.
async fn changes(
    states: &AlertStates,
) -> Vec<(
    TipId,
    AlertState,
    Option<String>,
    Option<Outcome>,
    u64,
    String,
)> {
    let events = states.events_after("0-0", 10_000).await.unwrap();
    let ids: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");
    events
        .into_iter()
        .map(|e| {
            (
                e.tip_id,
                e.status.state,
                e.status.device.map(|d| d.to_string()),
                e.status.outcome,
                e.status.version,
                e.by.to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_claims_from_ten_devices_on_two_replicas_have_exactly_one_winner() {
    let redis = SharedRedis::new();
    let replicas = [redis.states(), redis.states()];
    let devices: Vec<DeviceId> = (0..10)
        .map(|i| redis.device(&format!("phone-{i}")))
        .collect();
    for _round in 0..5 {
        let tip = TipId::random();
        let mut attempts = Vec::new();
        for i in 0..50 {
            let states = replicas[i % 2].clone();
            let tip = tip.clone();
            let device = devices[i % 10].clone();
            attempts.push(tokio::spawn(async move {
                let claim = states.claim(&tip, &device).await.unwrap();
                (device, claim)
            }));
        }
        let mut winners = BTreeSet::new();
        let mut losers_saw = BTreeSet::new();
        for attempt in attempts {
            match attempt.await.unwrap() {
                (d, Claim::Claimed { version }) => {
                    assert_eq!(version, 1, "a repeated claim changes nothing");
                    winners.insert(d.to_string());
                }
                (d, Claim::AlreadyClaimed { by }) => {
                    assert_ne!(d, by);
                    losers_saw.insert(by.to_string());
                }
                (_, Claim::Resolved) => panic!("nobody resolved this alert"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one device won: {winners:?}");
        assert!(losers_saw.is_subset(&winners), "{losers_saw:?}");
        let winner = winners.into_iter().next().unwrap();
        let status = replicas[1].get(&tip).await.unwrap();
        assert_eq!(status.state, AlertState::Claimed);
        assert_eq!(status.device.unwrap().to_string(), winner);
        assert_eq!(status.version, 1);
        let claims: Vec<_> = changes(&replicas[0])
            .await
            .into_iter()
            .filter(|c| c.0 == tip)
            .collect();
        assert_eq!(
            claims,
            vec![(
                tip.clone(),
                AlertState::Claimed,
                Some(winner.clone()),
                None,
                1,
                winner
            )],
            "one change, one event"
        );
    }
}

#[tokio::test]
async fn release_and_resolve_are_only_for_the_claimant() {
    let redis = SharedRedis::new();
    let (a, b) = (redis.states(), redis.states());
    let tip = TipId::random();
    let (ana, ben) = (redis.device("ana"), redis.device("ben"));

    assert!(matches!(
        a.release(&tip, &ana).await,
        Err(ClaimError::NotClaimed)
    ));
    assert!(matches!(
        a.resolve(&tip, &ana, Outcome::Mediated).await,
        Err(ClaimError::NotClaimed)
    ));
    assert_eq!(
        a.claim(&tip, &ana).await.unwrap(),
        Claim::Claimed { version: 1 }
    );
    let refused = b.release(&tip, &ben).await.unwrap_err();
    assert!(matches!(refused, ClaimError::NotClaimant));
    assert_eq!(refused.code(), "not-claimant");
    assert!(matches!(
        b.resolve(&tip, &ben, Outcome::Mediated).await,
        Err(ClaimError::NotClaimant)
    ));

    let open = b.release(&tip, &ana).await.unwrap();
    assert_eq!(
        (open.state, open.device, open.version),
        (AlertState::Open, None, 2)
    );
    assert!(matches!(
        a.release(&tip, &ana).await,
        Err(ClaimError::NotClaimed)
    ));

    assert_eq!(
        b.claim(&tip, &ben).await.unwrap(),
        Claim::Claimed { version: 3 }
    );
    assert!(matches!(
        a.resolve(&tip, &ana, Outcome::NoConflict).await,
        Err(ClaimError::NotClaimant)
    ));
    let outcome = Outcome::parse("no-conflict").unwrap();
    let done = a.resolve(&tip, &ben, outcome).await.unwrap();
    assert_eq!(done.state, AlertState::Resolved);
    assert_eq!(done.device, Some(ben.clone()));
    assert_eq!(done.outcome, Some(Outcome::NoConflict));
    assert_eq!(done.version, 4);

    // A retried resolve is answered the same; changing the outcome is not.
    assert_eq!(b.resolve(&tip, &ben, outcome).await.unwrap(), done);
    assert!(matches!(
        b.resolve(&tip, &ben, Outcome::Mediated).await,
        Err(ClaimError::AlreadyResolved)
    ));
    assert!(matches!(
        b.release(&tip, &ben).await,
        Err(ClaimError::AlreadyResolved)
    ));
    assert_eq!(a.claim(&tip, &ana).await.unwrap(), Claim::Resolved);
    assert_eq!(a.get(&tip).await.unwrap(), done);
    assert!(Outcome::parse("arrested").is_err());
    assert_eq!(changes(&a).await.len(), 4, "refusals change nothing");
}

#[tokio::test]
async fn only_a_supervisor_can_reassign_and_to_any_device() {
    let redis = SharedRedis::new();
    let states = redis.states();
    let tip = TipId::random();
    let (ana, ben, sup) = (
        redis.device("ana"),
        redis.device("ben"),
        redis.device("sup-1"),
    );

    states.claim(&tip, &ana).await.unwrap();
    let refused = states.reassign(&tip, &ana, false, &ben).await.unwrap_err();
    assert!(matches!(refused, ClaimError::NotSupervisor));
    assert_eq!(refused.code(), "not-supervisor");
    assert_eq!(states.get(&tip).await.unwrap().device, Some(ana.clone()));

    let moved = states.reassign(&tip, &sup, true, &ben).await.unwrap();
    assert_eq!(moved.state, AlertState::Claimed);
    assert_eq!(moved.device, Some(ben.clone()));
    assert_eq!(moved.version, 2);
    assert!(matches!(
        states.release(&tip, &ana).await,
        Err(ClaimError::NotClaimant)
    ));
    assert_eq!(
        states.claim(&tip, &ana).await.unwrap(),
        Claim::AlreadyClaimed { by: ben.clone() }
    );
    // Reassigning to the current claimant changes nothing.
    assert_eq!(
        states.reassign(&tip, &sup, true, &ben).await.unwrap(),
        moved
    );

    // An open alert can be handed to someone too.
    let other = TipId::random();
    let assigned = states.reassign(&other, &sup, true, &ana).await.unwrap();
    assert_eq!(
        (assigned.state, assigned.device),
        (AlertState::Claimed, Some(ana.clone()))
    );

    states.resolve(&tip, &ben, Outcome::Referred).await.unwrap();
    assert!(matches!(
        states.reassign(&tip, &sup, true, &ana).await,
        Err(ClaimError::AlreadyResolved)
    ));
    let by: Vec<String> = changes(&states).await.into_iter().map(|c| c.5).collect();
    assert_eq!(by, ["ana", "sup-1", "sup-1", "ben"]);
}

#[tokio::test]
async fn every_change_appears_once_and_in_order_in_alert_events() {
    let redis = SharedRedis::new();
    let (a, b) = (redis.states(), redis.states());
    let (t1, t2) = (TipId::random(), TipId::random());
    let (ana, ben, sup) = (
        redis.device("ana"),
        redis.device("ben"),
        redis.device("sup"),
    );

    a.claim(&t1, &ana).await.unwrap();
    b.claim(&t2, &ben).await.unwrap();
    b.claim(&t1, &ben).await.unwrap(); // refused: no event
    a.claim(&t1, &ana).await.unwrap(); // repeated: no event
    a.release(&t1, &ana).await.unwrap();
    b.claim(&t1, &ben).await.unwrap();
    a.reassign(&t2, &sup, true, &ana).await.unwrap();
    b.resolve(&t1, &ben, Outcome::Duplicate).await.unwrap();
    a.resolve(&t2, &ana, Outcome::Unreachable).await.unwrap();
    a.resolve(&t2, &ana, Outcome::Unreachable).await.unwrap(); // retried: no event

    let s = |x: &str| Some(x.to_owned());
    use AlertState::{Claimed, Open, Resolved};
    let expected = vec![
        (t1.clone(), Claimed, s("ana"), None, 1, "ana".to_owned()),
        (t2.clone(), Claimed, s("ben"), None, 1, "ben".to_owned()),
        (t1.clone(), Open, None, None, 2, "ana".to_owned()),
        (t1.clone(), Claimed, s("ben"), None, 3, "ben".to_owned()),
        (t2.clone(), Claimed, s("ana"), None, 2, "sup".to_owned()),
        (
            t1.clone(),
            Resolved,
            s("ben"),
            Some(Outcome::Duplicate),
            4,
            "ben".to_owned(),
        ),
        (
            t2.clone(),
            Resolved,
            s("ana"),
            Some(Outcome::Unreachable),
            3,
            "ana".to_owned(),
        ),
    ];
    assert_eq!(changes(&b).await, expected);

    // Readers resume after the last id they saw.
    let all = a.events_after("0-0", 100).await.unwrap();
    let rest = a.events_after(&all[4].id, 100).await.unwrap();
    assert_eq!(rest, all[5..]);
    // Ids are coarse: the time part is a whole minute.
    for e in &all {
        let ms: u64 = e.id.split_once('-').unwrap().0.parse().unwrap();
        assert_eq!(ms % 60_000, 0, "{}", e.id);
    }
}

#[tokio::test]
async fn state_of_an_unknown_tip_expires_with_the_retention_and_is_never_extended() {
    let redis = SharedRedis::new();
    let states = AlertStates::new(redis.replica(), 3600);
    let tip = TipId::random();
    let key = redis.key(&format!("alert-state:{tip}"));
    let mut conn = redis.redis();

    states.claim(&tip, &redis.device("ana")).await.unwrap();
    let first: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
    assert!(0 < first && first <= 3_600_000, "{first}");
    states.release(&tip, &redis.device("ana")).await.unwrap();
    let second: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
    assert!(0 < second && second <= first, "{second} after {first}");
}

/// Tallies fired stages, checking what each reports.
fn count(fired: &mut BTreeMap<(String, Stage), usize>, new: &[Fired]) {
    for f in new {
        assert_eq!(f.zone, north());
        assert_eq!(f.priority, Priority::Now);
        *fired.entry((f.tip_id.to_string(), f.stage)).or_default() += 1;
    }
}

async fn step_both(a: &EscalationWorker, b: &EscalationWorker, now: u64) -> Vec<Fired> {
    let (x, y) = tokio::join!(a.step(now), b.step(now));
    let mut all = x.unwrap();
    all.extend(y.unwrap());
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_past_the_deadline_fire_each_stage_exactly_once() {
    let redis = SharedRedis::new();
    let escalations = redis.escalations();
    let (a, b) = (redis.worker(), redis.worker());
    let t0 = now_ms();
    let tips: Vec<TipId> = (0..20).map(|_| TipId::random()).collect();
    for tip in &tips {
        assert_eq!(
            escalations
                .schedule(tip, Priority::Now, &north(), t0)
                .await
                .unwrap(),
            2
        );
    }
    let fyi = TipId::random();
    assert_eq!(
        escalations
            .schedule(&fyi, Priority::Fyi, &ZoneChoice::Unsure, t0)
            .await
            .unwrap(),
        0,
        "fyi tips never escalate"
    );

    // Due on minute boundaries, at least the policy's delay after arrival.
    let (stage1, stage2) = (due(Priority::Now, t0, 1), due(Priority::Now, t0, 2));
    assert!(stage1 >= t0 + 120_000 && stage2 >= stage1 + 120_000);
    assert_eq!((stage1 % 60_000, stage2 % 60_000), (0, 0));
    assert!(step_both(&a, &b, t0 + 119_999).await.is_empty());
    assert!(step_both(&a, &b, stage1 - 1).await.is_empty());

    let mut fired: BTreeMap<(String, Stage), usize> = BTreeMap::new();
    // Several rounds at the same instant: later rounds find nothing left.
    for _ in 0..3 {
        count(&mut fired, &step_both(&a, &b, stage1).await);
    }
    assert_eq!(fired.len(), 20);
    assert!(
        fired
            .iter()
            .all(|((_, s), n)| *s == Stage::Supervisors && *n == 1)
    );

    for _ in 0..3 {
        count(&mut fired, &step_both(&a, &b, stage2).await);
    }
    assert_eq!(fired.len(), 40, "stage 2 once for every tip");
    assert!(fired.values().all(|n| *n == 1), "{fired:?}");
    assert!(step_both(&a, &b, t0 + 10_000_000).await.is_empty());

    // The durable record: one event per fired stage, for the push worker.
    let events = escalations.events_after("0-0", 1000).await.unwrap();
    assert_eq!(events.len(), 40);
    let recorded: BTreeSet<(String, Stage)> = events
        .iter()
        .map(|e| (e.tip_id.to_string(), e.stage))
        .collect();
    assert_eq!(recorded, fired.keys().cloned().collect());
    let mut conn = redis.redis();
    let left: u64 = redis::cmd("ZCARD")
        .arg(redis.key("escalations"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_claimed_or_resolved_alert_never_escalates_but_a_released_one_does() {
    let redis = SharedRedis::new();
    let escalations = redis.escalations();
    let states = redis.states();
    let worker = redis.worker();
    let t0 = now_ms();
    let (claimed, resolved, released, early) = (
        TipId::random(),
        TipId::random(),
        TipId::random(),
        TipId::random(),
    );
    let ana = redis.device("ana");
    // A claim that lands before the intake scheduled the tip keeps its state.
    states.claim(&early, &ana).await.unwrap();
    for tip in [&claimed, &resolved, &released, &early] {
        escalations
            .schedule(tip, Priority::Today, &north(), t0)
            .await
            .unwrap();
    }
    assert_eq!(states.get(&early).await.unwrap().device, Some(ana.clone()));
    states.claim(&claimed, &ana).await.unwrap();
    states.claim(&resolved, &ana).await.unwrap();
    states
        .resolve(&resolved, &ana, Outcome::Mediated)
        .await
        .unwrap();
    states.claim(&released, &ana).await.unwrap();
    states.release(&released, &ana).await.unwrap();

    let fired = worker.step(due(Priority::Today, t0, 1)).await.unwrap();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (&fired[0].tip_id, fired[0].stage, fired[0].priority),
        (&released, Stage::Supervisors, Priority::Today)
    );
    // Claiming after stage 1 stops stage 2.
    states.claim(&released, &ana).await.unwrap();
    assert!(
        worker
            .step(due(Priority::Today, t0, 2))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(escalations.events_after("0-0", 100).await.unwrap().len(), 1);
    let mut conn = redis.redis();
    let left: u64 = redis::cmd("ZCARD")
        .arg(redis.key("escalations"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(left, 0, "stages of claimed alerts are dropped when due");
}

#[tokio::test]
async fn a_restarted_worker_fires_a_stage_scheduled_before_the_restart() {
    let redis = SharedRedis::new();
    let t0 = now_ms();
    let tip = TipId::random();
    {
        let escalations = redis.escalations();
        let worker = redis.worker();
        escalations
            .schedule(&tip, Priority::Now, &ZoneChoice::Unsure, t0)
            .await
            .unwrap();
        assert!(worker.step(t0 + 60_000).await.unwrap().is_empty());
        // The process dies here: worker and connection are gone.
    }
    let restarted = redis.worker();
    let fired = restarted.step(due(Priority::Now, t0, 1)).await.unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].tip_id, tip);
    assert_eq!(fired[0].zone, ZoneChoice::Unsure);
    assert_eq!(fired[0].stage, Stage::Supervisors);
}

#[tokio::test]
async fn scheduling_a_tip_twice_does_not_double_its_escalations() {
    let redis = SharedRedis::new();
    let (one, two) = (redis.escalations(), redis.escalations());
    let worker = redis.worker();
    let t0 = now_ms();
    let tip = TipId::random();
    assert_eq!(
        one.schedule(&tip, Priority::Now, &north(), t0)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        two.schedule(&tip, Priority::Now, &north(), t0 + 5_000)
            .await
            .unwrap(),
        0,
        "another replica scheduling the same tip adds nothing"
    );
    assert_eq!(
        worker.step(due(Priority::Now, t0, 1)).await.unwrap().len(),
        1
    );
    // Even after stage 1 fired and left the set, a late retry adds nothing back.
    assert_eq!(
        one.schedule(&tip, Priority::Now, &north(), t0 + 130_000)
            .await
            .unwrap(),
        0
    );
    let stage2 = worker.step(t0 + 10_000_000).await.unwrap();
    assert_eq!(stage2.len(), 1);
    assert_eq!(stage2[0].stage, Stage::Everyone);
    assert_eq!(one.events_after("0-0", 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn deadlines_tipwire_did_not_write_are_removed_not_fired() {
    let redis = SharedRedis::new();
    let worker = redis.worker();
    let mut conn = redis.redis();
    let key = redis.key("escalations");
    let _: () = redis::cmd("ZADD")
        .arg(&key)
        .arg(1)
        .arg("not-a-member")
        .arg(2)
        .arg(format!("{}:1", TipId::random()))
        .query(&mut conn)
        .unwrap();
    assert!(worker.step(now_ms()).await.unwrap().is_empty());
    let left: u64 = redis::cmd("ZCARD").arg(&key).query(&mut conn).unwrap();
    assert_eq!(left, 0, "a stage without a scheduled alert is dropped too");
}
