//! A client for Hamlib's `rigctld` (TCP, extended response protocol).
//!
//! Each command is sent with a leading `+`, which makes rigctld answer with
//! the command's name, one `Key: value` line per value (a bare value for
//! levels) and a final `RPRT n` (0 = ok, negative = a Hamlib error code):
//!
//! ```text
//! +f           get_freq:            +l RFPOWER_METER_WATTS   get_level: RFPOWER_METER_WATTS
//!              Frequency: 14074000                           65.625000
//!              RPRT 0                                        RPRT 0
//! ```

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum RigError {
    #[error("rigctld I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("rigctld did not answer within {0:?}")]
    Timeout(Duration),
    #[error("rigctld closed the connection")]
    Closed,
    /// Hamlib's own error code (`RPRT -n`), e.g. -1 invalid parameter.
    #[error("rigctld refused {command:?}: RPRT {code}")]
    Refused { command: String, code: i32 },
    #[error("rigctld answered {command:?} with something unexpected: {answer:?}")]
    Unexpected {
        command: String,
        answer: Vec<String>,
    },
}

pub struct Rigctld {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    timeout: Duration,
}

impl Rigctld {
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, RigError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| RigError::Timeout(timeout))??;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Rigctld {
            reader: BufReader::new(r),
            writer: w,
            timeout,
        })
    }

    /// Sends one command; returns its value lines (without the echo and RPRT).
    pub async fn command(&mut self, command: &str) -> Result<Vec<String>, RigError> {
        self.writer
            .write_all(format!("+{command}\n").as_bytes())
            .await?;
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.read_answer(command))
            .await
            .map_err(|_| RigError::Timeout(timeout))?
    }

    async fn read_answer(&mut self, command: &str) -> Result<Vec<String>, RigError> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(RigError::Closed);
            }
            let line = line.trim_end().to_string();
            if let Some(code) = line.strip_prefix("RPRT ") {
                let code: i32 = code.trim().parse().map_err(|_| RigError::Unexpected {
                    command: command.into(),
                    answer: vec![line.clone()],
                })?;
                if code != 0 {
                    return Err(RigError::Refused {
                        command: command.into(),
                        code,
                    });
                }
                // The first line echoes the command's name.
                return Ok(lines.into_iter().skip(1).collect());
            }
            lines.push(line);
        }
    }

    /// The value of `Key: value` in an answer, or the bare value.
    fn value(command: &str, answer: &[String], key: &str) -> Result<String, RigError> {
        answer
            .iter()
            .find_map(|l| match l.split_once(": ") {
                Some((k, v)) if k == key => Some(v.trim().to_string()),
                None if key.is_empty() => Some(l.trim().to_string()),
                _ => None,
            })
            .ok_or_else(|| RigError::Unexpected {
                command: command.into(),
                answer: answer.to_vec(),
            })
    }

    fn parse<T: std::str::FromStr>(
        command: &str,
        answer: &[String],
        key: &str,
    ) -> Result<T, RigError> {
        let v = Self::value(command, answer, key)?;
        v.parse().map_err(|_| RigError::Unexpected {
            command: command.into(),
            answer: answer.to_vec(),
        })
    }

    pub async fn frequency(&mut self) -> Result<u64, RigError> {
        let a = self.command("f").await?;
        // Hamlib prints frequencies as integers (some versions with a decimal part).
        let hz: f64 = Self::parse("f", &a, "Frequency")?;
        Ok(hz.round() as u64)
    }

    pub async fn set_frequency(&mut self, hz: u64) -> Result<(), RigError> {
        self.command(&format!("F {hz}")).await.map(drop)
    }

    /// `(mode, passband Hz)`, e.g. `("USB", 2400)`.
    pub async fn mode(&mut self) -> Result<(String, i64), RigError> {
        let a = self.command("m").await?;
        Ok((
            Self::value("m", &a, "Mode")?,
            Self::parse("m", &a, "Passband")?,
        ))
    }

    /// Passband 0 asks for the radio's default width.
    pub async fn set_mode(&mut self, mode: &str, passband_hz: i64) -> Result<(), RigError> {
        if mode.is_empty() || !mode.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(RigError::Refused {
                command: format!("M {mode}"),
                code: -1,
            });
        }
        self.command(&format!("M {mode} {passband_hz}"))
            .await
            .map(drop)
    }

    pub async fn ptt(&mut self) -> Result<bool, RigError> {
        let a = self.command("t").await?;
        Ok(Self::parse::<u8>("t", &a, "PTT")? != 0)
    }

    pub async fn set_ptt(&mut self, on: bool) -> Result<(), RigError> {
        self.command(&format!("T {}", u8::from(on))).await.map(drop)
    }

    /// The S-meter in dB relative to S9 (Hamlib's `STRENGTH` level, an
    /// integer; the backend calibrates its radio's meter).
    pub async fn strength_db(&mut self) -> Result<i32, RigError> {
        let a = self.command("l STRENGTH").await?;
        Self::parse("l", &a, "")
    }

    /// Forward power in watts from the radio's meter.
    pub async fn power_watts(&mut self) -> Result<f64, RigError> {
        let a = self.command("l RFPOWER_METER_WATTS").await?;
        Self::parse("l", &a, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use station_sim::hamlib::DummyRig;

    async fn connect(rig: &DummyRig) -> Rigctld {
        Rigctld::connect(&rig.addr, Duration::from_secs(2))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn round_trips_against_a_real_rigctld() {
        let rig = DummyRig::start().unwrap();
        let mut c = connect(&rig).await;
        c.set_frequency(14_074_000).await.unwrap();
        assert_eq!(c.frequency().await.unwrap(), 14_074_000);
        c.set_mode("USB", 2400).await.unwrap();
        assert_eq!(c.mode().await.unwrap(), ("USB".to_string(), 2400));
        c.set_ptt(true).await.unwrap();
        assert!(c.ptt().await.unwrap());
        // A second connection sees the change: it is the rig's state, not ours.
        let mut other = connect(&rig).await;
        assert!(other.ptt().await.unwrap());
        c.set_ptt(false).await.unwrap();
        assert!(!other.ptt().await.unwrap());
        let db = c.strength_db().await.unwrap();
        assert!((-60..=60).contains(&db), "{db}");
        let watts = c.power_watts().await.unwrap();
        assert!(watts.is_finite() && watts >= 0.0, "{watts}");
    }

    #[tokio::test]
    async fn errors_are_typed() {
        let rig = DummyRig::start().unwrap();
        let mut c = connect(&rig).await;
        match c.command("F abc").await {
            Err(RigError::Refused { code, .. }) => assert!(code < 0),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(
            matches!(c.set_mode("US B", 0).await, Err(RigError::Refused { .. })),
            "no injection through the mode"
        );
        // The connection is still usable after an error.
        assert!(c.frequency().await.is_ok());
        drop(rig);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            c.frequency().await.is_err(),
            "a dead rigctld is an error, not a hang"
        );
    }
}
