//! What `hc-workload` reports, one JSON object per line on stdout.
//!
//! While running, a [`Progress`] line every 500 ms; after SIGTERM it reads back every write it
//! had acknowledged and prints one [`Final`] line.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Writes the cluster acknowledged.
    pub acked: u64,
    /// Writes refused or timed out with no effect.
    pub failed: u64,
    /// Writes whose outcome is unknown (not counted as acknowledged, never checked).
    pub unknown: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Final {
    pub acked: u64,
    /// Acknowledged writes read back with the value written.
    pub verified: u64,
    /// Acknowledged writes missing or with another value (keys).
    pub lost: Vec<String>,
    /// Read-back errors (reads that failed even after retries).
    pub read_errors: u64,
}

/// The newest progress report in a container's output, if any.
pub fn last_progress(output: &str) -> Option<Progress> {
    output.lines().rev().find_map(|l| {
        serde_json::from_str::<Progress>(l.trim())
            .ok()
            .filter(|_| l.contains("\"acked\"") && !l.contains("\"verified\""))
    })
}

/// The final report in a container's output, if it got that far.
pub fn final_report(output: &str) -> Option<Final> {
    output.lines().rev().find_map(|l| {
        if l.contains("\"verified\"") {
            serde_json::from_str::<Final>(l.trim()).ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_found_in_mixed_output() {
        let out = "log line\n{\"acked\":3,\"failed\":1,\"unknown\":0,\"last_error\":null}\nINFO x\n\
                   {\"acked\":5,\"failed\":1,\"unknown\":0,\"last_error\":\"boom\"}\n";
        assert_eq!(last_progress(out).unwrap().acked, 5);
        assert!(final_report(out).is_none());
        let out = format!("{out}{{\"acked\":5,\"verified\":5,\"lost\":[],\"read_errors\":0}}\n");
        assert_eq!(final_report(&out).unwrap().verified, 5);
        assert_eq!(last_progress(&out).unwrap().acked, 5);
    }
}
