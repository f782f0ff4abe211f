//! `verify` on a WORM archive (an S3 bucket with Object Lock): the bucket's
//! lock settings, every object version, and every version's retention. A
//! write over an archived key leaves a second version (the locked first one
//! still holds the original); a retention shortened below the bucket's
//! default, or a governance-mode lock someone may bypass, is named.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aws::{format_time, S3Bucket};
use crate::verify::VerifyReport;
use crate::RetentionError;

/// The device's own state, rewritten as the network policy moves on: its
/// versions are expected.
const MUTABLE: &[&str] = &["policy-seen.json"];

/// Slack for clocks when comparing a retention with the default (ms).
const SLACK_MS: u64 = 5 * 60 * 1000;

/// What verify found in the bucket itself.
#[derive(Debug, Default, Serialize)]
pub struct WormReport {
    /// `COMPLIANCE`, `GOVERNANCE`, or none.
    pub mode: Option<String>,
    /// The bucket's default retention (days).
    pub default_days: Option<u64>,
    /// Object versions holding data.
    pub versions: u64,
    /// Delete markers (segments retired by a purge, files deleted).
    pub delete_markers: u64,
    /// Keys written over after they were archived.
    pub overwritten: Vec<String>,
    /// Versions whose retention was checked.
    pub retention_checked: u64,
}

impl VerifyReport {
    /// Checks the bucket the archive is in: Object Lock in compliance mode
    /// with a default retention, one version per archived key, and each
    /// version locked at least as long as the default from when it was written.
    pub async fn check_bucket(&mut self, bucket: &S3Bucket) -> Result<(), RetentionError> {
        let mut worm = WormReport::default();
        let recorded = self.worm_recorded_days;
        match bucket.lock().await? {
            // An ordinary bucket: nothing to check here (verify says so),
            // unless the archive recorded it as locked.
            None => {
                if let Some(days) = recorded {
                    self.problem(format!(
                        "the archive recorded its bucket as locked ({days} days by default), but the bucket reports no Object Lock now"
                    ));
                }
                self.worm = Some(worm);
                return Ok(());
            }
            Some(lock) => {
                if lock.mode.as_deref() != Some("COMPLIANCE") {
                    self.problem(format!(
                        "the bucket's default lock is {}, not COMPLIANCE: an account allowed to bypass governance can delete records",
                        lock.mode.as_deref().unwrap_or("missing")
                    ));
                }
                if lock.days.is_none() {
                    self.problem("the bucket has no default retention: new records are not locked".into());
                }
                if let Some(days) = recorded.filter(|d| lock.days.is_none_or(|now| now < *d)) {
                    self.problem(format!(
                        "the bucket's default retention was lowered: {} days now, {days} when the archive recorded it; versions written since are locked for less",
                        lock.days.unwrap_or(0)
                    ));
                }
                worm.mode = lock.mode;
                worm.default_days = lock.days;
            }
        }
        let mut by_key: BTreeMap<String, Vec<crate::aws::ObjectVersion>> = BTreeMap::new();
        for v in bucket.versions().await? {
            if v.delete_marker {
                worm.delete_markers += 1;
            } else {
                worm.versions += 1;
                by_key.entry(v.key.clone()).or_default().push(v);
            }
        }
        for (key, mut versions) in by_key {
            versions.sort_by_key(|v| v.last_modified);
            if versions.len() > 1 && !MUTABLE.contains(&key.as_str()) {
                let first = versions.first().map(|v| (v.version_id.clone(), v.last_modified)).unwrap_or_default();
                self.problem(format!(
                    "{key} has {} versions: it was written over after it was archived (the first version, {} of {}, still holds the original)",
                    versions.len(),
                    first.0,
                    format_time(first.1)
                ));
                worm.overwritten.push(key.clone());
            }
            for v in &versions {
                worm.retention_checked += 1;
                let days = worm.default_days.max(recorded);
                let expected = days.map(|d| v.last_modified.saturating_add(d.saturating_mul(86_400_000)));
                match bucket.retention(&key, &v.version_id).await? {
                    None => self.problem(format!("{key} (version {}) is not locked", v.version_id)),
                    Some(r) => {
                        if r.mode != "COMPLIANCE" {
                            self.problem(format!(
                                "{key} (version {}) is locked in {} mode, which can be bypassed",
                                v.version_id, r.mode
                            ));
                        }
                        if let Some(expected) = expected.filter(|e| r.until.saturating_add(SLACK_MS) < *e) {
                            self.problem(format!(
                                "{key} (version {}): its retention ends {}, before the bucket's default of {} days from when it was written ({}): shortened, or written before the default was raised",
                                v.version_id,
                                format_time(r.until),
                                days.unwrap_or(0),
                                format_time(expected)
                            ));
                        }
                    }
                }
            }
        }
        self.worm = Some(worm);
        Ok(())
    }
}
