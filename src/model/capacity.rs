//! The queue cap's decisions (issue 9), pure: whether a request of `incoming` writes is
//! refused, and whether the disk is too full. `ingest::capacity` reads the numbers.

/// Why `incoming` more writes are refused, if they are (pure).
pub fn refusal(
    queued: i64,
    max_queued: i64,
    incoming: u64,
    disk_reason: Option<&str>,
) -> Option<String> {
    let queued = queued.max(0) as u64;
    let max = max_queued.max(0) as u64;
    if max > 0 && queued.saturating_add(incoming) > max {
        return Some(format!(
            "the queue is full: {queued} writes not yet sent, and {incoming} more would pass \
             queue.max_queued ({max}); nothing was stored, try again once some are sent"
        ));
    }
    disk_reason.map(|r| format!("the queue is full: {r}; nothing was stored, try again later"))
}

/// Why the disk is too full for new writes, if it is (pure).
pub fn disk_reason(free: u64, min_free: u64) -> Option<String> {
    (min_free > 0 && free < min_free).then(|| {
        format!(
            "only {free} bytes are free on the database's filesystem, less than \
             queue.min_free_disk ({min_free} bytes)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_would_pass_the_cap_is_refused_whole() {
        assert_eq!(refusal(3, 5, 2, None), None);
        let refused = refusal(3, 5, 3, None).unwrap();
        assert!(refused.contains("queue.max_queued (5)"), "{refused}");
        assert_eq!(refusal(10, 0, 1000, None), None, "0: no cap");
        let disk = disk_reason(10, 100).unwrap();
        assert!(
            refusal(0, 5, 1, Some(&disk))
                .unwrap()
                .contains("queue.min_free_disk (100 bytes)")
        );
        assert_eq!(disk_reason(10, 0), None);
        assert_eq!(disk_reason(100, 100), None);
    }
}
