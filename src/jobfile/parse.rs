//! Reading a job file: TOML text to `[[job]]` tables, each with the line of its header, and
//! every problem with its file and line (a broken table hides none of the others' problems).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::JobSpec;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    job: Vec<toml::Spanned<JobSpec>>,
}

/// A problem in a job file, with its 1-based line (0 when the file as a whole is at fault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// A job read from a file, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub spec: JobSpec,
    pub file: String,
    /// The line of its `[[job]]` header.
    pub line: usize,
}

impl Located {
    /// `file:line`, for messages and plans.
    pub fn source(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    pub fn problem(&self, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            line: self.line,
            message: message.into(),
        }
    }
}

/// The 1-based line of any byte offset of a text, found by a binary search over where each line
/// starts: a file of n jobs costs O(n log n), not a scan from the top for every job.
struct Lines(Vec<usize>);

impl Lines {
    fn of(text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|&(_, b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Lines(starts)
    }

    fn line(&self, offset: usize) -> usize {
        // Lines starting at or before the offset; the first line starts at 0, so this is >= 1.
        self.0.partition_point(|&start| start <= offset)
    }
}

/// Parse a job file's text; `file` names it in problems. Never panics, whatever the text.
pub fn parse(file: &str, text: &str) -> Result<Vec<Located>, Problem> {
    let lines = Lines::of(text);
    let raw: RawFile = toml::from_str(text).map_err(|e| Problem {
        file: file.to_string(),
        line: e.span().map_or(0, |s| lines.line(s.start)),
        message: e.message().trim().to_string(),
    })?;
    let jobs: Vec<Located> = (raw.job.into_iter())
        .map(|spanned| {
            let line = lines.line(spanned.span().start);
            Located {
                spec: spanned.into_inner(),
                file: file.to_string(),
                line,
            }
        })
        .collect();
    // `schedule` may be left out only by a job that runs after others (it is then `@never`).
    if let Some(j) =
        (jobs.iter()).find(|j| j.spec.schedule.trim().is_empty() && j.spec.after.is_none())
    {
        return Err(Problem {
            file: file.to_string(),
            line: j.line,
            message: format!(
                "job {:?}: missing field `schedule` (required unless the job has `after`)",
                j.spec.name
            ),
        });
    }
    Ok(jobs)
}

/// Parse a job file, reporting every problem: when the file as a whole does not parse, each
/// `[[job]]` table is parsed on its own, so a mistake in one job hides none of the others'.
/// Returns the jobs that parsed and the problems found.
pub fn parse_all(file: &str, text: &str) -> (Vec<Located>, Vec<Problem>) {
    let whole = match parse(file, text) {
        Ok(jobs) => return (jobs, Vec::new()),
        Err(p) => p,
    };
    // Where each `[[job]]` header starts (the first piece is what comes before any).
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("[[job]]") && offset > 0 {
            starts.push(offset);
        }
        offset += line.len();
    }
    if starts.len() < 2 {
        return (Vec::new(), vec![whole]);
    }
    starts.push(text.len());
    let lines = Lines::of(text);
    let (mut jobs, mut problems) = (Vec::new(), Vec::new());
    for piece in starts.windows(2) {
        let (from, to) = (piece[0], piece[1]);
        // Lines before this piece, so its own line numbers become the file's.
        let before = lines.line(from) - 1;
        match parse(file, &text[from..to]) {
            Ok(found) => jobs.extend(found.into_iter().map(|mut j| {
                j.line += before;
                j
            })),
            Err(mut p) => {
                if p.line > 0 {
                    p.line += before;
                }
                problems.push(p);
            }
        }
    }
    if problems.is_empty() {
        // The pieces parse alone but not together (a name or table repeated across jobs).
        problems.push(whole);
    }
    (jobs, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_count_of_newlines_before_the_offset_plus_one() {
        let text = "a\nbc\n\nd";
        let lines = Lines::of(text);
        for offset in 0..=text.len() + 2 {
            let naive = text.as_bytes()[..offset.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            assert_eq!(lines.line(offset), naive, "offset {offset}");
        }
    }
}
