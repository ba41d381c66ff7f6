//! Dispatch: authentication first, then the read-only pages and their JSON, then (with
//! `--allow-actions`) the editor and the buttons, each POST checked for its CSRF token.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use maud::Markup;

use super::auth::{Auth, Login};
use super::http::{Reply, Request, Response, StreamReply};
use super::pages::{self, Frame};
use super::views::{self, ListQuery};
use super::{editor, Host, Options, User};
use crate::store::{Status, Store};

const CSS: &str = include_str!("assets/style.css");
const JS: &str = include_str!("assets/app.js");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub struct App {
    pub opts: Options,
    pub auth: Auth,
    pub host: Arc<dyn Host>,
}

thread_local! {
    /// Each worker thread keeps its own connection to the database.
    static STORE: RefCell<Option<Store>> = const { RefCell::new(None) };
}

fn full(r: Response) -> Reply {
    Reply::Full(r)
}

/// Headers every reply carries.
fn harden(mut r: Response) -> Response {
    for (k, v) in [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ] {
        r.headers.push((k.into(), v.into()));
    }
    r
}

impl App {
    pub fn new(opts: Options, auth: Auth, host: Arc<dyn Host>) -> App {
        App { opts, auth, host }
    }

    pub fn handle(&self, req: Request) -> Reply {
        match self.route(req) {
            Reply::Full(r) => Reply::Full(harden(r)),
            Reply::Stream(mut s) => {
                s.headers
                    .push(("Content-Security-Policy".into(), CSP.into()));
                s.headers
                    .push(("X-Content-Type-Options".into(), "nosniff".into()));
                Reply::Stream(s)
            }
        }
    }

    pub(super) fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        STORE.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(Store::open_existing(&self.opts.db)?);
            }
            let store = slot
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no database"))?;
            let r = f(store);
            if r.is_err() {
                // A broken connection (a restarted PostgreSQL): open a new one next time.
                *slot = None;
            }
            r
        })
    }

    fn route(&self, req: Request) -> Reply {
        let path = req.path.clone();
        let method = req.method.as_str();
        if !matches!(method, "GET" | "HEAD" | "POST") {
            return full(
                Response::text(405, "method not allowed").with("Allow", "GET, HEAD, POST"),
            );
        }
        match (method, path.as_str()) {
            ("GET" | "HEAD", "/static/style.css") => {
                return full(Response::new(200, "text/css; charset=utf-8", CSS))
            }
            ("GET" | "HEAD", "/static/app.js") => {
                return full(Response::new(200, "text/javascript; charset=utf-8", JS))
            }
            ("GET" | "HEAD", "/login") => {
                let next = safe_next(req.query.get("next").map(String::as_str));
                return full(Response::html(200, pages::login(None, &next)));
            }
            ("POST", "/login") => return full(self.login(&req)),
            _ => {}
        }
        let Some(user) = self.auth.identify(&req) else {
            let wants_html = method != "POST"
                && !path.starts_with("/api/")
                && path != "/metrics"
                && req.header("authorization").is_none()
                && req
                    .header("accept")
                    .is_some_and(|a| a.contains("text/html"));
            if wants_html {
                return full(Response::redirect(&format!(
                    "/login?next={}",
                    super::http::encode(&path)
                )));
            }
            return full(
                Response::text(
                    401,
                    "authentication required: log in, or send Authorization: Bearer TOKEN",
                )
                .with("WWW-Authenticate", "Bearer realm=\"cronmgr\""),
            );
        };
        if method == "POST" {
            return full(self.post(&req, &user, &path));
        }
        self.get(&req, &user, &path)
    }

    fn login(&self, req: &Request) -> Response {
        let form = req.form();
        let next = safe_next(form.get("next").map(String::as_str));
        let user = form.get("user").map(String::as_str).unwrap_or("");
        let password = form.get("password").map(String::as_str).unwrap_or("");
        match self.auth.login(&req.peer, user, password) {
            Login::Ok(id) => {
                Response::redirect(&next).with("Set-Cookie", Auth::cookie(&id, req.tls))
            }
            Login::Wrong => {
                Response::html(401, pages::login(Some("Wrong user or password."), &next))
            }
            Login::TooMany => Response::html(
                429,
                pages::login(Some("Too many failed logins: wait a minute."), &next),
            )
            .with("Retry-After", "60"),
            Login::NoPassword => Response::html(
                403,
                pages::login(
                    Some(
                        "No password is set ([web] password_hash): use a token or the unix socket.",
                    ),
                    &next,
                ),
            ),
        }
    }

    fn system<'r>(&'r self, req: &'r Request) -> &'r str {
        req.query
            .get("system")
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.opts.system)
    }

    pub(super) fn page(
        &self,
        req: &Request,
        user: &User,
        title: &str,
        section: &str,
        body: Markup,
    ) -> Response {
        let systems = self.with_store(|s| Ok(s.systems()?)).unwrap_or_default();
        Response::html(
            200,
            pages::layout(
                &Frame {
                    title,
                    section,
                    user: Some(user),
                    system: self.system(req),
                    systems: &systems,
                    allow_actions: self.opts.allow_actions,
                },
                body,
            ),
        )
    }

    fn get(&self, req: &Request, user: &User, path: &str) -> Reply {
        let (api, rest) = match path.strip_prefix("/api") {
            Some(r) if r.starts_with('/') => (true, r),
            _ => (false, path),
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let system = self.system(req).to_string();
        if !api && parts.len() == 3 && parts[0] == "executions" && parts[2] == "stream" {
            return match parts[1].parse::<i64>() {
                Ok(id) => self.stream(id),
                Err(_) => full(Response::text(404, "no such execution")),
            };
        }
        if path == "/metrics" {
            return full(match self.with_store(|s| self.host.metrics(s)) {
                Ok(text) => Response::new(200, "text/plain; version=0.0.4", text),
                Err(e) => Response::text(500, format!("{e:#}")),
            });
        }
        if self.opts.allow_actions && !api {
            if let Some(r) = editor::get(self, req, user, &parts, &system) {
                return full(r);
            }
        }
        if api && parts == ["describe"] {
            let tz = self
                .with_store(|s| Ok(views::system_tz(&s.settings(&system)?)))
                .unwrap_or(chrono_tz::Tz::UTC);
            return full(editor::describe(req, tz));
        }
        let runner_pid = self
            .with_store(|s| Ok(self.host.runner_pid(s)))
            .ok()
            .flatten();
        let result = self.with_store(|store| {
            let c = views::Ctx {
                store,
                system: &system,
                default_system: &self.opts.system,
                runner_pid,
                user,
                allow_actions: self.opts.allow_actions,
            };
            Ok(match parts.as_slice() {
                [""] | ["status"] => Some(("Overview", "/", views::overview(&c)?)),
                ["jobs"] => Some((
                    "Jobs",
                    "/jobs",
                    views::jobs(
                        &c,
                        &ListQuery {
                            category: req.query.get("category").cloned().filter(|s| !s.is_empty()),
                            state: req.query.get("state").cloned().filter(|s| !s.is_empty()),
                            sort: req
                                .query
                                .get("sort")
                                .cloned()
                                .unwrap_or_else(|| "name".into()),
                            all_systems: req.query.get("all").is_some_and(|v| v == "1"),
                        },
                    )?,
                )),
                ["jobs", name] => Some(("Job", "/jobs", views::job(&c, name)?)),
                ["jobs", name, "history"] if api => {
                    let rows = store.executions(&crate::store::ExecutionFilter {
                        system: Some(system.clone()),
                        job: Some(name.to_string()),
                        limit: Some(
                            req.query
                                .get("limit")
                                .and_then(|l| l.parse().ok())
                                .unwrap_or(50)
                                .min(1000),
                        ),
                        ..Default::default()
                    })?;
                    Some((
                        "History",
                        "/jobs",
                        (maud::html! {}, serde_json::to_value(rows)?),
                    ))
                }
                ["executions", id] => {
                    let id: i64 = id
                        .parse()
                        .map_err(|_| crate::store::StoreError::ExecutionNotFound(0))?;
                    let e = store.execution(id)?;
                    let live = (e.status == Status::Running).then(|| {
                        let path = crate::store::live_log_path(&self.opts.db, id);
                        String::from_utf8_lossy(&read_live(&path)).into_owned()
                    });
                    Some(("Execution", "/", views::execution(&c, id, live)?))
                }
                ["timeline"] => Some(("Timeline", "/timeline", views::timeline(&c)?)),
                ["alerts"] => Some(("Alerts", "/alerts", views::alerts(&c)?)),
                ["audit"] => Some(("Audit", "/audit", views::audit(&c)?)),
                ["settings"] => Some(("Settings", "/settings", views::settings(&c)?)),
                ["runners"] => Some(("Runners", "/runners", views::runners(&c)?)),
                _ => None,
            })
        });
        full(match result {
            Ok(Some((title, section, (body, json)))) => {
                if api {
                    Response::json(200, &json)
                } else {
                    self.page(req, user, title, section, body)
                }
            }
            Ok(None) => self.missing(req, user, api, "No such page."),
            Err(e) => {
                let not_found = e
                    .downcast_ref::<crate::store::StoreError>()
                    .is_some_and(|s| {
                        matches!(
                            s,
                            crate::store::StoreError::JobNotFound { .. }
                                | crate::store::StoreError::ExecutionNotFound(_)
                        )
                    });
                if not_found {
                    self.missing(req, user, api, &format!("{e:#}"))
                } else if api {
                    Response::json(500, &serde_json::json!({"error": format!("{e:#}")}))
                } else {
                    Response::text(500, format!("error: {e:#}"))
                }
            }
        })
    }

    fn missing(&self, req: &Request, user: &User, api: bool, what: &str) -> Response {
        if api {
            return Response::json(404, &serde_json::json!({"error": what}));
        }
        let mut r = self.page(req, user, "Not found", "", views::not_found(what));
        r.status = 404;
        r
    }

    fn post(&self, req: &Request, user: &User, path: &str) -> Response {
        let form = req.form();
        if let Some(expected) = &user.csrf {
            let given = form.get("csrf").map(String::as_str).unwrap_or("");
            if !super::auth::same(given, expected) {
                return Response::text(
                    403,
                    "refused: the form's CSRF token is missing or wrong (reload the page)",
                );
            }
        }
        if path == "/logout" {
            self.auth.logout(req);
            return Response::redirect("/login").with(
                "Set-Cookie",
                format!(
                    "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                    super::auth::COOKIE
                ),
            );
        }
        if !self.opts.allow_actions {
            return Response::text(
                403,
                "read-only: this dashboard was started without --allow-actions",
            );
        }
        editor::post(self, req, user, path, &form)
    }

    /// Server-Sent Events: the live log of a running execution as it grows, then an `end` event.
    fn stream(&self, id: i64) -> Reply {
        let db = self.opts.db.clone();
        match self.with_store(|s| Ok(s.execution(id)?)) {
            Ok(_) => {}
            Err(e) => return full(Response::text(404, format!("{e:#}"))),
        }
        Reply::Stream(StreamReply {
            headers: vec![
                ("Content-Type".into(), "text/event-stream".into()),
                ("Cache-Control".into(), "no-store".into()),
                ("X-Accel-Buffering".into(), "no".into()),
            ],
            write: Box::new(move |out: &mut dyn Write| sse(&db, id, out)),
        })
    }
}

fn read_live(path: &std::path::Path) -> Vec<u8> {
    let mut text = Vec::new();
    if let Ok(mut f) = open_live(path) {
        let _ = Read::by_ref(&mut f)
            .take(8 * 1024 * 1024)
            .read_to_end(&mut text);
    }
    text
}

fn open_live(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// One SSE event carrying `text` (each line a `data:` field).
fn event(out: &mut dyn Write, name: Option<&str>, text: &str) -> std::io::Result<()> {
    let mut e = String::new();
    if let Some(n) = name {
        e.push_str(&format!("event: {n}\n"));
    }
    for line in text.split('\n') {
        e.push_str("data: ");
        e.push_str(line.trim_end_matches('\r'));
        e.push('\n');
    }
    e.push('\n');
    out.write_all(e.as_bytes())?;
    out.flush()
}

fn sse(db: &std::path::Path, id: i64, out: &mut dyn Write) -> std::io::Result<()> {
    let store = Store::open_existing(db).map_err(std::io::Error::other)?;
    let path = crate::store::live_log_path(db, id);
    let mut file = None;
    let mut sent: u64 = 0;
    let mut pending = Vec::new();
    let mut last_check = Instant::now() - Duration::from_secs(1);
    let mut last_write = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    event(out, Some("start"), "")?;
    loop {
        let mut finished = None;
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            match store.execution(id) {
                Ok(e) if e.status != Status::Running => finished = Some(e),
                Ok(_) => {}
                Err(_) => return event(out, Some("end"), "gone"),
            }
        }
        if file.is_none() {
            file = open_live(&path).ok();
        }
        if let Some(f) = file.as_mut() {
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                sent += n as u64;
                pending.extend_from_slice(&buf[..n]);
            }
        }
        // Whole lines only (a chunk may end inside a UTF-8 character or a line).
        if let Some(cut) = pending.iter().rposition(|b| *b == b'\n') {
            let text: Vec<u8> = pending.drain(..=cut).collect();
            event(
                out,
                None,
                String::from_utf8_lossy(&text[..text.len() - 1]).as_ref(),
            )?;
            last_write = Instant::now();
        }
        if let Some(e) = finished {
            if !pending.is_empty() {
                event(out, None, String::from_utf8_lossy(&pending).as_ref())?;
            }
            if sent == 0 {
                // It ended before we could read its live log: send what was recorded.
                if let Some(o) = e.output.as_deref().filter(|o| !o.is_empty()) {
                    event(out, None, o.trim_end_matches('\n'))?;
                }
            }
            return event(out, Some("end"), &e.status.to_string());
        }
        if last_write.elapsed() > Duration::from_secs(15) {
            out.write_all(b": keep-alive\n\n")?;
            out.flush()?;
            last_write = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// A local path to go to after login: never another site. Browsers drop tabs and line breaks
/// from a URL (`/\t/host` is `//host`) and read `\` as `/`: only printable ASCII passes.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

/// Query-string helper for the editor.
pub fn query_system(system: &str, default: &str) -> String {
    if system == default {
        String::new()
    } else {
        format!("?system={}", super::http::encode(system))
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn login_goes_back_only_to_a_local_path() {
        assert_eq!(safe_next(Some("/jobs/a?system=b")), "/jobs/a?system=b");
        for evil in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/x",
            "",
            "jobs",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
