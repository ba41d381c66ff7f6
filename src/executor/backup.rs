//! `backup`: archive files and folders into `<dest>/<name>-<UTC timestamp>.tar.gz`.
//!
//! Params: `paths` (each under `[executors.backup] sources`), `dest` (a folder under
//! `destinations`), `name` (the archive prefix), `keep` (newest archives with that prefix to
//! keep; default all), `upload_url` (optional HTTP PUT of the archive, to `upload_hosts`),
//! `upload_headers`, `timeout` (of the upload, default 5m).
//!
//! The archive is written under a temporary name (mode 0600), read back entry by entry (the
//! count must match what was written), then renamed. Symlinks are archived as links, not followed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::common::{check_url, human_bytes, not_under, resolve_path, typed, under_any, Dur};
use super::{Executor, ParamError, RunContext, RunError};
use crate::config::Config;

const TIMESTAMP: &str = "%Y%m%dT%H%M%SZ";

pub struct Backup;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    paths: Vec<PathBuf>,
    dest: PathBuf,
    name: String,
    keep: Option<usize>,
    upload_url: Option<String>,
    #[serde(default)]
    upload_headers: BTreeMap<String, String>,
    timeout: Option<Dur>,
}

struct Checked {
    /// (as given, resolved)
    paths: Vec<(PathBuf, PathBuf)>,
    dest: PathBuf,
    name: String,
    keep: Option<usize>,
    upload_url: Option<String>,
    upload_headers: Vec<(String, String)>,
    timeout: Duration,
}

fn checked(params: &Map<String, Value>, config: &Config) -> Result<Checked, ParamError> {
    let p: Params = typed("backup", params)?;
    let rules = &config.backup;
    if p.name.is_empty()
        || !p
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        || p.name.starts_with('.')
    {
        return Err(ParamError(format!(
            "backup: name {:?} must be letters, digits, '.', '_' or '-' (not starting with '.')",
            p.name
        )));
    }
    if p.paths.is_empty() {
        return Err(ParamError::new("backup: paths is empty"));
    }
    if p.keep == Some(0) {
        return Err(ParamError::new(
            "backup: keep must be at least 1 (leave it out to keep every archive)",
        ));
    }
    let mut paths = Vec::new();
    for given in &p.paths {
        let resolved = resolve_path("backup", "path", given)?;
        if !under_any(&resolved, &rules.sources) {
            return Err(not_under(
                "backup",
                "path",
                &resolved,
                &rules.sources,
                "[executors.backup] sources",
            ));
        }
        paths.push((given.clone(), resolved));
    }
    let dest = resolve_path("backup", "dest", &p.dest)?;
    if dest.exists() && !dest.is_dir() {
        return Err(ParamError(format!(
            "backup: dest {} is not a folder",
            dest.display()
        )));
    }
    if !under_any(&dest, &rules.destinations) {
        return Err(not_under(
            "backup",
            "dest",
            &dest,
            &rules.destinations,
            "[executors.backup] destinations",
        ));
    }
    if let Some((_, src)) = paths.iter().find(|(_, r)| dest.starts_with(r)) {
        return Err(ParamError(format!(
            "backup: dest {} is inside path {}: the archive would contain itself",
            dest.display(),
            src.display()
        )));
    }
    if let Some(url) = &p.upload_url {
        check_url(
            "backup",
            "upload_url",
            url,
            &rules.upload_hosts,
            "[executors.backup] upload_hosts",
        )?;
    }
    Ok(Checked {
        paths,
        dest,
        name: p.name,
        keep: p.keep,
        upload_url: p.upload_url,
        upload_headers: p.upload_headers.into_iter().collect(),
        timeout: p.timeout.map_or(Duration::from_secs(300), |d| d.0),
    })
}

/// Append `path` (and, for a folder, everything under it) as `name`; returns entries appended.
fn append(
    tar: &mut tar::Builder<GzEncoder<File>>,
    path: &Path,
    name: &Path,
) -> std::io::Result<usize> {
    let meta = std::fs::symlink_metadata(path)?;
    tar.append_path_with_name(path, name)?;
    let mut n = 1;
    if meta.is_dir() {
        let mut children: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            n += append(tar, &child.path(), &name.join(child.file_name()))?;
        }
    }
    Ok(n)
}

/// Read every entry (and its data, so the gzip checksum is verified); returns the count.
fn verify(path: &Path) -> std::io::Result<usize> {
    let mut archive = tar::Archive::new(GzDecoder::new(File::open(path)?));
    let mut n = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        std::io::copy(&mut entry, &mut std::io::sink())?;
        n += 1;
    }
    Ok(n)
}

/// Archives with this prefix in `dest`, oldest first.
fn archives(dest: &Path, name: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dest)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(stamp) = file
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(".tar.gz"))
        else {
            continue;
        };
        if chrono::NaiveDateTime::parse_from_str(stamp, TIMESTAMP).is_err() {
            continue;
        }
        if entry.file_type()?.is_file() {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

fn write_archive(c: &Checked, out: &mut dyn Write) -> Result<PathBuf, RunError> {
    let mut now = chrono::Utc::now();
    let mut target = c
        .dest
        .join(format!("{}-{}.tar.gz", c.name, now.format(TIMESTAMP)));
    // Two runs in one second: wait for the next, so names stay unique and sortable.
    while target.exists() {
        std::thread::sleep(Duration::from_millis(200));
        now = chrono::Utc::now();
        target = c
            .dest
            .join(format!("{}-{}.tar.gz", c.name, now.format(TIMESTAMP)));
    }
    let tmp = c.dest.join(format!(
        ".{}-{}.tar.gz.tmp{}",
        c.name,
        now.format(TIMESTAMP),
        std::process::id()
    ));
    let result = (|| -> Result<usize, RunError> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| RunError::io(format!("creating {}", tmp.display()), e))?;
        let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::default()));
        tar.follow_symlinks(false);
        let mut count = 0;
        for (given, resolved) in &c.paths {
            let name = given.strip_prefix("/").unwrap_or(given);
            count += append(&mut tar, resolved, name)
                .map_err(|e| RunError::io(format!("archiving {}", given.display()), e))?;
        }
        let gz = tar
            .into_inner()
            .map_err(|e| RunError::io("finishing the archive", e))?;
        let file = gz
            .finish()
            .map_err(|e| RunError::io("finishing the archive", e))?;
        file.sync_all()
            .map_err(|e| RunError::io("syncing the archive", e))?;
        let read = verify(&tmp).map_err(|e| RunError::io("reading the archive back", e))?;
        if read != count {
            return Err(RunError::Failed(format!(
                "the archive reads back {read} entries, {count} were written"
            )));
        }
        Ok(count)
    })();
    let count = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &target)
        .map_err(|e| RunError::io(format!("renaming to {}", target.display()), e))?;
    let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    writeln!(
        out,
        "wrote {} ({} entries, {}), verified",
        target.display(),
        count,
        human_bytes(size)
    )
    .map_err(|e| RunError::io("writing the report", e))?;
    Ok(target)
}

fn upload(c: &Checked, archive: &Path, url: &str, out: &mut dyn Write) -> Result<(), RunError> {
    let file = File::open(archive).map_err(|e| RunError::io("opening the archive", e))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut builder = ureq::http::Request::builder()
        .method("PUT")
        .uri(url)
        .header("Content-Type", "application/gzip")
        .header("Content-Length", len.to_string());
    for (k, v) in &c.upload_headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let req = builder
        .body(file)
        .map_err(|e| RunError::Failed(format!("upload to {url}: {e}")))?;
    let start = std::time::Instant::now();
    let mut resp = super::http::agent(c.timeout)
        .run(req)
        .map_err(|e| RunError::Failed(format!("upload to {url} failed: {e}")))?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    let _ = resp
        .body_mut()
        .as_reader()
        .take(4096)
        .read_to_end(&mut body);
    writeln!(
        out,
        "uploaded to {url}: status {status} in {} ms",
        start.elapsed().as_millis()
    )
    .map_err(|e| RunError::io("writing the report", e))?;
    if !(200..300).contains(&status) {
        return Err(RunError::Failed(format!(
            "upload to {url} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    Ok(())
}

impl Executor for Backup {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn summary(&self) -> &'static str {
        "tar.gz allowlisted paths into an allowlisted folder, verify, keep N, optional upload: paths, dest, name, keep, upload_url"
    }

    fn check(&self, params: &Map<String, Value>, config: &Config) -> Result<(), ParamError> {
        checked(params, config).map(|_| ())
    }

    fn run(
        &self,
        params: &Map<String, Value>,
        config: &Config,
        _ctx: &RunContext,
        out: &mut dyn Write,
    ) -> Result<(), RunError> {
        let c = checked(params, config)?;
        let archive = write_archive(&c, out)?;
        if let Some(url) = &c.upload_url {
            upload(&c, &archive, url, out)?;
        }
        if let Some(keep) = c.keep {
            let all = archives(&c.dest, &c.name)
                .map_err(|e| RunError::io(format!("listing {}", c.dest.display()), e))?;
            let excess = all.len().saturating_sub(keep);
            for old in &all[..excess] {
                std::fs::remove_file(old)
                    .map_err(|e| RunError::io(format!("removing {}", old.display()), e))?;
                writeln!(out, "removed old archive {}", old.display())
                    .map_err(|e| RunError::io("writing the report", e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Tree {
        _dir: tempfile::TempDir,
        src: PathBuf,
        dest: PathBuf,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let src = base.join("etc/app");
        let dest = base.join("backup");
        std::fs::create_dir_all(src.join("conf.d")).unwrap();
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(src.join("app.toml"), "a = 1\n").unwrap();
        std::fs::write(src.join("conf.d/extra.toml"), "b = 2\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        Tree {
            _dir: dir,
            src,
            dest,
        }
    }

    fn config(t: &Tree) -> Config {
        let mut c = Config::defaults("/nonexistent".into());
        c.backup.sources = vec![t.src.clone()];
        c.backup.destinations = vec![t.dest.clone()];
        c
    }

    fn run(params: Value, c: &Config) -> Result<String, RunError> {
        let mut out = Vec::new();
        Backup.run(
            params.as_object().unwrap(),
            c,
            &RunContext { db: "/x".into() },
            &mut out,
        )?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn archives_verifies_and_keeps_the_newest() {
        let t = tree();
        let c = config(&t);
        let params = json!({"paths": [t.src], "dest": t.dest, "name": "app", "keep": 2});
        let text = run(params.clone(), &c).unwrap();
        // app, app.toml, conf.d, conf.d/extra.toml, link
        assert!(text.contains("(5 entries"), "{text}");
        let first = archives(&t.dest, "app").unwrap();
        assert_eq!(first.len(), 1);
        let mut names: Vec<String> =
            tar::Archive::new(GzDecoder::new(File::open(&first[0]).unwrap()))
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect();
        names.sort();
        let base = t.src.strip_prefix("/").unwrap().display().to_string();
        assert_eq!(names[0], base);
        assert!(names.contains(&format!("{base}/conf.d/extra.toml")));
        // Another prefix that starts the same is not ours to delete.
        std::fs::write(t.dest.join("app-db-20200101T000000Z.tar.gz"), "x").unwrap();
        run(params.clone(), &c).unwrap();
        let text = run(params, &c).unwrap();
        assert!(text.contains("removed old archive"), "{text}");
        let left = archives(&t.dest, "app").unwrap();
        assert_eq!(left.len(), 2);
        assert!(!left.contains(&first[0]));
        assert!(t.dest.join("app-db-20200101T000000Z.tar.gz").exists());
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(&t.dest).unwrap().count(), 3);
    }

    #[test]
    fn allowlists_are_enforced() {
        let t = tree();
        let c = config(&t);
        let other = tempfile::tempdir().unwrap();
        for (v, needle) in [
            (
                json!({"paths": ["/etc/passwd"], "dest": t.dest, "name": "a"}),
                "[executors.backup] sources",
            ),
            (
                json!({"paths": [t.src], "dest": other.path(), "name": "a"}),
                "[executors.backup] destinations",
            ),
            (
                json!({"paths": [t.src], "dest": t.dest, "name": "../a"}),
                "name",
            ),
            (
                json!({"paths": [t.src], "dest": t.dest, "name": "a", "keep": 0}),
                "keep",
            ),
            (
                json!({"paths": [], "dest": t.dest, "name": "a"}),
                "paths is empty",
            ),
            (
                json!({"paths": [t.src], "dest": t.dest, "name": "a", "upload_url": "http://x/"}),
                "upload_hosts",
            ),
            (
                json!({"paths": [t.src], "dest": t.dest}),
                "missing field `name`",
            ),
        ] {
            let err = Backup.check(v.as_object().unwrap(), &c).unwrap_err();
            assert!(err.0.contains(needle), "{v}: {err}");
        }
        // dest inside a source would archive itself.
        let mut c2 = c.clone();
        c2.backup.destinations = vec![t.src.clone()];
        let v = json!({"paths": [t.src], "dest": t.src.join("conf.d"), "name": "a"});
        assert!(Backup
            .check(v.as_object().unwrap(), &c2)
            .unwrap_err()
            .0
            .contains("contain itself"));
    }

    #[test]
    fn uploads_with_put() {
        let t = tree();
        let port = super::super::http::tests::serve(201, "");
        let mut c = config(&t);
        c.backup.upload_hosts = vec![format!("127.0.0.1:{port}")];
        let url = format!("http://127.0.0.1:{port}/backups/app.tar.gz");
        let text = run(
            json!({"paths": [t.src], "dest": t.dest, "name": "app", "upload_url": url}),
            &c,
        )
        .unwrap();
        assert!(text.contains("status 201"), "{text}");
    }
}
