//! Codec micro-benchmarks: encode + decode time and size per frame, the
//! hand-written MessagePack codec against serde_json for the same frames.
//!
//!     cargo bench -p shared-protocol --bench codec

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shared_protocol::frame::*;

fn frames() -> Vec<(&'static str, ServerFrame)> {
    let radio = Payload::Map(vec![
        ("freq_hz".into(), 14_074_000u64.into()),
        ("mode".into(), "USB".into()),
        ("ptt".into(), false.into()),
    ]);
    let mut state = State::new();
    state.insert("radio.state".to_string(), radio.clone());
    state.insert(
        "meter.power".to_string(),
        Payload::Map(vec![("watts".into(), 95.5.into())]),
    );
    vec![
        (
            "event.meter",
            ServerFrame::Event(Event {
                seq: 123_456,
                kind: "meter.power".into(),
                ts_ms: 1_700_000_000_000,
                payload: Payload::Map(vec![("watts".into(), 95.5.into())]),
            }),
        ),
        (
            "event.radio",
            ServerFrame::Event(Event {
                seq: 123_457,
                kind: "radio.state".into(),
                ts_ms: 1_700_000_000_001,
                payload: radio,
            }),
        ),
        (
            "snapshot",
            ServerFrame::Snapshot(Snapshot {
                upto: 123_457,
                state,
            }),
        ),
        ("accepted", ServerFrame::Accepted { upto: 42 }),
    ]
}

fn bench(c: &mut Criterion) {
    println!("{:<14} {:>12} {:>12}", "frame", "msgpack B", "json B");
    for (name, frame) in frames() {
        let mp = frame.encode().map(|b| b.len()).unwrap_or(0);
        let json = serde_json::to_vec(&frame).map(|b| b.len()).unwrap_or(0);
        println!("{name:<14} {mp:>12} {json:>12}");
    }
    let mut group = c.benchmark_group("encode+decode");
    for (name, frame) in frames() {
        group.bench_with_input(BenchmarkId::new("msgpack", name), &frame, |b, f| {
            b.iter(|| {
                let bytes = f.encode().expect("encodes");
                ServerFrame::decode(&bytes, usize::MAX).expect("decodes")
            })
        });
        group.bench_with_input(BenchmarkId::new("json", name), &frame, |b, f| {
            b.iter(|| {
                let bytes = serde_json::to_vec(f).expect("encodes");
                serde_json::from_slice::<ServerFrame>(&bytes).expect("decodes")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
