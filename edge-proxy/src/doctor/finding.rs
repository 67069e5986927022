//! What one check found: a status, what was looked at, what was seen and,
//! unless all is well, what to do about it. Checks return these instead of
//! printing, so each one is a small function a unit test can call.

use std::fmt;

/// How a check came out. A `Fail` makes `edge-proxy doctor` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    /// Works now, but is likely to bite (low disk, clock not synchronised).
    Warn,
    /// The proxy will not work as configured.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the doctor's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub status: Status,
    /// What was checked ("radio port /dev/ttyUSB0", "listen 127.0.0.1:8080").
    pub check: String,
    /// What was seen.
    pub detail: String,
    /// What to do (for `Warn` and `Fail`).
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Finding {
            status: Status::Ok,
            check: check.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            status: Status::Warn,
            check: check.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            status: Status::Fail,
            check: check.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4}  {}: {}",
            self.status.as_str(),
            self.check,
            self.detail
        )?;
        if let Some(fix) = &self.fix {
            write!(f, " -- fix: {fix}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_status_check_detail_and_fix() {
        let line =
            Finding::fail("radio port /dev/ttyUSB0", "does not exist", "plug it in").to_string();
        assert_eq!(
            line,
            "FAIL  radio port /dev/ttyUSB0: does not exist -- fix: plug it in"
        );
        assert_eq!(
            Finding::ok("config", "valid").to_string(),
            "OK    config: valid"
        );
    }
}
