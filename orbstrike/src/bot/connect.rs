//! Connections to the orchestrators: one lazily connected channel per endpoint, handed out
//! round-robin so players spread over the replicas (and a reconnect tries the next one).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use super::BotError;
use crate::proto::v1::orchestrator_client::OrchestratorClient;

#[derive(Clone)]
pub struct Orchestrators {
    channels: Arc<Vec<Channel>>,
    next: Arc<AtomicUsize>,
    client_id: MetadataValue<tonic::metadata::Ascii>,
}

impl Orchestrators {
    /// `endpoints` are `host:port` (or full `http://` URIs). Nothing connects until first use.
    pub fn new(endpoints: &[String], client_id: &str) -> Result<Orchestrators, BotError> {
        let channels = endpoints
            .iter()
            .map(|e| {
                let uri = if e.contains("://") { e.clone() } else { format!("http://{e}") };
                Endpoint::from_shared(uri)
                    .map(|ep| {
                        ep.connect_timeout(Duration::from_secs(2))
                            .tcp_nodelay(true)
                            .http2_keep_alive_interval(Duration::from_secs(10))
                            .keep_alive_while_idle(true)
                            .connect_lazy()
                    })
                    .map_err(|err| BotError::Config(format!("--orchestrator: {e:?} is not a usable address: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if channels.is_empty() {
            return Err(BotError::Config("--orchestrator: give at least one host:port".into()));
        }
        let client_id = client_id
            .parse()
            .map_err(|_| BotError::Config(format!("--client-id {client_id:?} must be printable ASCII")))?;
        Ok(Orchestrators { channels: Arc::new(channels), next: Arc::new(AtomicUsize::new(0)), client_id })
    }

    /// A client on the next orchestrator in turn.
    pub fn client(&self) -> OrchestratorClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        OrchestratorClient::new(self.channels[i].clone())
    }

    /// A request carrying this bot's `x-client-id`.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert("x-client-id", self.client_id.clone());
        request
    }
}
