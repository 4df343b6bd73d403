//! Leader elections with fencing terms.
//!
//! [`Client::campaign`] waits (a long poll bounded by the caller's `wait`, not the request
//! timeout) until the candidate leads the election, and returns a term larger than every
//! earlier term of that election: pass it to whatever the leader writes (`Boards.Assign` takes
//! `(election, term)`) so that a deposed leader's late writes are refused with `STALE_TERM`.
//! Leadership ends with the candidate's lease: keep it alive with a
//! [`LeaseKeeper`](crate::LeaseKeeper) and stop acting as leader when the keeper is no longer
//! safe.
//!
//! Campaign is idempotent (the same candidate with the same lease already leading gets the
//! current term back), so it is retried like a read. A campaign that has not returned when
//! `wait` ends fails with [`Error::DeadlineExceeded`] or, if an attempt was still in flight,
//! [`Error::OutcomeUnknown`]: in both cases campaigning again with the same lease tells.

use std::time::Duration;

use futures::FutureExt;
use hypercache_proto::v1 as pb;
use pb::election_client::ElectionClient as WireClient;
use tonic::transport::Channel;

use crate::call::{in_shard, request};
use crate::client::Client;
use crate::error::Error;
use crate::ids::Term;
use crate::retry::OpKind;
use crate::stream::Resuming;
use crate::target::{Route, Target};
use crate::types::{revision, LeaseId};

/// Who leads an election, and under which term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub candidate: String,
    pub lease: LeaseId,
    /// The fencing token: larger than every earlier term of the election.
    pub term: Term,
}

impl From<pb::ElectionLeader> for Leadership {
    fn from(l: pb::ElectionLeader) -> Self {
        Leadership { candidate: l.candidate, lease: LeaseId(l.lease), term: Term(l.term) }
    }
}

/// An election's state, from [`Client::election_leader`] or an observer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionState {
    /// `None` when nobody leads.
    pub leader: Option<Leadership>,
    /// The last term handed out (0 if never); only [`Client::election_leader`] reports it.
    pub last_term: Term,
    /// The serving node's revision.
    pub revision: u64,
}

/// A reconnecting observer of one election (see [`Client::observe`]).
pub struct LeaderObserver(Resuming<pb::ObserveResponse>);

impl LeaderObserver {
    /// The current leader (first, and again after every reconnect), then every change.
    pub async fn next(&mut self) -> Result<ElectionState, Error> {
        let response = self.0.next().await?;
        Ok(ElectionState {
            leader: response.leader.map(Leadership::from),
            last_term: Term(0),
            revision: revision(response.header.as_ref()),
        })
    }
}

impl Client {
    pub(crate) fn election_wire(&self, channel: Channel) -> WireClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        WireClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    /// Waits up to `wait` until `candidate` (1..=256 bytes) leads election `name` while `lease`
    /// lives; see the module documentation.
    pub async fn campaign(
        &self,
        name: &str,
        candidate: &str,
        lease: LeaseId,
        wait: Duration,
    ) -> Result<Leadership, Error> {
        let msg = pb::CampaignRequest {
            shard_id: 0,
            name: name.to_string(),
            candidate: candidate.to_string(),
            lease: lease.0,
            // A campaign is idempotent by (candidate, lease) and long-polls on the server, which
            // proposes it again after every lost attempt: it carries no write id.
            write: None,
        };
        let (_, response) = self
            .execute_with("campaign", OpKind::Idempotent, Target::Home, Route::Leader, wait, |ch, shard, t| {
                let mut election = self.election_wire(ch);
                let req = request(in_shard!(msg.clone(), shard), t);
                async move { election.campaign(req).await }
            })
            .await?;
        response.leader.map(Leadership::from).ok_or_else(|| Error::Internal {
            message: format!("campaign for {name:?} succeeded without naming a leader"),
        })
    }

    /// Gives up leadership of `name`; `term` must be the current one (`NOT_ELECTION_LEADER`
    /// otherwise, with the current term in [`Error::current_term`]).
    pub async fn resign(&self, name: &str, term: Term) -> Result<(), Error> {
        let pending = self.begin_write();
        let msg = pb::ResignRequest { shard_id: 0, name: name.to_string(), term: term.0, write: pending.id() };
        self.execute("resign", OpKind::Tracked, Target::Home, Route::Leader, |ch, shard, t| {
            let mut election = self.election_wire(ch);
            let req = request(in_shard!(msg.clone(), shard), t);
            async move { election.resign(req).await }
        })
        .await?;
        Ok(())
    }

    /// Who leads `name` now (linearizable, through the leader).
    pub async fn election_leader(&self, name: &str) -> Result<ElectionState, Error> {
        let msg = pb::LeaderRequest { shard_id: 0, name: name.to_string(), serializable: false };
        let response = self
            .execute("election_leader", OpKind::Read, Target::Home, Route::Leader, |ch, shard, t| {
                let mut election = self.election_wire(ch);
                let req = request(in_shard!(msg.clone(), shard), t);
                async move { election.leader(req).await }
            })
            .await?;
        Ok(ElectionState {
            leader: response.leader.map(Leadership::from),
            last_term: Term(response.last_term),
            revision: revision(response.header.as_ref()),
        })
    }

    /// Observes `name`: the current leader, then every change; reconnects on breaks.
    pub fn observe(&self, name: &str) -> LeaderObserver {
        let msg = pb::ObserveRequest { shard_id: 0, name: name.to_string() };
        let client = self.clone();
        LeaderObserver(Resuming::new(
            self.clone(),
            "observe",
            Box::new(move |ch, shard| {
                let mut election = client.election_wire(ch);
                let req = tonic::Request::new(in_shard!(msg.clone(), shard));
                async move { election.observe(req).await }.boxed()
            }),
        ))
    }
}
