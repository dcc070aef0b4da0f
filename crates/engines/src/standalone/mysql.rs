//! MySQL and MariaDB over TCP: `mariadb-dump`/`mysqldump --all-databases` in one consistent
//! transaction, restored with the `mariadb`/`mysql` client (which stops at the first error).
//!
//! Restore rules:
//! - the `mysql` system schema (accounts, grants) is skipped unless `--restore-system-schema`,
//!   so a restore never replaces the live server's accounts by surprise;
//! - with `--force`, each `CREATE DATABASE` is preceded by `DROP DATABASE IF EXISTS`, replacing
//!   user databases that still exist. Without `--force` such a restore is refused up front.

use hasteward_exec::{CommandSpec, Signal};

use super::{Connection, HostTarget};
use crate::linefilter::LineRules;
use hasteward_model::DbType;

/// The trailer `mysqldump`/`mariadb-dump` write last (with comments on, the default).
pub const COMPLETION_MARKER: &[u8] = b"-- Dump completed";
/// The client's connection is dropped; the server rolls back the statement in flight.
pub const CLIENT_ABORT: Signal = Signal::Kill;

/// Dump tool candidates, preferred first.
pub fn dump_programs(db: DbType) -> [&'static str; 2] {
    match db {
        DbType::Mysql => ["mysqldump", "mariadb-dump"],
        _ => ["mariadb-dump", "mysqldump"],
    }
}

/// Client candidates, preferred first.
pub fn client_programs(db: DbType) -> [&'static str; 2] {
    match db {
        DbType::Mysql => ["mysql", "mariadb"],
        _ => ["mariadb", "mysql"],
    }
}

fn base(program: &str, t: &HostTarget, conn: &Connection) -> CommandSpec {
    // --defaults-extra-file must come first.
    let defaults = conn
        .mysql_defaults
        .as_ref()
        .map(|p| format!("--defaults-extra-file={}", p.display()));
    CommandSpec::new(program)
        .args(defaults)
        .args([
            format!("--host={}", t.host),
            format!("--port={}", t.port),
            "--protocol=TCP".to_string(),
            "--default-character-set=utf8mb4".to_string(),
        ])
        .env_remove("MYSQL_PWD")
}

/// Options of every dump: one consistent snapshot, with routines, triggers and events.
pub const DUMP_OPTIONS: [&str; 5] = [
    "--single-transaction",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
];

/// The query listing user databases.
pub const LIST_DATABASES_SQL: &str = "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ('mysql','information_schema','performance_schema','sys') ORDER BY 1";

/// The whole-server dump.
pub fn dump(program: &str, t: &HostTarget, conn: &Connection) -> CommandSpec {
    base(program, t, conn)
        .arg("--all-databases")
        .args(DUMP_OPTIONS)
}

/// The dump of one database (with its `CREATE DATABASE`).
pub fn dump_database(
    program: &str,
    t: &HostTarget,
    conn: &Connection,
    database: &str,
) -> CommandSpec {
    base(program, t, conn)
        .args(DUMP_OPTIONS)
        .arg("--databases")
        .arg(database)
}

/// The client reading a dump on stdin.
pub fn restore_client(program: &str, t: &HostTarget, conn: &Connection) -> CommandSpec {
    base(program, t, conn)
        .arg("--batch")
        .stdin_piped()
        .stdout_null()
}

/// The client listing user databases.
pub fn list_databases(program: &str, t: &HostTarget, conn: &Connection) -> CommandSpec {
    base(program, t, conn).args(["--batch", "--skip-column-names", "-e", LIST_DATABASES_SQL])
}

/// The restore-time stream rules.
pub struct RestoreRules {
    include_system: bool,
    replace_databases: bool,
    skipping: bool,
}

impl RestoreRules {
    /// Rules; `include_system` restores the `mysql` schema, `replace_databases` is `--force`.
    pub fn new(include_system: bool, replace_databases: bool) -> Self {
        Self {
            include_system,
            replace_databases,
            skipping: false,
        }
    }
}

const CURRENT_DB: &[u8] = b"-- Current Database: ";
const CREATE_DB: &[u8] = b"CREATE DATABASE ";

impl LineRules for RestoreRules {
    fn prefixes(&self) -> &[&'static [u8]] {
        &[CURRENT_DB, CREATE_DB]
    }

    fn rewrite(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if line.starts_with(CURRENT_DB) {
            let name = backtick_ident(&line[CURRENT_DB.len()..]);
            self.skipping = !self.include_system && name == Some(&b"`mysql`"[..]);
            if !self.skipping {
                out.extend_from_slice(line);
            }
            return;
        }
        if self.skipping {
            return;
        }
        if self.replace_databases {
            let ident = backtick_ident(&line[CREATE_DB.len()..]);
            // The system schema is never dropped, even when it is restored.
            if let Some(ident) = ident.filter(|i| *i != b"`mysql`") {
                out.extend_from_slice(b"DROP DATABASE IF EXISTS ");
                out.extend_from_slice(ident);
                out.extend_from_slice(b";\n");
            }
        }
        out.extend_from_slice(line);
    }

    fn skipping(&self) -> bool {
        self.skipping
    }
}

/// The first backtick-quoted identifier in `text`, with its backticks (`` `a``b` ``).
fn backtick_ident(text: &[u8]) -> Option<&[u8]> {
    let start = text.iter().position(|&b| b == b'`')?;
    let mut i = start + 1;
    while i < text.len() {
        if text[i] == b'`' {
            if text.get(i + 1) == Some(&b'`') {
                i += 2;
                continue;
            }
            return Some(&text[start..=i]);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests_support {
    pub const DUMP: &str = "-- MariaDB dump\n--\n-- Current Database: `app`\n--\n\nCREATE DATABASE /*!32312 IF NOT EXISTS*/ `app` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\nUSE `app`;\nINSERT INTO t VALUES (1);\n--\n-- Current Database: `mysql`\n--\n\nCREATE DATABASE /*!32312 IF NOT EXISTS*/ `mysql`;\nUSE `mysql`;\nINSERT INTO `global_priv` VALUES ('x');\n--\n-- Current Database: `we``ird`\n--\nCREATE DATABASE /*!32312 IF NOT EXISTS*/ `we``ird`;\nUSE `we``ird`;\n-- Dump completed on 2026-11-23\n";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linefilter::{apply, LineFilter};

    use super::tests_support::DUMP;

    #[test]
    fn system_schema_is_skipped_by_default() {
        let mut f = LineFilter::new(RestoreRules::new(false, false));
        let out = String::from_utf8(apply(&mut f, DUMP.as_bytes(), 5)).unwrap();
        assert!(!out.contains("global_priv"), "{out}");
        assert!(!out.contains("USE `mysql`"));
        assert!(out.contains("INSERT INTO t VALUES (1);"));
        assert!(out.contains("USE `we``ird`;"));
        assert!(!out.contains("DROP DATABASE"));
        // The separator comment lines inside the skipped section are dropped too.
        assert!(out.ends_with("-- Dump completed on 2026-11-23\n"));
    }

    #[test]
    fn force_and_system_schema() {
        let mut f = LineFilter::new(RestoreRules::new(true, true));
        let out = String::from_utf8(apply(&mut f, DUMP.as_bytes(), 4096)).unwrap();
        assert!(out.contains("global_priv"));
        assert!(out.contains("DROP DATABASE IF EXISTS `app`;\nCREATE DATABASE"));
        assert!(out.contains("DROP DATABASE IF EXISTS `we``ird`;\n"));
        assert!(!out.contains("DROP DATABASE IF EXISTS `mysql`"));
    }
}

#[cfg(test)]
mod chunking {
    use super::tests_support::DUMP;
    use super::*;
    use crate::linefilter::{apply, LineFilter};

    #[test]
    fn every_chunk_size_gives_the_same_stream() {
        let whole = apply(
            &mut LineFilter::new(RestoreRules::new(false, true)),
            DUMP.as_bytes(),
            1 << 20,
        );
        for chunk in 1..DUMP.len() {
            let mut f = LineFilter::new(RestoreRules::new(false, true));
            assert_eq!(
                apply(&mut f, DUMP.as_bytes(), chunk),
                whole,
                "chunk size {chunk}"
            );
        }
    }
}
