//! Chains: a job triggered by another job's end (`--after JOB[:success|failure|any]`). A job's
//! `after` list holds each parent as `NAME:ON`, within the job's system; the graph they form
//! must have no cycle.

use std::collections::{BTreeMap, BTreeSet};

use super::Status;

closed_set!(
    /// Which of a parent's ends trigger the child.
    On { Success => "success", Failure => "failure", Any => "any" }
);

impl On {
    /// Whether a parent's final end with `status` triggers the child. A run stopped by a person
    /// (cancelled) or by its runner's shutdown (interrupted) triggers nothing.
    pub fn matches(self, status: Status) -> bool {
        match self {
            On::Success => status == Status::Success,
            On::Failure => matches!(status, Status::Failed | Status::Timeout),
            On::Any => matches!(status, Status::Success | Status::Failed | Status::Timeout),
        }
    }
}

/// One parent of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub job: String,
    pub on: On,
}

impl After {
    /// `NAME` (on success) or `NAME:success|failure|any`.
    pub fn parse(text: &str) -> Result<After, String> {
        let text = text.trim();
        let (job, on) = match text.rsplit_once(':') {
            Some((job, on)) => (job.trim(), on.trim().parse::<On>()?),
            None => (text, On::Success),
        };
        if job.is_empty() {
            return Err(format!(
                "--after {text:?}: name the job (JOB or JOB:success|failure|any)"
            ));
        }
        Ok(After {
            job: job.to_string(),
            on,
        })
    }

    /// As stored and shown: `NAME:ON`.
    pub fn canonical(&self) -> String {
        format!("{}:{}", self.job, self.on)
    }
}

/// Every job's entries as stored; entries that do not parse are left out (they were checked
/// when written).
pub fn parents(after: &[String]) -> Vec<After> {
    after.iter().filter_map(|a| After::parse(a).ok()).collect()
}

/// The first cycle among `jobs` (name → its parents' names), as the names along it, the first
/// repeated at the end (`a → b → a`); None when there is none.
pub fn find_cycle(jobs: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        jobs: &BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|p| p == name).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(name.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(name.to_string(), Mark::Visiting);
        path.push(name.to_string());
        for parent in jobs.get(name).into_iter().flatten() {
            if let Some(cycle) = visit(parent, jobs, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(name.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in jobs.keys() {
        let mut path = Vec::new();
        if let Some(mut cycle) = visit(name, jobs, &mut marks, &mut path) {
            // Shown as "runs after" reads: a → its parent → … → a; reversed, the order it runs.
            cycle.reverse();
            return Some(cycle);
        }
    }
    None
}

/// The problems of the chains among `jobs` (name → its `after` entries): an entry that does not
/// parse, a parent that is not one of `jobs`, a job after itself, a cycle.
pub fn problems(jobs: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut found = Vec::new();
    let names: BTreeSet<&String> = jobs.keys().collect();
    let mut graph = BTreeMap::new();
    for (name, after) in jobs {
        let mut parents = Vec::new();
        for entry in after {
            match After::parse(entry) {
                Ok(a) if &a.job == name => {
                    found.push(format!("job {name:?} cannot run after itself"))
                }
                Ok(a) if !names.contains(&a.job) => found.push(format!(
                    "job {name:?} runs after {:?}, which is not a job of its system",
                    a.job
                )),
                Ok(a) => parents.push(a.job),
                Err(e) => found.push(format!("job {name:?}: {e}")),
            }
        }
        graph.insert(name.clone(), parents);
    }
    if let Some(cycle) = find_cycle(&graph) {
        found.push(format!(
            "the chains form a cycle: {} (each runs after the one before it)",
            cycle.join(" → ")
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, after)| (n.to_string(), after.iter().map(|a| a.to_string()).collect()))
            .collect()
    }

    #[test]
    fn an_entry_names_a_job_and_which_ends_trigger() {
        assert_eq!(After::parse("a").unwrap().canonical(), "a:success");
        assert_eq!(
            After::parse(" a : failure ").unwrap().canonical(),
            "a:failure"
        );
        assert_eq!(After::parse("a:ANY").unwrap().on, On::Any);
        assert!(After::parse("a:sometimes")
            .unwrap_err()
            .contains("expected one of: success, failure, any"));
        assert!(After::parse(":success").is_err());
        assert!(On::Success.matches(Status::Success));
        assert!(!On::Success.matches(Status::Failed));
        assert!(On::Failure.matches(Status::Timeout));
        assert!(!On::Any.matches(Status::Cancelled));
        assert!(!On::Any.matches(Status::Interrupted));
    }

    #[test]
    fn cycles_unknown_parents_and_self_are_problems() {
        assert!(problems(&graph(&[
            ("a", &[]),
            ("b", &["a:success"]),
            ("c", &["a:failure", "b"])
        ]))
        .is_empty());
        let found = problems(&graph(&[("a", &["c"]), ("b", &["a"]), ("c", &["b:any"])]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("the chains form a cycle: "),
            "{found:?}"
        );
        for name in ["a", "b", "c"] {
            assert!(found[0].contains(name));
        }
        assert_eq!(
            problems(&graph(&[("a", &["a"])])),
            ["job \"a\" cannot run after itself"]
        );
        assert_eq!(
            problems(&graph(&[("a", &["ghost"])])),
            ["job \"a\" runs after \"ghost\", which is not a job of its system"]
        );
    }

    #[test]
    fn a_cycle_is_shown_in_the_order_it_would_run() {
        // b runs after a, a after b.
        let cycle = find_cycle(&graph(&[("a", &["b"]), ("b", &["a"])])).unwrap();
        assert_eq!(cycle.len(), 3);
        assert_eq!(cycle.first(), cycle.last());
    }
}
