//! Fuzz targets: properties that must hold for any bytes the network (or a
//! hostile configuration) can send. Every input here is untrusted by design.
//!
//! Each target is a plain function of its input bytes so it can reach
//! crate-private parsers; `fuzz/` (cargo-fuzz, libFuzzer) drives them with
//! coverage feedback, and this module's tests replay the committed corpora
//! and regression inputs through them on every `cargo test`. A target panics
//! only through an `assert!` of one of its properties: a panic is a bug, in
//! the code under test or in the property. See `docs/security-testing.md`.
//!
//! Each target also states `max_alloc_bytes`, the most heap it may hold at
//! once while it runs one input (its own checks included); both drivers
//! measure the peak with a counting allocator and fail past it.

pub mod api;
pub mod config;
pub mod email;
pub mod photos;
pub mod sms;
pub mod smtp;
pub mod web;

/// `server.max_body_bytes` by default: no longer body reaches a parser
/// (the web tip form, both SMS webhooks).
pub(crate) const MAX_BODY_BYTES: usize = 65_536;

/// One fuzz target: its name (the cargo-fuzz binary, `fuzz/corpus/NAME`,
/// `fuzz/regressions/NAME`), its property function and its allocation bound.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub max_alloc_bytes: usize,
}

impl Target {
    /// Runs the target on `data` through `meter`, which runs the closure it
    /// is given and returns the peak heap bytes live while it ran, and fails
    /// when that peak is past [`Target::max_alloc_bytes`].
    pub fn run_metered(&self, data: &[u8], meter: impl FnOnce(&mut dyn FnMut()) -> u64) {
        let peak = meter(&mut || (self.run)(data));
        let bound = u64::try_from(self.max_alloc_bytes).unwrap_or(u64::MAX);
        assert!(
            peak <= bound,
            "fuzz target {}: {peak} heap bytes live at once, its bound is {bound}",
            self.name
        );
    }
}

/// Every target, sorted by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "api_json",
        run: api::api_json,
        max_alloc_bytes: api::API_JSON_MAX_ALLOC_BYTES,
    },
    Target {
        name: "config",
        run: config::config,
        max_alloc_bytes: config::CONFIG_MAX_ALLOC_BYTES,
    },
    Target {
        name: "form",
        run: web::form,
        max_alloc_bytes: web::FORM_MAX_ALLOC_BYTES,
    },
    Target {
        name: "mime",
        run: email::mime,
        max_alloc_bytes: email::MIME_MAX_ALLOC_BYTES,
    },
    Target {
        name: "photo_heic",
        run: photos::photo_heic,
        max_alloc_bytes: photos::PHOTO_MAX_ALLOC_BYTES,
    },
    Target {
        name: "photo_jpeg",
        run: photos::photo_jpeg,
        max_alloc_bytes: photos::PHOTO_MAX_ALLOC_BYTES,
    },
    Target {
        name: "photo_png",
        run: photos::photo_png,
        max_alloc_bytes: photos::PHOTO_MAX_ALLOC_BYTES,
    },
    Target {
        name: "smtp_session",
        run: smtp::smtp_session,
        max_alloc_bytes: smtp::SMTP_SESSION_MAX_ALLOC_BYTES,
    },
    Target {
        name: "sse_last_event_id",
        run: api::sse_last_event_id,
        max_alloc_bytes: api::SSE_LAST_EVENT_ID_MAX_ALLOC_BYTES,
    },
    Target {
        name: "telnyx",
        run: sms::telnyx,
        max_alloc_bytes: sms::TELNYX_MAX_ALLOC_BYTES,
    },
    Target {
        name: "twilio",
        run: sms::twilio,
        max_alloc_bytes: sms::TWILIO_MAX_ALLOC_BYTES,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Splits fuzz input into the pieces a target needs, never failing: what is
/// missing reads as zero or empty, so every input drives the target.
pub(crate) struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self(data)
    }

    /// The next byte (0 past the end).
    pub(crate) fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        first
    }

    /// The next two bytes, little-endian (0 past the end).
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next eight bytes, little-endian (0 past the end).
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|_| self.byte()))
    }

    /// Everything up to the next `separator` (which is consumed), or the rest.
    pub(crate) fn until(&mut self, separator: u8) -> &'a [u8] {
        match self.0.iter().position(|&b| b == separator) {
            Some(at) => {
                let (head, tail) = self.0.split_at(at);
                self.0 = tail.get(1..).unwrap_or_default();
                head
            }
            None => self.rest(),
        }
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// A one-byte change chosen by the input: which part to change (`what`, read
/// by each target), where (`position`) and how (`mask`, see [`flip`]).
#[derive(Clone, Copy)]
pub(crate) struct Change {
    pub(crate) what: u8,
    pub(crate) mask: u8,
    pub(crate) position: u16,
}

impl Change {
    /// Reads a change: `what`, `mask`, then `position`.
    pub(crate) fn read(input: &mut Input<'_>) -> Self {
        Self {
            what: input.byte(),
            mask: input.byte(),
            position: input.u16(),
        }
    }

    /// `bytes` with one byte changed; `None` when empty.
    pub(crate) fn apply(self, bytes: &[u8]) -> Option<Vec<u8>> {
        flip(bytes, self.position, self.mask)
    }

    /// `text` with one byte changed; `None` when empty or no longer UTF-8.
    pub(crate) fn apply_text(self, text: &str) -> Option<String> {
        String::from_utf8(self.apply(text.as_bytes())?).ok()
    }
}

/// `bytes` with the byte at `position % len` XOR-ed with `mask` (0 counts as
/// 1, so the byte always changes); `None` for empty `bytes`.
pub(crate) fn flip(bytes: &[u8], position: u16, mask: u8) -> Option<Vec<u8>> {
    let mut flipped = bytes.to_vec();
    let at = usize::from(position).checked_rem(flipped.len())?;
    let byte = flipped.get_mut(at)?;
    *byte ^= mask.max(1);
    Some(flipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    /// The names of the entries of `dir` (file stems for files), sorted.
    fn entries(dir: &Path, files_ending: Option<&str>) -> BTreeSet<String> {
        let Ok(read) = std::fs::read_dir(dir) else {
            return BTreeSet::new();
        };
        read.map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter_map(|name| match files_ending {
                Some(ending) => name.strip_suffix(ending).map(str::to_owned),
                None => Some(name),
            })
            .collect()
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let Ok(read) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = read.map(|entry| entry.unwrap().path()).collect();
        files.sort();
        files
    }

    fn names() -> BTreeSet<String> {
        TARGETS.iter().map(|t| t.name.to_owned()).collect()
    }

    #[test]
    fn targets_are_sorted_by_unique_name() {
        let listed: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(listed, sorted);
    }

    #[test]
    fn every_target_has_a_fuzz_binary_and_a_corpus_and_nothing_else_does() {
        let fuzz = fuzz_dir();
        assert_eq!(entries(&fuzz.join("fuzz_targets"), Some(".rs")), names());
        assert_eq!(entries(&fuzz.join("corpus"), None), names());
        let regressions = entries(&fuzz.join("regressions"), None);
        assert!(
            regressions.is_subset(&names()),
            "regressions for unknown targets: {:?}",
            regressions.difference(&names()).collect::<Vec<_>>()
        );

        let manifest = ::config::Config::builder()
            .add_source(::config::File::from(fuzz.join("Cargo.toml")))
            .build()
            .unwrap();
        let bins: BTreeSet<String> = manifest
            .get_array("bin")
            .unwrap()
            .into_iter()
            .map(|bin| {
                let table = bin.into_table().unwrap();
                let name = table["name"].clone().into_string().unwrap();
                let path = table["path"].clone().into_string().unwrap();
                assert_eq!(path, format!("fuzz_targets/{name}.rs"));
                name
            })
            .collect();
        assert_eq!(bins, names());

        for target in TARGETS {
            assert!(
                !files(&fuzz.join("corpus").join(target.name)).is_empty(),
                "fuzz/corpus/{} holds no seed",
                target.name
            );
        }
    }

    #[test]
    fn every_corpus_and_regression_input_holds_its_properties_within_its_bound() {
        let fuzz = fuzz_dir();
        let mut replayed = 0;
        for target in TARGETS {
            for dir in ["corpus", "regressions"] {
                for file in files(&fuzz.join(dir).join(target.name)) {
                    let data = std::fs::read(&file).unwrap();
                    // Names the input when a property fails (the test's output).
                    eprintln!("replaying {}", file.display());
                    target.run_metered(&data, |run| allocation_counter::measure(run).bytes_max);
                    replayed += 1;
                }
            }
        }
        assert!(replayed >= TARGETS.len());
    }

    #[test]
    fn a_target_past_its_allocation_bound_fails() {
        fn allocates(data: &[u8]) {
            std::hint::black_box(vec![0u8; data.len()]);
        }
        let target = Target {
            name: "allocates",
            run: allocates,
            max_alloc_bytes: 100,
        };
        let meter = |run: &mut dyn FnMut()| allocation_counter::measure(run).bytes_max;
        target.run_metered(&[0; 100], meter);
        let over = std::panic::catch_unwind(|| target.run_metered(&[0; 101], meter));
        assert!(over.is_err());
    }

    #[test]
    fn the_body_cap_is_the_default_server_max_body_bytes() {
        let defaults = crate::config::Settings::load(None).unwrap();
        assert_eq!(defaults.server.max_body_bytes, MAX_BODY_BYTES);
    }

    #[test]
    fn input_reads_zero_and_empty_past_its_end() {
        let mut input = Input::new(b"\x01\x02\x03a\nb");
        assert_eq!(input.byte(), 1);
        assert_eq!(input.u16(), 0x0302);
        assert_eq!(input.until(b'\n'), b"a");
        assert_eq!(input.until(b'\n'), b"b");
        assert_eq!(input.byte(), 0);
        assert_eq!(input.u16(), 0);
        assert_eq!(input.rest(), b"");
    }

    #[test]
    fn flip_always_changes_exactly_one_byte() {
        assert_eq!(flip(b"abc", 4, 0), Some(b"acc".to_vec()));
        assert_eq!(flip(b"abc", 0, 0x20), Some(b"Abc".to_vec()));
        assert_eq!(flip(b"", 7, 1), None);
    }
}
