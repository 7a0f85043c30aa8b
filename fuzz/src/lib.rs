//! The part every fuzz binary shares: run a `tipwire::fuzzing` target on one
//! input and hold it to its allocation bound, measured by a per-thread
//! counting allocator (allocation-counter's, which this crate installs).

/// Runs the target called `name` on `data`; panics (a finding for libFuzzer)
/// when one of its properties fails or it holds more heap than its bound.
pub fn run(name: &str, data: &[u8]) {
    let Some(target) = tipwire::fuzzing::target(name) else {
        panic!("no fuzz target called {name} in tipwire::fuzzing::TARGETS");
    };
    target.run_metered(data, |run| allocation_counter::measure(run).bytes_max);
}
