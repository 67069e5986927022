//! Kenwood-style CAT over a serial port (TS-2000, TS-590, Elecraft K3 and
//! kin): `;`-terminated ASCII, a query answered with the command and its
//! value, a set answered with nothing. Framing and resynchronisation after
//! line noise are `shared_protocol::cat::Framer`'s.
//!
//! The client is generic over the byte stream, so it runs on a real serial
//! port (`tokio-serial`, [`super::open_serial`]) or on anything else that reads and
//! writes; the tests drive `station-sim`'s simulator on a pseudo-terminal.
//!
//! Auto information ([`Kenwood::enable_auto_info`], `AI2;`): the radio then
//! sends `FA`, `MD`, `IF` ... by itself whenever something changes, between
//! the client's queries and in the middle of them. Every frame that tells
//! state, asked for or not, is applied to one [`CatState`] in the order it
//! arrived, which on a serial line is the order the radio said them: a
//! report that arrives while the client waits for an answer is neither
//! taken for the answer nor lost, and an answer never overwrites a newer
//! report (it is older only if it arrived earlier). [`Kenwood::changed`]
//! waits for such news between queries (cancel-safe, for a `select!`).
//! With AI on, every set is followed by an `ID;` round trip (as Hamlib
//! verifies its sets): what arrives after its answer was said after the
//! set took effect, so a report sent just before a `TX;` is never read as
//! the radio's answer to being keyed.

use std::time::Duration;

use shared_protocol::cat::{mode_digit, mode_name, parse_if, CatState, Framer, Report};
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
    #[error("a report the radio sent unasked stopped half-way (torn frame)")]
    TornReport,
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
                | CatError::TornReport
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
    /// Whole frames read and not looked at yet, in arrival order.
    pending: std::collections::VecDeque<String>,
    timeout: Duration,
    /// What the radio's frames said of its state, in arrival order.
    state: CatState,
    /// The state as it was before the last report (for a poll's answer:
    /// what the reports had said until then).
    before: CatState,
    /// The state changed since the caller last took it.
    news: bool,
    /// `AI2;` is on: the radio reports its changes itself.
    auto_info: bool,
    /// The `AI` setting found at open, put back by [`Self::restore_auto_info`].
    ai_before: Option<u8>,
    /// A set was sent since the last `IF;` poll.
    set_since_poll: bool,
    /// Reports the radio sent unasked.
    reports: u64,
    /// Polls that found a change no report had told (auto information lost).
    missed: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Kenwood<S> {
    pub fn new(io: S, timeout: Duration) -> Self {
        Kenwood {
            io,
            framer: Framer::default(),
            pending: Default::default(),
            timeout,
            state: CatState::default(),
            before: CatState::default(),
            news: false,
            auto_info: false,
            ai_before: None,
            set_since_poll: false,
            reports: 0,
            missed: 0,
        }
    }

    /// Bytes of line noise skipped so far (torn frames, and frames that are
    /// neither an answer nor a report of state).
    pub fn discarded(&self) -> u64 {
        self.framer.discarded
    }

    /// Reports of state the radio sent unasked, so far.
    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// Polls that found a change the radio had not reported although auto
    /// information was on (each time, `AI2;` is sent again).
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// Whether the radio reports its changes itself (`AI2;` took).
    pub fn auto_info(&self) -> bool {
        self.auto_info
    }

    /// Applies a frame that tells state; returns whether it was one.
    fn observe(&mut self, frame: &str) -> bool {
        let Some(report) = Report::parse(frame) else {
            return false;
        };
        self.before = self.state;
        self.news |= self.state.apply(report);
        true
    }

    /// A frame that is not the answer being waited for: a report is applied
    /// (in its order), anything else skipped.
    fn unasked(&mut self, frame: &str) {
        if self.observe(frame) {
            self.reports += 1;
        } else {
            self.framer.discarded += frame.len() as u64;
        }
    }

    /// The frames read so far and not looked at yet, in order.
    fn drain(&mut self) {
        while let Some(frame) = self.pending.pop_front() {
            self.unasked(&frame);
        }
    }

    /// The state as the radio last told it, once it is whole; takes the news.
    fn take_state(&mut self) -> Option<(u64, bool, &'static str)> {
        let (hz, tx, mode) = self.state.complete()?;
        self.news = false;
        Some((hz, tx, mode_name(mode)))
    }

    /// Waits until the radio reports a change by itself (auto information)
    /// and returns its state then. Reports that arrived during earlier
    /// queries and were not taken yet count too, so nothing told between
    /// two polls waits for the next one.
    ///
    /// Cancel-safe: whatever was read is kept in the framer and `pending`
    /// before the next await, so a `select!` may drop this at any point.
    pub async fn changed(&mut self) -> Result<(u64, bool, &'static str), CatError> {
        let mut buf = [0u8; 256];
        loop {
            self.drain();
            if self.news {
                if let Some(state) = self.take_state() {
                    return Ok(state);
                }
            }
            let started = self.framer.partial();
            let read = self.io.read(&mut buf);
            let n = if started {
                match tokio::time::timeout(TORN_AFTER, read).await {
                    Ok(read) => read?,
                    Err(_) => {
                        self.framer.reset();
                        return Err(CatError::TornReport);
                    }
                }
            } else {
                read.await?
            };
            if n == 0 {
                return Err(CatError::Closed);
            }
            let frames = self.framer.push(&buf[..n]);
            self.pending.extend(frames);
        }
    }

    async fn send(&mut self, command: &str) -> Result<(), CatError> {
        // No flush: a serial port's `flush` is `tcdrain`, a blocking call
        // that waits until the bytes are on the wire (milliseconds at CAT
        // speeds, for ever on a stalled line) on the thread that runs the
        // radio link; the kernel sends what `write` handed it anyway.
        self.io.write_all(format!("{command};").as_bytes()).await?;
        Ok(())
    }

    /// Sends a query and returns the answer that starts with the same two
    /// letters. What arrived before it was sent cannot be its answer (stale
    /// answers are skipped); reports among it, and among what arrives while
    /// waiting, are applied in their order (the answer too, if it tells
    /// state); frames after the answer wait in `pending` for the next look.
    pub async fn query(&mut self, command: &str) -> Result<String, CatError> {
        self.drain();
        self.send(command).await?;
        let prefix = &command[..command.len().min(2)];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            while let Some(frame) = self.pending.pop_front() {
                if frame == "?" {
                    return Err(CatError::Refused(command.into()));
                }
                if frame.starts_with(prefix) && well_formed(&frame) {
                    self.observe(&frame);
                    return Ok(frame);
                }
                // A report sent unasked, or a torn or foreign frame that
                // merely starts like the answer.
                self.unasked(&frame);
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

    /// Sends a set. With auto information on, waits for the answer to an
    /// `ID;` sent after it: the radio takes commands in order, so what it
    /// says after that answer it said after the set took effect (and a
    /// `?;` before it is this set refused).
    async fn set(&mut self, command: &str) -> Result<(), CatError> {
        self.set_since_poll = true;
        self.send(command).await?;
        if !self.auto_info {
            return Ok(());
        }
        match self.query("ID").await {
            Ok(_) => Ok(()),
            Err(CatError::Refused(_)) => Err(CatError::Refused(command.into())),
            Err(e) => Err(e),
        }
    }

    pub async fn set_frequency(&mut self, hz: u64) -> Result<(), CatError> {
        if hz > 99_999_999_999 {
            return Err(CatError::Refused(format!("FA{hz}")));
        }
        self.set(&format!("FA{hz:011}")).await
    }

    /// Turns auto information on (`AI2;`: the radio sends `FA`, `MD`, `IF`
    /// ... by itself on every change) and checks that it took. Returns
    /// whether it did; a radio that refuses `AI` or does not answer it is
    /// polled as before. What was set before is put back by
    /// [`Self::restore_auto_info`].
    pub async fn enable_auto_info(&mut self) -> Result<bool, CatError> {
        let before = match self.query("AI").await {
            Ok(answer) => answer[2..].parse::<u8>().ok(),
            Err(CatError::Refused(_) | CatError::Timeout(..)) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.send("AI2").await?;
        let on = match self.query("AI").await {
            Ok(answer) => answer == "AI2",
            Err(CatError::Refused(_) | CatError::Timeout(..)) => false,
            Err(e) => return Err(e),
        };
        self.auto_info = on;
        self.ai_before = before.filter(|_| on);
        Ok(on)
    }

    /// Puts back the `AI` setting found by [`Self::enable_auto_info`] (at
    /// shutdown), so a program that opens the port next finds the radio
    /// as it was.
    pub async fn restore_auto_info(&mut self) -> Result<(), CatError> {
        self.auto_info = false;
        match self.ai_before.take() {
            Some(before) if before != 2 => self.send(&format!("AI{before}")).await,
            _ => Ok(()),
        }
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
        self.set(&format!("MD{digit}")).await
    }

    /// `(frequency, transmitting, mode)` in one round trip: the `IF`
    /// answer, which is also the newest state (what the radio reported
    /// before it is older; what it reports after waits for [`Self::changed`]).
    ///
    /// With auto information on, an answer that differs from what the
    /// reports had said (and no set of ours explains) means the radio
    /// stopped reporting (power-cycled without its AI setting kept): `AI2;`
    /// is sent again.
    pub async fn status(&mut self) -> Result<(u64, bool, &'static str), CatError> {
        let answer = self.query("IF").await?;
        let (hz, tx, mode) = parse_if(&answer).ok_or_else(|| CatError::Unexpected {
            command: "IF".into(),
            answer,
        })?;
        let explained = std::mem::take(&mut self.set_since_poll);
        if self.auto_info
            && !explained
            && self
                .before
                .complete()
                .is_some_and(|told| told != (hz, tx, mode))
        {
            self.missed += 1;
            self.send("AI2").await?;
        }
        self.news = false;
        Ok((hz, tx, mode_name(mode)))
    }

    pub async fn set_ptt(&mut self, on: bool) -> Result<(), CatError> {
        self.set(if on { "TX" } else { "RX" }).await
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

    /// `IF` as the simulated TS-2000 answers it (with its `;`).
    fn status_of(hz: u64, tx: bool) -> String {
        let r = Radio {
            vfo_a_hz: hz,
            tx,
            ..Radio::default()
        };
        r.if_status()
    }

    /// A scripted line: the client on one end, the test playing the radio
    /// on the other (what it writes arrives in that order).
    fn scripted() -> (Kenwood<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (client, radio) = tokio::io::duplex(4096);
        (Kenwood::new(client, Duration::from_millis(500)), radio)
    }

    async fn say(radio: &mut tokio::io::DuplexStream, what: &str) {
        radio.write_all(what.as_bytes()).await.unwrap();
    }

    async fn next_change(cat: &mut Kenwood<tokio::io::DuplexStream>) -> u64 {
        tokio::time::timeout(Duration::from_secs(2), cat.changed())
            .await
            .expect("a change reported")
            .unwrap()
            .0
    }

    #[tokio::test]
    async fn reports_during_a_query_are_neither_its_answer_nor_lost_nor_applied_out_of_order() {
        let (mut cat, mut radio) = scripted();
        say(&mut radio, &status_of(14_000_000, false)).await;
        assert_eq!(cat.status().await.unwrap().0, 14_000_000);
        // While the client waits for its IF answer, the knob is turned: the
        // radio's FA report comes first, then the answer (said after it),
        // then a later report in the same burst.
        let burst = format!(
            "FA00014000100;{}FA00014000300;",
            status_of(14_000_200, false)
        );
        say(&mut radio, &burst).await;
        assert_eq!(
            cat.status().await.unwrap(),
            (14_000_200, false, "USB"),
            "the IF answer, not the FA report before it"
        );
        assert_eq!(
            next_change(&mut cat).await,
            14_000_300,
            "the report after the answer is not lost, and nothing older comes back"
        );
        // The same with nothing after the answer: a later report of
        // something else carries the answer's frequency, not the older one.
        let burst = format!("FA00014000310;{}", status_of(14_000_320, false));
        say(&mut radio, &burst).await;
        assert_eq!(cat.status().await.unwrap().0, 14_000_320);
        say(&mut radio, "MD1;").await;
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(2), cat.changed())
                .await
                .unwrap()
                .unwrap(),
            (14_000_320, false, "LSB")
        );
        say(&mut radio, "MD2;").await;
        assert_eq!(next_change(&mut cat).await, 14_000_320);
        // A report that arrives while another query waits (the S-meter).
        say(&mut radio, "FA00014000400;SM00015;").await;
        assert_eq!(cat.strength_db().await.unwrap(), 0);
        assert_eq!(next_change(&mut cat).await, 14_000_400);
        assert_eq!(cat.reports(), 6);
        assert_eq!(cat.discarded(), 0, "reports are not noise");
        // Reports that change nothing are not news.
        say(&mut radio, "FA00014000400;MD3;").await;
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(2), cat.changed())
                .await
                .unwrap()
                .unwrap(),
            (14_000_400, false, "CW")
        );
    }

    #[tokio::test]
    async fn waiting_for_a_report_is_cancel_safe_and_a_torn_one_is_told() {
        let (mut cat, mut radio) = scripted();
        say(&mut radio, &status_of(14_000_000, false)).await;
        cat.status().await.unwrap();
        // Half a report, then the wait is dropped (a select! took another
        // branch); the rest arrives later: nothing read is lost.
        say(&mut radio, "FA0001").await;
        assert!(
            tokio::time::timeout(Duration::from_millis(5), cat.changed())
                .await
                .is_err(),
            "nothing whole yet"
        );
        say(&mut radio, "4074000;").await;
        assert_eq!(next_change(&mut cat).await, 14_074_000);
        // Half a report and silence: torn, told apart from no news.
        say(&mut radio, "FA0007").await;
        assert!(matches!(
            tokio::time::timeout(Duration::from_secs(2), cat.changed())
                .await
                .unwrap(),
            Err(CatError::TornReport)
        ));
        drop(radio);
        assert!(matches!(cat.changed().await, Err(CatError::Closed)));
    }

    #[tokio::test]
    async fn with_auto_information_the_simulator_reports_its_knob_and_sets_are_settled() {
        let sim = PtyRadio::start(Radio::default()).unwrap();
        let mut cat = open(&sim).await;
        cat.identify().await.unwrap();
        assert!(cat.enable_auto_info().await.unwrap());
        assert_eq!(sim.radio.lock().unwrap().ai, 2);
        cat.status().await.unwrap();
        sim.turn_vfo(7_074_000);
        let said = tokio::time::timeout(Duration::from_secs(2), cat.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(said, (7_074_000, false, "USB"), "the knob, unasked");
        sim.select_mode(3);
        let said = tokio::time::timeout(Duration::from_secs(2), cat.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(said.2, "CW");
        // A set, then keying, then a poll, back to back: the radio echoes
        // each set with an IF, and the one for the frequency (still on
        // receive) is on the line before the poll's answer. Each set waits
        // for the radio to have taken it, so the poll reads the keyed state.
        for round in 0..20 {
            cat.set_frequency(14_074_000 + round).await.unwrap();
            cat.set_ptt(true).await.unwrap();
            assert_eq!(
                cat.status().await.unwrap(),
                (14_074_000 + round, true, "CW"),
                "round {round}"
            );
            cat.set_ptt(false).await.unwrap();
            assert!(!cat.status().await.unwrap().1);
        }
        assert_eq!(cat.missed(), 0, "every change was reported");
        cat.set_mode("FSK-R").await.unwrap();
        cat.restore_auto_info().await.unwrap();
        assert_eq!(cat.query("AI").await.unwrap(), "AI0", "as it was found");
    }

    #[tokio::test]
    async fn a_radio_without_auto_information_is_polled() {
        let (mut cat, mut radio) = scripted();
        let asked = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let n = radio.read(&mut buf).await.unwrap();
            radio.write_all(b"?;").await.unwrap();
            (String::from_utf8_lossy(&buf[..n]).into_owned(), radio)
        });
        assert!(!cat.enable_auto_info().await.unwrap());
        assert!(!cat.auto_info());
        let (asked, _radio) = asked.await.unwrap();
        assert_eq!(asked, "AI;");
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
