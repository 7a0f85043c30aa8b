//! Photos that carry metadata, to prove it is stripped.

pub fn jpeg_with_exif(canary: &str) -> Vec<u8> {
    let pixels: Vec<u8> = (0..16 * 12 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let mut clean = Vec::new();
    jpeg_encoder::Encoder::new(&mut clean, 90)
        .encode(&pixels, 16, 12, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    let payload = [b"Exif\0\0".as_slice(), b"GPS ", canary.as_bytes()].concat();
    let len = u16::try_from(payload.len() + 2).unwrap().to_be_bytes();
    [&clean[..2], &[0xFF, 0xE1], &len, &payload, &clean[2..]].concat()
}
