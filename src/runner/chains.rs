//! Chains as the runner sees them: for each job, the jobs its end triggers and on which ends
//! (`--after`). Rebuilt from the calendar's jobs at every reload, so an end finds its children
//! without walking every job.

use std::collections::HashMap;

use crate::model::chain::{self, On};
use crate::store::{Job, Status};

#[derive(Default)]
pub struct Chains {
    /// (system, parent's name) → (child's id, which ends of the parent trigger it).
    children: HashMap<(String, String), Vec<(i64, On)>>,
}

impl Chains {
    /// The chains among `jobs` (the jobs this runner schedules).
    pub fn load<'a>(jobs: impl Iterator<Item = &'a Job>) -> Chains {
        let mut children: HashMap<(String, String), Vec<(i64, On)>> = HashMap::new();
        for job in jobs {
            for parent in chain::parents(&job.after) {
                (children
                    .entry((job.system.clone(), parent.job))
                    .or_default())
                .push((job.id, parent.on));
            }
        }
        for list in children.values_mut() {
            list.sort_unstable_by_key(|(id, _)| *id);
        }
        Chains { children }
    }

    /// The children of job `name` of `system` that a final end with `status` triggers.
    pub fn fired_by(&self, system: &str, name: &str, status: Status) -> Vec<i64> {
        let key = (system.to_string(), name.to_string());
        let mut ids: Vec<i64> = (self.children.get(&key).into_iter().flatten())
            .filter(|(_, on)| on.matches(status))
            .map(|(id, _)| *id)
            .collect();
        // A child listing its parent twice (`a:success`, `a:failure`) starts once.
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_fires_the_children_whose_condition_it_meets() {
        let mut a = Job::new("default", "a", "* * * * *", "shell");
        a.id = 1;
        let mut b = Job::new("default", "b", "@never", "shell");
        b.id = 2;
        b.after = vec!["a:success".into()];
        let mut c = Job::new("default", "c", "@never", "shell");
        c.id = 3;
        c.after = vec!["a:failure".into()];
        let mut d = Job::new("default", "d", "@never", "shell");
        d.id = 4;
        d.after = vec!["a:any".into()];
        let mut other = Job::new("elsewhere", "e", "@never", "shell");
        other.id = 5;
        other.after = vec!["a".into()];
        let chains = Chains::load([&a, &b, &c, &d, &other].into_iter());
        assert_eq!(chains.fired_by("default", "a", Status::Success), [2, 4]);
        assert_eq!(chains.fired_by("default", "a", Status::Failed), [3, 4]);
        assert_eq!(chains.fired_by("default", "a", Status::Timeout), [3, 4]);
        assert!(chains
            .fired_by("default", "a", Status::Cancelled)
            .is_empty());
        assert!(chains.fired_by("default", "b", Status::Success).is_empty());
        assert_eq!(chains.fired_by("elsewhere", "a", Status::Success), [5]);
    }
}
