#!/usr/bin/env python3
"""Stand-in for mongodump/mongorestore (no real mongod can be installed on the test machines).

It is NOT MongoDB. It imitates the parts of the tools' contract that hasteward relies on:
  * `--archive` streams one archive on stdout (dump) / reads it from stdin (restore);
  * `--config=FILE` carries `password: "<json string>"` (mongo tools >= 100.3), checked against
    $MONGO_STANDIN_PASSWORD together with `--username=` against $MONGO_STANDIN_USER;
  * a non-zero exit on any failure; `--drop` replaces collections, `--stopOnError` stops at the
    first conflicting collection; `--db=NAME` dumps one database.
The "server" is the directory $MONGO_STANDIN_DATA: one sub-directory per database, one file per
collection. The archive is the real archive magic (0x8199e26d little-endian) followed by a tar of
the selected databases and a trailer line. $MONGO_STANDIN_FAIL_AFTER=N makes a dump stop with an
error after N bytes (a dump that fails inside the pod).
"""
import io
import json
import os
import sys
import tarfile

MAGIC = bytes.fromhex("6de29981")
TRAILER = b"\nmongo-standin archive end\n"


def die(msg, code=1):
    sys.stderr.write(f"{os.path.basename(sys.argv[0])}: {msg}\n")
    sys.exit(code)


def options(argv):
    opts = {}
    for a in argv:
        if not a.startswith("--"):
            die(f"unexpected argument {a!r}", 2)
        key, _, value = a[2:].partition("=")
        opts[key] = value if "=" in a else True
    return opts


def authenticate(opts):
    want_user = os.environ.get("MONGO_STANDIN_USER")
    if want_user is None:
        return
    if opts.get("username") != want_user:
        die(f"authentication failed: user {opts.get('username')!r}")
    cfg = opts.get("config")
    if not isinstance(cfg, str):
        die("authentication failed: no password (pass --config=FILE)")
    mode = os.stat(cfg).st_mode & 0o777
    if mode & 0o077:
        die(f"config file {cfg} is readable by others (mode {mode:o})")
    password = None
    with open(cfg) as f:
        for line in f:
            if line.startswith("password:"):
                password = json.loads(line.split(":", 1)[1].strip())
    if password != os.environ.get("MONGO_STANDIN_PASSWORD"):
        die("authentication failed: wrong password")


def data_dir():
    d = os.environ.get("MONGO_STANDIN_DATA")
    if not d or not os.path.isdir(d):
        die("cannot connect: MONGO_STANDIN_DATA is not a directory (server down?)")
    return d


def dump(opts):
    data = data_dir()
    dbs = sorted(os.listdir(data))
    if isinstance(opts.get("db"), str):
        if opts["db"] not in dbs:
            die(f"database {opts['db']!r} not found")
        dbs = [opts["db"]]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for db in dbs:
            tar.add(os.path.join(data, db), arcname=db)
    stream = MAGIC + buf.getvalue() + TRAILER
    fail_after = os.environ.get("MONGO_STANDIN_FAIL_AFTER")
    out = sys.stdout.buffer
    if fail_after is not None:
        out.write(stream[: int(fail_after)])
        out.flush()
        die("connection reset by peer (injected failure)")
    out.write(stream)
    out.flush()
    for db in dbs:
        sys.stderr.write(f"done dumping {db}\n")


def restore(opts):
    data = data_dir()
    raw = sys.stdin.buffer.read()
    if not raw.startswith(MAGIC) or not raw.endswith(TRAILER):
        die("archive is truncated or not a mongodump archive")
    body = raw[len(MAGIC) : -len(TRAILER)]
    with tarfile.open(fileobj=io.BytesIO(body), mode="r") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for m in members:
            target = os.path.join(data, m.name)
            if os.path.exists(target) and not opts.get("drop"):
                die(f"E11000 duplicate key error collection: {m.name.replace('/', '.')}")
        for m in members:
            target = os.path.join(data, m.name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(tar.extractfile(m).read())
    sys.stderr.write(f"{len(members)} document files restored\n")


def main():
    opts = options(sys.argv[1:])
    if not opts.get("archive"):
        die("only --archive mode is supported by the stand-in", 2)
    authenticate(opts)
    name = os.path.basename(sys.argv[0])
    if name == "mongodump":
        dump(opts)
    elif name == "mongorestore":
        restore(opts)
    else:
        die("invoke as mongodump or mongorestore", 2)


if __name__ == "__main__":
    main()
