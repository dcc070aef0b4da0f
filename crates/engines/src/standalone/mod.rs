//! The standalone engine for databases reached over TCP from where hasteward runs.
//!
//! Each flavour module builds the same four things: the dump command, the restore client, a
//! query listing user databases, and the restore-time stream rules. The flows in
//! [`crate::flows`] are shared.

pub mod mysql;
pub mod postgres;

use std::path::PathBuf;

use hasteward_exec::{CommandSpec, LocalRunner, Signal, StreamFilter};
use hasteward_model::DbType;

use crate::linefilter::LineFilter;
use crate::secrets::{read_password_file, SecretFiles};
use crate::target::{Invocation, Target};
use crate::{Error, Result};

/// A database server reached over TCP.
#[derive(Debug, Clone)]
pub struct HostTarget {
    /// Flavour.
    pub db_type: DbType,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User to connect as.
    pub user: String,
    /// File holding the password (first line); `None` relies on the client's own configuration.
    pub password_file: Option<PathBuf>,
}

impl HostTarget {
    /// The default port of a flavour.
    pub fn default_port(db: DbType) -> u16 {
        match db {
            DbType::Postgres => 5432,
            DbType::Mysql | DbType::Mariadb => 3306,
            DbType::Mongo => 27017,
        }
    }

    /// The default user of a flavour.
    pub fn default_user(db: DbType) -> &'static str {
        match db {
            DbType::Postgres => "postgres",
            DbType::Mysql | DbType::Mariadb => "root",
            DbType::Mongo => "admin",
        }
    }

    /// Checks the fields that become argv or file contents.
    pub fn validate(&self) -> Result<()> {
        if self.db_type == DbType::Mongo {
            return Err(Error::Usage(
                "--db-type mongo is supported for pod targets only (`--container`); host targets support postgres, mysql and mariadb".into(),
            ));
        }
        if self.host.is_empty()
            || self.host.starts_with('-')
            || self.host.contains(char::is_whitespace)
        {
            return Err(Error::Usage(format!("invalid --host `{}`", self.host)));
        }
        if self.user.is_empty()
            || self.user.starts_with('-')
            || self.user.contains(['\n', '\r', '\0'])
        {
            return Err(Error::Usage(format!("invalid --db-user `{}`", self.user)));
        }
        if self.port == 0 {
            return Err(Error::Usage("--port must be between 1 and 65535".into()));
        }
        Ok(())
    }
}

/// Credentials prepared for one run: the private files and what points at them.
#[derive(Debug)]
pub struct Connection {
    _files: Option<SecretFiles>,
    /// `PGPASSFILE` for PostgreSQL clients.
    pub pgpass: Option<PathBuf>,
    /// `--defaults-extra-file` for MySQL clients.
    pub mysql_defaults: Option<PathBuf>,
}

impl Connection {
    /// Writes the credential files the target's clients need.
    pub fn prepare(t: &HostTarget) -> Result<Self> {
        let password = t
            .password_file
            .as_deref()
            .map(read_password_file)
            .transpose()?;
        let mut conn = Connection {
            _files: None,
            pgpass: None,
            mysql_defaults: None,
        };
        let files = SecretFiles::new()?;
        match t.db_type {
            DbType::Postgres => {
                if let Some(pw) = &password {
                    conn.pgpass = Some(files.pgpass(&t.host, t.port, &t.user, pw)?);
                }
            }
            DbType::Mysql | DbType::Mariadb => {
                // The option file carries the user too, so neither appears anywhere else.
                conn.mysql_defaults = Some(files.mysql_defaults(&t.user, password.as_deref())?);
            }
            DbType::Mongo => {}
        }
        conn._files = Some(files);
        Ok(conn)
    }
}

/// Everything a flow needs to know about one flavour, resolved against the installed tools.
#[derive(Debug)]
pub struct Flavor {
    db: DbType,
    dump_program: String,
    client_program: String,
}

impl Flavor {
    /// Resolves the dump and client programs; a missing tool is a dependency error.
    pub fn resolve(db: DbType) -> Result<Self> {
        let pick = |candidates: &[&str]| -> Result<String> {
            candidates
                .iter()
                .find(|c| which::which(c).is_ok())
                .map(|c| c.to_string())
                .ok_or_else(|| Error::ToolMissing {
                    tool: candidates.join(" or "),
                    hint: match db {
                        DbType::Postgres => "install the PostgreSQL client (e.g. `apt-get install postgresql-client`)",
                        _ => "install the MariaDB/MySQL client (e.g. `apt-get install mariadb-client`)",
                    },
                })
        };
        let (dump_program, client_program) = match db {
            DbType::Postgres => {
                pick(&["pg_dump"])?;
                (pick(&["pg_dumpall"])?, pick(&["psql"])?)
            }
            DbType::Mysql | DbType::Mariadb => (
                pick(&mysql::dump_programs(db))?,
                pick(&mysql::client_programs(db))?,
            ),
            DbType::Mongo => {
                return Err(Error::Usage("mongo host targets are not supported".into()))
            }
        };
        Ok(Self {
            db,
            dump_program,
            client_program,
        })
    }

    /// The dump producer: the whole server, or one database.
    pub fn dump(&self, t: &HostTarget, c: &Connection, database: Option<&str>) -> CommandSpec {
        match (self.db, database) {
            (DbType::Postgres, None) => postgres::dump(t, c),
            (DbType::Postgres, Some(db)) => postgres::dump_database(t, c, db),
            (_, None) => mysql::dump(&self.dump_program, t, c),
            (_, Some(db)) => mysql::dump_database(&self.dump_program, t, c, db),
        }
    }

    /// The restore consumer.
    pub fn restore_client(&self, t: &HostTarget, c: &Connection) -> CommandSpec {
        match self.db {
            DbType::Postgres => postgres::restore_client(t, c),
            _ => mysql::restore_client(&self.client_program, t, c),
        }
    }

    /// The query listing user databases.
    pub fn list_databases(&self, t: &HostTarget, c: &Connection) -> CommandSpec {
        match self.db {
            DbType::Postgres => postgres::list_databases(t, c),
            _ => mysql::list_databases(&self.client_program, t, c),
        }
    }

    /// The marker the dump must end with (whole server, or one database).
    pub fn completion_marker(&self, one_database: bool) -> &'static [u8] {
        match (self.db, one_database) {
            (DbType::Postgres, false) => postgres::COMPLETION_MARKER,
            (DbType::Postgres, true) => postgres::DATABASE_COMPLETION_MARKER,
            _ => mysql::COMPLETION_MARKER,
        }
    }

    /// How to stop the restore client without letting it see EOF.
    pub fn client_abort(&self) -> Signal {
        match self.db {
            DbType::Postgres => postgres::CLIENT_ABORT,
            _ => mysql::CLIENT_ABORT,
        }
    }

    /// The restore stream rules.
    pub fn restore_filter(
        &self,
        t: &HostTarget,
        replace_databases: bool,
        include_system: bool,
    ) -> Box<dyn StreamFilter> {
        match self.db {
            DbType::Postgres => Box::new(LineFilter::new(postgres::RestoreRules::new(
                &t.user,
                replace_databases,
            ))),
            _ => Box::new(LineFilter::new(mysql::RestoreRules::new(
                include_system,
                replace_databases,
            ))),
        }
    }
}

/// A host target with its tools resolved and credential files written: the [`Target`] the
/// flows use for servers reached over TCP.
#[derive(Debug)]
pub struct HostEndpoint {
    target: HostTarget,
    flavor: Flavor,
    conn: Connection,
}

impl HostEndpoint {
    /// Validates the target, finds its tools and writes its credential files.
    pub fn prepare(target: &HostTarget) -> Result<Self> {
        target.validate()?;
        Ok(Self {
            flavor: Flavor::resolve(target.db_type)?,
            conn: Connection::prepare(target)?,
            target: target.clone(),
        })
    }
}

impl Target for HostEndpoint {
    type Runner = LocalRunner;

    fn runner(&self) -> &LocalRunner {
        &LocalRunner
    }

    fn location(&self) -> String {
        format!("{}:{}", self.target.host, self.target.port)
    }

    fn list_databases(&self) -> Option<Invocation> {
        Some(self.flavor.list_databases(&self.target, &self.conn).into())
    }

    fn dump(&self, database: Option<&str>) -> Invocation {
        self.flavor.dump(&self.target, &self.conn, database).into()
    }

    fn restore_client(&self, _replace: bool) -> Invocation {
        self.flavor.restore_client(&self.target, &self.conn).into()
    }

    fn completion_marker(&self, one_database: bool) -> Option<&'static [u8]> {
        Some(self.flavor.completion_marker(one_database))
    }

    fn client_abort(&self) -> Signal {
        self.flavor.client_abort()
    }

    fn restore_filter(&self, replace: bool, include_system: bool) -> Option<Box<dyn StreamFilter>> {
        Some(
            self.flavor
                .restore_filter(&self.target, replace, include_system),
        )
    }
}
