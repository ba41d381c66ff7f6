//! Chains at the command line: `--after` entries as given, the checks every change to a
//! system's jobs passes (parents exist, no cycle), and a job's children.

use std::collections::BTreeMap;

use crate::exit::Failure;
use crate::model::chain::{self, After};
use crate::store::Job;

/// `--after` as given (repeatable): each `JOB[:success|failure|any]`, kept as `JOB:ON`, in
/// order, without repeats; a lone `none` clears the list.
pub fn parse_after(given: &[String]) -> Result<Vec<String>, Failure> {
    if given.len() == 1 && matches!(given[0].trim(), "none" | "") {
        return Ok(Vec::new());
    }
    let mut out: Vec<String> = Vec::new();
    for entry in given {
        let after = After::parse(entry).map_err(|e| Failure::usage(format!("--after: {e}")))?;
        let entry = after.canonical();
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// The chains of a system's jobs once `changed` are written (replacing the jobs of the same
/// ids, or added) and `removed` are gone: a usage failure naming each problem (a parent that is not
/// a job of the system, a cycle such as `a → b → a`) or Ok. With `partial` (`apply --check`,
/// which sees only the files) a parent it does not see is taken to exist.
pub fn check(
    existing: &[Job],
    changed: &[&Job],
    removed: &[i64],
    partial: bool,
) -> Result<(), Failure> {
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in existing {
        let replaced = changed.iter().any(|c| c.id != 0 && c.id == job.id);
        if !replaced && !removed.contains(&job.id) {
            graph.insert(job.name.clone(), job.after.clone());
        }
    }
    for job in changed {
        graph.insert(job.name.clone(), job.after.clone());
    }
    if partial {
        let parents: Vec<String> = (graph.values().flat_map(|a| chain::parents(a)))
            .map(|p| p.job)
            .collect();
        for p in parents {
            graph.entry(p).or_default();
        }
    }
    let problems = chain::problems(&graph);
    if problems.is_empty() {
        return Ok(());
    }
    Err(Failure::usage(problems.join("; ")))
}

/// The jobs among `jobs` that run after `name`, each as `CHILD:ON`.
pub fn children(jobs: &[Job], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for job in jobs {
        for parent in chain::parents(&job.after) {
            if parent.job == name {
                out.push(format!("{}:{}", job.name, parent.on));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, name: &str, after: &[&str]) -> Job {
        let mut j = Job::new("default", name, "@never", "shell");
        j.id = id;
        j.after = after.iter().map(|a| a.to_string()).collect();
        j
    }

    #[test]
    fn entries_are_kept_canonical_and_none_clears() {
        let given = |v: &[&str]| parse_after(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            given(&["a", "b:failure", "a:success"]).unwrap(),
            ["a:success", "b:failure"]
        );
        assert!(given(&["none"]).unwrap().is_empty());
        let err = given(&["a:maybe"]).unwrap_err().to_string();
        assert!(
            err.starts_with("--after: ") && err.contains("success, failure, any"),
            "{err}"
        );
    }

    #[test]
    fn a_change_that_makes_a_cycle_or_loses_a_parent_is_refused() {
        let existing = [job(1, "a", &[]), job(2, "b", &["a:success"])];
        assert!(check(&existing, &[&job(0, "c", &["b:any"])], &[], false).is_ok());
        let err = check(&existing, &[&job(1, "a", &["b:failure"])], &[], false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cycle: ") && err.contains("a → b → a"),
            "{err}"
        );
        let err = check(&existing, &[], &[1], false).unwrap_err().to_string();
        assert!(
            err.contains("runs after \"a\", which is not a job"),
            "{err}"
        );
        // Renaming the parent leaves its child behind.
        assert!(check(&existing, &[&job(1, "z", &[])], &[], false).is_err());
        assert_eq!(children(&existing, "a"), ["b:success"]);
        // Only the files in view: a parent elsewhere is fine, a cycle is not.
        assert!(check(&[], &[&job(0, "c", &["ghost"])], &[], true).is_ok());
        assert!(check(&[], &[&job(0, "c", &["c"])], &[], true).is_err());
    }
}
