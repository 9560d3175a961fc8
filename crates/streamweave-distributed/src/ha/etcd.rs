//! A small etcd v3 client over etcd's JSON gateway (`POST /v3/...` on the client port, etcd
//! 3.4 and later): leases, create-if-absent, conditional puts, gets and deletes, which is all
//! coordinator leadership needs.
//!
//! Keys and values travel base64-encoded; 64-bit numbers come back as JSON strings and fields at
//! their default value (0, false) are omitted, which the readers below allow for. Several
//! endpoints may be given: a request that cannot reach one tries the next (an answer from etcd,
//! even an error, is final).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

/// What can go wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint could be reached (the last error is given).
    #[error("etcd at {endpoint} is unreachable: {source}")]
    Unreachable {
        /// The endpoint last tried.
        endpoint: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// etcd answered with an error status.
    #[error("etcd at {endpoint} answered {path} with {status}: {body}")]
    Status {
        /// The endpoint.
        endpoint: String,
        /// The request path.
        path: &'static str,
        /// The HTTP status.
        status: u16,
        /// The body (etcd's error message).
        body: String,
    },
    /// etcd's answer is not what the gateway documents.
    #[error("etcd at {endpoint} answered {path} with something unexpected: {detail}")]
    Decode {
        /// The endpoint.
        endpoint: String,
        /// The request path.
        path: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// No endpoint was given.
    #[error("no etcd endpoint given")]
    NoEndpoint,
}

/// A key's value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The value.
    pub value: Vec<u8>,
    /// The revision at which the key was created.
    pub create_revision: u64,
    /// The revision of its last change.
    pub mod_revision: u64,
    /// The lease it is attached to (0: none).
    pub lease: i64,
}

/// The result of [`EtcdClient::create_if_absent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Created at this revision.
    Created(u64),
    /// The key exists: its current value.
    Exists(KeyValue),
}

/// An etcd client over the JSON gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EtcdClient {
    http: reqwest::Client,
    endpoints: std::sync::Arc<Vec<String>>,
    /// The endpoint that answered last (tried first).
    current: std::sync::Arc<AtomicUsize>,
}

impl EtcdClient {
    /// A client of these endpoints (`HOST:PORT`), each request bounded by `timeout`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use streamweave_distributed::ha::etcd::EtcdClient;
    /// let client = EtcdClient::new(vec!["127.0.0.1:2379".into()], Duration::from_secs(1));
    /// assert!(client.is_ok());
    /// ```
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Result<Self, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::NoEndpoint);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|source| EtcdError::Unreachable {
                endpoint: endpoints[0].clone(),
                source,
            })?;
        Ok(EtcdClient {
            http,
            endpoints: std::sync::Arc::new(endpoints),
            current: Default::default(),
        })
    }

    /// Grants a lease of `ttl` (whole seconds, rounded up); returns its id and granted TTL.
    pub async fn grant(&self, ttl: Duration) -> Result<(i64, Duration), EtcdError> {
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let (endpoint, body) = self.post("/v3/lease/grant", json!({ "TTL": seconds })).await?;
        let id = int(&body["ID"]).ok_or_else(|| decode(&endpoint, "/v3/lease/grant", "no lease ID"))?;
        let granted = int(&body["TTL"]).unwrap_or(0);
        Ok((id, Duration::from_secs(u64::try_from(granted).unwrap_or(0))))
    }

    /// Renews a lease once; returns its new TTL (zero: the lease no longer exists).
    pub async fn keep_alive(&self, lease: i64) -> Result<Duration, EtcdError> {
        let (_, body) = self
            .post("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        // A streaming endpoint: one request, one `{"result": ...}` line.
        let ttl = int(&body["result"]["TTL"]).unwrap_or(0);
        Ok(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)))
    }

    /// Creates `key` = `value` attached to `lease` (0: none) if the key does not exist, in one
    /// transaction; otherwise returns the existing key.
    pub async fn create_if_absent(&self, key: &[u8], value: &[u8], lease: i64) -> Result<Created, EtcdError> {
        let request = json!({
            "compare": [{ "key": B64.encode(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0" }],
            "success": [{ "request_put": { "key": B64.encode(key), "value": B64.encode(value), "lease": lease.to_string() } }],
            "failure": [{ "request_range": { "key": B64.encode(key) } }],
        });
        let (endpoint, body) = self.post("/v3/kv/txn", request).await?;
        if body["succeeded"].as_bool().unwrap_or(false) {
            let revision = uint(&body["header"]["revision"])
                .ok_or_else(|| decode(&endpoint, "/v3/kv/txn", "no header revision"))?;
            return Ok(Created::Created(revision));
        }
        let range = &body["responses"][0]["response_range"];
        match first_kv(range, &endpoint, "/v3/kv/txn")? {
            Some(kv) => Ok(Created::Exists(kv)),
            // Deleted between the compare and the range: cannot happen in one transaction.
            None => Err(decode(
                &endpoint,
                "/v3/kv/txn",
                "a failed create-if-absent found no key",
            )),
        }
    }

    /// Puts `key` = `value` only if `guard` was created at `guard_revision` (a leader key of
    /// that epoch still exists); returns whether it was put.
    pub async fn put_if_created_at(
        &self,
        guard: &[u8],
        guard_revision: u64,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, EtcdError> {
        let request = json!({
            "compare": [{ "key": B64.encode(guard), "result": "EQUAL", "target": "CREATE",
                          "create_revision": guard_revision.to_string() }],
            "success": [{ "request_put": { "key": B64.encode(key), "value": B64.encode(value) } }],
        });
        let (_, body) = self.post("/v3/kv/txn", request).await?;
        Ok(body["succeeded"].as_bool().unwrap_or(false))
    }

    /// Reads a key.
    pub async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        let (endpoint, body) = self
            .post("/v3/kv/range", json!({ "key": B64.encode(key) }))
            .await?;
        first_kv(&body, &endpoint, "/v3/kv/range")
    }

    /// Deletes a key; returns whether it existed.
    pub async fn delete(&self, key: &[u8]) -> Result<bool, EtcdError> {
        let (_, body) = self
            .post("/v3/kv/deleterange", json!({ "key": B64.encode(key) }))
            .await?;
        Ok(int(&body["deleted"]).unwrap_or(0) > 0)
    }

    /// Revokes a lease (its keys are deleted at once).
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.post("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await
            .map(drop)
    }

    /// Posts to each endpoint in turn (starting with the last that answered) until one answers.
    async fn post(&self, path: &'static str, body: Value) -> Result<(String, Value), EtcdError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.endpoints.len() {
            let index = (start + i) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let url = format!("http://{endpoint}{path}");
            let answer = self.http.post(&url).body(body.to_string()).send().await;
            let response = match answer {
                Ok(response) => response,
                Err(source) => {
                    last = Some(EtcdError::Unreachable {
                        endpoint: endpoint.clone(),
                        source,
                    });
                    continue;
                }
            };
            self.current.store(index, Ordering::Relaxed);
            let status = response.status();
            let bytes = response.bytes().await.map_err(|source| EtcdError::Unreachable {
                endpoint: endpoint.clone(),
                source,
            })?;
            if !status.is_success() {
                let body = String::from_utf8_lossy(&bytes).into_owned();
                return Err(EtcdError::Status {
                    endpoint: endpoint.clone(),
                    path,
                    status: status.as_u16(),
                    body,
                });
            }
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|e| decode(endpoint, path, &format!("not JSON: {e}")))?;
            return Ok((endpoint.clone(), value));
        }
        Err(last.unwrap_or(EtcdError::NoEndpoint))
    }
}

fn decode(endpoint: &str, path: &'static str, detail: &str) -> EtcdError {
    EtcdError::Decode {
        endpoint: endpoint.to_string(),
        path,
        detail: detail.to_string(),
    }
}

/// A 64-bit integer the gateway sends as a string (or, leniently, a number).
fn int(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn uint(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The first key of a range response (`kvs` is omitted when empty).
fn first_kv(range: &Value, endpoint: &str, path: &'static str) -> Result<Option<KeyValue>, EtcdError> {
    let Some(kv) = range["kvs"].get(0) else {
        return Ok(None);
    };
    let value = match kv["value"].as_str() {
        Some(text) => B64
            .decode(text)
            .map_err(|e| decode(endpoint, path, &format!("value not base64: {e}")))?,
        None => Vec::new(),
    };
    Ok(Some(KeyValue {
        value,
        create_revision: uint(&kv["create_revision"]).unwrap_or(0),
        mod_revision: uint(&kv["mod_revision"]).unwrap_or(0),
        lease: int(&kv["lease"]).unwrap_or(0),
    }))
}
