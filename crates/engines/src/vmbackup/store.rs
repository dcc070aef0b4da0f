//! Listing and deleting generations under a destination.
//!
//! `fs://` destinations are directories where vmbackup ran (this machine, or a volume in the
//! VictoriaMetrics pod), so they are listed and deleted with two fixed scripts through the same
//! runner; paths are argv elements, never script text.

use std::future::Future;

use hasteward_exec::{capture, CommandSpec, Runner};
use serde::Serialize;

use super::generations::{Period, LATEST};
use super::s3::{S3Bucket, S3Credentials};
use super::Destination;
use crate::{Error, Result};

/// The file vmbackup writes last; a generation without it is incomplete.
pub const COMPLETE_MARKER: &str = "backup_complete.ignore";

/// Where generations are listed and deleted.
pub trait GenerationStore: Send + Sync {
    /// The generations under `dir` (`daily`, …) with whether each is complete.
    fn list(&self, dir: &str) -> impl Future<Output = Result<Vec<(String, bool)>>> + Send;
    /// Whether `latest` exists and is complete (`None`: absent).
    fn latest(&self) -> impl Future<Output = Result<Option<bool>>> + Send;
    /// Deletes `dir/name`.
    fn delete(&self, dir: &str, name: &str) -> impl Future<Output = Result<()>> + Send;
}

const LIST_SCRIPT: &str = r#"cd -- "$1" 2>/dev/null || exit 0
for d in *; do
  [ -d "$d" ] || continue
  if [ -e "$d/$2" ]; then echo "$d complete"; else echo "$d incomplete"; fi
done
"#;

const LATEST_SCRIPT: &str = r#"[ -d "$1" ] || { echo absent; exit 0; }
if [ -e "$1/$2" ]; then echo complete; else echo incomplete; fi
"#;

/// An `fs://` destination, reached through `runner`.
#[derive(Debug)]
pub struct FsStore<'a, R> {
    runner: &'a R,
    root: String,
}

impl<'a, R: Runner> FsStore<'a, R> {
    /// The store of an `fs://` destination; `None` for other schemes.
    pub fn new(runner: &'a R, dst: &Destination) -> Option<Self> {
        dst.fs_dir().map(|root| Self {
            runner,
            root: root.to_string(),
        })
    }

    async fn run(&self, script: &'static str, args: &[&str]) -> Result<String> {
        let spec = CommandSpec::new("sh")
            .args(["-c", script, "hasteward"])
            .args(args.iter().copied())
            .labelled("sh (generations)");
        let out = capture(self.runner, &spec).await?;
        if !out.outcome.success() {
            return Err(Error::ToolFailed {
                tool: "sh".into(),
                detail: format!(
                    "listing or deleting generations under {}: {}",
                    self.root, out.outcome
                ),
            });
        }
        Ok(out.stdout_text())
    }
}

impl<R: Runner> GenerationStore for FsStore<'_, R> {
    async fn list(&self, dir: &str) -> Result<Vec<(String, bool)>> {
        let path = format!("{}/{dir}", self.root);
        let text = self.run(LIST_SCRIPT, &[&path, COMPLETE_MARKER]).await?;
        Ok(text
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(name, state)| (name.to_string(), state == "complete"))
            .collect())
    }

    async fn latest(&self) -> Result<Option<bool>> {
        let path = format!("{}/{LATEST}", self.root);
        let text = self.run(LATEST_SCRIPT, &[&path, COMPLETE_MARKER]).await?;
        Ok(match text.trim() {
            "complete" => Some(true),
            "incomplete" => Some(false),
            _ => None,
        })
    }

    async fn delete(&self, dir: &str, name: &str) -> Result<()> {
        let period = Period::parse(dir)?;
        if !period.matches(name) {
            return Err(Error::Usage(format!(
                "refusing to delete `{dir}/{name}`: not a generation name"
            )));
        }
        let path = format!("{}/{dir}/{name}", self.root);
        self.run("rm -rf -- \"$1\"", &[&path]).await.map(|_| ())
    }
}

/// An `s3://` destination, read and pruned through the S3 API from here.
#[derive(Debug)]
pub struct S3Store {
    bucket: S3Bucket,
    /// The prefix under the bucket, without slashes at either end (may be empty).
    base: String,
}

impl S3Store {
    /// The store of an `s3://bucket/prefix` destination.
    pub fn new(
        dst: &Destination,
        credentials_file: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<Option<Self>> {
        let Some(rest) = dst.as_str().strip_prefix("s3://") else {
            return Ok(None);
        };
        let (bucket, base) = rest.split_once('/').unwrap_or((rest, ""));
        let creds = S3Credentials::load(credentials_file.map(std::path::Path::new))?;
        Ok(Some(Self {
            bucket: S3Bucket::new(bucket, endpoint, creds)?,
            base: base.trim_matches('/').to_string(),
        }))
    }

    fn key(&self, rel: &str) -> String {
        if self.base.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.base)
        }
    }
}

impl GenerationStore for S3Store {
    async fn list(&self, dir: &str) -> Result<Vec<(String, bool)>> {
        let prefix = self.key(&format!("{dir}/"));
        let mut out = Vec::new();
        for p in self.bucket.list(&prefix, true).await? {
            let name = p
                .strip_prefix(&prefix)
                .unwrap_or(&p)
                .trim_end_matches('/')
                .to_string();
            let complete = self
                .bucket
                .exists(&self.key(&format!("{dir}/{name}/{COMPLETE_MARKER}")))
                .await?;
            // Filer-backed servers (SeaweedFS) keep an emptied "directory" as a common prefix:
            // a generation without its marker counts only if it still holds objects.
            if !complete && self.bucket.list(&p, false).await?.is_empty() {
                continue;
            }
            out.push((name, complete));
        }
        Ok(out)
    }

    async fn latest(&self) -> Result<Option<bool>> {
        if self
            .bucket
            .exists(&self.key(&format!("{LATEST}/{COMPLETE_MARKER}")))
            .await?
        {
            return Ok(Some(true));
        }
        // Any object under `latest/` (at any depth) means a generation without its marker.
        let any = !self
            .bucket
            .list(&self.key(&format!("{LATEST}/")), false)
            .await?
            .is_empty();
        Ok(any.then_some(false))
    }

    async fn delete(&self, dir: &str, name: &str) -> Result<()> {
        let period = Period::parse(dir)?;
        if !period.matches(name) {
            return Err(Error::Usage(format!(
                "refusing to delete `{dir}/{name}`: not a generation name"
            )));
        }
        let prefix = self.key(&format!("{dir}/{name}/"));
        // The completion marker goes first: an interrupted delete leaves an incomplete
        // generation, never a complete-looking partial one.
        let marker = format!("{prefix}{COMPLETE_MARKER}");
        self.bucket.delete(&marker).await?;
        for key in self.bucket.list(&prefix, false).await? {
            if key != marker {
                self.bucket.delete(&key).await?;
            }
        }
        Ok(())
    }
}

/// The store of any supported destination.
#[derive(Debug)]
pub enum AnyStore<'a, R> {
    /// `fs://`.
    Fs(FsStore<'a, R>),
    /// `s3://`.
    S3(Box<S3Store>),
}

impl<'a, R: Runner> AnyStore<'a, R> {
    /// The store for `dst`: `fs://` through `runner`, `s3://` through the S3 API from here.
    pub fn new(
        runner: &'a R,
        dst: &Destination,
        credentials_file: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<Self> {
        if let Some(fs) = FsStore::new(runner, dst) {
            return Ok(Self::Fs(fs));
        }
        if let Some(s3) = S3Store::new(dst, credentials_file, endpoint)? {
            return Ok(Self::S3(Box::new(s3)));
        }
        Err(Error::Usage(format!(
            "listing and retention of {} are not supported: they work on fs:// and s3:// destinations; for gs:// and azblob:// use the bucket's lifecycle rules on the hourly/, daily/, weekly/ and monthly/ prefixes",
            dst.as_str()
        )))
    }
}

impl<R: Runner> GenerationStore for AnyStore<'_, R> {
    async fn list(&self, dir: &str) -> Result<Vec<(String, bool)>> {
        match self {
            Self::Fs(s) => s.list(dir).await,
            Self::S3(s) => s.list(dir).await,
        }
    }

    async fn latest(&self) -> Result<Option<bool>> {
        match self {
            Self::Fs(s) => s.latest().await,
            Self::S3(s) => s.latest().await,
        }
    }

    async fn delete(&self, dir: &str, name: &str) -> Result<()> {
        match self {
            Self::Fs(s) => s.delete(dir, name).await,
            Self::S3(s) => s.delete(dir, name).await,
        }
    }
}

/// One generation, as `snapshots -e vmbackup` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationEntry {
    /// `latest` or `period/name`.
    pub name: String,
    /// Whether vmbackup finished it.
    pub complete: bool,
}

/// Every generation under the destination, `latest` first, then newest first per period.
pub async fn list_all<S: GenerationStore>(store: &S) -> Result<Vec<GenerationEntry>> {
    let mut out = Vec::new();
    if let Some(complete) = store.latest().await? {
        out.push(GenerationEntry {
            name: LATEST.into(),
            complete,
        });
    }
    for p in Period::ALL {
        let mut listed: Vec<(String, bool)> = store
            .list(p.dir())
            .await?
            .into_iter()
            .filter(|(n, _)| p.matches(n))
            .collect();
        listed.sort_by(|a, b| b.0.cmp(&a.0));
        out.extend(listed.into_iter().map(|(n, complete)| GenerationEntry {
            name: format!("{}/{n}", p.dir()),
            complete,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hasteward_exec::LocalRunner;

    #[tokio::test]
    async fn fs_store_lists_and_deletes_only_generations() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (d, complete) in [
            ("latest", true),
            ("daily/2026-11-22", true),
            ("daily/2026-11-23", false),
            ("daily/keep me", true),
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            if complete {
                std::fs::write(root.join(d).join(COMPLETE_MARKER), "").unwrap();
            }
        }
        let dst = Destination::parse(&format!("fs://{}", root.display())).unwrap();
        let store = FsStore::new(&LocalRunner, &dst).unwrap();
        let all = list_all(&store).await.unwrap();
        let names: Vec<(&str, bool)> = all.iter().map(|g| (g.name.as_str(), g.complete)).collect();
        assert_eq!(
            names,
            vec![
                ("latest", true),
                ("daily/2026-11-23", false),
                ("daily/2026-11-22", true)
            ]
        );
        assert!(store.delete("daily", "keep me").await.is_err());
        store.delete("daily", "2026-11-22").await.unwrap();
        assert!(!root.join("daily/2026-11-22").exists());
        assert!(root.join("daily/keep me").exists());
        assert!(store.list("weekly").await.unwrap().is_empty());
    }
}
