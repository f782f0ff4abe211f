//! Reading, as a person does it: conversation by conversation with names,
//! times and short message ids; an inbox of what is unread; ids typed as
//! their first few digits (a message's own digits: see [`MESSAGE_TIME_DIGITS`]).

use std::collections::HashMap;

use anyhow::{bail, Context};
use clap::Args;
use strongroom_client::{Client, ViewItem};
use strongroom_crypto::content::{Content, Control};
use strongroom_crypto::ids::{ConversationId, MessageId};

use crate::people::People;
use crate::user::{open, when, ProfileArgs};

/// Digits of a message or conversation id shown in normal output.
pub const SHORT: usize = 8;
/// Fewest digits an abbreviated id may have.
const MIN_PREFIX: usize = 6;
/// A message id's first 12 digits are the time it was made
/// (`MessageId::ordered`), alike for every message of the same minute: its
/// short form is the 8 random digits after them, and abbreviations are
/// matched there.
pub const MESSAGE_TIME_DIGITS: usize = 12;

#[derive(Args)]
pub struct ReadArgs {
    /// Only this conversation (its id, or the first digits of it).
    #[arg(long)]
    pub conversation: Option<String>,
    /// Only what you have not read yet, conversation by conversation.
    #[arg(long)]
    pub unread: bool,
    /// At most this many messages per conversation (the latest).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Do not tell senders you have read their messages.
    #[arg(long)]
    pub no_receipts: bool,
}

fn short(id: &impl ToString) -> String {
    id.to_string().chars().take(SHORT).collect()
}

/// A message id as `read` shows it: the digits after its time.
pub fn short_message(id: &MessageId) -> String {
    id.to_string().chars().skip(MESSAGE_TIME_DIGITS).take(SHORT).collect()
}

/// An id given as the first digits (at least [`MIN_PREFIX`]) of its
/// digits from `skip` on (its short form's), matched against `known`;
/// ambiguous or unknown abbreviations are refused by name.
fn by_prefix<T: Copy + ToString>(
    given: &str,
    known: impl IntoIterator<Item = T>,
    what: &str,
    skip: usize,
) -> anyhow::Result<T> {
    let given = given.trim().to_ascii_lowercase();
    if given.len() < MIN_PREFIX || given.len() > 32 - skip || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "a {what} id is 32 hex digits, or the first {MIN_PREFIX} or more of the short id `strongroom read` shows"
        );
    }
    let mut found: Vec<T> =
        known.into_iter().filter(|id| id.to_string().get(skip..).is_some_and(|d| d.starts_with(&given))).collect();
    found.sort_by_key(|id| id.to_string());
    found.dedup_by_key(|id| id.to_string());
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no {what} on this device has a short id starting with {given}"),
        many => bail!(
            "{} {what}s have short ids starting with {given} ({}); give more digits",
            many.len(),
            many.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A message id, in full or abbreviated: matched only against the
/// messages `read` shows (never receipts, edits or reactions, whose ids a
/// hostile member could choose to collide), and the match is said.
pub async fn message(client: &Client, given: &str) -> anyhow::Result<MessageId> {
    if let Some(id) = MessageId::parse_hex(given.trim()) {
        return Ok(id);
    }
    let shown = client.view(None).await.context("cannot read the messages on this device")?;
    let id = by_prefix(given, shown.iter().map(|i| i.message.message_id), "message", MESSAGE_TIME_DIGITS)?;
    if let Some(m) = shown.iter().map(|i| &i.message).find(|m| m.message_id == id) {
        eprintln!("({given}: message {id}, sent {} in conversation {})", when(m.timestamp), short(&m.conversation));
    }
    Ok(id)
}

/// A conversation id, in full or abbreviated (matched against the
/// conversations the relay lists for you; a full id works offline).
pub async fn conversation(client: &Client, given: &str) -> anyhow::Result<ConversationId> {
    if let Some(id) = ConversationId::parse_hex(given.trim()) {
        return Ok(id);
    }
    let listed = client
        .conversations()
        .await
        .context("cannot list your conversations to match a short id (give the full id to work offline)")?;
    by_prefix(given, listed.iter().map(|c| c.id), "conversation", 0)
}

/// Each conversation's name: the last rename its members sent.
pub fn names_of(items: &[ViewItem]) -> HashMap<ConversationId, String> {
    let mut out = HashMap::new();
    for i in items {
        if let Content::Control(Control::Renamed(name)) = &i.message.content {
            out.insert(i.message.conversation, name.clone());
        }
    }
    out
}

/// What a message says, in words: names for people, what a reply answers.
/// Safe for a terminal (see [`crate::people::clean`]).
fn text(people: &People, item: &ViewItem, all: &[ViewItem]) -> String {
    crate::people::clean(&raw_text(people, item, all))
}

fn raw_text(people: &People, item: &ViewItem, all: &[ViewItem]) -> String {
    match &item.message.content {
        Content::Reply { in_reply_to, text } => {
            let answered = all.iter().find(|i| i.message.message_id == *in_reply_to).map(|i| {
                let said = people.describe(&i.message.content);
                let said: String =
                    said.chars().take(40).collect::<String>() + if said.chars().count() > 40 { "…" } else { "" };
                format!("{} \"{said}\"", people.name(&i.message.sender))
            });
            let answered = answered.unwrap_or_else(|| format!("message {}", short_message(in_reply_to)));
            format!("(reply to {answered}) {text}")
        }
        other => people.describe(other),
    }
}

/// One conversation's messages to show, numbered, and the oldest unread
/// one `--limit` left out (the read mark stops before it).
type Shown<'a> = (ConversationId, Vec<(usize, &'a ViewItem)>, Option<u64>);

pub async fn read(p: ProfileArgs, a: ReadArgs) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    // Stored history is readable with the relay down; new messages wait there.
    let (report, offline) = match client.sync().await {
        Ok(r) => (r, false),
        Err(e) if e.is_transient() => {
            eprintln!("warning: cannot fetch new messages ({e}); showing the messages stored on this device");
            (Default::default(), true)
        }
        Err(e) => return Err(e).context("cannot fetch messages"),
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for n in &report.notices {
        eprintln!("notice: {n}");
    }
    let filter = match a.conversation.as_deref() {
        Some(c) => Some(conversation(&client, c).await?),
        None => None,
    };
    let all = client.view(filter).await?;
    let titles = names_of(&client.view(None).await?);
    // Offline, whether retention is on cannot be checked: shown as unknown.
    let retention = if offline {
        None
    } else {
        Some(client.policy().await.context("the network policy cannot be trusted")?.retention_enabled())
    };
    let read_to: HashMap<ConversationId, u64> =
        client.read_states().await?.into_iter().map(|s| (s.conversation, s.read_to)).collect();
    let me = client.user_id();

    // Conversation by conversation, in the order they were last active;
    // each message numbered within its conversation (receipts, edits and
    // reactions are folded in, so the numbers have no gaps).
    let mut order: Vec<ConversationId> = Vec::new();
    let mut by_conversation: HashMap<ConversationId, Vec<(usize, &ViewItem)>> = HashMap::new();
    for item in &all {
        let c = item.message.conversation;
        let list = by_conversation.entry(c).or_default();
        list.push((list.len() + 1, item));
        order.retain(|x| *x != c);
        order.push(c);
    }
    let mut shown: Vec<Shown> = Vec::new();
    for c in order {
        let mut list = by_conversation.remove(&c).unwrap_or_default();
        let mark = read_to.get(&c).copied().unwrap_or(0);
        let unread = |i: &ViewItem| i.message.sender != me && i.message.seq > mark;
        // What stays unread because --limit left it out: the read mark stops before it.
        let mut left_unread = None;
        if a.unread {
            list.retain(|(_, i)| unread(i));
            // The oldest unread first, so the read mark never passes one unshown.
            if let Some(limit) = a.limit {
                left_unread = list.get(limit).map(|(_, i)| i.message.seq);
                list.truncate(limit);
            }
        } else if let Some(limit) = a.limit {
            let skip = list.len().saturating_sub(limit);
            left_unread = list.iter().take(skip).filter(|(_, i)| unread(i)).map(|(_, i)| i.message.seq).min();
            list.drain(..skip);
        }
        if !list.is_empty() {
            shown.push((c, list, left_unread));
        }
    }

    // Shown now: burn-on-read clocks start, and what was unread is read.
    let ids: Vec<MessageId> = shown.iter().flat_map(|(_, l, _)| l.iter().map(|(_, i)| i.message.message_id)).collect();
    client.mark_displayed(&ids).await?;
    for (c, list, left_unread) in &shown {
        let top = list.iter().map(|(_, i)| i.message.seq).max().unwrap_or(0);
        let top = match left_unread {
            Some(first_unshown) => top.min(first_unshown.saturating_sub(1)),
            None => top,
        };
        if top > 0 {
            client.mark_read(*c, top).await?;
        }
    }
    if !offline {
        // The security group may force receipts on or off (the SDK applies it).
        let messages: Vec<_> = shown.iter().flat_map(|(_, l, _)| l.iter().map(|(_, i)| i.message.clone())).collect();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
        if let Err(e) = client.send_read_receipts(&messages, now, !a.no_receipts).await {
            eprintln!("warning: read receipts were not sent: {e}");
        }
    }

    let mut people = People::default();
    if let Ok(listed) = client.conversations().await {
        people.learn_members(&listed);
    }
    let named: Vec<_> = all
        .iter()
        .flat_map(|i| {
            std::iter::once(i.message.sender)
                .chain(i.reactions.iter().map(|r| r.0))
                .chain(i.read_by.iter().copied())
                .chain(crate::people::named_in(&i.message.content))
        })
        .collect();
    people.learn(&client, named, offline).await;

    if p.json {
        let list: Vec<_> = shown
            .iter()
            .flat_map(|(_, l, _)| l.iter())
            .map(|(n, i)| {
                let m = &i.message;
                serde_json::json!({
                    "conversation": m.conversation.to_string(), "n": n, "seq": m.seq, "message_id": m.message_id.to_string(),
                    "sender": people.name(&m.sender), "timestamp": m.timestamp, "text": text(&people, i, &all), "edited": i.edited,
                    "reactions": i.reactions.iter().map(|(u, e)| serde_json::json!({"user": people.name(u), "emoji": e})).collect::<Vec<_>>(),
                    "read_by": i.read_by.iter().map(|u| people.name(u)).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"messages": list, "warnings": report.warnings, "notices": report.notices, "retention": retention, "offline": offline})
        );
        client.close().await;
        return Ok(());
    }
    if retention == Some(true) {
        println!("(data retention is on: your organisation archives these conversations)");
    }
    if shown.is_empty() {
        println!("{}", if a.unread { "Nothing unread." } else { "No messages." });
    }
    for (c, list, _) in &shown {
        let title = titles.get(c).cloned().unwrap_or_else(|| people.members_of(c, me));
        println!("== {} [{}] ==", crate::people::clean(&title), short(c));
        for (n, i) in list {
            let m = &i.message;
            let edited = if i.edited { " (edited)" } else { "" };
            let reactions: String =
                i.reactions.iter().map(|(u, e)| format!(" [{} {}]", crate::people::clean(e), people.name(u))).collect();
            println!(
                "#{n} {} {} [{}]: {}{edited}{reactions}",
                when(m.timestamp),
                people.name(&m.sender),
                short_message(&m.message_id),
                text(&people, i, &all)
            );
            let read: Vec<String> = i.read_by.iter().map(|u| people.name(u)).collect();
            if !read.is_empty() {
                println!("    (read by {})", read.join(", "));
            }
        }
    }
    client.close().await;
    Ok(())
}

#[derive(Args)]
pub struct WatchArgs {
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long)]
    timeout: Option<u64>,
}

pub async fn watch(p: ProfileArgs, a: WatchArgs) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    let json = p.json;
    // Names come from the conversations' member lists, read once.
    let mut people = People::default();
    if let Ok(listed) = client.conversations().await {
        people.learn_members(&listed);
    }
    let me = client.user_id();
    people.learn(&client, [me], false).await;
    let n = client
        .watch(
            a.count,
            a.timeout.map(std::time::Duration::from_secs),
            |m| {
                use std::io::Write;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"conversation": m.conversation.to_string(), "seq": m.seq, "message_id": m.message_id.to_string(), "sender": people.name(&m.sender), "sender_id": m.sender.to_string(), "timestamp": m.timestamp, "text": people.describe(&m.content)})
                    );
                } else {
                    println!(
                        "[{}] {} {} [{}]: {}",
                        short(&m.conversation),
                        when(m.timestamp),
                        people.name(&m.sender),
                        short_message(&m.message_id),
                        crate::people::clean(&people.describe(&m.content))
                    );
                }
                let _ = std::io::stdout().flush();
            },
            |w| eprintln!("warning: {w}"),
        )
        .await
        .context("watching failed")?;
    if !json {
        eprintln!("{n} messages");
    }
    client.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn prefixes_must_be_unique_hex_and_long_enough() {
        let a = ConversationId::from_bytes([0xab; 16]);
        let b = ConversationId::from_bytes([0xac; 16]);
        let known = [a, b];
        assert_eq!(by_prefix("ababab", known, "conversation", 0).ok(), Some(a));
        assert_eq!(by_prefix("ABABAB", known, "conversation", 0).ok(), Some(a), "case does not matter");
        let short = by_prefix("abab", known, "conversation", 0).map_err(|e| e.to_string());
        assert!(short.is_err_and(|e| e.contains("first 6")), "too short");
        let none = by_prefix("ffffff", known, "conversation", 0).map_err(|e| e.to_string());
        assert!(none.is_err_and(|e| e.contains("no conversation")));
        let dup = [a, ConversationId::from_bytes([0xab, 0xab, 0xab, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])];
        let many = by_prefix("ababab", dup, "conversation", 0).map_err(|e| e.to_string());
        assert!(many.is_err_and(|e| e.contains("give more digits") && e.contains(&a.to_string())), "full ids named");
        assert!(by_prefix("ababzz", known, "conversation", 0).is_err(), "hex only");
        assert!(by_prefix("../../", known, "conversation", 0).is_err());
    }

    /// Messages made in the same minute share their first digits (the
    /// time): they are told apart, and typed, by the random digits after.
    #[test]
    fn messages_of_one_minute_have_distinct_short_ids() {
        let now = 1_764_600_000_000;
        let ids: Vec<MessageId> = (0..50).map(|i| MessageId::ordered(&mut rand_core::OsRng, now + i * 1000)).collect();
        let shorts: std::collections::HashSet<String> = ids.iter().map(short_message).collect();
        assert_eq!(shorts.len(), ids.len(), "50 messages within a minute, 50 short ids");
        for id in &ids {
            let shown = short_message(id);
            assert_eq!(shown.len(), SHORT);
            assert_eq!(by_prefix(&shown, ids.iter().copied(), "message", MESSAGE_TIME_DIGITS).ok(), Some(*id));
            assert_eq!(by_prefix(&shown[..6], ids.iter().copied(), "message", MESSAGE_TIME_DIGITS).ok(), Some(*id));
        }
        // The time digits are not the short id: typing them finds nothing.
        let time: String = ids[0].to_string().chars().take(8).collect();
        let wrong = by_prefix(&time, ids.iter().copied(), "message", MESSAGE_TIME_DIGITS).map_err(|e| e.to_string());
        assert!(wrong.is_err_and(|e| e.contains("no message")), "{time}");
        // At most the 20 digits after the time.
        assert!(by_prefix(&"a".repeat(21), ids.iter().copied(), "message", MESSAGE_TIME_DIGITS).is_err());
    }
}
