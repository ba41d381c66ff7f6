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
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::Deserialize;
use serde_json::{Map, Value};
use tar::{EntryType, Header, HeaderMode};

use super::common::{check_url, human_bytes, not_under, resolve_path, typed, under_any, Dur};
use super::dirfd::{Dir, Kind};
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

/// Append the entry `name` of `dir` as `ar_name` (and, for a folder, everything under it, in
/// name order); returns entries appended. Everything is reached through folder descriptors and
/// opened with `O_NOFOLLOW`: a folder swapped for a symlink meanwhile is never followed, and a
/// symlink is archived as a link. `before_open` sees each archive name first (tests race there).
fn append(
    tar: &mut tar::Builder<GzEncoder<File>>,
    dir: &Dir,
    name: &OsStr,
    ar_name: &Path,
    before_open: &mut dyn FnMut(&Path),
) -> io::Result<usize> {
    before_open(ar_name);
    // O_PATH: what the name is, without opening a device or a FIFO for reading.
    let meta = dir.open_node(name)?.metadata()?;
    let ft = meta.file_type();
    let header = |meta: &std::fs::Metadata| {
        let mut h = Header::new_gnu();
        h.set_metadata_in_mode(meta, HeaderMode::Complete);
        h
    };
    if ft.is_file() {
        let mut file = dir.open_file(name)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other(format!(
                "{} changed while it was archived",
                ar_name.display()
            )));
        }
        tar.append_file(ar_name, &mut file)?;
        Ok(1)
    } else if ft.is_dir() {
        let sub = dir.open_dir(name)?;
        tar.append_data(&mut header(&sub.metadata()?), ar_name, io::empty())?;
        let mut n = 1;
        for child in sub.entries()? {
            n += append(tar, &sub, &child, &ar_name.join(&child), before_open)?;
        }
        Ok(n)
    } else if ft.is_symlink() {
        let target = dir.read_link(name)?;
        tar.append_link(&mut header(&meta), ar_name, target)?;
        Ok(1)
    } else {
        let kind = if ft.is_fifo() {
            EntryType::Fifo
        } else if ft.is_char_device() {
            EntryType::Char
        } else if ft.is_block_device() {
            EntryType::Block
        } else {
            return Err(io::Error::other(format!(
                "{}: a socket cannot be archived",
                ar_name.display()
            )));
        };
        let mut h = header(&meta);
        h.set_entry_type(kind);
        let rdev = meta.rdev();
        h.set_device_major(libc::major(rdev))?;
        h.set_device_minor(libc::minor(rdev))?;
        tar.append_data(&mut h, ar_name, io::empty())?;
        Ok(1)
    }
}

/// Append a checked source path (resolved once, against the allowlist) as `ar_name`: its folder
/// is opened from `/` without following a symlink, the rest through descriptors.
fn append_source(
    tar: &mut tar::Builder<GzEncoder<File>>,
    resolved: &Path,
    ar_name: &Path,
    before_open: &mut dyn FnMut(&Path),
) -> io::Result<usize> {
    let (Some(parent), Some(name)) = (resolved.parent(), resolved.file_name()) else {
        return Err(io::Error::other(
            "the root folder / itself cannot be archived",
        ));
    };
    append(
        tar,
        &Dir::open_path_to_search(parent)?,
        name,
        ar_name,
        before_open,
    )
}

/// Read every entry (and its data, so the gzip checksum is verified); returns the count.
fn verify(file: File) -> std::io::Result<usize> {
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut n = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        std::io::copy(&mut entry, &mut std::io::sink())?;
        n += 1;
    }
    Ok(n)
}

/// Archives with this prefix in the folder `dest`, oldest first (their names).
fn archives(dest: &Dir, name: &str) -> std::io::Result<Vec<OsString>> {
    let mut found = Vec::new();
    for entry in dest.entries()? {
        let file = entry.to_string_lossy().into_owned();
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
        if dest.stat(&entry)?.kind == Kind::File {
            found.push(entry);
        }
    }
    found.sort();
    Ok(found)
}

/// The destination folder, opened once (the checked path, no symlink on the way): the archive
/// is created, renamed and pruned in it through its descriptor.
fn open_dest(c: &Checked) -> Result<Dir, RunError> {
    Dir::open_path(&c.dest).map_err(|e| RunError::io(format!("opening {}", c.dest.display()), e))
}

/// Write, verify and rename the archive in `dest`; its name there.
fn write_archive(c: &Checked, dest: &Dir, out: &mut dyn Write) -> Result<OsString, RunError> {
    write_archive_with(c, dest, out, &mut |_| {})
}

fn write_archive_with(
    c: &Checked,
    dest: &Dir,
    out: &mut dyn Write,
    before_open: &mut dyn FnMut(&Path),
) -> Result<OsString, RunError> {
    let mut now = chrono::Utc::now();
    let stamped = |now: chrono::DateTime<chrono::Utc>| {
        OsString::from(format!("{}-{}.tar.gz", c.name, now.format(TIMESTAMP)))
    };
    let mut target = stamped(now);
    // Two runs in one second: wait for the next, so names stay unique and sortable.
    while dest.open_node(&target).is_ok() {
        std::thread::sleep(Duration::from_millis(200));
        now = chrono::Utc::now();
        target = stamped(now);
    }
    let tmp = OsString::from(format!(
        ".{}-{}.tar.gz.tmp{}",
        c.name,
        now.format(TIMESTAMP),
        std::process::id()
    ));
    let tmp_path = c.dest.join(&tmp);
    let target_path = c.dest.join(&target);
    let result = (|| -> Result<usize, RunError> {
        let file = dest
            .create_file(&tmp, 0o600)
            .map_err(|e| RunError::io(format!("creating {}", tmp_path.display()), e))?;
        let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::default()));
        tar.follow_symlinks(false);
        let mut count = 0;
        for (given, resolved) in &c.paths {
            let name = given.strip_prefix("/").unwrap_or(given);
            count += append_source(&mut tar, resolved, name, before_open)
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
        let read = dest
            .open_file(&tmp)
            .and_then(verify)
            .map_err(|e| RunError::io("reading the archive back", e))?;
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
            let _ = dest.remove_file(&tmp);
            return Err(e);
        }
    };
    dest.rename(&tmp, &target)
        .map_err(|e| RunError::io(format!("renaming to {}", target_path.display()), e))?;
    let size = dest.stat(&target).map(|s| s.len).unwrap_or(0);
    writeln!(
        out,
        "wrote {} ({} entries, {}), verified",
        target_path.display(),
        count,
        human_bytes(size)
    )
    .map_err(|e| RunError::io("writing the report", e))?;
    Ok(target)
}

fn upload(
    c: &Checked,
    dest: &Dir,
    archive: &OsStr,
    url: &str,
    out: &mut dyn Write,
) -> Result<(), RunError> {
    let file = dest
        .open_file(archive)
        .map_err(|e| RunError::io("opening the archive", e))?;
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
        let dest = open_dest(&c)?;
        let archive = write_archive(&c, &dest, out)?;
        if let Some(url) = &c.upload_url {
            upload(&c, &dest, &archive, url, out)?;
        }
        if let Some(keep) = c.keep {
            let all = archives(&dest, &c.name)
                .map_err(|e| RunError::io(format!("listing {}", c.dest.display()), e))?;
            let excess = all.len().saturating_sub(keep);
            for old in &all[..excess] {
                let path = c.dest.join(old);
                dest.remove_file(old)
                    .map_err(|e| RunError::io(format!("removing {}", path.display()), e))?;
                writeln!(out, "removed old archive {}", path.display())
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
        let dest = Dir::open_path(&t.dest).unwrap();
        let first: Vec<PathBuf> = archives(&dest, "app")
            .unwrap()
            .iter()
            .map(|n| t.dest.join(n))
            .collect();
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
        let left = archives(&dest, "app").unwrap();
        assert_eq!(left.len(), 2);
        assert!(!left.iter().any(|n| t.dest.join(n) == first[0]));
        assert!(t.dest.join("app-db-20200101T000000Z.tar.gz").exists());
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(&t.dest).unwrap().count(), 3);
    }

    /// A source folder swapped for a symlink while the archive is written (between listing it and
    /// reading a file in it) is not followed: the archive holds the file that was in the folder.
    #[test]
    fn a_folder_swapped_for_a_symlink_mid_run_is_not_followed() {
        let t = tree();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("extra.toml"), "secret = 1\n").unwrap();
        let params = json!({"paths": [t.src], "dest": t.dest, "name": "app"});
        let c = checked(params.as_object().unwrap(), &config(&t)).unwrap();
        let mut swapped = false;
        let dest = open_dest(&c).unwrap();
        let archive = write_archive_with(&c, &dest, &mut Vec::new(), &mut |name| {
            if name.ends_with("conf.d/extra.toml") {
                std::fs::rename(t.src.join("conf.d"), t.src.join("conf.d.old")).unwrap();
                std::os::unix::fs::symlink(outside.path(), t.src.join("conf.d")).unwrap();
                swapped = true;
            }
        })
        .unwrap();
        assert!(swapped, "the hook never saw conf.d/extra.toml");
        let mut found = None;
        let mut ar = tar::Archive::new(GzDecoder::new(dest.open_file(&archive).unwrap()));
        for entry in ar.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().ends_with("conf.d/extra.toml") {
                let mut text = String::new();
                entry.read_to_string(&mut text).unwrap();
                found = Some(text);
            }
        }
        assert_eq!(
            found.as_deref(),
            Some("b = 2\n"),
            "the archive followed the swap"
        );
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
