//! Helpers shared by the benchmarks: where the fixtures are, and same-run
//! timing of interleaved rounds so that ratios are meaningful.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The shared fixtures folder; an empty path (so reads fail and the
/// benchmark falls back to forged evidence) when there is none.
pub(crate) fn fixtures() -> PathBuf {
    attest_gate_tests::fixtures_dir().unwrap_or_default()
}

/// Mean time per call of `f` over `n` calls.
fn per_call(n: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

/// Runs the bare check, warm and cold verification in 15 interleaved rounds
/// and prints their medians and ratios to the bare check.
#[allow(dead_code)] // Benchmarks with a baseline verifier call `report_ratios_with`.
pub(crate) fn report_ratios(
    title: &str,
    bare_label: &str,
    bare: impl Fn(),
    warm: impl Fn(),
    cold: impl Fn(),
) {
    report_ratios_with(title, bare_label, bare, warm, cold, &[]);
}

/// [`report_ratios`], with other verifiers timed in the same rounds.
pub(crate) fn report_ratios_with(
    title: &str,
    bare_label: &str,
    bare: impl Fn(),
    warm: impl Fn(),
    cold: impl Fn(),
    others: &[(&str, &dyn Fn())],
) {
    let (mut b, mut w, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let mut o: Vec<Vec<Duration>> = vec![Vec::new(); others.len()];
    for _ in 0..15 {
        b.push(per_call(200, &bare));
        w.push(per_call(200, &warm));
        c.push(per_call(50, &cold));
        for (times, (_, f)) in o.iter_mut().zip(others) {
            times.push(per_call(50, f));
        }
    }
    let (b, w, c) = (median(b), median(w), median(c));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ratio = |d: Duration| d.as_secs_f64() / b.as_secs_f64();
    println!("\n{title} — medians of 15 interleaved rounds:");
    println!("  {bare_label:<32}{:>8.1} us", us(b));
    println!(
        "  {:<32}{:>8.1} us  = {:.2} x bare (target <= 1.2)",
        "verify warm:",
        us(w),
        ratio(w)
    );
    println!(
        "  {:<32}{:>8.1} us  = {:.2} x bare",
        "verify cold:",
        us(c),
        ratio(c)
    );
    for (times, (label, _)) in o.into_iter().zip(others) {
        let t = median(times);
        println!(
            "  {label:<32}{:>8.1} us  = {:.2} x bare, {:.1} x our warm path",
            us(t),
            ratio(t),
            t.as_secs_f64() / w.as_secs_f64()
        );
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}
