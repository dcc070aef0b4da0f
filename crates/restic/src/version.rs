//! restic versions and the features they bring.

use std::fmt;

/// A restic release number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// Parses the output of `restic version` (`restic 0.14.0 compiled with go1.19.8 on linux/amd64`).
    pub fn parse(output: &str) -> Option<Self> {
        let word = output
            .split_whitespace()
            .skip_while(|w| *w != "restic")
            .nth(1)?;
        let word = word.trim_start_matches('v');
        let core = word.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        Some(Self {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next().flatten().unwrap_or(0),
        })
    }

    fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What the installed restic can do. Newer flags are used only when present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The detected version.
    pub version: Version,
    /// Exit codes 10 (no repository), 11 (locked), 12 (wrong password): restic >= 0.17.
    pub typed_exit_codes: bool,
    /// `--retry-lock`: restic >= 0.16.
    pub retry_lock: bool,
    /// `check --json`: restic >= 0.17.
    pub check_json: bool,
    /// `snapshots --json` carries a `summary`: restic >= 0.17.
    pub snapshot_summary: bool,
    /// `tag --json` prints the new snapshot id: restic >= 0.18.
    pub tag_json: bool,
}

impl Capabilities {
    /// Capabilities of a version.
    pub fn of(version: Version) -> Self {
        Self {
            version,
            typed_exit_codes: version.at_least(0, 17),
            retry_lock: version.at_least(0, 16),
            check_json: version.at_least(0, 17),
            snapshot_summary: version.at_least(0, 17),
            tag_json: version.at_least(0, 18),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_upstream_versions() {
        let v = Version::parse("restic 0.14.0 compiled with go1.19.8 on linux/amd64").unwrap();
        assert_eq!(v.to_string(), "0.14.0");
        assert!(!Capabilities::of(v).typed_exit_codes);
        let v = Version::parse("restic 0.18.1 compiled with go1.25.1 on linux/amd64").unwrap();
        let caps = Capabilities::of(v);
        assert!(caps.typed_exit_codes && caps.retry_lock && caps.check_json);
        let v =
            Version::parse("restic 0.17.0-dev (compiled manually) compiled with go1.22").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (0, 17, 0));
        assert!(Version::parse("something else").is_none());
    }
}
