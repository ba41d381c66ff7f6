//! CSV for spreadsheets (RFC 4180): fields separated by commas, records ended by CRLF, a field
//! quoted (with its quotes doubled) when it holds a comma, a quote, CR or LF, or begins or ends
//! with a space.
//!
//! Text a person or a job wrote (job names, error messages) goes through [`text`] first, so that
//! a spreadsheet shows it instead of evaluating it: a cell that begins with `=`, `+`, `-`, `@`,
//! a tab or CR is a formula to Excel, LibreOffice and Google Sheets ("CSV injection"); such a
//! cell gets a leading `'`, which they take as "this is text" (OWASP's advice).

use std::borrow::Cow;

/// One record, CRLF included.
pub fn record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&field_text(field.as_ref()));
    }
    line.push_str("\r\n");
    line
}

/// A field as RFC 4180 writes it.
fn field_text(field: &str) -> Cow<'_, str> {
    let quote =
        field.contains([',', '"', '\r', '\n']) || field.starts_with(' ') || field.ends_with(' ');
    if !quote {
        return Cow::Borrowed(field);
    }
    Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
}

/// Free text made safe from formula evaluation (see the module doc). Only for text columns:
/// numbers (a negative exit code) are written as they are.
pub fn text(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_rfc_4180_requires() {
        assert_eq!(record(&["a", "b c", "1"]), "a,b c,1\r\n");
        assert_eq!(
            record(&["x,y", "say \"hi\"", "two\nlines", "cr\r"]),
            "\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\r\"\r\n"
        );
        assert_eq!(record(&["", " padded"]), ",\" padded\"\r\n");
        assert_eq!(record::<&str>(&[]), "\r\n");
    }

    #[test]
    fn formulas_in_text_become_text() {
        for cell in [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert!(text(cell).starts_with('\''), "{cell:?}");
        }
        assert_eq!(text("exited with status 3"), "exited with status 3");
        assert_eq!(text(""), "");
    }
}
