//! Secrets (webhook URLs, signing keys, the SMTP password) are never shown in full: not in tables,
//! JSON, errors or logs. Everything that prints one goes through here.

/// How a redacted secret ends.
pub const MARK: &str = "…(redacted)";

/// A secret as it may be shown: a URL keeps its scheme and host
/// (`https://hooks.slack.com/…(redacted)`), anything else only the mark.
pub fn secret(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    if let Some((scheme, rest)) = s.split_once("://") {
        if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or(authority);
            return format!("{scheme}://{host}/{MARK}");
        }
    }
    MARK.to_string()
}

/// A comma-separated list of targets: email addresses shown, anything else redacted.
pub fn list(s: &str) -> String {
    s.split(',')
        .map(|item| {
            let item = item.trim();
            if super::looks_like_email(item) {
                item.to_string()
            } else if let Some((prefix, url)) = item
                .split_once(':')
                .filter(|(p, _)| matches!(*p, "slack" | "webhook"))
            {
                format!("{prefix}:{}", secret(url))
            } else {
                secret(item)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `text` with every occurrence of each secret (and of a URL's path, which carries the secret in
/// webhook URLs) replaced by its redacted form: for error messages that may quote a URL.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, &secret(s));
        if let Some((_, rest)) = s.split_once("://") {
            if let Some(i) = rest.find('/') {
                let path = &rest[i..];
                if path.len() > 4 {
                    out = out.replace(path, &format!("/{MARK}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_only_scheme_and_host() {
        assert_eq!(
            secret("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/…(redacted)"
        );
        assert_eq!(
            secret("http://user:pw@127.0.0.1:8080/hook?token=abc"),
            "http://127.0.0.1:8080/…(redacted)"
        );
        assert_eq!(secret("s3cr3t-signing-key"), "…(redacted)");
        assert_eq!(secret(""), "");
    }

    #[test]
    fn lists_show_addresses_and_hide_urls() {
        assert_eq!(
            list("ops@example.com, https://pager.example.com/in/abc, slack:https://hooks.slack.com/x"),
            "ops@example.com,https://pager.example.com/…(redacted),slack:https://hooks.slack.com/…(redacted)"
        );
    }

    #[test]
    fn scrub_removes_secrets_and_paths_from_messages() {
        let url = "http://127.0.0.1:9/hook/SECRETPATH";
        let msg = format!("POST {url}: connection refused; retrying /hook/SECRETPATH");
        let clean = scrub(&msg, &[url, "topsecret"]);
        assert!(!clean.contains("SECRETPATH"), "{clean}");
        assert!(clean.contains("127.0.0.1:9"), "{clean}");
        assert_eq!(
            scrub("key topsecret used", &["topsecret"]),
            "key …(redacted) used"
        );
    }
}
