//! The OpenAPI document lists exactly the routed paths. (The end-to-end
//! tests also call every documented method on the real binary.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::sync::Arc;

use strongroom_server::auth::RateLimiter;
use strongroom_server::state::AppState;
use strongroom_server::store::Store;

#[tokio::test]
async fn openapi_documents_every_route_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("sr-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display())).await.unwrap();
    let state = AppState {
        store,
        blobs: Arc::new(object_store::memory::InMemory::new()),
        hub: Arc::default(),
        metrics: Arc::default(),
        config: Arc::default(),
        auth_limiter: Arc::new(RateLimiter::new(1.0, 1.0)),
        send_limiter: Arc::new(RateLimiter::new(1.0, 1.0)),
        password_limiter: Arc::new(RateLimiter::new(1.0, 1.0)),
        claim_limiter: Arc::new(RateLimiter::new(1.0, 1.0)),
        login_locks: Arc::default(),
        fetching: Arc::default(),
        public_url: Arc::new(String::new()),
    };
    let routed: BTreeSet<&str> = strongroom_server::paths(&state).into_iter().collect();
    let doc: serde_json::Value = serde_json::from_str(strongroom_server::OPENAPI).unwrap();
    let documented: BTreeSet<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(routed, documented);
    let _ = std::fs::remove_dir_all(&dir);
}
