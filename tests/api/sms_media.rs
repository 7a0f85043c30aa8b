//! MMS media against a provider media server that stalls (issue 10, item
//! 15): the webhook must answer before the server lets go, and the mediator
//! must learn, inside the sealed tip, what was not kept and why (items 11
//! and 15). Also a HEIC photo with GPS in its EXIF item, end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use actix_web::{HttpResponse, web};

use crate::support::app::{TestApp, open_tip, serve_stand_in};
use crate::support::photo::jpeg_with_exif;
use crate::support::sms::{ACCOUNT_SID, now, spawn_sms_app, telnyx_event, twilio_params};

const TIPSTER: &str = "+15557650202";
/// How long the stand-in holds a media request unless released earlier: a
/// provider's media server on a bad day. Not an assertion threshold.
const STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// A media server that holds every request until released (or `STALL`),
/// then serves a photo. `released` says whether it has let go yet.
struct StalledMedia {
    url: String,
    requests: Arc<AtomicUsize>,
    released: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
}

impl StalledMedia {
    fn start(photo: Vec<u8>) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let released = Arc::new(AtomicBool::new(false));
        let release = Arc::new(tokio::sync::Notify::new());
        let state = (requests.clone(), released.clone(), release.clone(), photo);
        let url = serve_stand_in(move |app| {
            let (requests, released, release, photo) = state.clone();
            app.default_service(web::to(move || {
                let (requests, released, release, photo) = (
                    requests.clone(),
                    released.clone(),
                    release.clone(),
                    photo.clone(),
                );
                async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let notified = release.notified();
                    if !released.load(Ordering::SeqCst) {
                        let _ = tokio::time::timeout(STALL, notified).await;
                    }
                    released.store(true, Ordering::SeqCst);
                    HttpResponse::Ok().content_type("image/jpeg").body(photo)
                }
            }));
        });
        Self {
            url,
            requests,
            released,
            release,
        }
    }

    fn let_go(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.release.notify_waiters();
    }
}

/// The sealed document as JSON, so the test reads fields by name.
fn sealed_json(app: &TestApp, alert: &tipwire::bus::StoredAlert) -> serde_json::Value {
    let plain =
        tipwire::crypto::open(&alert.entry.envelope, std::slice::from_ref(&app.mediator)).unwrap();
    serde_json::from_slice(&plain).unwrap()
}

async fn spawn_with_media_at(media: &StalledMedia) -> TestApp {
    let url = media.url.clone();
    let (app, _stand_in) = spawn_sms_app(move |s| {
        s.sms.twilio.api_base_url = url.clone();
        s.sms.telnyx.media_base_url = url;
        s.sms.media_deadline = std::time::Duration::from_millis(300);
    })
    .await;
    app
}

#[tokio::test]
async fn a_stalled_twilio_media_server_does_not_hold_the_webhook_and_the_mediator_is_told() {
    let media = StalledMedia::start(jpeg_with_exif("CANARY-GPS-STALL"));
    let app = spawn_with_media_at(&media).await;
    let photo_url = format!(
        "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME1",
        media.url
    );
    let mut params = twilio_params(TIPSTER, "photo of the car", "SMstall1");
    params.retain(|(k, _)| *k != "NumMedia");
    params.extend([
        ("NumMedia", "1"),
        ("MediaUrl0", photo_url.as_str()),
        ("MediaContentType0", "image/jpeg"),
    ]);

    let answer = app.twilio(&params).await;
    let still_stalled = !media.released.load(Ordering::SeqCst);
    media.let_go();

    assert_eq!(
        media.requests.load(Ordering::SeqCst),
        1,
        "the media was asked for"
    );
    assert!(
        still_stalled,
        "the webhook waited for the stalled media server"
    );
    assert_eq!(answer.status(), 200);
    let twiml = answer.text().await.unwrap();
    assert!(twiml.contains("could not get your photo"), "{twiml}");
    assert!(twiml.contains("Thank you."), "{twiml}");

    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1, "the text is stored before the answer");
    let doc = sealed_json(&app, &alerts[0]);
    assert_eq!(doc["text"], "photo of the car");
    assert!(doc.get("attachments").is_none(), "{doc}");
    assert_eq!(
        doc["withheld"],
        serde_json::json!([{"kind": "photo", "reason": "not-fetched"}])
    );
}

#[tokio::test]
async fn a_stalled_telnyx_media_server_does_not_hold_the_webhook_and_the_mediator_is_told() {
    let media = StalledMedia::start(jpeg_with_exif("CANARY-GPS-STALL"));
    let app = spawn_with_media_at(&media).await;
    let mut event: serde_json::Value =
        serde_json::from_slice(&telnyx_event(TIPSTER, "two photos", "stall-telnyx-1")).unwrap();
    event["data"]["payload"]["media"] = serde_json::json!([
        {"url": format!("{}/media/one.jpg", media.url), "content_type": "image/jpeg"},
        {"url": format!("{}/media/two.jpg", media.url), "content_type": "image/jpeg"},
    ]);
    let body = serde_json::to_vec(&event).unwrap();

    let answer = app.telnyx(&body, now()).await;
    let still_stalled = !media.released.load(Ordering::SeqCst);
    media.let_go();

    assert_eq!(media.requests.load(Ordering::SeqCst), 2, "fetched together");
    assert!(
        still_stalled,
        "the webhook waited for the stalled media server"
    );
    assert_eq!(answer.status(), 200);
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        sealed_json(&app, &alerts[0])["withheld"],
        serde_json::json!([
            {"kind": "photo", "reason": "not-fetched"},
            {"kind": "photo", "reason": "not-fetched"},
        ])
    );
    assert_eq!(
        app.relay.step().await.unwrap().sent,
        1,
        "the tipster is told"
    );
}

/// A minimal HEIF as a phone writes one: one HEVC image item and an EXIF
/// item whose GPS data carries `canary`, both in `mdat`.
fn heic_with_gps(canary: &str) -> (Vec<u8>, Vec<u8>) {
    fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        [
            &u32::try_from(payload.len() + 8).unwrap().to_be_bytes(),
            kind.as_slice(),
            payload,
        ]
        .concat()
    }
    fn full(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        bx(kind, &[&[0u8, 0, 0, 0], payload].concat())
    }
    let image = b"HEVC-IMAGE-DATA-0123456789".to_vec();
    let exif = [
        b"\0\0\0\x06Exif\0\0MM\0*\0\0\0\x08GPS ".as_slice(),
        canary.as_bytes(),
    ]
    .concat();
    let ftyp = bx(b"ftyp", b"heic\0\0\0\0mif1heic");
    let meta = |mdat_at: u32| {
        let infe = |id: u8, kind: &[u8; 4]| {
            bx(
                b"infe",
                &[&[2u8, 0, 0, 0, 0, id, 0, 0], kind.as_slice(), &[0]].concat(),
            )
        };
        let iinf = full(
            b"iinf",
            &[&[0u8, 2][..], &infe(1, b"hvc1"), &infe(2, b"Exif")].concat(),
        );
        let mut iloc = vec![0x44, 0x00, 0, 2];
        for (id, offset, len) in [(1u16, 0, image.len()), (2, image.len(), exif.len())] {
            iloc.extend_from_slice(&id.to_be_bytes());
            iloc.extend_from_slice(&0u16.to_be_bytes());
            iloc.extend_from_slice(&1u16.to_be_bytes());
            iloc.extend_from_slice(&(mdat_at + u32::try_from(offset).unwrap()).to_be_bytes());
            iloc.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        }
        let hdlr = full(b"hdlr", &[&[0u8; 4][..], b"pict", &[0; 13]].concat());
        full(
            b"meta",
            &[hdlr, full(b"pitm", &[0, 1]), iinf, full(b"iloc", &iloc)].concat(),
        )
    };
    let mdat_at = u32::try_from(ftyp.len() + meta(0).len() + 8).unwrap();
    let heic = [
        ftyp,
        meta(mdat_at),
        bx(b"mdat", &[image.as_slice(), &exif].concat()),
    ]
    .concat();
    (heic, image)
}

#[tokio::test]
async fn an_mms_heic_photo_is_sealed_without_its_gps() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    let canary = format!("CANARY-HEIC-GPS-{}", crate::support::app::random_hex(8));
    let (heic, image) = heic_with_gps(&canary);
    let url = stand_in.serve_media("ME0003", "image/heic", heic.clone());
    let mut params = twilio_params(TIPSTER, "from my iphone", "SMheic1");
    params.retain(|(k, _)| *k != "NumMedia");
    params.extend([
        ("NumMedia", "1"),
        ("MediaUrl0", url.as_str()),
        ("MediaContentType0", "image/heic"),
    ]);
    let twiml = app.twilio(&params).await.text().await.unwrap();
    assert!(!twiml.contains("could only take"), "{twiml}");

    let alerts = app.alerts().await;
    let doc = open_tip(&alerts[0], &app.mediator).unwrap();
    assert_eq!(doc.attachments.len(), 1);
    let sealed = &doc.attachments[0];
    assert_eq!(sealed.content_type, "image/heic");
    assert!(
        crate::support::canary::contains(&heic, &canary),
        "the original carried it"
    );
    assert!(
        !crate::support::canary::contains(&sealed.data, &canary),
        "GPS is gone"
    );
    assert_eq!(sealed.data.len(), heic.len(), "cleaned in place");
    let at = heic.windows(image.len()).position(|w| w == image).unwrap();
    assert_eq!(&sealed.data[at..at + image.len()], image.as_slice());
}
