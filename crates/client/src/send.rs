//! The send path: recipients, timers and group rules, sealing, posting, files.

use crate::client::*;
use crate::error::ClientError;
use crate::rules::group_policy::Action;
use crate::rules::prekeys::ROTATE_AFTER_MS;
use crate::store::{hex, StoredRow};
use rand_core::OsRng;
use std::path::Path;
use strongroom_crypto::certs::*;
use strongroom_crypto::content::{Content, FileRef};
use strongroom_crypto::envelope::*;
use strongroom_crypto::ids::*;
use strongroom_wire::*;

impl Client {
    pub(crate) async fn recipients(
        &mut self,
        conversation: ConversationId,
    ) -> Result<(Vec<Recipient>, bool, MembershipState), ClientError> {
        // The members signed by members, never the relay's list (PROTOCOL.md §3.4).
        let signed = self.membership(conversation).await?;
        let notes = signed.kind == strongroom_crypto::certs::ConversationKind::Notes;
        if notes && signed.members.iter().any(|m| *m != self.user_id()) {
            // A signed note to self has one member; this cannot verify otherwise.
            return Err(ClientError::Trust("this note to self has other members; nothing was sent".into()));
        }
        if !signed.members.contains(&self.user_id()) {
            return Err(ClientError::Usage("you are no longer a member of this conversation".into()));
        }
        let mut members = Vec::with_capacity(signed.members.len());
        for user in &signed.members {
            members.push(self.device_list_and_revoked(*user).await?);
        }
        let devices = crate::rules::recipients::targets(&members, (self.user_id(), self.device_id()));
        let mut recipients = Vec::with_capacity(devices.len() + 1);
        if !devices.is_empty() {
            // A one-time pre-key for the first message to a device, then once
            // per medium-term period; the medium-term key in between
            // (PROTOCOL.md §3.1, THREAT_MODEL.md "Forward secrecy").
            let now = now_ms();
            let plan = crate::rules::recipients::claim_plan(&devices, &self.state.one_time_used, now);
            let pairs = plan.devices.clone();
            let claim = ClaimPreKeys { devices: plan.devices, medium_term: plan.medium_term };
            let claimed: ClaimedPreKeys = self.api.post("/v1/keys/claim", &claim).await?;
            let mut used_one_time = false;
            for ((d, pair), pk) in devices.iter().zip(pairs).zip(claimed.prekeys) {
                let signed = SignedPreKey::decode(&pk.0)
                    .map_err(|e| ClientError::Trust(format!("pre-key of device {}: {e}", d.device_id())))?;
                let verified = signed
                    .verify(d, now)
                    .map_err(|e| ClientError::Trust(format!("pre-key of device {}: {e}", d.device_id())))?;
                if verified.key_ref().kind == PreKeyKind::OneTime {
                    self.state.one_time_used.insert(pair, now);
                    used_one_time = true;
                }
                recipients.push(Recipient::from(&verified));
            }
            if used_one_time {
                let horizon = now.saturating_sub(ROTATE_AFTER_MS);
                self.state.one_time_used.retain(|_, at| *at >= horizon);
                self.save().await?;
            }
        }
        let policy = self.policy().await?;
        recipients.extend(policy.retention_recipients());
        Ok((recipients, notes, signed))
    }

    /// Seals `content` for every current device of the conversation (and the
    /// retention devices the verified policy names) and sends it. If the
    /// server reports a changed device set, refreshes once and retries.
    pub async fn send(
        &mut self,
        conversation: ConversationId,
        content: &Content,
        ttl_secs: u32,
    ) -> Result<Accepted, ClientError> {
        self.send_timed(conversation, content, ttl_secs, 0).await
    }

    /// Sends with a TTL and a burn-on-read time (seconds; 0 = off). When both
    /// are 0 the conversation's default timers apply; the security group's
    /// maxima clamp whatever results.
    pub async fn send_timed(
        &mut self,
        conversation: ConversationId,
        content: &Content,
        ttl_secs: u32,
        bor_secs: u32,
    ) -> Result<Accepted, ClientError> {
        let defaults = self.default_timers(conversation).await?;
        self.send_with_timers(conversation, content, (ttl_secs, bor_secs), defaults).await
    }

    /// Sends with no timers, whatever the conversation's defaults.
    pub(crate) async fn send_untimed(
        &mut self,
        conversation: ConversationId,
        content: &Content,
    ) -> Result<Accepted, ClientError> {
        self.send_exact(conversation, content, 0, 0).await
    }

    /// Sends with exactly these timers (no conversation defaults), clamped
    /// to the security group's maxima.
    pub(crate) async fn send_exact(
        &mut self,
        conversation: ConversationId,
        content: &Content,
        ttl_secs: u32,
        bor_secs: u32,
    ) -> Result<Accepted, ClientError> {
        self.send_with_timers(conversation, content, (ttl_secs, bor_secs), (0, 0)).await
    }

    /// Sends with the timers [`crate::rules::timers::effective`] gives for
    /// these requested timers and conversation defaults.
    async fn send_with_timers(
        &mut self,
        conversation: ConversationId,
        content: &Content,
        requested: (u32, u32),
        defaults: (u32, u32),
    ) -> Result<Accepted, ClientError> {
        let rules = self.my_policy().await?;
        if matches!(content, Content::Location(_)) {
            check(&rules, Action::ShareLocation)?;
        }
        let (ttl_secs, bor_secs) =
            crate::rules::timers::effective(requested, defaults, rules.max_ttl_secs, rules.max_bor_secs);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (recipients, notes, signed) = self.recipients(conversation).await?;
            if recipients.is_empty() && !notes {
                return Err(ClientError::Usage("nobody else is in this conversation yet".into()));
            }
            let device_key = self.device_key()?;
            let sender = Sender {
                network_id: self.network_id(),
                user_id: self.user_id(),
                identity_key: self.identity_public()?,
                device_id: self.device_id(),
                signing_key: &device_key,
            };
            let meta = MessageMeta {
                host_network_id: self.network_id(),
                conversation_id: conversation,
                message_id: MessageId::random(&mut OsRng),
                timestamp: now_ms(),
                ttl_secs,
                burn_on_read_secs: bor_secs,
                // The member set sealed to (PROTOCOL.md §3.4).
                membership: signed.commitment,
            };
            let posted = if recipients.is_empty() {
                // A note to self with no other device of ours and no
                // retention: nobody to seal for, so it stays on this device
                // (sequence 0: not numbered by the relay).
                Ok(Accepted { message_id: meta.message_id.to_string(), seq: 0, duplicate: false })
            } else {
                let env = seal(&sender, &meta, content, &recipients, &mut OsRng)
                    .map_err(|e| ClientError::Usage(e.to_string()))?;
                self.post_envelope(env.encode()).await
            };
            match posted {
                Err(ClientError::RecipientMismatch { missing, extra }) => {
                    // Never encrypt to someone no member added: the relay's
                    // word that they are a member is not enough.
                    let ghosts = crate::rules::recipients::unsigned_members(&missing, &signed.members);
                    if !ghosts.is_empty() {
                        let mut names = Vec::with_capacity(ghosts.len());
                        for g in ghosts {
                            // The username comes from the relay too: the id says who it is.
                            let name = self.username_of(g).await.unwrap_or_else(|_| "?".into());
                            names.push(format!("{name} (user {g})"));
                        }
                        let names = names.join(", ");
                        return Err(ClientError::Trust(format!(
                            "the relay says {names} is a member of this conversation; no member added {names}. \
                             Nothing was sent: tell your administrator"
                        )));
                    }
                    // Device lists and statements are re-read on the next attempt.
                    if attempt >= 3 {
                        return Err(ClientError::RecipientMismatch { missing, extra });
                    }
                    continue;
                }
                Ok(accepted) => {
                    // Keep our own copy, so the conversation reads complete here too.
                    let row = StoredRow {
                        message_id: *meta.message_id.as_bytes(),
                        conversation: *conversation.as_bytes(),
                        seq: accepted.seq,
                        sender: *self.user_id().as_bytes(),
                        timestamp: meta.timestamp,
                        burn_secs: 0,
                        sealed: Vec::new(),
                    };
                    let plain =
                        zeroize::Zeroizing::new(content.encode().map_err(|e| ClientError::Usage(e.to_string()))?);
                    let expires = crate::rules::timers::expires_at(meta.timestamp, ttl_secs);
                    self.store.put_message(&self.vault, &row, &plain, expires).await?;
                    if let Content::Recall { target } = content {
                        self.store.delete_message(target.as_bytes()).await?;
                    }
                    return Ok(accepted);
                }
                other => return other,
            }
        }
    }

    /// Encrypts and uploads a file, then sends its reference. Memory stays
    /// flat; `progress` sees (bytes done, total) for encryption then upload.
    pub async fn send_file(
        &mut self,
        conversation: ConversationId,
        path: &Path,
        progress: crate::files::Progress<'_>,
    ) -> Result<(Accepted, FileRef), ClientError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let media = crate::files::media_type(&name).to_owned();
        self.send_file_named(conversation, path, &name, &media, progress).await
    }

    /// [`Client::send_file`] under a given file name and media type.
    pub async fn send_file_named(
        &mut self,
        conversation: ConversationId,
        path: &Path,
        name: &str,
        media_type: &str,
        progress: crate::files::Progress<'_>,
    ) -> Result<(Accepted, FileRef), ClientError> {
        let rules = self.my_policy().await?;
        check(&rules, Action::SendFile(0))?;
        let size = std::fs::metadata(path).map_err(io(path))?.len();
        check(&rules, Action::SendFile(size))?;
        let tmp = crate::files::scratch(&self.dir)?;
        let result = self.send_file_via(conversation, path, &tmp, progress).await.map(|mut f| {
            f.name = name.chars().take(255).collect();
            f.media_type = media_type.to_owned();
            f
        });
        let result = match result {
            Ok(file) => {
                let accepted = self.send(conversation, &Content::File(file.clone()), 0).await;
                accepted.map(|a| (a, file))
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&tmp);
        result
    }

    pub(crate) async fn send_file_via(
        &mut self,
        conversation: ConversationId,
        path: &Path,
        tmp: &Path,
        progress: crate::files::Progress<'_>,
    ) -> Result<FileRef, ClientError> {
        let (source, scratch) = (path.to_owned(), tmp.to_owned());
        let mut file = tokio::task::block_in_place(|| crate::files::encrypt_file(&source, &scratch, progress))?;
        let len =
            std::fs::metadata(tmp).map_err(|source| ClientError::Io { path: tmp.display().to_string(), source })?.len();
        let upload = tokio::fs::File::open(tmp)
            .await
            .map_err(|source| ClientError::Io { path: tmp.display().to_string(), source })?;
        let path_q = format!("/v1/blobs?conversation={conversation}&sha256={}", hex(&file.ciphertext_sha256));
        let created: BlobCreated = self.api.post_file(&path_q, upload, len).await?;
        progress(len, len);
        file.blob_id = BlobId::parse_hex(&created.blob_id).ok_or(ClientError::Corrupt("blob id from server"))?;
        Ok(file)
    }

    /// Downloads and decrypts a received file to `dest`, verifying its hash,
    /// size and every chunk; on any failure nothing is left at `dest`.
    pub async fn get_file(
        &self,
        file: &FileRef,
        dest: &Path,
        progress: crate::files::Progress<'_>,
    ) -> Result<(), ClientError> {
        check(&self.my_policy().await?, Action::DownloadFile)?;
        let tmp = crate::files::scratch(&self.dir)?;
        let result = async {
            self.api.download(&format!("/v1/blobs/{}", file.blob_id), &tmp).await?;
            let (f, t, d) = (file.clone(), tmp.clone(), dest.to_owned());
            tokio::task::block_in_place(|| crate::files::decrypt_file(&f, &t, &d, progress))
        }
        .await;
        let _ = std::fs::remove_file(&tmp);
        result
    }

    /// The file reference carried by a stored message.
    pub async fn file_of(&self, message: MessageId) -> Result<FileRef, ClientError> {
        self.messages(None)
            .await?
            .into_iter()
            .find(|m| m.message_id == message)
            .and_then(|m| match m.content {
                Content::File(f) => Some(f),
                _ => None,
            })
            .ok_or_else(|| {
                ClientError::Usage(format!("no received file with message id {message}; run `strongroom read` first"))
            })
    }

    /// Posts an envelope, resending the same bytes if the connection fails:
    /// the server accepts a message id once, so a resend after a lost answer
    /// is harmless and nothing is sent twice.
    pub(crate) async fn post_envelope(&self, bytes: Vec<u8>) -> Result<Accepted, ClientError> {
        let mut delay = std::time::Duration::from_millis(100);
        for _ in 0..12 {
            match self.api.post_bytes::<Accepted>("/v1/messages", bytes.clone()).await {
                Err(ClientError::Network(_)) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
                other => return other,
            }
        }
        self.api.post_bytes("/v1/messages", bytes).await
    }

    /// Sends text.
    pub async fn send_text(&mut self, conversation: ConversationId, text: &str) -> Result<Accepted, ClientError> {
        self.send(conversation, &Content::Text(text.into()), 0).await
    }
}
