use sqlx::Row;

use super::{id16, int, Store, StoreError};

pub use strongroom_wire::{ConversationKind as Kind, Role};

/// How a kind is stored (`Unknown` is never stored: the relay makes only
/// the kinds it knows).
fn kind_code(kind: Kind) -> Result<i64, StoreError> {
    match kind {
        Kind::Direct => Ok(1),
        Kind::Group => Ok(2),
        Kind::Room => Ok(3),
        Kind::Notes => Ok(4),
        Kind::Unknown => Err(StoreError::Corrupt("conversation kind")),
    }
}

fn kind_from_code(c: i64) -> Result<Kind, StoreError> {
    match c {
        1 => Ok(Kind::Direct),
        2 => Ok(Kind::Group),
        3 => Ok(Kind::Room),
        4 => Ok(Kind::Notes),
        _ => Err(StoreError::Corrupt("conversation kind")),
    }
}

/// How a role is stored (only member and moderator are ever made).
fn role_code(role: Role) -> i64 {
    match role {
        Role::Moderator => 1,
        Role::Member | Role::Unknown => 0,
    }
}

/// A conversation with its members.
#[derive(Debug, Clone)]
pub struct ConversationRow {
    /// Id.
    pub id: [u8; 16],
    /// Network.
    pub network_id: [u8; 16],
    /// Kind.
    pub kind: Kind,
    /// Last message sequence number.
    pub last_seq: u64,
    /// Membership change counter.
    pub membership_seq: u64,
    /// Members and roles, sorted by user id.
    pub members: Vec<([u8; 16], Role)>,
    /// Who the members are, in the same order.
    pub people: Vec<Person>,
}

/// A member as others see them.
#[derive(Debug, Clone, Default)]
pub struct Person {
    /// Username.
    pub username: String,
    /// A guest.
    pub guest: bool,
    /// A guest whose access expired.
    pub expired: bool,
}

impl ConversationRow {
    /// The role of `user`, if a member.
    pub fn role(&self, user: &[u8; 16]) -> Option<Role> {
        self.members.iter().find(|(u, _)| u == user).map(|(_, r)| *r)
    }
}

impl Store {
    /// Creates a conversation with its members.
    pub async fn create_conversation(
        &self,
        id: &[u8; 16],
        network: &[u8; 16],
        kind: Kind,
        members: &[([u8; 16], Role)],
        now: i64,
        statement: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql(
            "INSERT INTO conversations (id, network_id, kind, last_seq, membership_seq, created_at) VALUES ($1, $2, $3, 0, 1, $4)",
        ))
        .bind(id.to_vec())
        .bind(network.to_vec())
        .bind(kind_code(kind)?)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        for (user, role) in members {
            sqlx::query(&self.sql("INSERT INTO members (conversation_id, user_id, role) VALUES ($1, $2, $3)"))
                .bind(id.to_vec())
                .bind(user.to_vec())
                .bind(role_code(*role))
                .execute(&mut *tx.tx)
                .await?;
        }
        if let Some(body) = statement {
            self.append_statement(&mut tx, id, 1, body).await?;
        }
        tx.commit().await
    }

    /// Appends a signed membership statement (checked by the caller) in the
    /// transaction that applies it: the log and the member table never part.
    async fn append_statement(
        &self,
        tx: &mut super::WriteTx<'_>,
        id: &[u8; 16],
        seq: u64,
        body: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(&self.sql("INSERT INTO membership_statements (conversation_id, seq, body) VALUES ($1, $2, $3)"))
            .bind(id.to_vec())
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(body.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        Ok(())
    }

    /// A conversation's signed membership statements after `after`, oldest
    /// first, at most `limit`.
    pub async fn membership_statements(
        &self,
        id: &[u8; 16],
        after: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT body FROM membership_statements WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        ))
        .bind(id.to_vec())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| super::blob(r, "body")).collect()
    }

    /// A conversation and its members.
    pub async fn conversation(&self, id: &[u8; 16]) -> Result<Option<ConversationRow>, StoreError> {
        let row = sqlx::query(
            &self.sql("SELECT id, network_id, kind, last_seq, membership_seq FROM conversations WHERE id = $1"),
        )
        .bind(id.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let rows = sqlx::query(&self.sql(
            "SELECT m.user_id, m.role, u.username, u.role AS account, u.expired_at FROM members m \
             LEFT JOIN users u ON u.id = m.user_id WHERE m.conversation_id = $1 ORDER BY m.user_id",
        ))
        .bind(id.to_vec())
        .fetch_all(&self.pool)
        .await?;
        let mut members = Vec::with_capacity(rows.len());
        let mut people = Vec::with_capacity(rows.len());
        for r in &rows {
            members.push((id16(r, "user_id")?, if int(r, "role")? == 1 { Role::Moderator } else { Role::Member }));
            let account: Option<String> = r.try_get("account")?;
            people.push(Person {
                username: r.try_get::<Option<String>, _>("username")?.unwrap_or_default(),
                guest: account.as_deref() == Some("guest"),
                expired: r.try_get::<Option<i64>, _>("expired_at")?.is_some(),
            });
        }
        Ok(Some(ConversationRow {
            id: id16(&row, "id")?,
            network_id: id16(&row, "network_id")?,
            kind: kind_from_code(int(&row, "kind")?)?,
            last_seq: u64::try_from(int(&row, "last_seq")?).unwrap_or(0),
            membership_seq: u64::try_from(int(&row, "membership_seq")?).unwrap_or(0),
            members,
            people,
        }))
    }

    /// A conversation's network and whether `user` is a member, in one
    /// statement (the send path needs nothing more).
    pub async fn membership(
        &self,
        conversation: &[u8; 16],
        user: &[u8; 16],
    ) -> Result<Option<([u8; 16], bool)>, StoreError> {
        let generation = self.cache.generation();
        let key = (*conversation, *user);
        if let Some(found) = self.cache.membership.get(&key, generation) {
            return Ok(found);
        }
        let row = sqlx::query(&self.sql(
            "SELECT c.network_id, (SELECT COUNT(*) FROM members m WHERE m.conversation_id = c.id AND m.user_id = $2) AS member \
             FROM conversations c WHERE c.id = $1",
        ))
        .bind(conversation.to_vec())
        .bind(user.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let found = row.map(|r| Ok::<_, StoreError>((id16(&r, "network_id")?, int(&r, "member")? > 0))).transpose()?;
        self.cache.membership.put(key, generation, found);
        Ok(found)
    }

    /// Conversations `user` is a member of.
    pub async fn conversations_of(&self, user: &[u8; 16]) -> Result<Vec<ConversationRow>, StoreError> {
        let ids =
            sqlx::query(&self.sql("SELECT conversation_id FROM members WHERE user_id = $1 ORDER BY conversation_id"))
                .bind(user.to_vec())
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(ids.len());
        for r in &ids {
            if let Some(c) = self.conversation(&id16(r, "conversation_id")?).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Applies a membership change and bumps the membership sequence.
    pub async fn change_members(
        &self,
        id: &[u8; 16],
        add: &[[u8; 16]],
        remove: &[[u8; 16]],
        promote: &[[u8; 16]],
        demote: &[[u8; 16]],
        statement: Option<(u64, &[u8])>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        if let Some((seq, body)) = statement {
            self.append_statement(&mut tx, id, seq, body).await?;
        }
        for u in add {
            sqlx::query(&self.sql(
                "INSERT INTO members (conversation_id, user_id, role) VALUES ($1, $2, 0) ON CONFLICT (conversation_id, user_id) DO NOTHING",
            ))
            .bind(id.to_vec())
            .bind(u.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        }
        for u in remove {
            sqlx::query(&self.sql("DELETE FROM members WHERE conversation_id = $1 AND user_id = $2"))
                .bind(id.to_vec())
                .bind(u.to_vec())
                .execute(&mut *tx.tx)
                .await?;
        }
        for (list, role) in [(promote, 1i64), (demote, 0)] {
            for u in list {
                sqlx::query(&self.sql("UPDATE members SET role = $1 WHERE conversation_id = $2 AND user_id = $3"))
                    .bind(role)
                    .bind(id.to_vec())
                    .bind(u.to_vec())
                    .execute(&mut *tx.tx)
                    .await?;
            }
        }
        let seq = int(
            &sqlx::query(&self.sql(
                "UPDATE conversations SET membership_seq = membership_seq + 1 WHERE id = $1 RETURNING membership_seq",
            ))
            .bind(id.to_vec())
            .fetch_one(&mut *tx.tx)
            .await?,
            "membership_seq",
        )?;
        tx.commit().await?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    /// Which of `users` are accounts in `network`.
    pub async fn users_in_network(&self, network: &[u8; 16], users: &[[u8; 16]]) -> Result<usize, StoreError> {
        let mut n = 0;
        for u in users {
            if self.user_network(u).await?.as_ref() == Some(network) {
                n += 1;
            }
        }
        Ok(n)
    }
}
