//! Which triggers are due when (pure: time is an argument). The plan follows what the node
//! serves, keeping each trigger's next tick across changes, so a deploy at the moment of a
//! tick neither skips nor repeats it.

use std::sync::Arc;

use outpost_core::cron::Trigger;

/// One tick a node should try to fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Due {
    /// The app the trigger belongs to.
    pub(crate) app: Arc<str>,
    /// The trigger.
    pub(crate) trigger: Trigger,
    /// The trigger's key, as the origin knows it.
    pub(crate) key: String,
    /// The tick: its scheduled time, unix seconds.
    pub(crate) tick: u64,
}

struct Entry {
    app: Arc<str>,
    trigger: Trigger,
    key: String,
    /// The next tick to fire; `None` once the schedule has no more.
    next: Option<u64>,
}

/// Every trigger of the apps a node serves, with its next tick.
#[derive(Default)]
pub(crate) struct Plan {
    entries: Vec<Entry>,
}

impl Plan {
    /// Follow `apps` (each app with its triggers), as of `now` (unix seconds): a trigger kept
    /// keeps its next tick, a new one starts with its first tick after `now`, a gone one goes.
    pub(crate) fn follow<'a>(
        &mut self,
        apps: impl IntoIterator<Item = (&'a Arc<str>, &'a [Trigger])>,
        now: u64,
    ) {
        let mut entries: Vec<Entry> = Vec::new();
        for (app, triggers) in apps {
            for trigger in triggers {
                let key = trigger.key();
                if entries.iter().any(|e| e.app == *app && e.key == key) {
                    continue;
                }
                let kept = self
                    .entries
                    .iter()
                    .position(|e| e.app == *app && e.key == key)
                    .map(|i| self.entries.swap_remove(i));
                entries.push(kept.unwrap_or_else(|| Entry {
                    app: app.clone(),
                    trigger: trigger.clone(),
                    next: trigger.schedule.next_after(now),
                    key,
                }));
            }
        }
        self.entries = entries;
    }

    /// The ticks due at `now`: for each trigger whose next tick has come, the latest of its
    /// ticks at or before `now` (a node that fell behind claims the newest tick, not a
    /// backlog: the origin counts the ones in between as missed). Each trigger then waits for
    /// its first tick after `now`.
    pub(crate) fn due(&mut self, now: u64) -> Vec<Due> {
        let mut due = Vec::new();
        for entry in &mut self.entries {
            let Some(next) = entry.next.filter(|next| *next <= now) else {
                continue;
            };
            let tick = entry
                .trigger
                .schedule
                .latest_at_or_before(now)
                .unwrap_or(next)
                .max(next);
            due.push(Due {
                app: entry.app.clone(),
                trigger: entry.trigger.clone(),
                key: entry.key.clone(),
                tick,
            });
            entry.next = entry.trigger.schedule.next_after(now);
        }
        due
    }

    /// The earliest next tick of any trigger, if any has one.
    pub(crate) fn next_tick(&self) -> Option<u64> {
        self.entries.iter().filter_map(|e| e.next).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_796_342_400;

    fn app(name: &str, triggers: &[(&str, &str)]) -> (Arc<str>, Vec<Trigger>) {
        let triggers = triggers
            .iter()
            .map(|(cron, path)| Trigger::new(cron, path).unwrap())
            .collect();
        (name.into(), triggers)
    }

    fn follow(plan: &mut Plan, apps: &[(Arc<str>, Vec<Trigger>)], now: u64) {
        plan.follow(apps.iter().map(|(a, t)| (a, t.as_slice())), now);
    }

    fn ticks(due: Vec<Due>) -> Vec<(String, u64)> {
        due.into_iter().map(|d| (d.key, d.tick)).collect()
    }

    #[test]
    fn each_tick_is_due_once_when_its_time_comes() {
        let mut plan = Plan::default();
        follow(
            &mut plan,
            &[app("shop", &[("* * * * * *", "/s"), ("*/5 * * * *", "/m")])],
            T,
        );
        assert_eq!(plan.next_tick(), Some(T + 1));
        assert!(plan.due(T).is_empty());
        assert_eq!(
            ticks(plan.due(T + 1)),
            [("* * * * * * /s".to_string(), T + 1)]
        );
        assert!(plan.due(T + 1).is_empty(), "a tick is due once");
        assert_eq!(
            ticks(plan.due(T + 2)),
            [("* * * * * * /s".to_string(), T + 2)]
        );
        let at_five_minutes = plan.due(T + 300);
        assert_eq!(
            ticks(at_five_minutes),
            [
                ("* * * * * * /s".to_string(), T + 300),
                ("*/5 * * * * /m".to_string(), T + 300)
            ],
            "a node that fell behind claims the newest tick only"
        );
        assert_eq!(plan.next_tick(), Some(T + 301));
    }

    #[test]
    fn a_redeploy_keeps_next_ticks_and_a_new_trigger_starts_after_now() {
        let mut plan = Plan::default();
        let v1 = [app("shop", &[("* * * * * *", "/s")])];
        follow(&mut plan, &v1, T);
        // The routes change at the tick's second, before it was fired: still due, once.
        let v2 = [
            app("shop", &[("* * * * * *", "/s"), ("* * * * * *", "/new")]),
            app("blog", &[("* * * * * *", "/s")]),
        ];
        follow(&mut plan, &v2, T + 1);
        let due = ticks(plan.due(T + 1));
        assert_eq!(due, [("* * * * * * /s".to_string(), T + 1)]);
        let due = plan.due(T + 2);
        assert_eq!(due.len(), 3);
        assert!(due.iter().any(|d| &*d.app == "blog"));
        // An app gone, and a trigger gone from an app: nothing of theirs is due.
        follow(&mut plan, &[app("shop", &[("* * * * * *", "/new")])], T + 2);
        assert_eq!(
            ticks(plan.due(T + 3)),
            [("* * * * * * /new".to_string(), T + 3)]
        );
        follow(&mut plan, &[], T + 3);
        assert!(plan.due(T + 10).is_empty());
        assert_eq!(plan.next_tick(), None);
    }
}
