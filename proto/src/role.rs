//! A replica's Raft role and its name on the wire (`ReplicaStatus.role`, `StatusResponse.role`).
//! The one table from role to name and back: the server writes names only from it, and
//! everything that reads a status (the client tools, the benchmarks, the chaos suite, the
//! placement driver) reads them only through it, so no side compares role strings of its own.

use std::fmt;

/// A replica's Raft role (openraft's server state, under our names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

/// A role name this version does not know (a newer peer's report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown replica role {:?}", self.0)
    }
}

impl std::error::Error for UnknownRole {}

impl Role {
    /// Every role, for tests that walk the table.
    pub const ALL: [Role; 5] = [Role::Leader, Role::Follower, Role::Candidate, Role::Learner, Role::Shutdown];

    /// The role's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }

    /// The role a wire name stands for.
    pub fn from_name(name: &str) -> Result<Role, UnknownRole> {
        Role::ALL.into_iter().find(|r| r.name() == name).ok_or_else(|| UnknownRole(name.to_string()))
    }

    /// Whether a status' `role` field names the leader.
    pub fn is_leader(name: &str) -> bool {
        Role::from_name(name) == Ok(Role::Leader)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_reads_back_from_its_name() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.name()), Ok(role));
        }
        assert_eq!(Role::from_name("observer"), Err(UnknownRole("observer".into())));
        assert!(Role::is_leader("leader"));
        assert!(!Role::is_leader("follower") && !Role::is_leader("Leader"));
    }
}
