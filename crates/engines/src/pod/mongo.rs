//! mongo tools arguments. `mongodump --archive` writes one self-describing stream to stdout;
//! `mongorestore --archive` reads it from stdin. The password comes from the `--config` file
//! the wrapper writes (mongo tools ≥ 100.3), never argv.

/// `mongodump` arguments: the whole server, or one database.
pub fn dump_args(user: Option<&str>, database: Option<&str>) -> Vec<String> {
    let mut args = auth_args(user);
    args.push("--archive".into());
    if let Some(db) = database {
        args.push(format!("--db={db}"));
    }
    args
}

/// `mongorestore` arguments; `replace` (`--force`) drops each collection before restoring it.
pub fn restore_args(user: Option<&str>, replace: bool) -> Vec<String> {
    let mut args = auth_args(user);
    args.push("--archive".into());
    args.push("--stopOnError".into());
    if replace {
        args.push("--drop".into());
    }
    args
}

/// Authentication options when a password is used (`None`: the container's own setup).
fn auth_args(user: Option<&str>) -> Vec<String> {
    match user {
        Some(user) => vec![
            format!("--username={user}"),
            "--authenticationDatabase=admin".into(),
        ],
        None => Vec::new(),
    }
}
