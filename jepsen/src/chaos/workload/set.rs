//! The set workload: each process adds unique elements (`set/<e>` = `e`); after healing one
//! final read lists the whole set (a range read over every shard, merged by the client, paged).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use hypercache_client::{Client, Error, RangeOptions};

use super::Context;
use crate::chaos::history::{EventType, Op};

const PREFIX: &str = "set/";

pub fn next(ctx: &Context) -> Op {
    Op::Add { element: ctx.next_value.fetch_add(1, Ordering::Relaxed) }
}

pub async fn apply(client: &Client, op: &Op) -> Result<(EventType, Op), Error> {
    match op {
        Op::Add { element } => {
            client.put(format!("{PREFIX}{element:012}"), element.to_string()).await?;
            Ok((EventType::Ok, op.clone()))
        }
        Op::ReadSet { .. } => {
            let mut elements = Vec::new();
            let mut continuation: Option<Bytes> = None;
            loop {
                let options = RangeOptions { continuation: continuation.take(), ..RangeOptions::prefix(PREFIX) };
                let page = client.range(options).await?;
                for kv in &page.kvs {
                    // A key that does not parse is an element nobody added: u64::MAX.
                    let element = kv
                        .key
                        .get(PREFIX.len()..)
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .and_then(|s| s.parse().ok());
                    elements.push(element.unwrap_or(u64::MAX));
                }
                match page.continuation {
                    Some(c) => continuation = Some(c),
                    None => break,
                }
            }
            Ok((EventType::Ok, Op::ReadSet { elements: Some(elements) }))
        }
        other => Err(super::wrong_workload("set", other)),
    }
}
