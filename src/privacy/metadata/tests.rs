use super::*;
use proptest::prelude::*;

const WIDTH: u16 = 16;
const HEIGHT: u16 = 12;

const GPS_CANARY: &[u8] = b"GPS-CANARY-40.7128N-74.0060W";
const XMP_CANARY: &[u8] = b"XMP-CANARY-CreatorTool";
const ICC_CANARY: &[u8] = b"ICC-CANARY-DeviceModel";
const IPTC_CANARY: &[u8] = b"IPTC-CANARY-Byline";
const COMMENT_CANARY: &[u8] = b"COMMENT-CANARY";
const THUMB_CANARY: &[u8] = b"THUMB-CANARY"; // 4x1 RGB thumbnail pixels
const JFXX_CANARY: &[u8] = b"JFXX-CANARY";
const ADOBE_CANARY: &[u8] = b"ADOBE-CANARY";
const SCAN_GAP_CANARY: &[u8] = b"SCAN-GAP-CANARY";
const TRAILER_CANARY: &[u8] = b"TRAILER-CANARY-motion-photo";
const TEXT_CANARY: &str = "TEXT-CANARY";
const ZTXT_CANARY: &str = "ZTXT-CANARY";
const ITXT_CANARY: &str = "ITXT-CANARY";
const TIME_CANARY: &[u8] = b"TIME-CANARY";
const C2PA_CANARY: &[u8] = b"C2PA-CANARY";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn find(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle)
        .map(|(at, _)| at)
        .collect()
}

fn rgb_gradient() -> Vec<u8> {
    (0..HEIGHT)
        .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
        .flat_map(|(x, y)| [(x * 16) as u8, (y * 20) as u8, ((x + y) * 9) as u8])
        .collect()
}

fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut segment = vec![0xFF, marker];
    segment.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    segment.extend_from_slice(payload);
    segment
}

fn encode_jpeg(progressive: bool) -> Vec<u8> {
    let mut jpeg = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 90);
    encoder.set_progressive(progressive);
    encoder
        .encode(&rgb_gradient(), WIDTH, HEIGHT, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    jpeg
}

fn decode_jpeg(bytes: &[u8]) -> Vec<u8> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    let pixels = decoder.decode().unwrap();
    let info = decoder.info().unwrap();
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    pixels
}

/// An EXIF block as a phone writes it: a TIFF header whose IFD0 points at
/// a GPS IFD, whose GPSProcessingMethod holds the canary.
fn exif_payload() -> Vec<u8> {
    let mut exif = b"Exif\0\0II*\0".to_vec();
    exif.extend_from_slice(&8u32.to_le_bytes());
    // IFD0 at 8: one entry, GPSInfo (0x8825) LONG 1 -> GPS IFD at 26.
    exif.extend_from_slice(&1u16.to_le_bytes());
    exif.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0]);
    exif.extend_from_slice(&26u32.to_le_bytes());
    exif.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD at 26: GPSProcessingMethod (0x1B) UNDEFINED n -> data at 44.
    exif.extend_from_slice(&1u16.to_le_bytes());
    exif.extend_from_slice(&[0x1B, 0, 7, 0]);
    exif.extend_from_slice(&u32::try_from(GPS_CANARY.len()).unwrap().to_le_bytes());
    exif.extend_from_slice(&44u32.to_le_bytes());
    exif.extend_from_slice(&0u32.to_le_bytes());
    exif.extend_from_slice(GPS_CANARY);
    exif
}

fn identifying_jpeg_segments() -> Vec<u8> {
    let mut jfif_with_thumbnail = b"JFIF\0\x01\x02\x00\x00\x01\x00\x01\x04\x01".to_vec();
    jfif_with_thumbnail.extend_from_slice(THUMB_CANARY);
    let mut xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>".to_vec();
    xmp.extend_from_slice(XMP_CANARY);
    xmp.extend_from_slice(b"</x:xmpmeta>");
    let mut icc = b"ICC_PROFILE\0\x01\x01".to_vec();
    icc.extend_from_slice(ICC_CANARY);
    let mut iptc = b"Photoshop 3.0\08BIM\x04\x04".to_vec();
    iptc.extend_from_slice(IPTC_CANARY);
    let mut jfxx = b"JFXX\0\x10".to_vec();
    jfxx.extend_from_slice(JFXX_CANARY);
    // Transform 1 (YCbCr) matches what the encoder wrote, plus smuggled bytes.
    let mut adobe = b"Adobe\x00\x64\x00\x00\x00\x00\x01".to_vec();
    adobe.extend_from_slice(ADOBE_CANARY);

    let mut segments = Vec::new();
    segments.extend(jpeg_segment(APP0, &jfif_with_thumbnail));
    segments.extend(jpeg_segment(APP0, &jfxx));
    segments.extend(jpeg_segment(0xE1, &exif_payload()));
    segments.extend(jpeg_segment(0xE1, &xmp));
    segments.extend(jpeg_segment(0xE2, &icc));
    segments.extend(jpeg_segment(0xED, &iptc));
    segments.extend(jpeg_segment(APP14, &adobe));
    // Fill bytes before a marker are legal and must not confuse the walk.
    segments.extend([0xFF, 0xFF, 0xFF]);
    segments.extend(jpeg_segment(0xFE, COMMENT_CANARY));
    segments
}

/// The encoder's JPEG with identifying segments after SOI, a comment in
/// front of EOI (after the last scan) and a trailer after EOI.
fn dirty_jpeg(clean: &[u8]) -> Vec<u8> {
    let (soi, body) = clean.split_at(2);
    let (scans, eoi) = body.split_at(body.len() - 2);
    assert_eq!(eoi, [0xFF, EOI]);
    let mut dirty = soi.to_vec();
    dirty.extend(identifying_jpeg_segments());
    dirty.extend([0xFF, 0xFF]);
    dirty.extend_from_slice(scans);
    dirty.extend(jpeg_segment(0xFE, SCAN_GAP_CANARY));
    dirty.extend_from_slice(eoi);
    dirty.extend_from_slice(TRAILER_CANARY);
    dirty
}

const JPEG_CANARIES: [&[u8]; 11] = [
    GPS_CANARY,
    XMP_CANARY,
    ICC_CANARY,
    IPTC_CANARY,
    COMMENT_CANARY,
    THUMB_CANARY,
    JFXX_CANARY,
    ADOBE_CANARY,
    SCAN_GAP_CANARY,
    TRAILER_CANARY,
    b"Exif",
];

#[test]
fn stripping_a_jpeg_removes_every_identifying_segment() {
    let clean = encode_jpeg(false);
    let dirty = dirty_jpeg(&clean);
    for canary in JPEG_CANARIES {
        assert!(contains(&dirty, canary), "test photo lacks {canary:?}");
    }

    let stripped = strip(ImageKind::Jpeg, &dirty).unwrap();

    for canary in JPEG_CANARIES {
        assert!(!contains(&stripped, canary), "{canary:?} survived");
    }
    assert!(stripped.len() < dirty.len());
    assert!(stripped.ends_with(&[0xFF, EOI]));
}

#[test]
fn a_stripped_jpeg_decodes_to_the_same_pixels() {
    let clean = encode_jpeg(false);
    let stripped = strip(ImageKind::Jpeg, &dirty_jpeg(&clean)).unwrap();
    assert_eq!(decode_jpeg(&stripped), decode_jpeg(&clean));
    assert_eq!(sniff(&stripped), Some(ImageKind::Jpeg));
}

#[test]
fn a_stripped_jpeg_keeps_jfif_and_adobe_headers_without_their_extras() {
    let stripped = strip(ImageKind::Jpeg, &dirty_jpeg(&encode_jpeg(false))).unwrap();
    let jfif_canonical = jpeg_segment(APP0, b"JFIF\0\x01\x02\x00\x00\x01\x00\x01\x00\x00");
    assert!(contains(&stripped, &jfif_canonical));
    let adobe_canonical = jpeg_segment(APP14, b"Adobe\x00\x64\x00\x00\x00\x00\x01");
    assert!(contains(&stripped, &adobe_canonical));
}

#[test]
fn segments_between_progressive_scans_are_stripped_and_the_image_still_decodes() {
    let clean = encode_jpeg(true);
    let scan_starts = find(&clean, &[0xFF, SOS]);
    assert!(scan_starts.len() > 1, "encoder wrote one scan only");
    let second_scan = scan_starts[1];
    let mut dirty = clean[..second_scan].to_vec();
    dirty.extend(jpeg_segment(0xFE, SCAN_GAP_CANARY));
    dirty.extend(jpeg_segment(0xE1, &exif_payload()));
    dirty.extend_from_slice(&clean[second_scan..]);

    let stripped = strip(ImageKind::Jpeg, &dirty).unwrap();

    assert!(!contains(&stripped, SCAN_GAP_CANARY));
    assert!(!contains(&stripped, GPS_CANARY));
    assert_eq!(decode_jpeg(&stripped), decode_jpeg(&clean));
}

#[test]
fn a_clean_jpeg_survives_stripping_unchanged_apart_from_its_jfif_header() {
    let clean = encode_jpeg(false);
    let stripped = strip(ImageKind::Jpeg, &clean).unwrap();
    assert_eq!(strip(ImageKind::Jpeg, &stripped).unwrap(), stripped);
    assert_eq!(decode_jpeg(&stripped), decode_jpeg(&clean));
}

#[test]
fn the_jpeg_walk_skips_fill_bytes_and_standalone_markers_and_copies_scans_verbatim() {
    let mut input = vec![0xFF, SOI];
    input.extend([0xFF, 0xFF, 0xE1, 0x00, 0x04, 0xAA, 0xBB]); // APP1 after fill
    input.extend([0xFF, 0x01]); // TEM
    input.extend([0xFF, 0xD0]); // RST0 outside a scan
    input.extend([0xFF, 0xDB, 0x00, 0x04, 0x11, 0x22]); // DQT
    input.extend([0xFF, SOS, 0x00, 0x04, 0x33, 0x44]);
    input.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]); // stuffing, RST3
    input.extend([0xFF, 0xFF, 0xFF, 0xFE, 0x00, 0x03, 0xCC]); // COM after fill
    input.extend([0xFF, EOI, 0x99]);

    let mut expected = vec![0xFF, SOI];
    expected.extend([0xFF, 0xDB, 0x00, 0x04, 0x11, 0x22]);
    expected.extend([0xFF, SOS, 0x00, 0x04, 0x33, 0x44]);
    expected.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
    expected.extend([0xFF, EOI]);

    assert_eq!(strip(ImageKind::Jpeg, &input).unwrap(), expected);
}

#[test]
fn malformed_jpegs_are_refused_with_the_right_error() {
    let cases: [(&[u8], StripError); 9] = [
        (b"", StripError::NotJpeg),
        (b"\x89PNG", StripError::NotJpeg),
        (b"\xFF\xD8", StripError::Truncated),
        (b"\xFF\xD8\xFF\xFF", StripError::Truncated),
        (b"\xFF\xD8\xFF\xE1\x00\x10\xAA", StripError::Truncated),
        (b"\xFF\xD8\xFF\xE1\x00", StripError::Truncated),
        (b"\xFF\xD8\xFF\xE1\x00\x01", StripError::BadMarker),
        (b"\xFF\xD8\x00\xFF\xD9", StripError::BadMarker),
        (
            b"\xFF\xD8\xFF\xDA\x00\x02\x12\x34\xFF\x00",
            StripError::Truncated,
        ),
    ];
    for (input, error) in cases {
        assert_eq!(strip(ImageKind::Jpeg, input), Err(error), "{input:x?}");
    }
    assert_eq!(
        strip(ImageKind::Jpeg, b"\xFF\xD8\xFF\xD8"),
        Err(StripError::BadMarker)
    );
}

#[test]
fn every_cut_short_photo_is_refused_as_truncated() {
    let jpeg = dirty_jpeg(&encode_jpeg(false));
    let jpeg_end = find(&jpeg, TRAILER_CANARY)[0];
    for cut in 2..jpeg_end {
        assert_eq!(
            strip(ImageKind::Jpeg, &jpeg[..cut]),
            Err(StripError::Truncated)
        );
    }
    let png = dirty_png();
    let png_end = find(&png, TRAILER_CANARY)[0];
    for cut in PNG_SIGNATURE.len()..png_end {
        assert_eq!(
            strip(ImageKind::Png, &png[..cut]),
            Err(StripError::Truncated)
        );
    }
}

fn rgba_pixels() -> Vec<u8> {
    rgb_gradient()
        .chunks_exact(3)
        .flat_map(|rgb| [rgb[0], rgb[1], rgb[2], rgb[0] ^ 0x5A])
        .collect()
}

/// A PNG as an editor or phone writes it: text, XMP, EXIF, time and
/// provenance chunks, with a trailer after IEND.
fn dirty_png() -> Vec<u8> {
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, u32::from(WIDTH), u32::from(HEIGHT));
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_source_srgb(png::SrgbRenderingIntent::Perceptual);
    encoder.set_source_gamma(png::ScaledFloat::from_scaled(45455));
    encoder
        .add_text_chunk("Comment".into(), TEXT_CANARY.into())
        .unwrap();
    encoder
        .add_ztxt_chunk("Author".into(), ZTXT_CANARY.into())
        .unwrap();
    encoder
        .add_itxt_chunk("XML:com.adobe.xmp".into(), ITXT_CANARY.into())
        .unwrap();
    let mut writer = encoder.write_header().unwrap();
    let mut exif = exif_payload();
    exif.drain(..6); // eXIf holds the TIFF structure without "Exif\0\0".
    writer
        .write_chunk(png::chunk::ChunkType(*b"eXIf"), &exif)
        .unwrap();
    writer
        .write_chunk(
            png::chunk::ChunkType(*b"pHYs"),
            &[0, 0, 0x16, 0x25, 0, 0, 0x16, 0x25, 1],
        )
        .unwrap();
    writer
        .write_chunk(png::chunk::ChunkType(*b"caBX"), C2PA_CANARY)
        .unwrap();
    writer.write_image_data(&rgba_pixels()).unwrap();
    // tIME after the image data is legal; its bytes carry the canary so
    // the test can see it is gone (a real one is 7 bytes of date).
    writer
        .write_chunk(png::chunk::ChunkType(*b"tIME"), TIME_CANARY)
        .unwrap();
    writer.finish().unwrap();
    png.extend_from_slice(TRAILER_CANARY);
    png
}

fn decode_png(bytes: &[u8]) -> (Vec<u8>, usize) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(
        (frame.width, frame.height),
        (u32::from(WIDTH), u32::from(HEIGHT))
    );
    pixels.truncate(frame.buffer_size());
    reader.finish().unwrap();
    let info = reader.info();
    let text_chunks = info.uncompressed_latin1_text.len()
        + info.compressed_latin1_text.len()
        + info.utf8_text.len();
    (pixels, text_chunks)
}

fn png_chunk_types(bytes: &[u8]) -> Vec<[u8; 4]> {
    let mut rest = &bytes[PNG_SIGNATURE.len()..];
    let mut types = Vec::new();
    // Stops at IEND: the dirty photo has a trailer after it.
    while types.last() != Some(b"IEND") {
        let (chunk, tail) = split_chunk(rest).unwrap();
        types.push(chunk.chunk_type);
        rest = tail;
    }
    types
}

#[test]
fn stripping_a_png_removes_text_exif_time_and_private_chunks() {
    let dirty = dirty_png();
    let canaries: [&[u8]; 6] = [
        TEXT_CANARY.as_bytes(),
        ITXT_CANARY.as_bytes(),
        GPS_CANARY,
        TIME_CANARY,
        C2PA_CANARY,
        TRAILER_CANARY,
    ];
    for canary in canaries {
        assert!(contains(&dirty, canary), "test photo lacks {canary:?}");
    }
    assert_eq!(decode_png(&dirty).1, 3);

    let stripped = strip(ImageKind::Png, &dirty).unwrap();

    for canary in canaries {
        assert!(!contains(&stripped, canary), "{canary:?} survived");
    }
    let kept: Vec<[u8; 4]> = png_chunk_types(&dirty)
        .into_iter()
        .filter(|t| [*b"IHDR", *b"sRGB", *b"gAMA", *b"IDAT", *b"IEND"].contains(t))
        .collect();
    assert!(kept.contains(b"gAMA") && kept.contains(b"sRGB"));
    assert_eq!(png_chunk_types(&stripped), kept);
}

#[test]
fn a_stripped_png_decodes_to_the_same_pixels() {
    let dirty = dirty_png();
    let stripped = strip(ImageKind::Png, &dirty).unwrap();
    let (pixels, text_chunks) = decode_png(&stripped);
    assert_eq!(pixels, rgba_pixels());
    assert_eq!(pixels, decode_png(&dirty).0);
    assert_eq!(text_chunks, 0);
    assert_eq!(sniff(&stripped), Some(ImageKind::Png));
    assert_eq!(strip(ImageKind::Png, &stripped).unwrap(), stripped);
}

fn png_with_chunks(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut png = PNG_SIGNATURE.to_vec();
    for (chunk_type, data) in chunks {
        png.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        png.extend_from_slice(*chunk_type);
        png.extend_from_slice(data);
        let crc = crc32fast::hash(&[chunk_type.as_slice(), data].concat());
        png.extend_from_slice(&crc.to_be_bytes());
    }
    png
}

#[test]
fn malformed_pngs_are_refused_with_the_right_error() {
    let ihdr: (&[u8; 4], &[u8]) = (b"IHDR", &[0; 13]);
    let iend: (&[u8; 4], &[u8]) = (b"IEND", &[]);
    let mut overlong = png_with_chunks(&[ihdr]);
    overlong.extend_from_slice(&[0x80, 0, 0, 0]);
    overlong.extend_from_slice(b"IDAT");
    let mut overrun = png_with_chunks(&[ihdr]);
    overrun.extend_from_slice(&[0, 0, 0, 9]);
    overrun.extend_from_slice(b"IDAT1234");

    let cases = [
        (b"".to_vec(), StripError::NotPng),
        (b"\xFF\xD8\xFF".to_vec(), StripError::NotPng),
        (PNG_SIGNATURE.to_vec(), StripError::Truncated),
        (png_with_chunks(&[ihdr]), StripError::Truncated),
        (
            png_with_chunks(&[(b"IDAT", &[]), iend]),
            StripError::BadChunk,
        ),
        (
            png_with_chunks(&[ihdr, (b"ID4T", &[]), iend]),
            StripError::BadChunk,
        ),
        (
            png_with_chunks(&[ihdr, (b"ABCD", &[]), iend]),
            StripError::UnknownCriticalChunk,
        ),
        (overlong, StripError::BadChunk),
        (overrun, StripError::Truncated),
    ];
    for (input, error) in cases {
        assert_eq!(strip(ImageKind::Png, &input), Err(error), "{input:x?}");
    }
    let minimal = png_with_chunks(&[ihdr, (b"teXt", b"x"), iend]);
    assert_eq!(
        strip(ImageKind::Png, &minimal).unwrap(),
        png_with_chunks(&[ihdr, iend])
    );
}

fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
    let size = u32::try_from(16 + 4 * compatible.len()).unwrap();
    let mut heif = size.to_be_bytes().to_vec();
    heif.extend_from_slice(b"ftyp");
    heif.extend_from_slice(major);
    heif.extend_from_slice(&[0; 4]);
    for brand in compatible {
        heif.extend_from_slice(*brand);
    }
    heif.extend_from_slice(b"\0\0\0\x08meta");
    heif
}

#[test]
fn sniff_recognises_jpeg_png_and_heic_by_their_magic_bytes() {
    assert_eq!(sniff(&encode_jpeg(false)), Some(ImageKind::Jpeg));
    assert_eq!(sniff(&dirty_png()), Some(ImageKind::Png));
    assert_eq!(
        sniff(&ftyp(b"heic", &[b"mif1", b"heic"])),
        Some(ImageKind::Heic)
    );
    assert_eq!(
        sniff(&ftyp(b"mif1", &[b"mif1", b"heic"])),
        Some(ImageKind::Heic)
    );
    assert_eq!(sniff(&ftyp(b"heif", &[])), Some(ImageKind::Heic));
}

#[test]
fn sniff_rejects_avif_video_text_and_short_inputs() {
    assert_eq!(sniff(&ftyp(b"avif", &[b"mif1", b"avif"])), None);
    assert_eq!(sniff(&ftyp(b"mif1", &[b"mif1", b"avif"])), None);
    assert_eq!(sniff(&ftyp(b"isom", &[b"mp41"])), None);
    assert_eq!(sniff(b"GIF89a"), None);
    assert_eq!(sniff(b"\xFF\xD8"), None);
    assert_eq!(sniff(&PNG_SIGNATURE[..7]), None);
    assert_eq!(sniff(b""), None);
}

#[test]
fn content_types_round_trip_and_ignore_case_and_parameters() {
    for kind in [ImageKind::Jpeg, ImageKind::Png, ImageKind::Heic] {
        assert_eq!(
            ImageKind::from_content_type(kind.content_type()),
            Some(kind)
        );
    }
    assert_eq!(
        ImageKind::from_content_type("image/heif"),
        Some(ImageKind::Heic)
    );
    assert_eq!(
        ImageKind::from_content_type(" Image/JPEG ; name=x.jpg"),
        Some(ImageKind::Jpeg)
    );
    assert_eq!(ImageKind::from_content_type("image/gif"), None);
    assert_eq!(ImageKind::from_content_type("image/jpeg2000"), None);
    assert_eq!(ImageKind::from_content_type(""), None);
}

#[test]
fn a_heic_file_with_nothing_to_strip_is_unchanged() {
    let heic = ftyp(b"heic", &[b"mif1", b"heic"]);
    assert_eq!(strip(ImageKind::Heic, &heic).unwrap(), heic);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_sniff_or_strip(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let _ = sniff(&bytes);
        for kind in [ImageKind::Jpeg, ImageKind::Png, ImageKind::Heic] {
            if let Ok(out) = strip(kind, &bytes) {
                prop_assert!(out.len() <= bytes.len());
            }
        }
    }

    #[test]
    fn bytes_behind_a_valid_signature_never_panic_strip(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        png in any::<bool>(),
    ) {
        let (kind, mut input) = if png {
            (ImageKind::Png, PNG_SIGNATURE.to_vec())
        } else {
            (ImageKind::Jpeg, vec![0xFF, SOI, 0xFF])
        };
        input.extend(body);
        if let Ok(out) = strip(kind, &input) {
            prop_assert!(out.len() <= input.len());
            prop_assert_eq!(strip(kind, &out), Ok(out.clone()));
        }
    }

    #[test]
    fn corrupted_real_photos_never_panic_and_strip_to_a_fixed_point(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        png in any::<bool>(),
    ) {
        let (kind, mut input) = if png {
            (ImageKind::Png, dirty_png())
        } else {
            (ImageKind::Jpeg, dirty_jpeg(&encode_jpeg(false)))
        };
        let len = input.len();
        for (at, byte) in edits {
            input[at % len] = byte;
        }
        if let Ok(out) = strip(kind, &input) {
            prop_assert!(out.len() <= input.len());
            prop_assert_eq!(strip(kind, &out), Ok(out.clone()));
        }
    }
}
