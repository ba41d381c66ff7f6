//! Who is acting, and what they may do: the Unix user behind a command (for the audit log), the
//! admin rule for critical jobs, and the users and groups jobs may run as.
//!
//! An admin is root, or a user named in the config file's `[admins] users`, or a member of a
//! group in `[admins] groups`. The `[admins]` section counts only when the config file is owned
//! by root and writable by no one else (the file is what decides who is trusted).

use std::ffi::{CStr, CString};

use crate::config::Config;
use crate::store::Actor;

/// A user from the password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// The acting user: the real uid and its name, and who they were before `sudo`.
pub fn current_actor() -> Actor {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    Actor {
        uid,
        user: user_by_uid(uid)
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string()),
        sudo_user: sudo_user(uid, std::env::var("SUDO_USER").ok()),
    }
}

/// `SUDO_USER` as the audit log records it. sudo sets it in a process whose real uid is root
/// (sudo's own rule for trusting it); anyone else can set it to any name, so from a caller that
/// is not root it is kept only marked "(unverified)".
fn sudo_user(real_uid: u32, var: Option<String>) -> Option<String> {
    let name = var.filter(|s| !s.is_empty())?;
    Some(match real_uid {
        0 => name,
        _ => format!("{name} (unverified)"),
    })
}

/// Is the acting process an admin? `Err` holds why not, for the refusal message.
pub fn check_admin(config: &Config) -> Result<(), String> {
    if crate::config::is_root() {
        return Ok(());
    }
    let me = current_actor();
    if !config.root_owned {
        return Err(format!(
            "only root may (the config file {} is {}, so its [admins] do not count)",
            config.path.display(),
            if config.loaded {
                "not owned by root or is writable by others"
            } else {
                "missing"
            }
        ));
    }
    if config.admins.users.contains(&me.user) {
        return Ok(());
    }
    let mine = process_groups();
    for name in &config.admins.groups {
        if let Some(gid) = group_gid(name) {
            if mine.contains(&gid) {
                return Ok(());
            }
        }
    }
    Err(format!(
        "only root and the [admins] of {} may; {} is not one",
        config.path.display(),
        me.user
    ))
}

/// The effective gid and the supplementary groups of this process.
fn process_groups() -> Vec<u32> {
    // SAFETY: with a zero size getgroups only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut groups = vec![0 as libc::gid_t; n.max(0) as usize];
    // SAFETY: the buffer holds `n` gids.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    groups.truncate(got.max(0) as usize);
    // SAFETY: getegid has no preconditions and cannot fail.
    groups.push(unsafe { libc::getegid() });
    groups
}

/// Look up a user by uid (getpwuid_r).
pub fn user_by_uid(uid: u32) -> Option<User> {
    passwd(|pwd, buf, result| {
        // SAFETY: every pointer is valid for the call; buf has buf.len() bytes.
        unsafe { libc::getpwuid_r(uid, pwd, buf.as_mut_ptr(), buf.len(), result) }
    })
}

/// Look up a user by name (getpwnam_r).
pub fn user_by_name(name: &str) -> Option<User> {
    let c = CString::new(name).ok()?;
    passwd(|pwd, buf, result| {
        // SAFETY: as above; `c` is a valid C string for the call.
        unsafe { libc::getpwnam_r(c.as_ptr(), pwd, buf.as_mut_ptr(), buf.len(), result) }
    })
}

type PwFn<'a> = dyn FnMut(*mut libc::passwd, &mut Vec<libc::c_char>, *mut *mut libc::passwd) -> libc::c_int
    + 'a;

fn passwd(
    mut call: impl FnMut(
        *mut libc::passwd,
        &mut Vec<libc::c_char>,
        *mut *mut libc::passwd,
    ) -> libc::c_int,
) -> Option<User> {
    let call: &mut PwFn<'_> = &mut call;
    let mut size = 1024;
    loop {
        let mut buf: Vec<libc::c_char> = vec![0; size];
        // SAFETY: passwd is plain data; all zeroes is a valid value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(&mut pwd, &mut buf, &mut result);
        if rc == libc::ERANGE && size < 1 << 20 {
            size *= 4;
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success the strings point into `buf`, alive here, and are NUL-terminated.
        let text =
            |p: *const libc::c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        return Some(User {
            name: text(pwd.pw_name),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home: text(pwd.pw_dir),
        });
    }
}

/// The gid of a group name (getgrnam_r).
pub fn group_gid(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut size = 1024;
    loop {
        let mut buf: Vec<libc::c_char> = vec![0; size];
        // SAFETY: group is plain data; all zeroes is a valid value.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf has buf.len() bytes.
        let rc = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && size < 1 << 20 {
            size *= 4;
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        return Some(grp.gr_gid);
    }
}

/// The supplementary groups of a user, as `initgroups` would set them (getgrouplist).
pub fn user_groups(user: &User) -> Vec<u32> {
    let Ok(name) = CString::new(user.name.as_str()) else {
        return vec![user.gid];
    };
    let mut n: libc::c_int = 32;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: `groups` holds `count` gids; name is a valid C string.
        let rc =
            unsafe { libc::getgrouplist(name.as_ptr(), user.gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if count <= n || n > 65_536 {
            return vec![user.gid];
        }
        n = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_user_is_trusted_only_from_a_root_caller() {
        assert_eq!(sudo_user(0, Some("alice".into())).as_deref(), Some("alice"));
        assert_eq!(
            sudo_user(1000, Some("root".into())).as_deref(),
            Some("root (unverified)")
        );
        assert_eq!(sudo_user(0, Some(String::new())), None);
        assert_eq!(sudo_user(1000, None), None);
    }

    #[test]
    fn root_is_in_the_password_database() {
        let root = user_by_uid(0).expect("uid 0");
        assert_eq!(root.name, "root");
        assert_eq!(user_by_name("root").map(|u| u.uid), Some(0));
        assert!(user_by_name("no-such-user-cronmgr").is_none());
        assert_eq!(group_gid("root"), Some(0));
        assert!(user_groups(&root).contains(&0));
    }

    #[test]
    fn the_actor_has_a_name() {
        let me = current_actor();
        assert!(!me.user.is_empty());
    }
}
