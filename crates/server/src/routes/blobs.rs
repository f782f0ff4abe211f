//! Encrypted attachment blobs, streamed through `object_store` in bounded
//! memory. Readable by members of the conversation the uploader named.

use aws_lc_rs::digest;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use futures_util::{StreamExt, TryStreamExt};
use object_store::{path::Path as ObjPath, WriteMultipart};
use rand_core::{OsRng, RngCore};
use strongroom_wire::BlobCreated;

use crate::auth::Caller;
use crate::error::{hex, parse_id, ApiError, ApiResult};
use crate::service::conversations::member_of;
use crate::state::AppState;
use crate::store::{now_ms, BlobRow};

#[derive(serde::Deserialize)]
pub(super) struct UploadQuery {
    conversation: String,
    sha256: String,
    /// Remove the file sooner than the server's `blob_days` (a message with a timer).
    expires_in_secs: Option<u64>,
}

pub(crate) fn object_path(id: &[u8; 16]) -> ObjPath {
    ObjPath::from(format!("blobs/{}", hex(id)))
}

fn storage_error(e: object_store::Error) -> ApiError {
    tracing::error!(error = %e, "blob storage failure");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "blob storage failed; retry shortly")
}

pub(super) async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> ApiResult<(StatusCode, Json<BlobCreated>)> {
    let conversation = parse_id(&q.conversation, "conversation")?;
    member_of(&state, &caller, &conversation).await?;
    let policy = state.settings_for_user(&caller.session.user_id).await?;
    if !policy.files_enabled {
        return Err(ApiError::forbidden("files_disabled", "your security group does not allow sending files"));
    }
    let declared: Vec<u8> = (0..q.sha256.len())
        .step_by(2)
        .map(|i| q.sha256.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()
        .filter(|v: &Vec<u8>| v.len() == 32)
        .ok_or_else(|| ApiError::bad_request("bad_hash", "sha256 must be 64 hex digits"))?;
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let path = object_path(&id);
    let limits = &state.config.limits;
    let max = limits.max_blob_bytes.min(policy.max_file_size);
    // Quotas: what is stored now, plus this upload as it streams in.
    let (user_used, network_used) = state.store.blob_usage(&caller.session.user_id, &caller.session.network_id).await?;
    let room = |quota: u64, used: u64| if quota == 0 { u64::MAX } else { quota.saturating_sub(used) };
    let user_room = room(limits.max_blob_bytes_per_user, user_used);
    let network_room = room(limits.max_blob_bytes_per_network, network_used);
    // The uploader may ask for less than the server's lifetime (0 days: kept), never more.
    let asked_ms = q.expires_in_secs.map(|s| match state.config.blob_days {
        0 => s.saturating_mul(1000),
        days => s.saturating_mul(1000).min(days.saturating_mul(86_400_000)),
    });
    let upload = state.blobs.put_multipart(&path).await.map_err(storage_error)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 * 1024 * 1024);
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    let failure = loop {
        match stream.next().await {
            None => break None,
            Some(Err(_)) => {
                break Some(ApiError::bad_request("upload_interrupted", "the upload was interrupted; retry it"))
            }
            Some(Ok(chunk)) => {
                size += chunk.len() as u64;
                if size > user_room.min(network_room) {
                    let whose = if size > user_room { "your account" } else { "your network" };
                    break Some(ApiError::new(
                        StatusCode::INSUFFICIENT_STORAGE,
                        "quota_exceeded",
                        format!("{whose} has used its file storage quota; files are removed after they expire, or ask an administrator"),
                    ));
                }
                if size > max {
                    break Some(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "blob_too_large",
                        format!("files are limited to {max} bytes for you (server limit or security group)"),
                    ));
                }
                hash.update(&chunk);
                // Bounded memory: wait when the store has too many parts in flight.
                if writer.wait_for_capacity(4).await.is_err() {
                    break Some(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage_unavailable",
                        "blob storage failed",
                    ));
                }
                writer.write(&chunk);
            }
        }
    };
    if let Some(err) = failure {
        let _ = writer.abort().await;
        return Err(err);
    }
    if hash.finish().as_ref() != declared.as_slice() {
        let _ = writer.abort().await;
        return Err(ApiError::bad_request("hash_mismatch", "the uploaded bytes do not match the declared sha256"));
    }
    writer.finish().await.map_err(storage_error)?;
    let row = BlobRow { network_id: caller.session.network_id, conversation_id: conversation, size, sha256: declared };
    let now = now_ms();
    let expires_at = asked_ms.map(|ms| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
    state.store.insert_blob(&id, &row, &caller.session.user_id, now, expires_at).await?;
    // Parallel uploads each saw the room left before they began: the last
    // to finish over a quota is undone.
    let (user_used, network_used) = state.store.blob_usage(&caller.session.user_id, &caller.session.network_id).await?;
    let over = |quota: u64, used: u64| quota != 0 && used > quota;
    if over(limits.max_blob_bytes_per_user, user_used) || over(limits.max_blob_bytes_per_network, network_used) {
        state.store.delete_blob(&id).await?;
        let _ = state.blobs.delete(&path).await;
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "quota_exceeded",
            "file storage quota used up by uploads running at the same time; try again when they are done",
        ));
    }
    Ok((StatusCode::CREATED, Json(BlobCreated { blob_id: strongroom_wire::BlobId::from_bytes(id), size })))
}

/// Removes expired files the retention devices no longer need: each is
/// first marked (atomically with the check, so nothing that became needed
/// meanwhile goes), then its bytes go, then its record. A failure to delete
/// the bytes leaves the marked record for the next pass.
pub(crate) async fn remove_expired(state: &AppState, now: i64) -> Result<u64, crate::store::StoreError> {
    let lifetime_ms = i64::try_from(state.config.blob_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    let mut removed = 0;
    for id in state.store.expired_blobs(now, lifetime_ms, 1000).await? {
        if !state.store.begin_blob_removal(&id, now, lifetime_ms).await? {
            continue;
        }
        match state.blobs.delete(&object_path(&id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                state.store.delete_blob(&id).await?;
                removed += 1;
            }
            Err(e) => tracing::warn!(error = %e, "cannot remove an expired file from blob storage; will retry"),
        }
    }
    Ok(removed)
}

pub(super) async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id, "blob id")?;
    let row = state
        .store
        .blob(&id)
        .await?
        .filter(|b| b.network_id == caller.session.network_id)
        .ok_or_else(|| ApiError::not_found("unknown_blob", "no such file"))?;
    member_of(&state, &caller, &row.conversation_id).await?;
    if !caller.is_retention() && !state.settings_for_user(&caller.session.user_id).await?.file_download {
        return Err(ApiError::forbidden("downloads_disabled", "your security group does not allow downloading files"));
    }
    let stream = state.blobs.get(&object_path(&id)).await.map_err(storage_error)?.into_stream();
    let stream = stream.map_ok(Bytes::from).map_err(std::io::Error::other);
    let body = if caller.is_retention() {
        // Recorded when the last byte is handed to the connection (hyper
        // polls no further once Content-Length is reached): until then an
        // expired file stays for the retention device (`store/blobs.rs`).
        let (store, size) = (state.store.clone(), row.size);
        let mut sent: u64 = 0;
        Body::from_stream(stream.map_ok(move |chunk| {
            let before = sent;
            sent = sent.saturating_add(chunk.len() as u64);
            if before < size && sent >= size {
                let store = store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.blob_fetched_by_retention(&id).await {
                        tracing::warn!(error = %e, "cannot record a retention download; the file stays until the next one");
                    }
                });
            }
            chunk
        }))
    } else {
        Body::from_stream(stream)
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, row.size.to_string()),
            (header::HeaderName::from_static("x-strongroom-sha256"), hex(&row.sha256)),
        ],
        body,
    ))
}
