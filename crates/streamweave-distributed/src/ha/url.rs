//! The `--ha` URL: `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`.

/// Where the coordinators of one cluster elect their leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaUrl {
    /// etcd client endpoints, `HOST:PORT`.
    pub endpoints: Vec<String>,
    /// The key prefix (no trailing slash); the leader key is `PREFIX/leader`.
    pub prefix: String,
}

/// A `--ha` URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not etcd://HOST:PORT[,HOST:PORT...][/PREFIX]: {reason}")]
pub struct HaUrlError {
    /// The URL given.
    pub url: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl HaUrl {
    /// Parses the URL; the prefix defaults to `/swd/CLUSTER`.
    ///
    /// ```
    /// use streamweave_distributed::ha::HaUrl;
    /// let url = HaUrl::parse("etcd://10.0.0.1:2379,10.0.0.2:2379/prod", "default").unwrap();
    /// assert_eq!(url.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
    /// assert_eq!(url.leader_key(), "/prod/leader");
    /// assert_eq!(HaUrl::parse("etcd://h:2379", "c1").unwrap().leader_key(), "/swd/c1/leader");
    /// assert!(HaUrl::parse("http://h:2379", "c1").is_err());
    /// ```
    pub fn parse(url: &str, cluster: &str) -> Result<Self, HaUrlError> {
        let error = |reason| HaUrlError {
            url: url.to_string(),
            reason,
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| error("it must start with etcd://"))?;
        let (hosts, prefix) = match rest.split_once('/') {
            Some((hosts, prefix)) => (hosts, format!("/{}", prefix.trim_matches('/'))),
            None => (rest, format!("/swd/{cluster}")),
        };
        if prefix == "/" {
            return Err(error("the prefix is empty"));
        }
        let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
        if endpoints.iter().any(|e| {
            e.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        }) {
            return Err(error("each endpoint must be HOST:PORT"));
        }
        Ok(HaUrl { endpoints, prefix })
    }

    /// The leader key.
    pub fn leader_key(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// The key that names the latest committed checkpoint: `PREFIX/checkpoint`.
    pub fn checkpoint_key(&self) -> String {
        format!("{}/checkpoint", self.prefix)
    }
}
