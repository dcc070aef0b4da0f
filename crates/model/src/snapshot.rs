//! How hasteward names and tags its restic snapshots (design §2): a fixed host, a path
//! `<namespace>/<cluster>/<file>`, and `key=value` tags, so that restore and retention select
//! by tags, type and path, never by "latest in the repository".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The host recorded on every snapshot, so retention groups by path, not by whichever pod ran.
pub const SNAPSHOT_HOST: &str = "hasteward";

/// Engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// CloudNativePG clusters.
    Cnpg,
    /// MariaDB Operator / Galera clusters.
    Galera,
    /// A standalone database (host or pod).
    Standalone,
    /// Vault/OpenBao raft snapshots.
    Vault,
    /// VictoriaMetrics vmbackup.
    Vmbackup,
}

impl Engine {
    /// The tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cnpg => "cnpg",
            Self::Galera => "galera",
            Self::Standalone => "standalone",
            Self::Vault => "vault",
            Self::Vmbackup => "vmbackup",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Database flavours of the standalone engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbType {
    /// PostgreSQL.
    Postgres,
    /// MySQL.
    Mysql,
    /// MariaDB.
    Mariadb,
    /// MongoDB.
    Mongo,
}

impl DbType {
    /// The tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Mariadb => "mariadb",
            Self::Mongo => "mongo",
        }
    }

    /// The file name of a single-database dump (per-database mode).
    pub fn database_dump_file(self) -> &'static str {
        match self {
            Self::Postgres => "pg_dump.sql",
            Self::Mysql => "mysqldump.sql",
            Self::Mariadb => "mariadb-dump.sql",
            Self::Mongo => "mongodump.archive",
        }
    }

    /// The file name of a whole-server dump inside the snapshot.
    pub fn dump_file(self) -> &'static str {
        match self {
            Self::Postgres => "pg_dumpall.sql",
            Self::Mysql => "mysqldump.sql",
            Self::Mariadb => "mariadb-dump.sql",
            Self::Mongo => "mongodump.archive",
        }
    }

    /// True for the MySQL family (one dump format, one client).
    pub fn is_mysql_family(self) -> bool {
        matches!(self, Self::Mysql | Self::Mariadb)
    }
}

impl fmt::Display for DbType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DbType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" => Ok(Self::Mysql),
            "mariadb" => Ok(Self::Mariadb),
            "mongo" | "mongodb" => Ok(Self::Mongo),
            other => Err(format!(
                "unknown database type `{other}` (expected postgres, mysql, mariadb or mongo)"
            )),
        }
    }
}

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// A regular backup.
    Backup,
    /// A backup taken by repair before it changed anything.
    Escrow,
    /// A capture of a diverged instance.
    Diverged,
}

impl SnapshotKind {
    /// The tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Escrow => "escrow",
            Self::Diverged => "diverged",
        }
    }
}

/// The identity of a backup set: what restore and retention select by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotLabels {
    /// Engine.
    pub engine: Engine,
    /// Cluster (or database) name.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Snapshot kind.
    pub kind: SnapshotKind,
    /// Database type, for the standalone engine.
    pub db_type: Option<DbType>,
    /// The file inside the snapshot.
    pub file: String,
    /// One database, in per-database mode (`None`: the whole server).
    pub database: Option<String>,
    /// The operation that took it (`job=` tag), grouping the escrow snapshots of one repair.
    pub job: Option<String>,
}

impl SnapshotLabels {
    /// The labels of one database's snapshot in this backup set: its own file and a
    /// `database=` tag, so it is selected apart from whole-server snapshots.
    pub fn for_database(&self, name: &str, dump_file: &str) -> Self {
        let encoded = encode_list(&[name.to_string()]);
        Self {
            file: format!("database-{encoded}.{dump_file}"),
            database: Some(name.to_string()),
            ..self.clone()
        }
    }

    /// The stdin filename / snapshot path without the leading slash.
    pub fn stdin_filename(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.cluster, self.file)
    }

    /// The path as restic lists it.
    pub fn path(&self) -> String {
        format!("/{}", self.stdin_filename())
    }

    /// The selecting tags (engine, cluster, namespace, type, db-type).
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![
            ("engine".to_string(), self.engine.as_str().to_string()),
            ("cluster".to_string(), self.cluster.clone()),
            ("namespace".to_string(), self.namespace.clone()),
            ("type".to_string(), self.kind.as_str().to_string()),
        ];
        if let Some(db) = self.db_type {
            tags.push(("db-type".to_string(), db.as_str().to_string()));
        }
        if let Some(name) = &self.database {
            tags.push((
                "database".to_string(),
                encode_list(std::slice::from_ref(name)),
            ));
        }
        if let Some(job) = &self.job {
            tags.push(("job".to_string(), job.clone()));
        }
        tags
    }
}

/// Checks a cluster or namespace name: it becomes a path segment and a tag value, so it must be
/// a DNS-1123-like label (lowercase letters, digits, `-`, `.`, `_`), 1–253 characters.
pub fn validate_name(what: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'))
        && !value.starts_with(['-', '.'])
        && value != ".."
        && !value.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} `{value}`: use lowercase letters, digits, `-`, `.` or `_` (like a Kubernetes name)"
        ))
    }
}

/// Encodes a list of names into one tag value (names percent-encoded, joined with `+`), safe
/// for restic's comma-separated tag syntax.
pub fn encode_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| {
            n.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// Decodes [`encode_list`].
pub fn decode_list(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    value
        .split('+')
        .map(|part| {
            let bytes = part.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' && i + 2 < bytes.len() {
                    if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                }
                out.push(bytes[i]);
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_make_path_and_tags() {
        let l = SnapshotLabels {
            engine: Engine::Standalone,
            cluster: "db1".into(),
            namespace: "default".into(),
            kind: SnapshotKind::Backup,
            db_type: Some(DbType::Postgres),
            file: DbType::Postgres.dump_file().into(),
            database: None,
            job: None,
        };
        assert_eq!(l.path(), "/default/db1/pg_dumpall.sql");
        let one = l.for_database("My DB", DbType::Postgres.database_dump_file());
        assert_eq!(one.path(), "/default/db1/database-My%20DB.pg_dump.sql");
        assert!(one.tags().contains(&("database".into(), "My%20DB".into())));
        assert!(l.tags().contains(&("db-type".into(), "postgres".into())));
        assert!(l.tags().contains(&("type".into(), "backup".into())));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("cluster", "pg-main.prod_1").is_ok());
        for bad in ["", "Upper", "a,b", "a/b", "../x", "-x", "a b", "a=b"] {
            assert!(validate_name("cluster", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn db_list_round_trips() {
        let names = vec![
            "app".to_string(),
            "we,ird+name=%".to_string(),
            "Ünï".to_string(),
        ];
        let enc = encode_list(&names);
        assert!(!enc.contains(','));
        assert_eq!(decode_list(&enc), names);
        assert!(decode_list("").is_empty());
    }

    #[test]
    fn db_types_parse() {
        assert_eq!("mariadb".parse::<DbType>().unwrap(), DbType::Mariadb);
        assert!("oracle"
            .parse::<DbType>()
            .unwrap_err()
            .contains("unknown database type"));
    }
}
