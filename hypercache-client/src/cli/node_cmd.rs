//! `hcctl node`: cluster membership (list members, decommission one).

use clap::Subcommand;
use hypercache_proto::v1 as pb;
use serde_json::json;

use super::output::Out;
use super::{exit, Failure};
use crate::Client;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the cluster's members (id, name, endpoint, voter or learner), as the first
    /// endpoint that answers sees them.
    List,
    /// Remove NAME from the cluster for good (scale-down): run it before the node is stopped
    /// for the last time. The last voter is refused. The removed node keeps its data but never
    /// rejoins by itself; wipe its data dir (delete the PVC) before reusing the name.
    Decommission { name: String },
}

fn member_line(m: &pb::Member) -> String {
    format!("{}\t{}\t{}\t{}", m.node_id, m.name, m.endpoint, if m.voter { "voter" } else { "learner" })
}

fn member_json(m: &pb::Member) -> serde_json::Value {
    json!({"node_id": m.node_id, "name": m.name, "endpoint": m.endpoint, "voter": m.voter})
}

fn print_members(out: &mut Out, json: bool, members: &[pb::Member], extra: serde_json::Value) -> Result<(), Failure> {
    if json {
        let mut value = json!({"members": members.iter().map(member_json).collect::<Vec<_>>()});
        if let (Some(obj), Some(more)) = (value.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        out.update(true, "", &value)?;
    } else {
        for m in members {
            out.line(&member_line(m))?;
        }
        out.flush()?;
    }
    Ok(())
}

pub(super) async fn run(client: &Client, out: &mut Out, json: bool, command: NodeCommand) -> Result<u8, Failure> {
    match command {
        NodeCommand::List => {
            let rows = client.cluster_status().await;
            let mut last_error = None;
            for (_, answer) in rows {
                match answer {
                    Ok(status) => {
                        print_members(out, json, &status.members, json!({"from": status.name}))?;
                        return Ok(exit::OK);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            match last_error {
                Some(e) => Err(Failure::Client(e)),
                None => Ok(exit::OK),
            }
        }
        NodeCommand::Decommission { name } => {
            let removed = client.decommission(&name).await?;
            if !json {
                out.line(&format!("decommissioned {name} (node {}); members now:", removed.node_id))?;
            }
            print_members(out, json, &removed.members, json!({"decommissioned": name, "node_id": removed.node_id}))?;
            Ok(exit::OK)
        }
    }
}
