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

/// What the sender is told when the group's maxima changed the timers
/// asked for (`asked`, after conversation defaults) into `applied`.
pub fn clamped(asked: (u32, u32), applied: (u32, u32)) -> Vec<String> {
    let mut out = Vec::new();
    if asked.0 != applied.0 {
        out.push(if asked.0 == 0 {
            format!("your security group makes every message disappear: this one expires {} s after sending", applied.0)
        } else {
            format!(
                "your security group allows disappearing timers up to {} s: this message expires after {} s, not {} s",
                applied.0, applied.0, asked.0
            )
        });
    }
    if asked.1 != applied.1 {
        out.push(format!(
            "your security group allows burn-on-read up to {} s: this message burns {} s after reading, not {} s",
            applied.1, applied.1, asked.1
        ));
    }
    out
}

/// When a message sent at `timestamp` with `ttl_secs` expires (ms).
pub fn expires_at(timestamp: u64, ttl_secs: u32) -> Option<u64> {
    (ttl_secs > 0).then(|| timestamp.saturating_add(u64::from(ttl_secs) * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clamped_timer_is_explained() {
        assert!(clamped((60, 0), (60, 0)).is_empty());
        let forced = clamped((0, 0), (3600, 0));
        assert!(forced.len() == 1 && forced.iter().all(|n| n.contains("every message disappear")), "{forced:?}");
        let shortened = clamped((86_400, 600), (3600, 60));
        assert_eq!(shortened.len(), 2, "{shortened:?}");
        assert!(
            shortened.iter().any(|n| n.contains("not 86400 s")) && shortened.iter().any(|n| n.contains("not 600 s"))
        );
    }

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
