//! Prints one example of every frame as hex and as JSON-like text, for
//! people writing a client in another language (docs/PROTOCOL.md quotes it).
//!
//!     cargo run -p shared-protocol --example dump_frames

use shared_protocol::frame::*;

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let client = [
        ClientFrame::Hello(Hello {
            client_id: "dash-7f3a".into(),
            token: None,
            resume: Some(Resume {
                epoch: 42,
                last_seq: 17,
            }),
            t: Some(1_700_000_000_000),
            batch: false,
        }),
        ClientFrame::Publish(Publish {
            client_seq: 3,
            kind: "radio.set_freq".into(),
            payload: Payload::Map(vec![("hz".into(), 7_074_000.into())]),
            delivery: Delivery::Reliable,
            expires_at_ms: None,
            ttl_ms: None,
        }),
        ClientFrame::Ack { upto: 17 },
        ClientFrame::Ping(Ping { nonce: 1, t: 1234 }),
    ];
    let server = [
        ServerFrame::Event(Event {
            seq: 18,
            kind: "meter.power".into(),
            ts_ms: 1_700_000_000_000,
            payload: Payload::Map(vec![("watts".into(), 5.into())]),
        }),
        ServerFrame::Gap(Gap {
            from: 1,
            to: 9,
            reason: GapReason::Retention,
        }),
        ServerFrame::Accepted { upto: 3 },
    ];
    for frame in &client {
        println!("{frame:?}\n  {}\n", hex(&frame.encode().expect("encodes")));
    }
    for frame in &server {
        println!("{frame:?}\n  {}\n", hex(&frame.encode().expect("encodes")));
    }
}
