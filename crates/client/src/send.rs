//! The send path: recipients, timers and group rules, sealing, posting, files.

use crate::client::*;
use crate::error::ClientError;
use crate::outbox::Outgoing;
use crate::rules::group_policy::Action;
use crate::rules::prekeys::ROTATE_AFTER_MS;
use crate::store::hex;
use std::path::Path;
use strongroom_crypto::certs::*;
use strongroom_crypto::content::{Content, FileRef};
use strongroom_crypto::envelope::*;
use strongroom_crypto::ids::*;
use strongroom_wire::*;

impl Client {
    /// The devices a message to `conversation` is sealed for, whether it is
    /// a note to self, and the signed member set. Unless `fresh`, the member
    /// set, device lists, policy and medium-term pre-keys are the ones this
    /// device verified last (`cache.rs`): no request when nothing changed.
    pub(crate) async fn recipients(
        &mut self,
        conversation: ConversationId,
        fresh: bool,
    ) -> Result<(Vec<Recipient>, bool, MembershipState), ClientError> {
        // The members signed by members, never the relay's list (PROTOCOL.md §3.4).
        let signed = match self.kept_membership(conversation).await? {
            Some(kept) if !fresh => kept,
            _ => self.membership(conversation).await?,
        };
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
            members.push(self.member_list(*user, fresh).await?);
        }
        let devices = crate::rules::recipients::targets(&members, (self.user_id(), self.device_id()));
        let mut recipients = Vec::with_capacity(devices.len() + 1);
        if !devices.is_empty() {
            // A one-time pre-key for the first message to a device, then once
            // per medium-term period; the medium-term key in between, claimed
            // once a period and kept (PROTOCOL.md §3.1, THREAT_MODEL.md
            // "Forward secrecy").
            let now = now_ms();
            let plan = crate::rules::recipients::claim_plan(&devices, &self.state.one_time_used, now);
            let known: Vec<Option<Recipient>> = devices
                .iter()
                .zip(&plan.devices)
                .map(|(d, key)| if plan.medium_term.contains(key) { self.known_medium(d, key, now) } else { None })
                .collect();
            let wanted: Vec<usize> = known.iter().enumerate().filter(|(_, k)| k.is_none()).map(|(i, _)| i).collect();
            let mut claimed_keys = std::collections::HashMap::new();
            if !wanted.is_empty() {
                let pairs: Vec<DeviceAddress> = wanted.iter().filter_map(|i| plan.devices.get(*i).copied()).collect();
                let medium_term = pairs.iter().filter(|k| plan.medium_term.contains(k)).copied().collect();
                let claim = ClaimPreKeys { devices: pairs, medium_term };
                let claimed: ClaimedPreKeys = self.api.post("/v1/keys/claim", &claim).await?;
                let raw: Vec<Vec<u8>> = claimed.prekeys.into_iter().map(|k| k.0).collect();
                let asked: Vec<VerifiedDevice> = wanted.iter().filter_map(|i| devices.get(*i).cloned()).collect();
                let verified =
                    crate::rules::recipients::verify_claimed(&asked, &raw, now).map_err(ClientError::Trust)?;
                for ((i, v), raw) in wanted.iter().zip(verified).zip(raw) {
                    claimed_keys.insert(*i, (v, raw));
                }
            }
            let mut changed = false;
            for (i, (d, known)) in devices.iter().zip(known).enumerate() {
                if let Some(r) = known {
                    recipients.push(r);
                    continue;
                }
                let (verified, raw) = claimed_keys
                    .remove(&i)
                    .ok_or_else(|| ClientError::Trust("a pre-key claim came back short".into()))?;
                let pair = crate::rules::recipients::device_key(d);
                if verified.key_ref().kind == PreKeyKind::OneTime {
                    self.state.one_time_used.insert(pair, now);
                } else {
                    self.state.medium_known.insert(pair, (now, hex(&raw)));
                }
                changed = true;
                recipients.push(Recipient::from(&verified));
            }
            if changed {
                let horizon = now.saturating_sub(ROTATE_AFTER_MS);
                self.state.one_time_used.retain(|_, at| *at >= horizon);
                self.state.medium_known.retain(|_, (at, _)| *at >= horizon && *at <= now);
                self.save().await?;
            }
        }
        let policy = if fresh { self.policy().await? } else { self.known_policy().await? };
        recipients.extend(policy.retention_recipients());
        Ok((recipients, notes, signed))
    }

    /// The medium-term pre-key last claimed for device `d`, if it was
    /// claimed within one rotation period and still verifies under the
    /// device's key: sealing to it again needs no request.
    fn known_medium(&self, d: &VerifiedDevice, key: &DeviceAddress, now: u64) -> Option<Recipient> {
        let (at, raw) = self.state.medium_known.get(key)?;
        let signed = SignedPreKey::decode(&crate::client::unhex_vec(raw)?).ok()?;
        // Within a period of its claim and of its making: the recipient
        // replaces it then, and keeps the old private half GRACE_MS after.
        if !crate::rules::prekeys::still_current(*at, now)
            || !crate::rules::prekeys::still_current(signed.created_at, now)
        {
            return None;
        }
        let verified = signed.verify(d, now).ok()?;
        (verified.key_ref().kind == PreKeyKind::MediumTerm).then(|| Recipient::from(&verified))
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
        let r = self.send_timed_once(conversation, content, ttl_secs, bor_secs).await;
        self.noting_wipe(r).await
    }

    async fn send_timed_once(
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
    /// these requested timers and conversation defaults. Messages queued
    /// earlier go first; if they still cannot go, this one queues behind them.
    async fn send_with_timers(
        &mut self,
        conversation: ConversationId,
        content: &Content,
        requested: (u32, u32),
        defaults: (u32, u32),
    ) -> Result<Accepted, ClientError> {
        let behind = self.store.outbox_len().await? > 0 && {
            let warnings = self.flush_outbox().await?;
            self.notices.extend(warnings);
            self.store.outbox_len().await? > 0
        };
        let mut out = Outgoing::new(conversation, content, requested, defaults)?;
        self.deliver(&mut out, false, !behind).await
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
        self.send_file_as(conversation, path, name, media_type, None, progress).await
    }

    /// [`Client::send_file_named`], as a forward from `origin` when given.
    pub(crate) async fn send_file_as(
        &mut self,
        conversation: ConversationId,
        path: &Path,
        name: &str,
        media_type: &str,
        origin: Option<strongroom_crypto::content::ForwardOrigin>,
        progress: crate::files::Progress<'_>,
    ) -> Result<(Accepted, FileRef), ClientError> {
        // Fetched now: the relay cannot see a file's kind or size in a message.
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
                let content = match origin {
                    Some(origin) => Content::Forwarded { origin, content: Box::new(Content::File(file.clone())) },
                    None => Content::File(file.clone()),
                };
                let accepted = self.send(conversation, &content, 0).await;
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
        file.blob_id = created.blob_id;
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
                Content::Forwarded { content, .. } => match *content {
                    Content::File(f) => Some(f),
                    _ => None,
                },
                _ => None,
            })
            .ok_or_else(|| {
                ClientError::Usage(format!("no received file with message id {message}; run `strongroom read` first"))
            })
    }

    /// Posts an envelope, resending the same bytes if the connection fails:
    /// the server accepts a message id once, so a resend after a lost answer
    /// is harmless and nothing is sent twice.
    pub(crate) async fn post_envelope(&self, bytes: Vec<u8>, tag: Option<&str>) -> Result<Accepted, ClientError> {
        let header = tag.map(|t| (strongroom_wire::SETTINGS_TAG_HEADER, t));
        // A short wait only: after that the message waits in the outbox.
        let mut delay = std::time::Duration::from_millis(100);
        for _ in 0..4 {
            match self.api.post_bytes_with::<Accepted>("/v1/messages", bytes.clone(), header).await {
                Err(ClientError::Network(_)) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
                other => return other,
            }
        }
        self.api.post_bytes_with("/v1/messages", bytes, header).await
    }

    /// Sends text.
    pub async fn send_text(&mut self, conversation: ConversationId, text: &str) -> Result<Accepted, ClientError> {
        self.send(conversation, &Content::Text(text.into()), 0).await
    }
}
