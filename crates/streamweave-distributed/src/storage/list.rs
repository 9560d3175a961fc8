//! Listing under a [`Location`]: one level of a prefix (what a directory listing is to a local
//! path), and a bounded check that a prefix is empty, which also tells a missing bucket or an
//! unreachable endpoint apart from an empty prefix quickly instead of after the client's
//! minutes of retries.

use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectMeta;

use super::{block_on, Location, StorageError};

/// How long [`is_empty`] waits for the store's first answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The prefix argument of a listing of `key`: none for the store's root (an empty prefix would
/// list the objects under `/`).
fn list_prefix(key: &ObjectPath) -> Option<&ObjectPath> {
    (!key.as_ref().is_empty()).then_some(key)
}

/// The objects directly under `name` (a relative key; `""` for the location itself), not
/// those further down, in the store's order.
pub fn list_level(location: &Location, name: &str) -> Result<Vec<ObjectMeta>, StorageError> {
    let key = location.key(name);
    let store = location.store.clone();
    let prefix = key.clone();
    block_on(async move { store.list_with_delimiter(list_prefix(&prefix)).await })
        .map(|listing| listing.objects)
        .map_err(|e| location.error("list", &key, e))
}

/// Whether nothing at all is stored under the location. Fails (naming the URL) when the
/// store refuses or does not answer within [`PROBE_TIMEOUT`].
pub fn is_empty(location: &Location) -> Result<bool, StorageError> {
    let store = location.store.clone();
    let key = location.prefix.clone();
    let first = block_on(async move {
        let mut listing = store.list(list_prefix(&key));
        tokio::time::timeout(PROBE_TIMEOUT, listing.next()).await
    });
    match first {
        Err(_) => Err(StorageError::Open {
            url: location.url.to_string(),
            reason: format!("no answer within {PROBE_TIMEOUT:?} (is AWS_ENDPOINT_URL right?)"),
        }),
        Ok(None) => Ok(true),
        Ok(Some(Ok(_))) => Ok(false),
        Ok(Some(Err(e))) => Err(location.error("list", &location.prefix, e)),
    }
}
