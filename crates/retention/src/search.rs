//! Finding records: by time, participant, conversation and words. The
//! archive is encrypted at rest, so search decrypts as it goes rather than
//! keeping a plaintext index on disk.

use serde::Serialize;

use crate::archive::Archive;
use crate::record::Record;
use crate::RetentionError;

/// Which records.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Filter {
    /// Sent at or after (ms).
    pub from: Option<u64>,
    /// Sent before (ms).
    pub until: Option<u64>,
    /// Sent or received by this user (id or username).
    pub user: Option<String>,
    /// In this conversation (id).
    pub conversation: Option<String>,
    /// Every word appears (case-insensitive) in the text, file name, emoji or location.
    pub text: Option<String>,
}

impl Filter {
    /// Whether a record passes. Archive events (deletions, holds) pass only
    /// filters that do not name a user, conversation or words.
    pub fn matches(&self, r: &Record) -> bool {
        // The archive's own access log is read with `retention access-log`.
        if r.kind == "access" {
            return false;
        }
        if !r.is_message() && (self.user.is_some() || self.conversation.is_some() || self.text.is_some()) {
            return false;
        }
        self.from.is_none_or(|t| r.time() >= t)
            && self.until.is_none_or(|t| r.time() < t)
            && self.user.as_deref().is_none_or(|u| r.involves(u))
            && self.conversation.as_deref().is_none_or(|c| r.conversation_id.as_deref() == Some(c))
            && self.text.as_deref().is_none_or(|q| {
                let hay = searchable(r).to_lowercase();
                q.split_whitespace().all(|w| hay.contains(&w.to_lowercase()))
            })
    }
}

fn searchable(r: &Record) -> String {
    let mut s = String::new();
    for part in [r.text.as_deref(), r.emoji.as_deref(), r.file.as_ref().map(|f| f.name.as_str())].into_iter().flatten()
    {
        s.push_str(part);
        s.push(' ');
    }
    if let Some(l) = &r.location {
        s.push_str(&l.to_string());
    }
    s
}

/// Matching records with their leaf index, in log order.
pub async fn search(archive: &Archive, filter: &Filter) -> Result<Vec<(u64, Record)>, RetentionError> {
    let mut hits = Vec::new();
    archive
        .for_each(|i, r| {
            if filter.matches(&r) {
                hits.push((i, r));
            }
        })
        .await?;
    Ok(hits)
}
