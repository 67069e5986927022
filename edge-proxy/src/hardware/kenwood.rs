//! Kenwood-style CAT over a serial port (TS-2000, TS-590, Elecraft K3 and
//! kin): `;`-terminated ASCII, a query answered with the command and its
//! value, a set answered with nothing. Framing and resynchronisation after
//! line noise are `shared_protocol::cat::Framer`'s.
//!
//! The client is generic over the byte stream, so it runs on a real serial
//! port (`tokio-serial`, [`super::open_serial`]) or on anything else that reads and
//! writes; the tests drive `station-sim`'s simulator on a pseudo-terminal.

use std::time::Duration;

use shared_protocol::cat::{mode_digit, mode_name, parse_if, Framer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum CatError {
    #[error("serial I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Port(#[from] super::OpenError),
    #[error("the radio did not answer {0:?} within {1:?}")]
    Timeout(String, Duration),
    #[error("the radio refused {0:?} (answered ?;)")]
    Refused(String),
    #[error("unexpected answer to {command:?}: {answer:?}")]
    Unexpected { command: String, answer: String },
    #[error("the radio's answer to {0:?} stopped half-way (torn frame)")]
    Torn(String),
    #[error("the line closed (unplugged?)")]
    Closed,
    #[error(
        "the serial port {0} is busy: another program has it open. Give programs the proxy's \
         rig port (rigctl_listen, Hamlib NET rigctl) or its virtual port (virtual_cat) instead"
    )]
    Busy(String),
}

impl CatError {
    /// An error opening `port`, told apart when another program holds it.
    pub fn opening(port: &str, e: super::OpenError) -> CatError {
        if e.is_busy() {
            CatError::Busy(port.to_string())
        } else {
            CatError::Port(e)
        }
    }

    /// Whether the line itself is in doubt (as opposed to one refused or
    /// malformed answer): the link should be reopened.
    pub fn link_down(&self) -> bool {
        matches!(
            self,
            CatError::Io(_)
                | CatError::Port(_)
                | CatError::Timeout(..)
                | CatError::Torn(_)
                | CatError::Closed
                | CatError::Busy(_)
        )
    }
}

/// A radio sends an answer in one burst; once one has started, a silence
/// this long means it was cut off. Modbus RTU uses the same idea (an
/// inter-character timeout); 20 ms is 77 characters at 38400 baud and still
/// 10 at 4800.
const TORN_AFTER: Duration = Duration::from_millis(20);

/// Whether an answer has the exact shape its command's answers have, so a
/// frame torn by line noise (`FA0001;`) is never taken for a reading.
fn well_formed(frame: &str) -> bool {
    let body = frame.get(2..).unwrap_or("");
    let digits = |n: usize| body.len() == n && body.bytes().all(|b| b.is_ascii_digit());
    match &frame[..frame.len().min(2)] {
        "FA" | "FB" => digits(11),
        "MD" => digits(1),
        "ID" | "PC" => digits(3),
        "SM" | "RM" => digits(5),
        "IF" => body.len() == 35 && parse_if(frame).is_some(),
        _ => true,
    }
}

pub struct Kenwood<S> {
    io: S,
    framer: Framer,
    pending: std::collections::VecDeque<String>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Kenwood<S> {
    pub fn new(io: S, timeout: Duration) -> Self {
        Kenwood {
            io,
            framer: Framer::default(),
            pending: Default::default(),
            timeout,
        }
    }

    /// Bytes of line noise skipped so far.
    pub fn discarded(&self) -> u64 {
        self.framer.discarded
    }

    async fn send(&mut self, command: &str) -> Result<(), CatError> {
        self.io.write_all(format!("{command};").as_bytes()).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Sends a query and returns the answer that starts with the same two
    /// letters (stale answers from before are skipped).
    pub async fn query(&mut self, command: &str) -> Result<String, CatError> {
        self.pending.clear();
        self.send(command).await?;
        let prefix = &command[..command.len().min(2)];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            while let Some(frame) = self.pending.pop_front() {
                if frame == "?" {
                    return Err(CatError::Refused(command.into()));
                }
                if frame.starts_with(prefix) && well_formed(&frame) {
                    return Ok(frame);
                }
                // A torn or foreign frame that merely starts like the answer.
                self.framer.discarded += frame.len() as u64;
            }
            let mut buf = [0u8; 256];
            let started = self.framer.partial();
            let wait = if started {
                deadline.min(tokio::time::Instant::now() + TORN_AFTER)
            } else {
                deadline
            };
            let n = match tokio::time::timeout_at(wait, self.io.read(&mut buf)).await {
                Ok(read) => read?,
                Err(_) => {
                    self.framer.reset();
                    return Err(if started {
                        CatError::Torn(command.into())
                    } else {
                        CatError::Timeout(command.into(), self.timeout)
                    });
                }
            };
            if n == 0 {
                return Err(CatError::Closed);
            }
            self.pending.extend(self.framer.push(&buf[..n]));
        }
    }

    /// Identifies the radio (`ID;` -> `ID019;` on a TS-2000): a warm link
    /// has answered this before it reports connected.
    pub async fn identify(&mut self) -> Result<u16, CatError> {
        let answer = self.query("ID").await?;
        answer[2..].parse().map_err(|_| CatError::Unexpected {
            command: "ID".into(),
            answer,
        })
    }

    pub async fn frequency(&mut self) -> Result<u64, CatError> {
        let answer = self.query("FA").await?;
        answer[2..].parse().map_err(|_| CatError::Unexpected {
            command: "FA".into(),
            answer,
        })
    }

    /// VFO B (`FB;`), the split or second receiver's frequency.
    pub async fn frequency_b(&mut self) -> Result<u64, CatError> {
        let answer = self.query("FB").await?;
        answer[2..].parse().map_err(|_| CatError::Unexpected {
            command: "FB".into(),
            answer,
        })
    }

    /// The TX meter (`RM;` -> `RM` type digit and four-digit reading; type 1
    /// is SWR, 2 compression, 3 ALC on a TS-2000): `(type, reading)`.
    pub async fn tx_meter(&mut self) -> Result<(u8, u16), CatError> {
        let answer = self.query("RM").await?;
        let parsed = (answer[2..3].parse(), answer[3..].parse());
        match parsed {
            (Ok(kind), Ok(value)) => Ok((kind, value)),
            _ => Err(CatError::Unexpected {
                command: "RM".into(),
                answer,
            }),
        }
    }

    pub async fn set_frequency(&mut self, hz: u64) -> Result<(), CatError> {
        if hz > 99_999_999_999 {
            return Err(CatError::Refused(format!("FA{hz}")));
        }
        self.send(&format!("FA{hz:011}")).await
    }

    pub async fn mode(&mut self) -> Result<&'static str, CatError> {
        let answer = self.query("MD").await?;
        let digit: u8 = answer[2..].parse().map_err(|_| CatError::Unexpected {
            command: "MD".into(),
            answer: answer.clone(),
        })?;
        Ok(mode_name(digit))
    }

    pub async fn set_mode(&mut self, name: &str) -> Result<(), CatError> {
        let digit = mode_digit(name).ok_or_else(|| CatError::Refused(format!("MD {name}")))?;
        self.send(&format!("MD{digit}")).await
    }

    /// `(frequency, transmitting, mode)` in one round trip.
    pub async fn status(&mut self) -> Result<(u64, bool, &'static str), CatError> {
        let answer = self.query("IF").await?;
        let (hz, tx, mode) = parse_if(&answer).ok_or_else(|| CatError::Unexpected {
            command: "IF".into(),
            answer,
        })?;
        Ok((hz, tx, mode_name(mode)))
    }

    pub async fn set_ptt(&mut self, on: bool) -> Result<(), CatError> {
        self.send(if on { "TX" } else { "RX" }).await
    }

    /// Forward power from the radio's own meter: while transmitting, the
    /// main meter (`SM0;`) shows RF output on its 0..30 bar graph, full
    /// scale 100 W on a TS-2000. Bar-graph resolution (about 3 W): good for
    /// "is anything coming out", not for fine readings; an LP-100A is.
    pub async fn power_watts(&mut self) -> Result<f64, CatError> {
        let answer = self.query("SM0").await?;
        let bars: f64 = answer
            .get(3..)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| CatError::Unexpected {
                command: "SM0".into(),
                answer: answer.clone(),
            })?;
        Ok(bars * 100.0 / 30.0)
    }

    /// The receive S-meter (`SM0;` while receiving: 0..30 bars, S9 at 15 on
    /// a TS-2000) in dB relative to S9, calibrated as Hamlib's TS-2000
    /// driver does. Only meaningful while receiving: keyed, the same
    /// meter shows RF output ([`Self::power_watts`]).
    pub async fn strength_db(&mut self) -> Result<i32, CatError> {
        let answer = self.query("SM0").await?;
        let bars: u16 = answer
            .get(3..)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| CatError::Unexpected {
                command: "SM0".into(),
                answer: answer.clone(),
            })?;
        Ok(shared_protocol::cat::strength_db(bars))
    }

    /// The output power setting in watts (`PC;`).
    pub async fn power_setting(&mut self) -> Result<u32, CatError> {
        let answer = self.query("PC").await?;
        answer[2..].parse().map_err(|_| CatError::Unexpected {
            command: "PC".into(),
            answer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::open_serial;
    use station_sim::kenwood::Radio;
    use station_sim::pty::PtyRadio;

    async fn open(sim: &PtyRadio) -> Kenwood<tokio_serial::SerialStream> {
        let port = open_serial(sim.path.to_str().unwrap(), 38_400).unwrap();
        Kenwood::new(port, Duration::from_millis(500))
    }

    #[test]
    fn a_busy_port_is_named_and_points_to_the_rig_port() {
        let busy = crate::hardware::OpenError {
            path: "/dev/ttyUSB0".into(),
            source: tokio_serial::Error::new(
                tokio_serial::ErrorKind::Io(std::io::ErrorKind::ResourceBusy),
                "Device or resource busy",
            ),
        };
        let e = CatError::opening("/dev/ttyUSB0", busy);
        assert!(matches!(e, CatError::Busy(_)));
        let text = e.to_string();
        assert!(
            text.contains("/dev/ttyUSB0") && text.contains("rigctl_listen"),
            "{text}"
        );
        let gone = crate::hardware::OpenError {
            path: "/dev/ttyUSB0".into(),
            source: tokio_serial::Error::new(tokio_serial::ErrorKind::NoDevice, "No such file"),
        };
        assert!(matches!(
            CatError::opening("/dev/ttyUSB0", gone),
            CatError::Port(_)
        ));
    }

    #[tokio::test]
    async fn drives_the_simulated_radio_over_a_pty() {
        let sim = PtyRadio::start(Radio::default()).unwrap();
        let mut cat = open(&sim).await;
        assert_eq!(cat.identify().await.unwrap(), 19);
        assert_eq!(cat.frequency().await.unwrap(), 14_074_000);
        assert_eq!(cat.frequency_b().await.unwrap(), 7_074_000);
        assert_eq!(
            cat.tx_meter().await.unwrap(),
            (1, 0),
            "SWR meter, receiving"
        );
        cat.set_frequency(7_074_000).await.unwrap();
        cat.set_mode("CW").await.unwrap();
        cat.set_ptt(true).await.unwrap();
        assert_eq!(cat.status().await.unwrap(), (7_074_000, true, "CW"));
        assert_eq!(cat.tx_meter().await.unwrap(), (1, 5), "SWR meter, keyed");
        cat.set_ptt(false).await.unwrap();
        assert_eq!(cat.mode().await.unwrap(), "CW");
        assert_eq!(cat.power_setting().await.unwrap(), 100);
        assert_eq!(cat.strength_db().await.unwrap(), 0, "S9 on the simulator");
        sim.radio.lock().unwrap().smeter = 20;
        assert_eq!(cat.strength_db().await.unwrap(), 20, "S9+20");
        assert!(!sim.radio.lock().unwrap().tx);
    }

    #[tokio::test]
    async fn resynchronises_after_noise_and_reports_silence_and_refusals() {
        let sim = PtyRadio::start(Radio::default()).unwrap();
        let mut cat = open(&sim).await;
        sim.faults
            .garbage
            .lock()
            .unwrap()
            .extend_from_slice(b"\x00\xffFA0001;\x13");
        assert_eq!(
            cat.frequency().await.unwrap(),
            14_074_000,
            "noise and a torn frame before the answer"
        );
        assert!(cat.discarded() > 0);
        assert!(matches!(cat.query("ZZ").await, Err(CatError::Refused(_))));
        sim.faults
            .silent
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            matches!(cat.frequency().await, Err(CatError::Timeout(..))),
            "silence is a timeout, not a hang"
        );
        sim.faults
            .silent
            .store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            cat.frequency().await.unwrap(),
            14_074_000,
            "and it recovers"
        );
    }

    #[tokio::test]
    async fn a_torn_answer_is_reported_at_once_and_the_next_one_is_read() {
        let sim = PtyRadio::start(Radio::default()).unwrap();
        let mut cat = open(&sim).await;
        cat.set_ptt(true).await.unwrap();
        assert!(cat.power_watts().await.unwrap() > 90.0, "keyed: RF out");
        sim.drop_tx_mid_frame();
        assert!(
            matches!(cat.status().await, Err(CatError::Torn(_))),
            "torn, told apart from a silent radio"
        );
        assert_eq!(
            cat.status().await.unwrap(),
            (14_074_000, false, "USB"),
            "the radio fell back to receive"
        );
    }
}
