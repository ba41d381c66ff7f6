//! Tables that fit the terminal: each command describes its columns, this module lays them out.
//!
//! **The width.** `COLUMNS`, when set to a positive number, wins (as `ls` does: a user or a script
//! can ask for a width); otherwise the width of the terminal on stdout (`ioctl(TIOCGWINSZ)`).
//! When stdout is not a terminal and `COLUMNS` is unset there is no limit: like `ls -l` and
//! `git log` into a pipe, rows are never cut, so `cronmgr history | grep …` sees every character.
//!
//! **Fitting.** A column is one of:
//! - kept (the default): ids, statuses, times; always shown at its full width;
//! - shrinkable ([`Column::shrink`]): long text such as a name or a category, cut with `…` but
//!   never below its minimum (nor its header);
//! - filling ([`Column::fill`]): the free text a row is about (a message, a summary, a value):
//!   it takes the space the others leave, and gives way only after them;
//! - droppable ([`Column::drop`]): shown only while there is room, dropped lowest rank first.
//!
//! When the rows are wider than the terminal, the shrinkable columns give up width, the widest
//! first, down to their minimums; then the filling ones, likewise. If that is not enough, the
//! droppable column of lowest rank is dropped and the fitting starts again with the columns that
//! remain. If even then the kept
//! columns do not fit (a very narrow terminal), every column shrinks down to its header, and as a
//! last resort each line is cut with `…`: no line is ever wider than the terminal.
//!
//! Widths are display widths (tabled's measure, on `unicode-width`: a CJK character counts two).
//! tabled's own `Width::truncate(..).priority(..)` shrinks the widest (or leftmost, rightmost)
//! column of a whole table, but knows neither minimums per column nor columns that may go, so the
//! fitting is ours. Cells are one line each: a newline shows as `⏎`, a tab as a space, any other
//! control character as `�` (a job's message cannot move the cursor or recolour the terminal).
//! Columns are two spaces apart and no line ends in a space.

use std::io::IsTerminal;

use tabled::grid::util::string::{get_char_width, get_string_width};

/// The space between two columns.
const GAP: usize = 2;

/// What marks text that was cut.
const ELLIPSIS: char = '…';

/// One column of a table: its header and how it gives way when the terminal is narrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column<'a> {
    pub header: &'a str,
    /// Shrinkable down to this many characters (cut with `…`); `None`: kept at full width.
    pub min: Option<usize>,
    /// Shrinks only after the other shrinkable columns are at their minimums.
    pub fill: bool,
    /// Droppable when shrinking is not enough, the lowest rank first; `None`: always shown.
    pub drop: Option<u8>,
}

impl<'a> Column<'a> {
    /// A column shown at its full width.
    pub const fn new(header: &'a str) -> Column<'a> {
        Column {
            header,
            min: None,
            fill: false,
            drop: None,
        }
    }

    /// Long free text: cut with `…` when space is short, down to `min` characters (or the header).
    pub const fn shrink(self, min: usize) -> Column<'a> {
        Column {
            min: Some(min),
            ..self
        }
    }

    /// The free text the row is about: it takes the space left, and is cut (down to `min`) only
    /// after the [`shrink`](Column::shrink) columns.
    pub const fn fill(self, min: usize) -> Column<'a> {
        Column {
            min: Some(min),
            fill: true,
            ..self
        }
    }

    /// Less important: dropped when even shrinking is not enough, rank 1 before rank 2.
    pub const fn drop(self, rank: u8) -> Column<'a> {
        Column {
            drop: Some(rank),
            ..self
        }
    }
}

impl<'a> From<&'a str> for Column<'a> {
    fn from(header: &'a str) -> Column<'a> {
        Column::new(header)
    }
}

impl<'a> From<&Column<'a>> for Column<'a> {
    fn from(c: &Column<'a>) -> Column<'a> {
        *c
    }
}

impl<'a> From<&&'a str> for Column<'a> {
    fn from(header: &&'a str) -> Column<'a> {
        Column::new(header)
    }
}

/// The width to fit tables to: `COLUMNS` when it is a positive number, else the terminal's on
/// stdout, else none (stdout is a pipe or a file: nothing is cut).
pub fn terminal_width() -> Option<usize> {
    width_from(std::env::var("COLUMNS").ok().as_deref(), stdout_tty_width)
}

/// `COLUMNS` wins when it is a positive number; otherwise ask the terminal.
fn width_from(columns: Option<&str>, tty: impl FnOnce() -> Option<usize>) -> Option<usize> {
    match columns.and_then(|c| c.trim().parse::<usize>().ok()) {
        Some(n) if n > 0 => Some(n),
        _ => tty(),
    }
}

/// The number of columns of the terminal on stdout, if stdout is one and it says.
fn stdout_tty_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    // SAFETY: an all-zero winsize is valid; TIOCGWINSZ writes one into the struct we own.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: ioctl on our stdout with a pointer to a live winsize, as TIOCGWINSZ expects.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// The display width of one line of text.
pub fn width(s: &str) -> usize {
    get_string_width(s)
}

/// A cell on one line: newline `⏎`, tab a space, other control characters `�`.
fn one_line(s: &str) -> String {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.chars()
        .filter(|c| *c != '\r')
        .map(|c| match c {
            '\n' => '⏎',
            '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// `s` cut to `max` display columns, ending in `…` when it was cut.
pub fn ellipsize(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = get_char_width(c);
        if used + w > max - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push(ELLIPSIS);
    out
}

/// The width of each column (None: dropped) so that the table fits in `budget` columns.
/// `natural` is each column's widest cell or header; `indent` the spaces before each line.
fn fit(columns: &[Column], natural: &[usize], indent: usize, budget: usize) -> Vec<Option<usize>> {
    let headers: Vec<usize> = columns.iter().map(|c| width(c.header)).collect();
    // The narrowest each column may get: shrinkable ones to their minimum (never below the
    // header, never above their content), the others not at all.
    let floors: Vec<usize> = columns
        .iter()
        .zip(natural)
        .zip(&headers)
        .map(|((c, &n), &h)| c.min.map_or(n, |m| m.max(h).min(n)))
        .collect();
    let mut shown: Vec<bool> = vec![true; columns.len()];
    loop {
        let visible: Vec<usize> = (0..columns.len()).filter(|&i| shown[i]).collect();
        let gaps = GAP * visible.len().saturating_sub(1);
        let room = budget.saturating_sub(indent + gaps);
        let mut widths: Vec<Option<usize>> = natural
            .iter()
            .zip(&shown)
            .map(|(&n, &s)| s.then_some(n))
            .collect();
        let floor_sum: usize = visible.iter().map(|&i| floors[i]).sum();
        if floor_sum <= room {
            shrink(&mut widths, &floors, room, |i| !columns[i].fill);
            shrink(&mut widths, &floors, room, |_| true);
            return widths;
        }
        // Drop the least important column still shown (of equal ranks, the rightmost).
        let least = visible
            .iter()
            .filter_map(|&i| columns[i].drop.map(|r| (r, i)))
            .min_by_key(|&(r, i)| (r, std::cmp::Reverse(i)));
        if let Some((_, i)) = least {
            shown[i] = false;
            continue;
        }
        // Not even the kept columns fit: everything gives way, down to its header.
        let last: Vec<usize> = natural
            .iter()
            .zip(&headers)
            .map(|(&n, &h)| h.max(1).min(n))
            .collect();
        shrink(&mut widths, &last, room, |_| true);
        return widths;
    }
}

/// Take width from the widest `eligible` column above its floor (of equal ones, the rightmost)
/// until the shown columns add up to `room` or those columns are all at their floors.
fn shrink(
    widths: &mut [Option<usize>],
    floors: &[usize],
    room: usize,
    eligible: impl Fn(usize) -> bool,
) {
    let mut total: usize = widths.iter().flatten().sum();
    while total > room {
        let widest = widths
            .iter()
            .enumerate()
            .filter(|(i, _)| eligible(*i))
            .filter_map(|(i, w)| w.filter(|&w| w > floors[i]).map(|w| (w, i)))
            .max();
        let Some((_, i)) = widest else { break };
        if let Some(w) = widths[i].as_mut() {
            *w -= 1;
        }
        total -= 1;
    }
}

/// Lay out `rows` under `columns` (a header line unless `header` is false), `indent` spaces in,
/// fitted to `budget` columns when there is one.
pub fn render(
    columns: &[Column],
    rows: &[Vec<String>],
    indent: usize,
    header: bool,
    budget: Option<usize>,
) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            (0..columns.len())
                .map(|i| r.get(i).map(|c| one_line(c)).unwrap_or_default())
                .collect()
        })
        .collect();
    let natural: Vec<usize> = (0..columns.len())
        .map(|i| {
            let head = if header { width(columns[i].header) } else { 0 };
            cells.iter().map(|r| width(&r[i])).fold(head, usize::max)
        })
        .collect();
    let widths = match budget {
        Some(budget) => fit(columns, &natural, indent, budget),
        None => natural.iter().map(|&n| Some(n)).collect(),
    };
    let headers: Vec<String> = columns.iter().map(|c| c.header.to_string()).collect();
    let mut out = String::new();
    for row in header.then_some(&headers).into_iter().chain(&cells) {
        let mut line = " ".repeat(indent);
        let mut first = true;
        for (cell, w) in row.iter().zip(&widths) {
            let Some(w) = *w else { continue };
            if !first {
                line.push_str(&" ".repeat(GAP));
            }
            first = false;
            let text = ellipsize(cell, w);
            let pad = w.saturating_sub(width(&text));
            line.push_str(&text);
            line.push_str(&" ".repeat(pad));
        }
        let line = line.trim_end();
        let line = match budget {
            Some(b) => ellipsize(line, b),
            None => line.to_string(),
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(r: &[&[&str]]) -> Vec<Vec<String>> {
        r.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    fn check(text: &str, budget: usize) {
        for line in text.lines() {
            assert!(width(line) <= budget, "{line:?} wider than {budget}");
            assert_eq!(line, line.trim_end(), "{line:?} ends in a space");
        }
    }

    #[test]
    fn columns_wins_when_positive_else_the_terminal() {
        assert_eq!(width_from(Some("80"), || Some(120)), Some(80));
        assert_eq!(width_from(Some(" 200 "), || None), Some(200));
        assert_eq!(width_from(Some("0"), || Some(120)), Some(120));
        assert_eq!(width_from(Some("-5"), || Some(120)), Some(120));
        assert_eq!(width_from(Some("wide"), || None), None);
        assert_eq!(width_from(None, || Some(100)), Some(100));
        assert_eq!(width_from(None, || None), None);
    }

    #[test]
    fn ellipsis_counts_display_width() {
        assert_eq!(ellipsize("hello", 5), "hello");
        assert_eq!(ellipsize("hello world", 6), "hello…");
        assert_eq!(ellipsize("hello", 1), "…");
        assert_eq!(ellipsize("hello", 0), "");
        // Two columns per CJK character: 3 of them and the ellipsis would be 7 > 6.
        assert_eq!(ellipsize("日本語のテキスト", 6), "日本…");
        assert_eq!(width(&ellipsize("日本語のテキスト", 6)), 5);
        assert_eq!(ellipsize("héllo wörld", 5), "héll…");
    }

    #[test]
    fn no_budget_cuts_nothing_and_trims_every_line() {
        let cols = [Column::new("NAME"), Column::new("MESSAGE").shrink(5)];
        let long = "x".repeat(300);
        let text = render(&cols, &rows(&[&["a", &long], &["bb", ""]]), 0, true, None);
        assert_eq!(text, format!("NAME  MESSAGE\na     {long}\nbb"));
    }

    #[test]
    fn the_widest_shrinkable_column_gives_way_first() {
        let cols = [
            Column::new("ID"),
            Column::new("NAME").shrink(6),
            Column::new("MESSAGE").shrink(8),
        ];
        // Natural: 2 + 2 + 10 + 2 + 30 = 46; at 30 the message gives 16 before the name gives any.
        let text = render(
            &cols,
            &rows(&[&["1", "name-is-10", &"m".repeat(30)]]),
            0,
            true,
            Some(30),
        );
        check(&text, 30);
        let line = text.lines().nth(1).unwrap();
        assert_eq!(line, format!("1   name-is-10  {}…", "m".repeat(13)));
        // Narrower still: both shrink, evenly, to widths of 9 and 9.
        let text = render(
            &cols,
            &rows(&[&["1", "name-is-10", &"m".repeat(30)]]),
            0,
            true,
            Some(24),
        );
        check(&text, 24);
        assert_eq!(text.lines().nth(1).unwrap(), "1   name-is-…  mmmmmmmm…");
    }

    #[test]
    fn the_filling_column_takes_the_space_the_others_leave() {
        let cols = [
            Column::new("ID"),
            Column::new("JOB").shrink(8),
            Column::new("MESSAGE").fill(10),
        ];
        let data = rows(&[&["1", &"j".repeat(30), &"m".repeat(60)]]);
        // 2 + 30 + 60 + 4 = 96: at 80 the job name gives all 16, the message stays whole.
        let t = render(&cols, &data, 0, true, Some(80));
        check(&t, 80);
        assert_eq!(
            t.lines().nth(1),
            Some(format!("1   {}…  {}", "j".repeat(13), "m".repeat(60)).as_str())
        );
        // At 50 the job name is at its minimum (8) and the message takes the 36 left.
        let t = render(&cols, &data, 0, true, Some(50));
        check(&t, 50);
        assert_eq!(
            t.lines().nth(1),
            Some(format!("1   jjjjjjj…  {}…", "m".repeat(35)).as_str())
        );
    }

    #[test]
    fn minimums_hold_and_headers_are_never_cut() {
        let cols = [Column::new("WHEN"), Column::new("DESCRIPTION").shrink(4)];
        let text = render(
            &cols,
            &rows(&[&["2026-01-01", &"d".repeat(50)]]),
            0,
            true,
            Some(20),
        );
        // The header (11) is the floor, not 4: 10 + 2 + 11 = 23 does not fit in 20, and there
        // is nothing to drop, so the kept column gives way too, down to its header.
        assert_eq!(text, "WHEN     DESCRIPTION\n2026-0…  dddddddddd…");
        let text = render(
            &cols,
            &rows(&[&["2026-01-01", &"d".repeat(50)]]),
            0,
            true,
            Some(30),
        );
        assert_eq!(
            text,
            format!("WHEN        DESCRIPTION\n2026-01-01  {}…", "d".repeat(17))
        );
    }

    #[test]
    fn droppable_columns_go_lowest_rank_first_only_when_shrinking_is_not_enough() {
        let cols = [
            Column::new("JOB").shrink(5),
            Column::new("CATEGORY").drop(2),
            Column::new("PRI").drop(1),
            Column::new("STATUS"),
        ];
        let data = rows(&[&["a-long-job-name", "backups", "5", "success"]]);
        // 15 + 8 + 3 + 7 + 6 gaps = 39: all fit.
        assert_eq!(
            render(&cols, &data, 0, true, Some(39)).lines().nth(1),
            Some("a-long-job-name  backups   5    success")
        );
        // At 34 the job name shrinks; nothing is dropped while shrinking suffices.
        let t = render(&cols, &data, 0, true, Some(34));
        assert_eq!(t.lines().nth(1), Some("a-long-jo…  backups   5    success"));
        // At 28 shrinking is not enough (5 + 8 + 3 + 7 + 6 = 29): PRI (rank 1) goes first.
        let t = render(&cols, &data, 0, true, Some(28));
        assert_eq!(t.lines().next(), Some("JOB        CATEGORY  STATUS"));
        // At 22, CATEGORY goes too, and the job name takes the room left.
        let t = render(&cols, &data, 0, true, Some(22));
        assert_eq!(t, "JOB            STATUS\na-long-job-n…  success");
        check(&t, 22);
    }

    #[test]
    fn a_terminal_too_narrow_for_the_kept_columns_still_gets_no_long_line() {
        let cols = [
            Column::new("SCHEDULED"),
            Column::new("DURATION"),
            Column::new("EXIT"),
        ];
        let data = rows(&[&["2026-12-04 14:59:31 UTC", "1m 20s", "0"]]);
        for budget in [1, 5, 10, 20, 30] {
            check(&render(&cols, &data, 2, true, Some(budget)), budget);
        }
        // Down to the headers first: 9 + 2 + 8 + 2 + 4 = 25.
        let t = render(&cols, &data, 0, true, Some(25));
        assert_eq!(t, "SCHEDULED  DURATION  EXIT\n2026-12-…  1m 20s    0");
    }

    #[test]
    fn unicode_is_measured_by_display_width() {
        let cols = [Column::new("NAME").shrink(4), Column::new("N")];
        let data = rows(&[&["日本語のジョブ名", "1"], &["ascii", "2"]]);
        let t = render(&cols, &data, 0, true, Some(12));
        check(&t, 12);
        // 12 - 2 gap - 1 = 9 for the name: four CJK characters (8) and the ellipsis.
        assert_eq!(t.lines().nth(1), Some("日本語の…  1"));
        assert_eq!(t.lines().nth(2), Some("ascii      2"));
        // An odd width: a wide character that would overflow by one is left out.
        let t = render(&cols, &data, 0, true, Some(11));
        assert_eq!(t.lines().nth(1), Some("日本語…   1"));
    }

    #[test]
    fn cells_stay_on_one_line_and_cannot_send_escapes() {
        let cols = [Column::new("A"), Column::new("B")];
        let t = render(
            &cols,
            &rows(&[&["x\ny", "tab\there\x1b[31mred\r\n"]]),
            0,
            false,
            None,
        );
        assert_eq!(t, "x⏎y  tab here\u{fffd}[31mred");
    }

    #[test]
    fn indent_counts_against_the_width() {
        let cols = [Column::new("JOB").shrink(3), Column::new("AT")];
        let data = rows(&[&["j".repeat(40).as_str(), "2026-12-04T15:00:00Z"]]);
        let t = render(&cols, &data, 2, true, Some(40));
        check(&t, 40);
        assert!(t.lines().all(|l| l.starts_with("  ")), "{t}");
        assert_eq!(t.lines().nth(1).map(width), Some(40));
    }
}
