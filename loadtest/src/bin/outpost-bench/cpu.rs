//! CPU time a server spends: its process's user + system time, plus that of every process below
//! it (nginx's workers), read from /proc. Divided by the requests it answered over the same span,
//! it gives CPU per request, which the shared, noisy machine disturbs far less than req/s.

/// Clock ticks per second for /proc times (USER_HZ; 100 on every Linux this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds of `pid` and its descendants.
pub(crate) fn process_tree_seconds(pid: u32) -> f64 {
    let mut total = 0u64;
    let mut frontier = vec![pid];
    while let Some(current) = frontier.pop() {
        if let Some(ticks) = own_ticks(current) {
            total += ticks;
        }
        frontier.extend(children(current));
    }
    total as f64 / TICKS_PER_SECOND
}

/// utime + stime of one process.
fn own_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            found.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_child_is_counted() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let me = std::process::id();
        let mut counted = false;
        while child.try_wait().unwrap().is_none() {
            let (tree, own) = (process_tree_seconds(me), own_ticks(me).unwrap_or(0));
            let child_ticks = own_ticks(child.id()).unwrap_or(0);
            if child_ticks > 0 {
                // The tree holds the spinning child's time on top of this process's own.
                assert!(tree * TICKS_PER_SECOND >= (own + child_ticks) as f64 - 1.0);
                counted = true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(counted, "the spinning child never showed CPU time");
    }
}
