//! A Telepost LP-100A wattmeter on a serial port (115200 8N1): poll with
//! `P`, read a 43-character reply. The protocol, framing and parsing are
//! `shared_protocol::meter`'s; this is the I/O.

use std::time::Duration;

use shared_protocol::meter::{parse_lp100, Lp100Framer, MeterError, MeterReading, LP100_POLL};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The LP-100A's fixed line speed.
pub const LP100_BAUD: u32 = 115_200;

#[derive(Debug, thiserror::Error)]
pub enum Lp100Error {
    #[error("serial I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Port(#[from] super::OpenError),
    #[error("the meter did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the meter's reply stopped half-way (torn frame)")]
    Torn,
    #[error("bad reply from the meter: {0}")]
    Reply(#[from] MeterError),
    #[error("the line closed (unplugged?)")]
    Closed,
}

impl Lp100Error {
    /// Whether the line itself is in doubt: the link should be reopened.
    pub fn link_down(&self) -> bool {
        !matches!(self, Lp100Error::Reply(_))
    }
}

/// A reply is 43 characters in one burst (under 4 ms at 115200 baud): a
/// silence this long once it has started means it was cut off.
const TORN_AFTER: Duration = Duration::from_millis(20);

pub struct Lp100<S> {
    io: S,
    framer: Lp100Framer,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Lp100<S> {
    pub fn new(io: S, timeout: Duration) -> Self {
        Lp100 {
            io,
            framer: Lp100Framer::default(),
            timeout,
        }
    }

    /// Bytes of line noise skipped so far.
    pub fn discarded(&self) -> u64 {
        self.framer.discarded
    }

    /// Polls once and returns the reading.
    pub async fn read(&mut self) -> Result<MeterReading, Lp100Error> {
        // A late reply to an earlier poll must not pass for this one.
        self.framer.reset();
        // No flush (`tcdrain`, which blocks): see `kenwood::Kenwood::send`.
        self.io.write_all(&[LP100_POLL]).await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let started = self.framer.partial();
            let wait = if started {
                deadline.min(tokio::time::Instant::now() + TORN_AFTER)
            } else {
                deadline
            };
            let mut buf = [0u8; 128];
            let n = match tokio::time::timeout_at(wait, self.io.read(&mut buf)).await {
                Ok(read) => read?,
                Err(_) if started => return Err(Lp100Error::Torn),
                Err(_) => return Err(Lp100Error::Timeout(self.timeout)),
            };
            if n == 0 {
                return Err(Lp100Error::Closed);
            }
            if let Some(reply) = self.framer.push(&buf[..n]).pop() {
                return Ok(parse_lp100(&reply)?);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::open_serial;
    use station_sim::kenwood::Radio;
    use station_sim::pty::PtyMeter;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn reads_the_simulated_meter_through_noise_silence_and_torn_replies() {
        let radio = Arc::new(Mutex::new(Radio::default()));
        let sim = PtyMeter::start(radio.clone()).unwrap();
        let port = open_serial(sim.path.to_str().unwrap(), LP100_BAUD).unwrap();
        let mut meter = Lp100::new(port, Duration::from_millis(300));
        assert_eq!(meter.read().await.unwrap().watts, 0.0);
        radio.lock().unwrap().tx = true;
        let r = meter.read().await.unwrap();
        assert!((96.0..=102.0).contains(&r.watts), "{r:?}");
        assert!(r.swr >= 1.0);

        sim.faults
            .garbage
            .lock()
            .unwrap()
            .extend_from_slice(b"\x00\xff;0012");
        assert!(
            meter.read().await.unwrap().watts > 90.0,
            "noise and a torn start before the reply"
        );
        assert!(meter.discarded() > 0);

        sim.faults
            .tear_next
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(meter.read().await, Err(Lp100Error::Torn)));
        sim.faults
            .silent
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(meter.read().await, Err(Lp100Error::Timeout(_))));
        sim.faults
            .silent
            .store(false, std::sync::atomic::Ordering::Relaxed);
        radio.lock().unwrap().pa_failed = true;
        assert_eq!(meter.read().await.unwrap().watts, 0.0, "and it recovers");
    }
}
