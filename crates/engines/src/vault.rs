//! Vault and OpenBao: raft snapshots streamed into restic, and back.
//!
//! One command builder serves both places a server is reached from: the CLI on this machine
//! (`--vault-addr`, a [`LocalRunner`](hasteward_exec::LocalRunner)) and the CLI inside the
//! server's pod (`--container`, the pod exec runner). Either way the commands run under the
//! fixed [`WRAPPER`](crate::pod::WRAPPER) in `token` mode: the token is the first line on
//! stdin, exported as `VAULT_TOKEN`/`BAO_TOKEN` for the tool, so it is never in an argv; the
//! wrapper picks `bao` if installed, else `vault`.
//!
//! * Backup: `operator raft snapshot save /dev/stdout` (`save -` would write a file named `-`).
//!   The snapshot has no end marker, so the commit gate rests on the tool's exit status.
//! * Restore: `operator raft snapshot restore /dev/stdin`. It replaces all of the server's data,
//!   so the CLI requires `--force`; the tool's own `-force` (accepting a snapshot from another
//!   cluster, whose unseal keys then apply) is a separate, explicit choice.
//! * Triage: `status`, `operator raft list-peers`, `operator raft autopilot state`, analyzed
//!   by [`hasteward_triage::vault`].

use hasteward_exec::{CommandSpec, ExitOutcome, Runner, Signal, StreamFilter};
use hasteward_triage::vault::{Output, VaultInput};
use tokio::io::AsyncReadExt;

use crate::pod::WRAPPER;
use crate::target::{start, Invocation, Preamble, Target};
use crate::{Error, Result};

/// The programs tried, in order.
pub const PROGRAMS: &str = "bao,vault";

/// The file name of a raft snapshot inside a hasteward snapshot.
pub const SNAPSHOT_FILE: &str = "raft.snap";

/// A Vault token, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token; it must be one non-empty line.
    pub fn new(token: &str) -> Result<Self> {
        let t = token.trim();
        if t.is_empty() || t.contains(['\n', '\r', '\0']) {
            return Err(Error::Usage(
                "the Vault token is empty or spans several lines".into(),
            ));
        }
        Ok(Self(t.to_string()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where the server's API is and how its certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// `-address=`; `None` keeps the tool's environment (`VAULT_ADDR`/`BAO_ADDR` in the pod).
    pub address: Option<String>,
    /// `-ca-cert=`: a PEM file where the tool runs.
    pub ca_cert: Option<String>,
}

impl Connection {
    /// Checks the values that become argv elements.
    pub fn validate(&self) -> Result<()> {
        if let Some(a) = &self.address {
            let ok = (a.starts_with("http://") || a.starts_with("https://"))
                && a.len() > "https://".len()
                && !a.contains(char::is_whitespace);
            if !ok {
                return Err(Error::Usage(format!(
                    "invalid --vault-addr `{a}`: give the API URL, e.g. https://vault.example:8200"
                )));
            }
        }
        if let Some(c) = &self.ca_cert {
            if c.is_empty() || c.contains(['\n', '\r', '\0']) {
                return Err(Error::Usage(format!("invalid --vault-ca-cert `{c}`")));
            }
        }
        Ok(())
    }
}

/// A Vault or OpenBao server, reached through `runner`.
#[derive(Debug)]
pub struct VaultServer<R> {
    runner: R,
    location: String,
    connection: Connection,
    token: Option<Token>,
}

impl<R: Runner> VaultServer<R> {
    /// A server reached through `runner`; `location` names it in messages.
    pub fn new(
        runner: R,
        location: String,
        connection: Connection,
        token: Option<Token>,
    ) -> Result<Self> {
        connection.validate()?;
        Ok(Self {
            runner,
            location,
            connection,
            token,
        })
    }

    /// `sh -c WRAPPER hasteward MODE bao,vault COMMAND... FLAGS... POSITIONAL...`.
    fn invocation(&self, command: &[&str], positional: &[&str], stream_in: bool) -> Invocation {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        if let Some(a) = &self.connection.address {
            args.push(format!("-address={a}"));
        }
        if let Some(c) = &self.connection.ca_cert {
            args.push(format!("-ca-cert={c}"));
        }
        args.extend(positional.iter().map(|s| s.to_string()));
        let mode = if self.token.is_some() {
            "token"
        } else {
            "none"
        };
        let mut spec = CommandSpec::new("sh")
            .args(["-c", WRAPPER, "hasteward", mode, PROGRAMS])
            .args(args)
            .labelled(format!("bao|vault {}", command.join(" ")));
        let preamble = self.token.as_ref().map(|t| {
            let mut line = t.0.clone().into_bytes();
            line.push(b'\n');
            Preamble(line)
        });
        if stream_in || preamble.is_some() {
            spec = spec.stdin_piped();
        }
        Invocation { spec, preamble }
    }

    /// `status -format=json` (exit 2 when sealed, still with JSON).
    pub fn status(&self) -> Invocation {
        self.invocation(&["status", "-format=json"], &[], false)
    }

    /// `operator raft list-peers -format=json`.
    pub fn list_peers(&self) -> Invocation {
        self.invocation(
            &["operator", "raft", "list-peers", "-format=json"],
            &[],
            false,
        )
    }

    /// `operator raft autopilot state -format=json`.
    pub fn autopilot_state(&self) -> Invocation {
        self.invocation(
            &["operator", "raft", "autopilot", "state", "-format=json"],
            &[],
            false,
        )
    }

    /// Runs a read-only command; returns its exit, stdout and stderr tail.
    async fn read(&self, inv: &Invocation) -> Result<(ExitOutcome, String)> {
        let mut proc = start(&self.runner, inv, true).await?;
        let mut stdout = Vec::new();
        if let Some(mut out) = proc.stdout.take() {
            let _ = out.read_to_end(&mut stdout).await;
        }
        let outcome = proc.wait().await?;
        Ok((outcome, String::from_utf8_lossy(&stdout).into_owned()))
    }

    /// Whether the server answers `status` unsealed: the precondition of a backup. A sealed
    /// server is a clear refusal before restic starts.
    pub async fn require_unsealed(&self) -> Result<()> {
        let (outcome, out) = self.read(&self.status()).await?;
        match outcome.code {
            Some(0) => Ok(()),
            Some(2) => {
                let detail = match hasteward_triage::vault::parse_status(&out) {
                    Ok(s) if !s.initialized => "is not initialized",
                    _ => "is sealed",
                };
                Err(Error::Database {
                    detail: format!(
                        "the Vault server at {} {detail}: a raft snapshot needs an unsealed server (unseal it, then back up)",
                        self.location
                    ),
                })
            }
            _ => Err(Error::Database {
                detail: format!("{}: `status` failed: {outcome}", self.location),
            }),
        }
    }

    /// Collects what triage needs (read-only).
    pub async fn collect(&self, namespace: &str, cluster: &str) -> Result<VaultInput> {
        let (outcome, out) = self.read(&self.status()).await?;
        let status = match outcome.code {
            Some(0 | 2) if !out.trim().is_empty() => Output::Read(out),
            _ => Output::Failed(failure_text(&outcome)),
        };
        let unsealed = matches!(&status, Output::Read(s)
            if hasteward_triage::vault::parse_status(s).is_ok_and(|s| s.initialized && !s.sealed));
        let (mut peers, mut autopilot) = (None, None);
        if unsealed {
            for (slot, inv) in [
                (&mut peers, self.list_peers()),
                (&mut autopilot, self.autopilot_state()),
            ] {
                let (outcome, out) = self.read(&inv).await?;
                *slot = Some(if outcome.success() {
                    Output::Read(out)
                } else {
                    Output::Failed(failure_text(&outcome))
                });
            }
        }
        Ok(VaultInput {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
            location: self.location.clone(),
            status,
            peers,
            autopilot,
        })
    }
}

fn failure_text(outcome: &ExitOutcome) -> String {
    if outcome.stderr_tail.trim().is_empty() {
        outcome.status_text()
    } else {
        outcome.stderr_tail.clone()
    }
}

impl<R: Runner> Target for VaultServer<R> {
    type Runner = R;

    fn runner(&self) -> &R {
        &self.runner
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_databases(&self) -> Option<Invocation> {
        None
    }

    fn dump(&self, _database: Option<&str>) -> Invocation {
        self.invocation(
            &["operator", "raft", "snapshot", "save"],
            &["/dev/stdout"],
            false,
        )
    }

    fn restore_client(&self, _replace: bool) -> Invocation {
        let mut inv = self.invocation(
            &["operator", "raft", "snapshot", "restore"],
            &["/dev/stdin"],
            true,
        );
        inv.spec = inv.spec.stdout_null();
        inv
    }

    fn completion_marker(&self, _one_database: bool) -> Option<&'static [u8]> {
        None
    }

    fn client_abort(&self) -> Signal {
        Signal::Kill
    }

    fn restore_filter(
        &self,
        _replace: bool,
        _include_system: bool,
    ) -> Option<Box<dyn StreamFilter>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hasteward_exec::LocalRunner;

    fn server(token: Option<&str>) -> VaultServer<LocalRunner> {
        VaultServer::new(
            LocalRunner,
            "http://127.0.0.1:8200".into(),
            Connection {
                address: Some("http://127.0.0.1:8200".into()),
                ca_cert: None,
            },
            token.map(|t| Token::new(t).unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn the_token_is_never_in_argv() {
        let s = server(Some("hvs.secret-token"));
        for inv in [
            s.dump(None),
            s.restore_client(true),
            s.status(),
            s.list_peers(),
        ] {
            let argv = format!("{:?} {:?}", inv.spec.program, inv.spec.args);
            assert!(!argv.contains("hvs.secret-token"), "{argv}");
            assert!(format!("{:?}", inv.spec.env).find("hvs.").is_none());
            assert_eq!(inv.preamble.as_ref().unwrap().0, b"hvs.secret-token\n");
            assert!(format!("{inv:?}").find("hvs.").is_none());
        }
    }

    #[test]
    fn snapshot_commands_put_flags_before_the_file() {
        let s = server(None);
        let args: Vec<String> = s
            .dump(None)
            .spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            &args[3..],
            &[
                "none",
                "bao,vault",
                "operator",
                "raft",
                "snapshot",
                "save",
                "-address=http://127.0.0.1:8200",
                "/dev/stdout"
            ]
        );
        assert!(s.dump(None).preamble.is_none());
    }

    #[test]
    fn bad_addresses_and_tokens_are_refused() {
        for a in ["127.0.0.1:8200", "http://", "http://a b", "-address=x"] {
            let c = Connection {
                address: Some(a.into()),
                ca_cert: None,
            };
            assert!(c.validate().is_err(), "{a}");
        }
        assert!(Token::new("").is_err());
        assert!(Token::new("a\nb").is_err());
        assert_eq!(Token::new(" t \n").unwrap(), Token("t".into()));
    }
}
