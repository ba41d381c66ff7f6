//! A headless Chromium driven over the Chrome DevTools Protocol, for the dashboard's browser
//! tests: `--remote-debugging-pipe` (commands on the child's fd 3, replies on its fd 4, each
//! message JSON ended by a NUL byte), so no WebSocket library and no port to find.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The installed Chromium, if any.
pub fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

pub struct Browser {
    child: Child,
    to: File,
    from: Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is an array of two ints, as pipe2 requires.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// How long one protocol call may take before the test fails instead of hanging.
const CALL_LIMIT: Duration = Duration::from_secs(30);

impl Browser {
    /// Start Chromium headless, `width` pixels wide, with one page attached.
    pub fn launch(path: &str, width: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (cmd_r, cmd_w) = pipe();
        let (res_r, res_w) = pipe();
        let (a, b) = (cmd_r.as_raw_fd(), res_w.as_raw_fd());
        let mut c = Command::new(path);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},900"))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            c.pre_exec(move || {
                // Out of the way first (either may already be 3 or 4), then into place; dup2
                // clears close-on-exec on the copies the browser keeps.
                let a2 = libc::fcntl(a, libc::F_DUPFD_CLOEXEC, 10);
                let b2 = libc::fcntl(b, libc::F_DUPFD_CLOEXEC, 10);
                if a2 < 0 || b2 < 0 || libc::dup2(a2, 3) < 0 || libc::dup2(b2, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().expect("start chromium");
        drop((cmd_r, res_w));
        let (tx, from) = mpsc::channel();
        let mut reader = BufReader::new(File::from(res_r));
        std::thread::spawn(move || loop {
            let mut msg = Vec::new();
            match reader.read_until(0, &mut msg) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if msg.last() == Some(&0) {
                        msg.pop();
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to: File::from(cmd_w),
            from,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let targets = b.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .map(|t| t["targetId"].clone())
            .unwrap_or_else(|| {
                b.call("Target.createTarget", json!({"url": "about:blank"}))["targetId"].clone()
            });
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    /// One command; its result (events in between are dropped). Panics on a protocol error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + CALL_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .map_err(|e| format!("no reply from chromium: {e}"))?;
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    return Err(e.to_string());
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// Evaluate `js` in the page (promises awaited): its value, or Err with the exception.
    pub fn try_eval(&mut self, js: &str) -> Result<Value, String> {
        let r = self.try_call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(e.to_string());
        }
        Ok(r["result"]["value"].clone())
    }

    pub fn eval(&mut self, js: &str) -> Value {
        self.try_eval(js)
            .unwrap_or_else(|e| panic!("evaluating {js}: {e}"))
    }

    /// Poll `js` until it is truthy (errors, as while a page loads, count as not yet).
    pub fn wait_until(&mut self, js: &str, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            if let Ok(v) = self.try_eval(js) {
                if !(v.is_null() || v == false || v == "" || v == 0) {
                    return v;
                }
            }
            if start.elapsed() > limit {
                let html = self.html();
                panic!("waited {limit:?} for `{js}`; the page:\n{html}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Mark the current document, so a wait can tell the next one from it.
    fn mark(&mut self) {
        let _ = self.try_eval("window.__cronmgr_old = true");
    }

    /// Wait for a document other than the marked one to finish loading.
    fn wait_new_page(&mut self) {
        self.wait_until(
            "!window.__cronmgr_old && document.readyState === 'complete'",
            Duration::from_secs(20),
        );
    }

    pub fn goto(&mut self, url: &str) {
        self.mark();
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
        self.wait_new_page();
    }

    /// Run `js` that leaves the page (a click on a submit button), and wait for the next one.
    pub fn submit(&mut self, js: &str) {
        self.mark();
        self.eval(js);
        self.wait_new_page();
    }

    /// Set a form field as typing would (the `input` event fires).
    pub fn fill(&mut self, selector: &str, value: &str) {
        let js = format!(
            "(() => {{ const e = document.querySelector({s}); e.value = {v}; \
             e.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()",
            s = json!(selector),
            v = json!(value)
        );
        self.eval(&js);
    }

    pub fn html(&mut self) -> String {
        self.try_eval("document.documentElement.outerHTML")
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn path(&mut self) -> String {
        self.eval("location.pathname + location.search")
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The whole page as a PNG at `png`; checked to be a picture, not a blank.
    pub fn screenshot(&mut self, png: &Path) {
        let size = self.eval(
            "[document.documentElement.scrollWidth, Math.min(document.documentElement.scrollHeight, 4000)]",
        );
        let (w, h) = (size[0].as_f64().unwrap(), size[1].as_f64().unwrap());
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}}),
        );
        let bytes = base64(r["data"].as_str().unwrap());
        std::fs::write(png, &bytes).unwrap();
        let (pw, ph, colours, ink) = png_summary(&bytes);
        assert!(
            pw >= 800 && ph >= 200,
            "{}: {pw}x{ph} pixels",
            png.display()
        );
        assert!(
            colours >= 8 && ink > 0.01,
            "{}: looks blank ({colours} colours, {:.2}% not background)",
            png.display(),
            ink * 100.0
        );
    }
}

/// Where the test run leaves its screenshots: target/web-screenshots/.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn base64(text: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= (val(*c) as u32) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// A PNG's width, height, number of distinct colours (counted up to 1,000) and the share of
/// pixels that differ from the top-left one. 8-bit RGB or RGBA only (what Chromium writes).
fn png_summary(png: &[u8]) -> (u32, u32, usize, f64) {
    use std::io::Read;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut at, mut idat) = (8, Vec::new());
    let (mut w, mut h, mut bpp) = (0u32, 0u32, 0usize);
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap());
                h = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(data[8], 8, "bit depth");
                bpp = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("PNG colour type {t}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = w as usize * bpp;
    let mut prev = vec![0u8; stride];
    let mut colours = std::collections::HashSet::new();
    let (mut first, mut other, mut total) = (None, 0usize, 0usize);
    for row in raw.chunks(stride + 1).take(h as usize) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= bpp { cur[i - bpp] as i16 } else { 0 };
            let b = prev[i] as i16;
            let c = if i >= bpp { prev[i - bpp] as i16 } else { 0 };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            cur[i] = line[i].wrapping_add(pred as u8);
        }
        for px in cur.chunks(bpp) {
            let rgb = [px[0], px[1], px[2]];
            let f = *first.get_or_insert(rgb);
            total += 1;
            if rgb != f {
                other += 1;
            }
            if colours.len() < 1000 {
                colours.insert(rgb);
            }
        }
        prev = cur;
    }
    (w, h, colours.len(), other as f64 / total.max(1) as f64)
}

#[test]
fn png_summary_tells_a_blank_from_a_picture() {
    // Two 2x1 RGB images, unfiltered: one white, one white and black.
    let make = |pixels: &[u8]| {
        use std::io::Write as _;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&[0]).unwrap();
        z.write_all(pixels).unwrap();
        let idat = z.finish().unwrap();
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            c.extend_from_slice(&[0, 0, 0, 0]); // CRC: not checked here
            c
        };
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &[0, 0, 0, 2, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
        png.extend(chunk(b"IDAT", &idat));
        png.extend(chunk(b"IEND", &[]));
        png
    };
    assert_eq!(png_summary(&make(&[255; 6])), (2, 1, 1, 0.0));
    assert_eq!(
        png_summary(&make(&[255, 255, 255, 0, 0, 0])),
        (2, 1, 2, 0.5)
    );
    assert_eq!(base64("aGk="), b"hi");
    assert_eq!(base64("aGVsbG8h"), b"hello!");
}
