//! `cleanup`: delete old files under a root folder from `[executors.cleanup] roots`.
//!
//! Params: `root` (absolute), `patterns` (globs relative to root: `*` and `?` within a name, `**`
//! any number of folders), `older_than` (duration), `keep_newest` (per folder), `remove_empty_dirs`,
//! `dry_run`. At least one of older_than / keep_newest.
//!
//! Symlinks are never followed and never deleted: a symlink (to a file or a folder, inside the
//! root or out of it) is skipped and counted. Only regular files are removed.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::common::{human_bytes, not_under, resolve_path, typed, under_any, Dur};
use super::dirfd::{Dir, Kind};
use super::{glob_match, Executor, ParamError, RunContext, RunError};
use crate::config::Config;

/// Paths listed in the report before "… and N more".
const LISTED: usize = 50;

pub struct Cleanup;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    root: PathBuf,
    patterns: Vec<String>,
    older_than: Option<Dur>,
    keep_newest: Option<usize>,
    #[serde(default)]
    remove_empty_dirs: bool,
    #[serde(default)]
    dry_run: bool,
}

struct Checked {
    root: PathBuf,
    patterns: Vec<Vec<String>>,
    older_than: Option<Duration>,
    keep_newest: Option<usize>,
    remove_empty_dirs: bool,
    dry_run: bool,
}

fn checked(params: &Map<String, Value>, config: &Config) -> Result<Checked, ParamError> {
    let p: Params = typed("cleanup", params)?;
    if p.older_than.is_none() && p.keep_newest.is_none() {
        return Err(ParamError::new(
            "cleanup: give older_than (e.g. \"7d\"), keep_newest (files kept per folder), or both",
        ));
    }
    if p.patterns.is_empty() {
        return Err(ParamError::new(
            "cleanup: patterns is empty (e.g. [\"logs/**/*.log\", \"tmp/*\"])",
        ));
    }
    let mut patterns = Vec::new();
    for pat in &p.patterns {
        if pat.is_empty() || pat.starts_with('/') {
            return Err(ParamError(format!(
                "cleanup: pattern {pat:?} must be relative to root (e.g. \"logs/**/*.log\")"
            )));
        }
        let parts: Vec<String> = pat.split('/').map(str::to_string).collect();
        if parts.iter().any(|s| s == ".." || s == "." || s.is_empty()) {
            return Err(ParamError(format!(
                "cleanup: pattern {pat:?} must not contain '..', '.' or empty folders"
            )));
        }
        patterns.push(parts);
    }
    let root = resolve_path("cleanup", "root", &p.root)?;
    if root.exists() && !root.is_dir() {
        return Err(ParamError(format!(
            "cleanup: root {} is not a folder",
            root.display()
        )));
    }
    if !under_any(&root, &config.cleanup.roots) {
        return Err(not_under(
            "cleanup",
            "root",
            &root,
            &config.cleanup.roots,
            "[executors.cleanup] roots",
        ));
    }
    Ok(Checked {
        root,
        patterns,
        older_than: p.older_than.map(|d| d.0),
        keep_newest: p.keep_newest,
        remove_empty_dirs: p.remove_empty_dirs,
        dry_run: p.dry_run,
    })
}

/// Match a relative path, segment by segment; `**` is any number of folders (zero included).
fn path_matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((seg, rest)) if seg == "**" => {
            (0..=path.len()).any(|i| path_matches(rest, &path[i..]))
        }
        Some((seg, rest)) => {
            path.first().is_some_and(|p| glob_match(seg, p)) && path_matches(rest, &path[1..])
        }
    }
}

/// A matching regular file in the folder being cleaned.
struct Candidate {
    name: OsString,
    modified: SystemTime,
    len: u64,
}

/// What a cleanup did (or would do).
#[derive(Debug, Default)]
pub struct Outcome {
    pub removed: Vec<(PathBuf, u64)>,
    pub kept: usize,
    pub symlinks: usize,
    pub dirs_removed: Vec<PathBuf>,
    pub errors: Vec<String>,
}

/// One run: the checked params, the age cutoff, what happened so far.
struct Walk<'a> {
    c: &'a Checked,
    cutoff: Option<SystemTime>,
    out: Outcome,
    /// Called with a file's path relative to the root between "decided to delete it" and the
    /// `unlinkat` (tests swap folders there).
    before_unlink: &'a mut dyn FnMut(&Path),
}

fn clean(c: &Checked, now: SystemTime) -> Outcome {
    clean_with(c, now, &mut |_| {})
}

/// Open the root once (the path that was checked, with no symlink on the way), then reach
/// everything below it through folder descriptors only: a folder swapped for a symlink while
/// the run goes on is never entered, and a deletion always happens in the folder that was read.
fn clean_with(c: &Checked, now: SystemTime, before_unlink: &mut dyn FnMut(&Path)) -> Outcome {
    let mut walk = Walk {
        c,
        cutoff: c.older_than.and_then(|d| now.checked_sub(d)),
        out: Outcome::default(),
        before_unlink,
    };
    match Dir::open_path(&c.root) {
        Ok(root) => {
            walk.visit(&root, &mut PathBuf::new());
        }
        Err(e) => walk.out.errors.push(format!("{}: {e}", c.root.display())),
    }
    walk.out
}

impl Walk<'_> {
    fn matches(&self, rel: &Path) -> bool {
        let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
        let parts: Vec<&str> = parts.iter().map(|p| p.as_ref()).collect();
        self.c.patterns.iter().any(|p| path_matches(p, &parts))
    }

    /// Clean the folder `dir` (at `rel` under the root), then its subfolders in name order;
    /// true when this run removed something in it (a file, or a subfolder it left empty).
    fn visit(&mut self, dir: &Dir, rel: &mut PathBuf) -> bool {
        let names = match dir.entries() {
            Ok(n) => n,
            Err(e) => {
                self.out
                    .errors
                    .push(format!("{}: {e}", self.c.root.join(&*rel).display()));
                return false;
            }
        };
        let mut files = Vec::new();
        let mut subdirs = Vec::new();
        for name in names {
            let Ok(st) = dir.stat(&name) else {
                continue;
            };
            rel.push(&name);
            match st.kind {
                Kind::Symlink if self.matches(rel) => self.out.symlinks += 1,
                Kind::Dir => subdirs.push(name),
                Kind::File if self.matches(rel) => files.push(Candidate {
                    name,
                    modified: st.modified,
                    len: st.len,
                }),
                _ => {}
            }
            rel.pop();
        }
        let mut changed = self.delete(dir, rel, files);
        for name in subdirs {
            rel.push(&name);
            match dir.open_dir(&name) {
                Ok(sub) => {
                    let emptied = self.visit(&sub, rel);
                    drop(sub);
                    if emptied && self.c.remove_empty_dirs && !self.c.dry_run {
                        // Fails unless empty; a folder swapped in meanwhile is not ours to judge.
                        if dir.remove_dir(&name).is_ok() {
                            self.out.dirs_removed.push(self.c.root.join(&*rel));
                            changed = true;
                        }
                    }
                }
                // Listed as a folder a moment ago: it was swapped (for a symlink, say) since.
                Err(e) => self
                    .out
                    .errors
                    .push(format!("{}: {e}", self.c.root.join(&*rel).display())),
            }
            rel.pop();
        }
        changed
    }

    /// Apply the age and keep-newest rules to one folder's matching files; true when any went.
    fn delete(&mut self, dir: &Dir, rel: &mut PathBuf, mut files: Vec<Candidate>) -> bool {
        // Newest first; ties by name so runs are repeatable.
        files.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.name.cmp(&b.name)));
        let keep = self.c.keep_newest.unwrap_or(0);
        let mut any = false;
        for (i, f) in files.into_iter().enumerate() {
            let protected = self.c.keep_newest.is_some() && i < keep;
            let old = self.cutoff.is_none_or(|t| f.modified < t);
            if protected || !old {
                self.out.kept += 1;
                continue;
            }
            rel.push(&f.name);
            let path = self.c.root.join(&*rel);
            if !self.c.dry_run {
                (self.before_unlink)(rel);
                // Re-check right before deleting, in the same folder: still a regular file.
                let still_file = dir.stat(&f.name).is_ok_and(|s| s.kind == Kind::File);
                if !still_file {
                    rel.pop();
                    continue;
                }
                if let Err(e) = dir.remove_file(&f.name) {
                    self.out.errors.push(format!("{}: {e}", path.display()));
                    rel.pop();
                    continue;
                }
            }
            rel.pop();
            self.out.removed.push((path, f.len));
            any = true;
        }
        any
    }
}

fn report(c: &Checked, o: &Outcome) -> String {
    let verb = if c.dry_run { "would remove" } else { "removed" };
    let mut s = String::new();
    for (path, len) in o.removed.iter().take(LISTED) {
        let rel = path.strip_prefix(&c.root).unwrap_or(path);
        s.push_str(&format!(
            "{verb} {} ({})\n",
            rel.display(),
            human_bytes(*len)
        ));
    }
    if o.removed.len() > LISTED {
        s.push_str(&format!("… and {} more\n", o.removed.len() - LISTED));
    }
    for d in &o.dirs_removed {
        let rel = d.strip_prefix(&c.root).unwrap_or(d);
        s.push_str(&format!("removed empty folder {}\n", rel.display()));
    }
    let bytes: u64 = o.removed.iter().map(|(_, n)| n).sum();
    s.push_str(&format!(
        "{}: {verb} {} file(s), {} ({bytes} bytes); kept {}; skipped {} symlink(s){}\n",
        c.root.display(),
        o.removed.len(),
        human_bytes(bytes),
        o.kept,
        o.symlinks,
        if c.dry_run {
            "; dry run, nothing deleted"
        } else {
            ""
        }
    ));
    for e in &o.errors {
        s.push_str(&format!("error: {e}\n"));
    }
    s
}

impl Executor for Cleanup {
    fn name(&self) -> &'static str {
        "cleanup"
    }

    fn summary(&self) -> &'static str {
        "delete old files under an allowlisted root: root, patterns, older_than, keep_newest, remove_empty_dirs, dry_run"
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
        let o = clean(&c, SystemTime::now());
        out.write_all(report(&c, &o).as_bytes())
            .map_err(|e| RunError::io("writing the report", e))?;
        if !o.errors.is_empty() {
            return Err(RunError::Failed(format!(
                "{} file(s) or folder(s) could not be read or removed",
                o.errors.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs::File;

    const DAY: Duration = Duration::from_secs(86_400);

    fn touch(path: &Path, age: Duration) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"0123456789").unwrap();
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
    }

    fn config(root: &Path) -> Config {
        let mut c = Config::defaults("/nonexistent".into());
        c.cleanup.roots = vec![root.to_path_buf()];
        c
    }

    fn run(params: Value, c: &Config) -> (Result<(), RunError>, String) {
        let mut out = Vec::new();
        let r = Cleanup.run(
            params.as_object().unwrap(),
            c,
            &RunContext { db: "/x".into() },
            &mut out,
        );
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn globs_by_segment() {
        let pat = |s: &str| s.split('/').map(str::to_string).collect::<Vec<_>>();
        assert!(path_matches(&pat("logs/**/*.log"), &["logs", "a.log"]));
        assert!(path_matches(
            &pat("logs/**/*.log"),
            &["logs", "x", "y", "a.log"]
        ));
        assert!(!path_matches(&pat("logs/**/*.log"), &["logs", "a.txt"]));
        assert!(!path_matches(&pat("logs/*.log"), &["logs", "x", "a.log"]));
        assert!(path_matches(&pat("**"), &["a", "b"]));
    }

    #[test]
    fn old_files_go_new_files_and_other_patterns_stay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        touch(&root.join("logs/a/old.log"), 10 * DAY);
        touch(&root.join("logs/a/new.log"), DAY);
        touch(&root.join("logs/old.txt"), 10 * DAY);
        touch(&root.join("logs/b/c/old.log"), 10 * DAY);
        let (r, text) = run(
            json!({"root": root, "patterns": ["logs/**/*.log"], "older_than": "7d", "remove_empty_dirs": true}),
            &config(&root),
        );
        r.unwrap();
        assert!(!root.join("logs/a/old.log").exists());
        assert!(root.join("logs/a/new.log").exists());
        assert!(root.join("logs/old.txt").exists());
        assert!(!root.join("logs/b").exists(), "empty folders go: {text}");
        assert!(root.join("logs/a").exists());
        assert!(
            text.contains("removed 2 file(s), 20 B (20 bytes); kept 1"),
            "{text}"
        );
    }

    #[test]
    fn keep_newest_is_per_folder_and_dry_run_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for d in ["x", "y"] {
            for i in 1..=5u64 {
                touch(&root.join(format!("{d}/{i}.log")), DAY * i as u32);
            }
        }
        let params =
            json!({"root": root, "patterns": ["*/*.log"], "keep_newest": 2, "dry_run": true});
        let (r, text) = run(params.clone(), &config(&root));
        r.unwrap();
        assert!(text.contains("would remove 6 file(s)"), "{text}");
        assert_eq!(std::fs::read_dir(root.join("x")).unwrap().count(), 5);
        let mut params = params;
        params["dry_run"] = json!(false);
        // keep 2 newest per folder, and of the rest only what is older than 4 days.
        params["older_than"] = json!("4d");
        let (r, text) = run(params, &config(&root));
        r.unwrap();
        for d in ["x", "y"] {
            let mut left: Vec<String> = std::fs::read_dir(root.join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            left.sort();
            assert_eq!(left, ["1.log", "2.log", "3.log"], "{text}");
        }
    }

    #[test]
    fn symlinks_are_neither_followed_nor_deleted() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("precious.log");
        touch(&target, 30 * DAY);
        std::fs::create_dir(outside.path().join("dir")).unwrap();
        touch(&outside.path().join("dir/inner.log"), 30 * DAY);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(&target, root.join("link.log")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("dir"), root.join("linkdir")).unwrap();
        touch(&root.join("real.log"), 30 * DAY);
        let (r, text) = run(
            json!({"root": root, "patterns": ["**/*.log"], "older_than": "1d"}),
            &config(&root),
        );
        r.unwrap();
        assert!(target.exists() && outside.path().join("dir/inner.log").exists());
        assert!(std::fs::symlink_metadata(root.join("link.log")).is_ok());
        assert!(!root.join("real.log").exists());
        assert!(text.contains("skipped 1 symlink"), "{text}");
    }

    /// The attack of issue #16: while the deletion runs, a user who owns the root swaps a folder
    /// for a symlink to another folder. The hook runs between "decided to delete z/victim.log" and
    /// the unlink, so the race is won every time.
    #[test]
    fn a_folder_swapped_for_a_symlink_mid_run_cannot_redirect_a_deletion() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim.log");
        touch(&victim, 30 * DAY);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for i in 0..20 {
            touch(&root.join(format!("a/{i}.log")), 30 * DAY);
        }
        touch(&root.join("z/victim.log"), 30 * DAY);
        let p = json!({"root": root, "patterns": ["**/*.log"], "older_than": "1d"});
        let c = checked(p.as_object().unwrap(), &config(&root)).unwrap();
        let mut swapped = false;
        let o = clean_with(&c, SystemTime::now(), &mut |rel| {
            if rel == Path::new("z/victim.log") {
                std::fs::rename(root.join("z"), root.join("z.old")).unwrap();
                std::os::unix::fs::symlink(outside.path(), root.join("z")).unwrap();
                swapped = true;
            }
        });
        assert!(swapped, "the hook never saw z/victim.log");
        assert!(victim.exists(), "the file outside the root was deleted");
        // What was decided is what goes: the file that was in z when it was chosen.
        assert!(!root.join("z.old/victim.log").exists());
        assert!(std::fs::symlink_metadata(root.join("z"))
            .unwrap()
            .is_symlink());
        assert_eq!(o.removed.len(), 21, "{:?}", o.errors);
    }

    #[test]
    fn roots_must_be_allowlisted_and_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        let other = tempfile::tempdir().unwrap();
        let c = config(&root.join("sub"));
        let ok = json!({"root": root.join("sub"), "patterns": ["*"], "older_than": "1d"});
        assert!(Cleanup.check(ok.as_object().unwrap(), &c).is_ok());
        for (v, needle) in [
            (
                json!({"root": root, "patterns": ["*"], "older_than": "1d"}),
                "is not under [executors.cleanup] roots",
            ),
            (
                json!({"root": other.path(), "patterns": ["*"], "older_than": "1d"}),
                "not under",
            ),
            (
                json!({"root": format!("{}/sub/..", root.display()), "patterns": ["*"], "older_than": "1d"}),
                "'..'",
            ),
            (
                json!({"root": "sub", "patterns": ["*"], "older_than": "1d"}),
                "absolute",
            ),
            (
                json!({"root": root.join("sub"), "patterns": ["../*"], "older_than": "1d"}),
                "'..'",
            ),
            (
                json!({"root": root.join("sub"), "patterns": ["/etc/*"], "older_than": "1d"}),
                "relative",
            ),
            (
                json!({"root": root.join("sub"), "patterns": ["*"]}),
                "older_than",
            ),
            (
                json!({"root": root.join("sub"), "patterns": [], "keep_newest": 1}),
                "patterns is empty",
            ),
            (
                json!({"root": root.join("sub"), "patterns": ["*"], "keep_newest": -1}),
                "keep_newest",
            ),
        ] {
            let err = Cleanup.check(v.as_object().unwrap(), &c).unwrap_err();
            assert!(err.0.contains(needle), "{v}: {err}");
        }
        // A symlinked root resolves to where it points before the check.
        std::os::unix::fs::symlink(other.path(), root.join("sub/escape")).unwrap();
        let v = json!({"root": root.join("sub/escape"), "patterns": ["*"], "older_than": "1d"});
        assert!(Cleanup.check(v.as_object().unwrap(), &c).is_err());
    }
}
