//! What a job's environment may hold: the variables that choose code are refused, names and
//! values must fit in a process environment, and `{"secret_ref": "NAME"}` values are read from
//! a root-owned file at spawn time.
//!
//! Every path that puts variables into a job goes through [`check`]: `add`/`edit` (`--param
//! env=…`), `apply` and `edit` in an editor (job files), `import-crontab` (env lines), and the
//! runner and `run-now` right before each spawn (`Executor::invocation` checks the params again),
//! so a row edited behind cronmgr's back is recorded `failed` and never spawned.
//!
//! No message here ever holds a value: only variable names, secret names and paths.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::ParamError;
use crate::config::Config;

/// Variables a job may not set, because they let the job choose code that an allowlisted
/// program then runs (as root, for a root runner), or a file such code comes from. A trailing
/// `*` is a prefix. Each says where it comes from; an operator may still allow one by name in
/// the root-owned config (`[executors.shell] allow_env`).
///
/// - glibc's secure mode (AT_SECURE, set for setuid programs) drops `UNSECURE_ENVVARS` from
///   `sysdeps/generic/unsecvars.h`. All of them are here except **TMPDIR**: it names where a
///   program puts its temporary files, which chooses no code, and a job may already pick any
///   path its program writes to with its arguments or `cwd`; programs create temporary files
///   with `O_EXCL` (mkstemp). `GLIBC_TUNABLES` and `LD_USE_LOAD_BIAS` are in the list of some
///   versions only; they are here whatever the version.
/// - The dynamic loader reads every `LD_*` (`LD_PRELOAD`, `LD_AUDIT`, `LD_BIND_NOW`, …) and
///   glibc's allocator every `MALLOC_*`: by prefix, as glibc's own `_dl_non_dynamic_init` and
///   `unsecvars.h` treat them.
/// - **PATH** too: cronmgr gives every job a safe default (`DEFAULT_PATH`), and an allowlisted
///   program that runs helpers by name (`apt-get` runs `dpkg`, `git` runs `ssh`, scripts run
///   anything) would run the job's choice instead. The allowlist checks the program cronmgr
///   starts, not the ones it starts in turn. A PATH is still accepted when every folder on it
///   can be changed by root alone (see [`path_problem`]), as the default's: it then chooses
///   only among programs root installed, and crontabs' `PATH=` lines keep working.
/// - Interpreters and tools that load code a variable names: shells (`BASH_ENV`, `ENV`,
///   exported functions `BASH_FUNC_*`, `SHELLOPTS`/`BASHOPTS`/`PS4` for xtrace command
///   substitution), Python (every `PYTHON*`: it reads more than thirty, new ones each release),
///   Perl, Ruby, Node, Java, Lua, Tcl, git (every `GIT_*`: `GIT_DIR`, `GIT_CONFIG_*`,
///   `GIT_SSH_COMMAND`, …), OpenSSL (config and engine modules), APT (`APT_CONFIG`), SASL and
///   GTK/GIO/Qt plug-in paths, and the editors, pagers and askpass helpers tools start.
/// - cronmgr's own `CRONMGR_*`: the runner sets them, and a job running cronmgr must not point
///   it at another config file (`CRONMGR_CONFIG`, whose allowlists decide what runs).
pub const UNSAFE: &[(&str, &str)] = &[
    // glibc sysdeps/generic/unsecvars.h (UNSECURE_ENVVARS), less TMPDIR.
    ("GCONV_PATH", "glibc loads character-set conversion modules from it"),
    ("GETCONF_DIR", "glibc secure mode drops it (unsecvars.h)"),
    ("GLIBC_TUNABLES", "glibc secure mode drops it (unsecvars.h; CVE-2023-4911)"),
    ("HOSTALIASES", "glibc secure mode drops it (unsecvars.h): the resolver reads that file"),
    ("LOCALDOMAIN", "glibc secure mode drops it (unsecvars.h)"),
    ("LOCPATH", "glibc reads locale data from it (unsecvars.h)"),
    ("NIS_PATH", "glibc secure mode drops it (unsecvars.h)"),
    ("NLSPATH", "glibc reads message catalogs from it (unsecvars.h)"),
    ("RESOLV_HOST_CONF", "glibc secure mode drops it (unsecvars.h)"),
    ("RES_OPTIONS", "glibc secure mode drops it (unsecvars.h)"),
    ("TZDIR", "glibc reads time zone files from it (unsecvars.h)"),
    ("LD_*", "the dynamic loader loads code it names (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, …)"),
    ("MALLOC_*", "glibc's allocator reads it (unsecvars.h: MALLOC_TRACE writes a file)"),
    // The job's PATH would choose the helpers an allowed program runs by name.
    ("PATH", "an allowed program that runs others by name would run the job's choice; cronmgr sets a safe PATH"),
    // Shells.
    ("BASH_ENV", "bash runs that file first"),
    ("ENV", "sh runs that file first"),
    ("BASH_FUNC_*", "bash imports functions from it"),
    ("SHELLOPTS", "turns on bash options such as xtrace, which runs PS4"),
    ("BASHOPTS", "turns on bash options"),
    ("PS4", "bash expands it, command substitutions included, under xtrace"),
    ("PROMPT_COMMAND", "bash runs it"),
    ("ZDOTDIR", "zsh runs its start-up files from there"),
    // Interpreters.
    ("PYTHON*", "Python loads modules and start-up code from its PYTHON* variables"),
    ("PERL5LIB", "perl loads modules from it"),
    ("PERLLIB", "perl loads modules from it"),
    ("PERL5OPT", "perl takes command-line options (-M loads a module) from it"),
    ("PERL5DB", "perl runs it as the debugger"),
    ("PERLIO", "perl loads I/O layer modules from it"),
    ("RUBYLIB", "ruby loads libraries from it"),
    ("RUBYOPT", "ruby takes options (-r loads a library) from it"),
    ("GEM_HOME", "ruby loads gems from it"),
    ("GEM_PATH", "ruby loads gems from it"),
    ("BUNDLE_GEMFILE", "bundler loads that Gemfile"),
    ("NODE_OPTIONS", "node takes options (--require loads code) from it"),
    ("NODE_PATH", "node loads modules from it"),
    ("JAVA_TOOL_OPTIONS", "the JVM takes options (-javaagent loads code) from it"),
    ("_JAVA_OPTIONS", "the JVM takes options from it"),
    ("JDK_JAVA_OPTIONS", "the java launcher takes options from it"),
    ("CLASSPATH", "the JVM loads classes from it"),
    ("JAVA_HOME", "wrapper scripts run the java binary found there"),
    ("LUA_*", "lua loads modules from LUA_PATH/LUA_CPATH and runs LUA_INIT"),
    ("TCLLIBPATH", "tcl loads packages from it"),
    // Tools.
    ("GIT_*", "git runs programs and reads config its GIT_* variables name (GIT_SSH_COMMAND, GIT_CONFIG_*, GIT_DIR, …)"),
    ("APT_CONFIG", "apt reads that config file, whose hooks run commands"),
    ("OPENSSL_CONF", "OpenSSL reads that config file, which can load engine modules"),
    ("OPENSSL_ENGINES", "OpenSSL loads engine modules from it"),
    ("OPENSSL_MODULES", "OpenSSL loads provider modules from it"),
    ("SASL_PATH", "Cyrus SASL loads plug-ins from it"),
    ("GIO_EXTRA_MODULES", "GLib loads modules from it"),
    ("GIO_MODULE_DIR", "GLib loads modules from it"),
    ("GTK_MODULES", "GTK loads modules it names"),
    ("GTK_PATH", "GTK loads modules from it"),
    ("QT_PLUGIN_PATH", "Qt loads plug-ins from it"),
    ("EDITOR", "tools start it"),
    ("VISUAL", "tools start it"),
    ("PAGER", "tools start it"),
    ("LESSOPEN", "less runs it"),
    ("LESSCLOSE", "less runs it"),
    ("SSH_ASKPASS", "ssh runs it"),
    ("SUDO_ASKPASS", "sudo runs it"),
    ("BROWSER", "tools start it"),
    // cronmgr itself.
    ("CRONMGR_*", "cronmgr's own (the runner sets them; CRONMGR_CONFIG would choose the allowlists of a cronmgr the job runs)"),
];

/// Why `name` chooses code, if it does.
pub fn unsafe_reason(name: &str) -> Option<&'static str> {
    UNSAFE.iter().find_map(|(pattern, why)| {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pattern,
        };
        hit.then_some(*why)
    })
}

/// A value that names a file where a name is expected: glibc's secure mode ignores a `TZ` file
/// path, and a locale name holds no `/` (a path would load locale data from any file).
fn value_problem(name: &str, value: &str) -> Option<&'static str> {
    let locale = name == "LANG" || name == "LANGUAGE" || name.starts_with("LC_");
    if locale && value.contains('/') {
        return Some("a locale name, not a path (no '/')");
    }
    if name == "TZ" {
        let file = value.strip_prefix(':').unwrap_or(value);
        if file.starts_with('/') || file.split('/').any(|part| part == "..") {
            return Some(
                "a zone name such as Europe/Madrid, not a file path (no leading '/', no '..')",
            );
        }
    }
    None
}

/// Check one variable of a job's environment: a name a process environment can carry, not one
/// that chooses code (unless the root-owned config allows it by name), and a value without NUL.
/// `value` is None for one known only at spawn time (a `secret_ref`). Messages name the
/// variable, never its value. `import-crontab` and every other path that sets a job's
/// environment call this.
pub fn check(name: &str, value: Option<&str>, config: &Config) -> Result<(), ParamError> {
    if name.is_empty() {
        return Err(ParamError::new("shell: env: a variable name is empty"));
    }
    if name.contains(['=', '\0']) {
        return Err(ParamError(format!(
            "shell: env: variable name {name:?} must not contain '=' or a NUL byte"
        )));
    }
    let allowed = config.allowed_env().iter().any(|n| n == name);
    if !allowed && name == "PATH" {
        if let Some(v) = value.filter(|v| !v.contains('\0')) {
            return match path_problem(v) {
                None => Ok(()),
                Some(why) => Err(ParamError(format!(
                    "shell: env PATH is refused: {why}. A job's PATH may name only folders root alone can change; leave it out (cronmgr sets a safe one), or allow it by name in the root-owned {} ([executors.shell] allow_env = [\"PATH\"])",
                    config.path.display()
                ))),
            };
        }
    }
    if !allowed {
        if let Some(why) = unsafe_reason(name) {
            return Err(ParamError(format!(
                "shell: env {name} is refused: {why}. A job's environment may not choose code; \
                 if this job truly needs it, allow it by name in the root-owned {} \
                 ([executors.shell] allow_env = [\"{name}\"])",
                config.path.display()
            )));
        }
    }
    let Some(value) = value else {
        return Ok(());
    };
    if value.contains('\0') {
        return Err(ParamError(format!(
            "shell: env {name}: the value holds a NUL byte, which no process environment can carry"
        )));
    }
    if !allowed {
        if let Some(why) = value_problem(name, value) {
            return Err(ParamError(format!(
                "shell: env {name}: the value must be {why}"
            )));
        }
    }
    Ok(())
}

/// Why a job's PATH could choose code, if it could: an entry that is empty (the current
/// folder), relative or holds `..`, or a folder that someone other than root (or this process's
/// user) could change: one of the folders that lead to it, or a symlink on the way, is owned by
/// another user or writable by its group or others. Names only the entry's position, never the
/// value.
pub fn path_problem(value: &str) -> Option<String> {
    let entries: Vec<&str> = value.split(':').collect();
    entries.iter().enumerate().find_map(|(i, entry)| {
        let at = format!("entry {} of {}", i + 1, entries.len());
        let path = Path::new(entry);
        if entry.is_empty() {
            Some(format!("{at} is empty, which means the current folder"))
        } else if !path.is_absolute() {
            Some(format!("{at} is not an absolute path"))
        } else if path
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            Some(format!("{at} holds '..'"))
        } else {
            root_controlled(path).err().map(|why| format!("{at} {why}"))
        }
    })
}

/// Walk `path` from `/` one component at a time, following symlinks by hand, and require every
/// folder crossed (and so every folder a symlink on the way lives in) to be owned by root or
/// this process's user and writable by neither group nor others. What does not exist yet can
/// only be created by whoever may write the last folder reached, which passed.
fn root_controlled(path: &Path) -> Result<(), String> {
    use std::collections::VecDeque;
    use std::path::Component;
    let me = crate::host::euid();
    let safe = |p: &Path| -> Result<(), String> {
        let m = std::fs::metadata(p).map_err(|e| format!("cannot be checked ({e})"))?;
        if m.uid() != 0 && m.uid() != me {
            return Err(format!("leads through a folder owned by uid {}", m.uid()));
        }
        if m.mode() & 0o022 != 0 {
            return Err("leads through a folder its group or others can write".into());
        }
        Ok(())
    };
    let mut cur = PathBuf::from("/");
    safe(&cur)?;
    let mut todo: VecDeque<PathBuf> = path
        .components()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        match part.components().next() {
            Some(Component::RootDir) => cur = PathBuf::from("/"),
            Some(Component::ParentDir) => {
                cur.pop();
            }
            Some(Component::Normal(name)) => {
                let next = cur.join(name);
                let meta = match next.symlink_metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(format!("cannot be checked ({e})")),
                };
                if meta.file_type().is_symlink() {
                    links += 1;
                    if links > 40 {
                        return Err("has too many levels of symlinks".into());
                    }
                    let target = std::fs::read_link(&next)
                        .map_err(|e| format!("cannot be checked ({e})"))?;
                    for c in target.components().rev() {
                        todo.push_front(PathBuf::from(c.as_os_str()));
                    }
                    continue;
                }
                safe(&next)?;
                cur = next;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The key of an env value read from a file at spawn time: `{"secret_ref": "NAME"}`.
pub const SECRET_REF: &str = "secret_ref";

/// A secret's name: letters, digits, `_`, `.`, `-`, not starting with a dot (so never `..`).
pub fn check_secret_name(var: &str, name: &str) -> Result<(), ParamError> {
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(ParamError(format!(
            "shell: env {var}: {SECRET_REF} {name:?} must be letters, digits, '_', '.' or '-', not starting with '.'"
        )));
    }
    Ok(())
}

/// The largest secret file read.
const SECRET_MAX: u64 = 64 * 1024;

/// Where secret `name` is read from: `$CREDENTIALS_DIRECTORY/NAME` (systemd `LoadCredential=`)
/// when that variable is set and the file exists, else `<[secrets] dir>/NAME`.
pub fn secret_path(name: &str, config: &Config) -> PathBuf {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
        let path = Path::new(&dir).join(name);
        if path.symlink_metadata().is_ok() {
            return path;
        }
    }
    config.secrets_dir.join(name)
}

/// Read secret `name` for variable `var`: a regular file (never through a symlink) owned by root
/// or by this process's user, with no permission for group or others; one trailing newline is
/// dropped; it must be UTF-8 without NUL. Errors name the secret and the path, never the value.
pub fn read_secret(var: &str, name: &str, config: &Config) -> Result<String, ParamError> {
    check_secret_name(var, name)?;
    let path = secret_path(name, config);
    let fail = |why: String| {
        ParamError(format!(
            "shell: env {var}: secret {name:?} at {}: {why}",
            path.display()
        ))
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => fail("is a symlink, which is not followed".into()),
            _ => fail(e.to_string()),
        })?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    let me = crate::host::euid();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(fail(format!(
            "is owned by uid {}, not by root or the runner's user (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(fail(format!(
            "has mode {:04o}: group and others must have no permission (chmod 600)",
            meta.mode() & 0o7777
        )));
    }
    let mut bytes = Vec::new();
    (&mut file)
        .take(SECRET_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > SECRET_MAX {
        return Err(fail(format!("is larger than {SECRET_MAX} bytes")));
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.contains(&0) {
        return Err(fail(
            "holds a NUL byte, which no process environment can carry".into(),
        ));
    }
    String::from_utf8(bytes).map_err(|_| fail("is not UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config() -> Config {
        Config::defaults("/etc/cronmgr/config.toml".into())
    }

    #[test]
    fn code_loading_names_are_refused_and_others_pass() {
        let c = config();
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_ANYTHING_NEW",
            "MALLOC_CHECK_",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "PATH",
            "BASH_ENV",
            "BASH_FUNC_ls%%",
            "PYTHONWARNINGS",
            "PERL5OPT",
            "NODE_OPTIONS",
            "GIT_CONFIG_COUNT",
            "LUA_INIT_5_4",
            "CRONMGR_CONFIG",
        ] {
            let err = check(name, Some("x"), &c).unwrap_err();
            assert!(err.0.contains(name) && err.0.contains("allow_env"), "{err}");
        }
        for name in [
            "PGHOST",
            "TMPDIR",
            "LANG",
            "DEBIAN_FRONTEND",
            "TZ",
            "HOME",
            "PLD_X",
        ] {
            assert!(check(name, Some("x"), &c).is_ok(), "{name}");
        }
        // Every entry of the list is one of the two shapes.
        for (pattern, why) in UNSAFE {
            let stem = pattern.strip_suffix('*').unwrap_or(pattern);
            assert!(
                !stem.is_empty() && !stem.contains('*') && !why.is_empty(),
                "{pattern}"
            );
        }
    }

    #[test]
    fn names_values_and_file_paths_are_checked_without_quoting_values() {
        let c = config();
        assert!(check("", Some("v"), &c).unwrap_err().0.contains("empty"));
        assert!(check("A=B", Some("v"), &c).unwrap_err().0.contains("'='"));
        let err = check("TOKEN", Some("hunter\0two"), &c).unwrap_err();
        assert!(
            err.0.contains("TOKEN") && !err.0.contains("hunter"),
            "{err}"
        );
        assert!(check("TZ", Some("Europe/Madrid"), &c).is_ok());
        assert!(check("TZ", Some(":/etc/shadow"), &c).is_err());
        assert!(check("TZ", Some("../../tmp/x"), &c).is_err());
        assert!(check("LC_ALL", Some("/tmp/locale"), &c).is_err());
        assert!(check("LANG", Some("de_DE.UTF-8"), &c).is_ok());
        // A value known only at spawn time: only the name is checked.
        assert!(check("TOKEN", None, &c).is_ok());
    }

    #[test]
    fn a_path_of_folders_only_root_can_change_is_accepted() {
        let c = config();
        assert!(check("PATH", Some("/usr/local/bin:/usr/bin:/bin"), &c).is_ok());
        // Not yet existing, below a folder only root can write: only root can create it.
        assert!(check("PATH", Some("/usr/cronmgr-no-such-dir/bin:/usr/bin"), &c).is_ok());
        for (value, needle) in [
            (
                "/tmp/bin:/usr/bin",
                "entry 1 of 2 leads through a folder its group or others can write",
            ),
            ("/usr/bin::/bin", "entry 2 of 3 is empty"),
            ("bin:/usr/bin", "not an absolute path"),
            ("/usr/bin/../../tmp", "'..'"),
        ] {
            let err = check("PATH", Some(value), &c).unwrap_err();
            assert!(err.0.contains(needle), "{value}: {err}");
        }
        // A symlink in a folder others can write leads nowhere safe, whatever it points to.
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let link = dir.path().join("bin");
        std::os::unix::fs::symlink("/usr/bin", &link).unwrap();
        let err = check("PATH", Some(link.to_str().unwrap()), &c).unwrap_err();
        assert!(err.0.contains("others can write"), "{err}");
        // Even in a folder of its own that only its owner may write, when that folder is
        // reached through one others can write (the temporary folder).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if std::env::temp_dir().metadata().unwrap().mode() & 0o002 != 0 {
            assert!(check("PATH", Some(link.to_str().unwrap()), &c).is_err());
        }
        // A symlink in a folder only root can write, to one too (merged /usr: /bin -> usr/bin).
        assert!(root_controlled(Path::new("/bin")).is_ok());
    }

    #[test]
    fn allow_env_counts_only_from_a_root_owned_config() {
        let mut c = config();
        c.shell_allow_env = vec!["LD_LIBRARY_PATH".into()];
        assert!(check("LD_LIBRARY_PATH", Some("/opt/lib"), &c).is_err());
        c.root_owned = true;
        assert!(check("LD_LIBRARY_PATH", Some("/opt/lib"), &c).is_ok());
        assert!(check("LD_PRELOAD", Some("/opt/x.so"), &c).is_err());
    }

    fn write(dir: &Path, name: &str, text: &[u8], mode: u32) {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn secrets_are_read_from_safe_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config();
        c.secrets_dir = dir.path().to_path_buf();
        write(dir.path(), "ok", b"s3cr3t\n", 0o600);
        assert_eq!(read_secret("T", "ok", &c).unwrap(), "s3cr3t");
        write(dir.path(), "two", b"a\n\n", 0o400);
        assert_eq!(read_secret("T", "two", &c).unwrap(), "a\n");
        write(dir.path(), "open", b"s3cr3t", 0o604);
        write(dir.path(), "nul", b"s3\0cr3t", 0o600);
        std::os::unix::fs::symlink(dir.path().join("ok"), dir.path().join("link")).unwrap();
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        for (name, needle) in [
            ("open", "mode 0604"),
            ("nul", "NUL"),
            ("link", "symlink"),
            ("folder", "regular file"),
            ("missing", "No such file"),
        ] {
            let err = read_secret("T", name, &c).unwrap_err();
            assert!(
                err.0.contains(needle)
                    && err.0.contains(&format!("{name:?}"))
                    && err.0.contains(&dir.path().display().to_string())
                    && !err.0.contains("s3"),
                "{name}: {err}"
            );
        }
        for bad in ["", ".hidden", "a/b", "..", "x y"] {
            let err = read_secret("T", bad, &c).unwrap_err();
            assert!(err.0.contains(SECRET_REF), "{bad}: {err}");
        }
    }
}
