//! Databases inside pods: the same dumps and restores as host targets, run through the pod
//! exec API (or any [`Runner`]).
//!
//! # Credentials never travel in argv
//! Exec argv lands in API server audit logs and in `ps` inside the container. When a password
//! is needed, the command runs under a fixed wrapper script ([`WRAPPER`]): hasteward sends one
//! credential line first on stdin, the wrapper writes it into a 0600 temp file (`PGPASSFILE`,
//! a MySQL `--defaults-extra-file`, or a mongo tools `--config` file), runs the tool, and
//! removes the file when the tool exits. The rest of stdin (a restore stream) goes to the tool.
//! User-supplied values (user names, database names) are separate argv elements, never part of
//! the script text.

pub mod archive;
pub mod cnpg;
pub mod galera;
mod mongo;
pub mod standalone;

use hasteward_exec::{CommandSpec, Runner, Signal, StreamFilter};
use hasteward_model::DbType;

use crate::linefilter::LineFilter;
use crate::standalone::{mysql, postgres};
use crate::target::{Invocation, Preamble, Target};

/// The wrapper every in-pod command runs under. `$1` is the credential mode (`none`, `pgpass`,
/// `mycnf`, `mongo`, or `token`: a Vault/OpenBao token exported as `VAULT_TOKEN`/`BAO_TOKEN`), `$2` a comma-separated list of program names (the first one present in
/// the container is used), the rest the program's arguments. It never interpolates arguments
/// into commands.
pub const WRAPPER: &str = r#"mode=$1; progs=$2; shift 2
prog=
set -f; IFS=,
for p in $progs; do
  if command -v "$p" >/dev/null 2>&1; then prog=$p; break; fi
done
unset IFS; set +f
if [ -z "$prog" ]; then echo "hasteward: none of [$progs] is installed in this container" >&2; exit 127; fi
if [ "$mode" = none ]; then exec "$prog" "$@"; fi
umask 077
f=$(mktemp) || { echo "hasteward: cannot create a temp file for credentials" >&2; exit 126; }
trap 'rm -f "$f"' EXIT
trap 'exit 129' HUP INT TERM PIPE
IFS= read -r line || { echo "hasteward: no credentials on stdin" >&2; exit 126; }
case $mode in
  pgpass) printf '%s\n' "$line" >"$f"; PGPASSFILE=$f; export PGPASSFILE; "$prog" "$@" ;;
  mycnf) printf '[client]\n%s\n' "$line" >"$f"; "$prog" "--defaults-extra-file=$f" "$@" ;;
  mongo) printf '%s\n' "$line" >"$f"; "$prog" "--config=$f" "$@" ;;
  token) rm -f "$f"; VAULT_TOKEN=$line; BAO_TOKEN=$line; export VAULT_TOKEN BAO_TOKEN; "$prog" "$@" ;;
  *) echo "hasteward: unknown credential mode $mode" >&2; exit 2 ;;
esac
"#;

/// How a server inside a pod is authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum PodAuth {
    /// The container's own configuration (CNPG: local connections as `postgres`).
    Container,
    /// A password, sent through stdin into a private file.
    Password(String),
}

impl std::fmt::Debug for PodAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Container => f.write_str("Container"),
            Self::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// A database server in a pod, reached with the tools in its container.
#[derive(Debug)]
pub struct PodDatabase<R> {
    runner: R,
    location: String,
    db_type: DbType,
    user: String,
    auth: PodAuth,
    /// mariadb-operator manages `mysql.global_priv` (its root and operator users): never dump
    /// or restore it.
    operator_managed_accounts: bool,
}

impl<R: Runner> PodDatabase<R> {
    /// A server of `db_type` reached through `runner`, connecting as `user`.
    pub fn new(runner: R, location: String, db_type: DbType, user: &str, auth: PodAuth) -> Self {
        Self {
            runner,
            location,
            db_type,
            user: user.to_string(),
            auth,
            operator_managed_accounts: false,
        }
    }

    /// Marks the server as managed by mariadb-operator (see the field).
    pub fn operator_managed_accounts(mut self) -> Self {
        self.operator_managed_accounts = true;
        self
    }

    fn mode(&self) -> &'static str {
        match (&self.auth, self.db_type) {
            (PodAuth::Container, _) => "none",
            (PodAuth::Password(_), DbType::Postgres) => "pgpass",
            (PodAuth::Password(_), DbType::Mysql | DbType::Mariadb) => "mycnf",
            (PodAuth::Password(_), DbType::Mongo) => "mongo",
        }
    }

    fn preamble(&self) -> Option<Preamble> {
        let PodAuth::Password(pw) = &self.auth else {
            return None;
        };
        let line = match self.db_type {
            DbType::Postgres => {
                format!("*:*:*:{}:{}", pgpass_escape(&self.user), pgpass_escape(pw))
            }
            DbType::Mysql | DbType::Mariadb => format!("password=\"{}\"", option_escape(pw)),
            DbType::Mongo => format!(
                "password: {}",
                serde_json::to_string(pw).expect("strings serialize")
            ),
        };
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        Some(Preamble(bytes))
    }

    /// `sh -c WRAPPER hasteward MODE PROGRAMS ARGS...`, stdin piped when a preamble or a stream
    /// goes in.
    fn invocation<I, S>(&self, programs: &str, args: I, stream_in: bool) -> Invocation
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        let preamble = self.preamble();
        let label = programs.replace(',', "|");
        let mut spec = CommandSpec::new("sh")
            .args(["-c", WRAPPER, "hasteward", self.mode(), programs])
            .args(args)
            .labelled(label);
        if stream_in || preamble.is_some() {
            spec = spec.stdin_piped();
        }
        Invocation { spec, preamble }
    }

    /// The runner (also available through [`Target::runner`]).
    pub fn runner_ref(&self) -> &R {
        &self.runner
    }

    fn password_user(&self) -> Option<&str> {
        matches!(self.auth, PodAuth::Password(_)).then_some(self.user.as_str())
    }

    /// A fixed query through the MySQL/MariaDB client (tab-separated, no column names).
    pub fn mysql_query(&self, sql: &'static str) -> Invocation {
        let mut args = self.my_base();
        args.extend(["--batch", "--skip-column-names", "-e", sql].map(String::from));
        self.invocation(&self.my_programs(false), args, false)
    }

    fn pg_user_args(&self) -> Vec<String> {
        vec!["-U".into(), self.user.clone(), "-w".into()]
    }

    fn my_programs(&self, dump: bool) -> String {
        let list = if dump {
            mysql::dump_programs(self.db_type)
        } else {
            mysql::client_programs(self.db_type)
        };
        list.join(",")
    }

    fn my_base(&self) -> Vec<String> {
        vec![
            format!("--user={}", self.user),
            "--default-character-set=utf8mb4".into(),
        ]
    }
}

/// `.pgpass` fields escape `:` and `\`.
fn pgpass_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// Option-file values in double quotes escape `\` and `"`.
fn option_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A libpq connection string naming one database, quoted so that no part of the name is read
/// as another parameter.
fn pg_dbname(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

impl<R: Runner> Target for PodDatabase<R> {
    type Runner = R;

    fn runner(&self) -> &R {
        &self.runner
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_databases(&self) -> Option<Invocation> {
        match self.db_type {
            DbType::Postgres => {
                let mut args = self.pg_user_args();
                args.extend(["-X", "-A", "-t", "-d", "postgres", "-c"].map(String::from));
                args.push(postgres::LIST_DATABASES_SQL.into());
                Some(self.invocation("psql", args, false))
            }
            DbType::Mysql | DbType::Mariadb => Some(self.mysql_query(mysql::LIST_DATABASES_SQL)),
            DbType::Mongo => None,
        }
    }

    fn dump(&self, database: Option<&str>) -> Invocation {
        match (self.db_type, database) {
            (DbType::Postgres, None) => self.invocation("pg_dumpall", self.pg_user_args(), false),
            (DbType::Postgres, Some(db)) => {
                let mut args = self.pg_user_args();
                args.extend(["--create".to_string(), "-d".into(), pg_dbname(db)]);
                self.invocation("pg_dump", args, false)
            }
            (DbType::Mysql | DbType::Mariadb, _) => {
                let mut args = self.my_base();
                args.extend(mysql::DUMP_OPTIONS.map(String::from));
                if self.operator_managed_accounts {
                    args.push("--ignore-table=mysql.global_priv".into());
                }
                match database {
                    None => args.push("--all-databases".into()),
                    Some(db) => args.extend(["--databases".to_string(), db.to_string()]),
                }
                self.invocation(&self.my_programs(true), args, false)
            }
            (DbType::Mongo, _) => self.invocation(
                "mongodump",
                mongo::dump_args(self.password_user(), database),
                false,
            ),
        }
    }

    fn restore_client(&self, replace: bool) -> Invocation {
        let mut inv = match self.db_type {
            DbType::Postgres => {
                let mut args = self.pg_user_args();
                args.extend(postgres::RESTORE_OPTIONS.map(String::from));
                self.invocation("psql", args, true)
            }
            DbType::Mysql | DbType::Mariadb => {
                let mut args = self.my_base();
                args.push("--batch".into());
                self.invocation(&self.my_programs(false), args, true)
            }
            DbType::Mongo => self.invocation(
                "mongorestore",
                mongo::restore_args(self.password_user(), replace),
                true,
            ),
        };
        inv.spec = inv.spec.stdout_null();
        inv
    }

    fn completion_marker(&self, one_database: bool) -> Option<&'static [u8]> {
        match (self.db_type, one_database) {
            (DbType::Postgres, false) => Some(postgres::COMPLETION_MARKER),
            (DbType::Postgres, true) => Some(postgres::DATABASE_COMPLETION_MARKER),
            (DbType::Mysql | DbType::Mariadb, _) => Some(mysql::COMPLETION_MARKER),
            (DbType::Mongo, _) => None,
        }
    }

    fn client_abort(&self) -> Signal {
        // Nothing but closing the exec connection reaches a process in a pod.
        Signal::Kill
    }

    fn restore_filter(&self, replace: bool, include_system: bool) -> Option<Box<dyn StreamFilter>> {
        match self.db_type {
            DbType::Postgres => Some(Box::new(LineFilter::new(postgres::RestoreRules::new(
                &self.user, replace,
            )))),
            DbType::Mysql | DbType::Mariadb => Some(Box::new(LineFilter::new(
                mysql::RestoreRules::new(include_system, replace),
            ))),
            DbType::Mongo => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hasteward_exec::LocalRunner;

    fn all_argv(inv: &Invocation) -> String {
        inv.spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn passwords_go_to_stdin_never_to_argv() {
        for db in [DbType::Postgres, DbType::Mariadb, DbType::Mongo] {
            let t = PodDatabase::new(
                LocalRunner,
                "pod".into(),
                db,
                "app",
                PodAuth::Password("s3cr:et\"x".into()),
            );
            for inv in [t.dump(None), t.restore_client(false), t.dump(Some("db1"))] {
                assert!(!all_argv(&inv).contains("s3cr"), "{db}: {}", all_argv(&inv));
                assert!(inv.spec.env.is_empty());
                let pre = String::from_utf8(inv.preamble.clone().unwrap().0).unwrap();
                assert!(pre.contains("s3cr"), "{pre}");
                assert!(pre.ends_with('\n') && pre.matches('\n').count() == 1);
            }
        }
    }

    #[test]
    fn container_auth_sends_no_preamble_and_dumps_do_not_pipe_stdin() {
        let t = PodDatabase::new(
            LocalRunner,
            "pod".into(),
            DbType::Postgres,
            "postgres",
            PodAuth::Container,
        );
        let d = t.dump(None);
        assert!(d.preamble.is_none());
        assert_eq!(d.spec.stdin, hasteward_exec::StdinMode::Null);
        assert!(all_argv(&d).ends_with("hasteward none pg_dumpall -U postgres -w"));
    }

    #[test]
    fn database_names_are_quoted_connection_strings() {
        assert_eq!(pg_dbname("a'b\\c"), "dbname='a\\'b\\\\c'");
        assert_eq!(pg_dbname("host=evil"), "dbname='host=evil'");
    }

    #[test]
    fn operator_managed_accounts_are_left_out_of_galera_dumps() {
        let t = PodDatabase::new(
            LocalRunner,
            "pod".into(),
            DbType::Mariadb,
            "root",
            PodAuth::Password("x".into()),
        )
        .operator_managed_accounts();
        assert!(all_argv(&t.dump(None)).contains("--ignore-table=mysql.global_priv"));
    }
}

#[cfg(test)]
mod wrapper_tests {
    //! The wrapper script run by a real `sh`, with stand-in tools on PATH.
    use super::*;
    use crate::target::capture;
    use hasteward_exec::LocalRunner;
    use std::os::unix::fs::PermissionsExt;

    /// A tool that prints its argv and the file named by `--defaults-extra-file=`/`--config=`
    /// or `$PGPASSFILE`, with the file's mode, then the rest of its stdin.
    const SHOW: &str = r#"#!/bin/sh
f=
for a in "$@"; do case $a in --defaults-extra-file=*|--config=*) f=${a#*=};; esac; done
[ -n "${PGPASSFILE:-}" ] && f=$PGPASSFILE
echo "argv: $*"
if [ -n "$f" ]; then echo "mode: $(stat -c %a "$f")"; cat "$f"; echo "$f" > "$SHOW_LAST"; fi
cat
"#;

    fn tools() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        for name in ["psql", "mariadb", "mongodump"] {
            let p = dir.path().join(name);
            std::fs::write(&p, SHOW).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap()
        );
        (dir, path)
    }

    async fn run(db: DbType, inv: Invocation, path: &str, last: &std::path::Path) -> String {
        let mut inv = inv;
        inv.spec = inv.spec.env("PATH", path).env("SHOW_LAST", last);
        let _ = db;
        capture(&LocalRunner, &inv, "test").await.unwrap()
    }

    #[tokio::test]
    async fn credentials_reach_a_private_file_that_is_removed_afterwards() {
        let (dir, path) = tools();
        let last = dir.path().join("last");
        for (db, expect) in [
            (DbType::Postgres, "*:*:*:app:pa\\:ss\"w"),
            (DbType::Mariadb, "password=\"pa:ss\\\"w\""),
            (DbType::Mongo, "password: \"pa:ss\\\"w\""),
        ] {
            let t = PodDatabase::new(
                LocalRunner,
                "pod".into(),
                db,
                "app",
                PodAuth::Password("pa:ss\"w".into()),
            );
            let inv = match db {
                DbType::Mongo => t.dump(None),
                _ => t.list_databases().unwrap(),
            };
            let out = run(db, inv, &path, &last).await;
            assert!(out.contains("mode: 600"), "{db}: {out}");
            assert!(out.contains(expect), "{db}: {out}");
            assert!(
                !out.lines().next().unwrap().contains("pa:ss"),
                "{db}: {out}"
            );
            let file = std::fs::read_to_string(&last).unwrap();
            assert!(
                !std::path::Path::new(file.trim()).exists(),
                "{db}: left {file}"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_tool_is_named_and_fails() {
        let t = PodDatabase::new(
            LocalRunner,
            "pod".into(),
            DbType::Postgres,
            "postgres",
            PodAuth::Container,
        );
        let mut inv = t.dump(None);
        inv.spec.program = "/bin/sh".into();
        inv.spec = inv.spec.env("PATH", "/nonexistent");
        let err = capture(&LocalRunner, &inv, "pod x").await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("none of [pg_dumpall] is installed"), "{text}");
    }
}
