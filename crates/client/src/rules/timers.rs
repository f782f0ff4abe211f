//! Message timers: the conversation's defaults and the security group's
//! maxima (the relay enforces the same maxima on what it accepts).

/// The timers a message is sent with: explicit ones, or the conversation's
/// defaults when both are 0; then clamped to the group's maxima (0 = no
/// limit). A group maximum TTL makes every message expire, even one sent
/// with none.
pub fn effective(requested: (u32, u32), defaults: (u32, u32), max_ttl: u32, max_bor: u32) -> (u32, u32) {
    let (ttl, bor) = if requested == (0, 0) { defaults } else { requested };
    let ttl = match max_ttl {
        0 => ttl,
        max if ttl == 0 => max,
        max => ttl.min(max),
    };
    let bor = match max_bor {
        0 => bor,
        max => bor.min(max),
    };
    (ttl, bor)
}

/// When a message sent at `timestamp` with `ttl_secs` expires (ms).
pub fn expires_at(timestamp: u64, ttl_secs: u32) -> Option<u64> {
    (ttl_secs > 0).then(|| timestamp.saturating_add(u64::from(ttl_secs) * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_timers_win_over_defaults() {
        assert_eq!(effective((60, 0), (3600, 30), 0, 0), (60, 0));
        assert_eq!(effective((0, 0), (3600, 30), 0, 0), (3600, 30));
    }

    #[test]
    fn group_maxima_clamp_and_impose_a_ttl() {
        assert_eq!(effective((0, 0), (0, 0), 86_400, 0), (86_400, 0));
        assert_eq!(effective((999_999, 600), (0, 0), 86_400, 60), (86_400, 60));
        assert_eq!(effective((10, 5), (0, 0), 86_400, 60), (10, 5));
    }

    #[test]
    fn expiry_saturates() {
        assert_eq!(expires_at(1_000, 0), None);
        assert_eq!(expires_at(1_000, 2), Some(3_000));
        assert_eq!(expires_at(u64::MAX, u32::MAX), Some(u64::MAX));
    }
}
