//! Mounts as volumes of their own size, for `df` in a pod.
//!
//! A mount is a local directory on the host's filesystem, so a plain `df` in a "pod" reports
//! the host's disk: a simulated PostgreSQL or Galera volume would look 96% full whenever the
//! machine running the tests is. A real volume has its own size. So when a configuration has
//! mounts, the simulator puts a `df` stand-in in front of `PATH` that reports each mount as a
//! volume of `volumeSizeKib` (default [`DEFAULT_VOLUME_KIB`]) whose use is what `du` counts in
//! the directory. Operands outside every mount go to the real `df`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::Error;

/// Size of a mounted volume when the configuration names none: 8 GiB.
pub const DEFAULT_VOLUME_KIB: u64 = 8 * 1024 * 1024;

/// Environment variable with the volume size in KiB.
const SIZE_VAR: &str = "KUBESIM_VOLUME_KIB";
/// Environment variable with the mounts' local directories, one per line.
const ROOTS_VAR: &str = "KUBESIM_VOLUMES";

/// The `df` stand-in; `@REAL_DF@` is replaced by the host's `df`. POSIX output (`-kP`) in KiB
/// whatever the flags; a use percentage rounded up, as df rounds it.
const DF_SCRIPT: &str = r#"#!/bin/sh
# kubesim: `df` for a pod whose mounts are volumes of $KUBESIM_VOLUME_KIB KiB each (see
# docs/kubesim.md, "Volumes"). Their use is what du counts under the mount's directory.
set -u
real=@REAL_DF@
cap=$KUBESIM_VOLUME_KIB
out="Filesystem     1024-blocks      Used Available Capacity Mounted on"
operands=0
for a in "$@"; do
  case "$a" in -*) continue ;; esac
  operands=$((operands + 1))
  if [ -d "$a" ]; then p=$(cd -- "$a" 2>/dev/null && pwd -P) || exec "$real" "$@"
  else p=$(cd -- "$(dirname -- "$a")" 2>/dev/null && pwd -P) || exec "$real" "$@"; fi
  root=""
  while IFS= read -r v; do
    [ -n "$v" ] || continue
    case "$p/" in "$v"/*) [ ${#v} -gt ${#root} ] && root=$v ;; esac
  done <<EOF
$KUBESIM_VOLUMES
EOF
  [ -n "$root" ] || exec "$real" "$@"
  used=$(du -sk -- "$root" 2>/dev/null | tail -n 1 | awk '{print $1}')
  used=${used:-0}
  avail=$((cap - used))
  [ "$avail" -ge 0 ] || avail=0
  pct=$(((used * 100 + cap - 1) / cap))
  out="$out
kubesim-volume $cap $used $avail $pct% $root"
done
[ "$operands" -gt 0 ] || exec "$real" "$@"
printf '%s\n' "$out"
"#;

/// A directory holding the `df` stand-in, removed with the simulator.
pub(crate) struct VolumeTools {
    dir: tempfile::TempDir,
}

impl VolumeTools {
    /// Writes the stand-in, pointing it at the host's `df` (first on `PATH`).
    pub(crate) fn create() -> Result<VolumeTools, Error> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("kubesim-volume-")
            .tempdir()
            .map_err(|e| Error::io("creating the volume tools directory", e))?;
        let real = host_df();
        let script = DF_SCRIPT.replace("@REAL_DF@", &shell_quote(&real.display().to_string()));
        let path = dir.path().join("df");
        std::fs::write(&path, script).map_err(|e| Error::io("writing the df stand-in", e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("making the df stand-in executable", e))?;
        Ok(VolumeTools { dir })
    }

    /// The `PATH` of a process for a configuration (`path_prepend` in front, and the stand-in
    /// before all when there are mounts), adding the stand-in's variables to `env`.
    pub(crate) fn process_path(
        &self,
        mounts: &BTreeMap<String, PathBuf>,
        size_kib: Option<u64>,
        path_prepend: &[PathBuf],
        env: &mut BTreeMap<String, String>,
    ) -> Result<Option<OsString>, String> {
        if mounts.is_empty() {
            return crate::exec::prepended_path(env, path_prepend);
        }
        let roots: Vec<String> = mounts
            .values()
            .map(|local| {
                std::fs::canonicalize(local)
                    .unwrap_or_else(|_| local.clone())
                    .display()
                    .to_string()
            })
            .collect();
        env.insert(ROOTS_VAR.into(), roots.join("\n"));
        env.insert(
            SIZE_VAR.into(),
            size_kib.unwrap_or(DEFAULT_VOLUME_KIB).max(1).to_string(),
        );
        let mut prepend = vec![self.dir.path().to_path_buf()];
        prepend.extend_from_slice(path_prepend);
        crate::exec::prepended_path(env, &prepend)
    }
}

/// The host's `df`: the first executable `df` on `PATH`, else `/bin/df`.
fn host_df() -> PathBuf {
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("df"))
                .find(|candidate| is_executable(candidate))
        })
        .unwrap_or_default()
        .unwrap_or_else(|| PathBuf::from("/bin/df"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `value` as one single-quoted shell word.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn df(
        tools: &VolumeTools,
        mounts: &BTreeMap<String, PathBuf>,
        size: u64,
        arg: &Path,
    ) -> String {
        let mut env = BTreeMap::new();
        let path = tools
            .process_path(mounts, Some(size), &[], &mut env)
            .unwrap()
            .unwrap();
        let out = Command::new("df")
            .args(["-kP".as_ref(), arg.as_os_str()])
            .env("PATH", path)
            .envs(env)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn a_mount_reports_its_own_use_against_the_volume_size() {
        let tools = VolumeTools::create().unwrap();
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir(data.path().join("sub")).unwrap();
        std::fs::write(data.path().join("sub/blob"), vec![7u8; 600 * 1024]).unwrap();
        let mounts = BTreeMap::from([("/var/lib/x".to_string(), data.path().to_path_buf())]);

        // 600 KiB of data on a 1000 KiB volume: 60% or a little more (directory blocks).
        let out = df(&tools, &mounts, 1000, &data.path().join("sub"));
        let line = out.lines().nth(1).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], "kubesim-volume", "{out}");
        assert_eq!(fields[1], "1000");
        let used: u64 = fields[2].parse().unwrap();
        assert!((600..700).contains(&used), "{out}");
        assert_eq!(fields[3].parse::<u64>().unwrap(), 1000 - used);
        assert_eq!(fields[4], format!("{}%", (used * 100).div_ceil(1000)));

        // Freeing space shows: the blob is gone, the volume is nearly empty.
        std::fs::remove_file(data.path().join("sub/blob")).unwrap();
        let out = df(&tools, &mounts, 1000, &data.path().join("sub"));
        let used: u64 = out
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert!(used < 100, "{out}");
    }

    #[test]
    fn a_path_outside_every_mount_goes_to_the_hosts_df() {
        let tools = VolumeTools::create().unwrap();
        let data = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let mounts = BTreeMap::from([("/var/lib/x".to_string(), data.path().to_path_buf())]);
        let out = df(&tools, &mounts, 1000, other.path());
        assert!(!out.contains("kubesim-volume"), "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
    }
}
