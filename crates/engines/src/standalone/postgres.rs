//! PostgreSQL over TCP: `pg_dumpall` for the whole cluster, `psql` stopping on the first error.
//!
//! Restore rules (applied to the stream, see [`crate::linefilter`]):
//! - `CREATE ROLE x;` becomes a block that ignores "role already exists", so restoring into the
//!   server the dump came from works with no flag; the role's attributes are still applied by the
//!   `ALTER ROLE` that follows.
//! - `ALTER ROLE` of the role hasteward connects as is skipped, so a restore never changes the
//!   password of the session doing the restore.
//! - with `--force`, `CREATE DATABASE x` is preceded by `DROP DATABASE IF EXISTS x WITH (FORCE)`,
//!   replacing user databases that still exist. Without `--force` such a restore is refused
//!   before anything runs.

use hasteward_exec::{CommandSpec, Signal};

use super::{Connection, HostTarget};
use crate::linefilter::LineRules;

/// The last line `pg_dumpall` writes; its absence means a truncated dump.
pub const COMPLETION_MARKER: &[u8] = b"-- PostgreSQL database cluster dump complete";
/// The last line `pg_dump` writes.
pub const DATABASE_COMPLETION_MARKER: &[u8] = b"-- PostgreSQL database dump complete";
/// psql cancels its query and exits on SIGINT.
pub const CLIENT_ABORT: Signal = Signal::Interrupt;

fn base(program: &str, t: &HostTarget, conn: &Connection) -> CommandSpec {
    let mut spec = CommandSpec::new(program)
        .args([
            "-h",
            &t.host,
            "-p",
            &t.port.to_string(),
            "-U",
            &t.user,
            "-w",
        ])
        .env("PGAPPNAME", "hasteward")
        .env("PGCONNECT_TIMEOUT", "15");
    if let Some(pgpass) = &conn.pgpass {
        spec = spec.env("PGPASSFILE", pgpass).env_remove("PGPASSWORD");
    }
    spec
}

/// `pg_dumpall` of the whole cluster.
pub fn dump(t: &HostTarget, conn: &Connection) -> CommandSpec {
    base("pg_dumpall", t, conn)
}

/// `pg_dump --create` of one database (restorable into a server that lacks it). The name goes
/// in `PGDATABASE`, never through argv parsing, so it cannot be read as an option or a
/// connection string.
pub fn dump_database(t: &HostTarget, conn: &Connection, database: &str) -> CommandSpec {
    base("pg_dump", t, conn)
        .arg("--create")
        .env("PGDATABASE", database)
}

/// `psql` options for a restore: no psqlrc, quiet, stop at the first error.
pub const RESTORE_OPTIONS: [&str; 7] =
    ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-w"];

/// The query listing user databases (not templates, not `postgres`).
pub const LIST_DATABASES_SQL: &str =
    "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY 1";

/// `psql` reading a dump on stdin, stopping at the first error.
pub fn restore_client(t: &HostTarget, conn: &Connection) -> CommandSpec {
    base("psql", t, conn)
        .args(RESTORE_OPTIONS)
        .stdin_piped()
        .stdout_null()
}

/// `psql` listing user databases (not templates, not `postgres`).
pub fn list_databases(t: &HostTarget, conn: &Connection) -> CommandSpec {
    base("psql", t, conn).args(["-X", "-A", "-t", "-d", "postgres", "-c", LIST_DATABASES_SQL])
}

/// The restore-time stream rules.
pub struct RestoreRules {
    own_role: Vec<Vec<u8>>,
    replace_databases: bool,
}

impl RestoreRules {
    /// Rules for a restore connecting as `user`; `replace_databases` is `--force`.
    pub fn new(user: &str, replace_databases: bool) -> Self {
        let quoted = format!("\"{}\"", user.replace('"', "\"\""));
        Self {
            own_role: vec![user.as_bytes().to_vec(), quoted.into_bytes()],
            replace_databases,
        }
    }
}

impl LineRules for RestoreRules {
    fn prefixes(&self) -> &[&'static [u8]] {
        &[b"CREATE ROLE ", b"ALTER ROLE ", b"CREATE DATABASE "]
    }

    fn rewrite(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if line.starts_with(b"CREATE ROLE ") {
            let stmt = trim_newline(line);
            let tag = dollar_tag(stmt);
            out.extend_from_slice(format!("DO {tag} BEGIN ").as_bytes());
            out.extend_from_slice(stmt);
            out.extend_from_slice(
                format!(" EXCEPTION WHEN duplicate_object THEN RAISE NOTICE 'hasteward: role exists, kept'; END {tag};\n")
                    .as_bytes(),
            );
        } else if line.starts_with(b"ALTER ROLE ") {
            let ident = leading_ident(&line[b"ALTER ROLE ".len()..]);
            if !self.own_role.iter().any(|r| r.as_slice() == ident) {
                out.extend_from_slice(line);
            }
        } else if line.starts_with(b"CREATE DATABASE ") && self.replace_databases {
            let ident = leading_ident(&line[b"CREATE DATABASE ".len()..]);
            out.extend_from_slice(b"DROP DATABASE IF EXISTS ");
            out.extend_from_slice(ident);
            out.extend_from_slice(b" WITH (FORCE);\n");
            out.extend_from_slice(line);
        } else {
            out.extend_from_slice(line);
        }
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// A dollar-quote tag that does not occur in `text`.
fn dollar_tag(text: &[u8]) -> String {
    (0..)
        .map(|n| {
            if n == 0 {
                "$hasteward$".to_string()
            } else {
                format!("$hasteward{n}$")
            }
        })
        .find(|tag| !text.windows(tag.len()).any(|w| w == tag.as_bytes()))
        .expect("some tag is free")
}

/// The identifier at the start of `rest`, as written (`name` or `"quoted ""name"""`).
fn leading_ident(rest: &[u8]) -> &[u8] {
    if rest.first() == Some(&b'"') {
        let mut i = 1;
        while i < rest.len() {
            if rest[i] == b'"' {
                if rest.get(i + 1) == Some(&b'"') {
                    i += 2;
                    continue;
                }
                return &rest[..=i];
            }
            i += 1;
        }
        rest
    } else {
        let end = rest
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b';')
            .unwrap_or(rest.len());
        &rest[..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linefilter::{apply, LineFilter};

    const DUMP: &str = "CREATE ROLE app;\nALTER ROLE app WITH LOGIN PASSWORD 'x';\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER PASSWORD 'old';\nCREATE DATABASE \"We\"\"ird\" WITH TEMPLATE = template0;\nCREATE DATABASE app WITH TEMPLATE = template0 OWNER = app;\nCOPY t (a) FROM stdin;\nCREATE ROLE inside copy data\n\\.\n";

    #[test]
    fn roles_tolerate_existing_and_own_role_is_untouched() {
        let mut f = LineFilter::new(RestoreRules::new("postgres", false));
        let out = String::from_utf8(apply(&mut f, DUMP.as_bytes(), 7)).unwrap();
        assert!(
            out.contains("DO $hasteward$ BEGIN CREATE ROLE app; EXCEPTION WHEN duplicate_object")
        );
        assert!(out.contains("ALTER ROLE app WITH LOGIN"));
        assert!(!out.contains("PASSWORD 'old'"));
        assert!(!out.contains("DROP DATABASE"));
    }

    #[test]
    fn force_drops_databases_before_creating_them() {
        let mut f = LineFilter::new(RestoreRules::new("admin", true));
        let out = String::from_utf8(apply(&mut f, DUMP.as_bytes(), 4096)).unwrap();
        assert!(out.contains(
            "DROP DATABASE IF EXISTS \"We\"\"ird\" WITH (FORCE);\nCREATE DATABASE \"We\"\"ird\""
        ));
        assert!(out.contains("DROP DATABASE IF EXISTS app WITH (FORCE);\nCREATE DATABASE app"));
        assert!(out.contains("ALTER ROLE postgres WITH SUPERUSER"));
    }

    #[test]
    fn dollar_tag_avoids_collisions() {
        assert_eq!(dollar_tag(b"CREATE ROLE x;"), "$hasteward$");
        assert_eq!(dollar_tag(b"CREATE ROLE \"$hasteward$\";"), "$hasteward1$");
    }
}
