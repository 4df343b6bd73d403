//! Range reads across shards.
//!
//! Keys are spread over the shards by hash, so a range or prefix covers every shard unless the
//! prefix holds a complete hash tag (`board:{b7}:` — every key under it has the tag `b7`, so one
//! shard holds them all). A multi-shard page is built by asking every shard for up to `limit`
//! keys concurrently and merging their pages in key order:
//!
//! - A shard that reported more keys is only complete up to the last key it returned, so the
//!   merged page stops at the smallest such key, then at `limit`. What is returned is thus
//!   exactly the first keys of the whole range, and `continuation` is set when any shard had
//!   more or keys were cut.
//! - The continuation of a merged page is the client's own: a tag byte and the last key
//!   returned. The next page asks every shard for keys after it (a prefix becomes the range
//!   `[prefix, end of prefix)`). A single-shard page passes the server's continuation through.
//! - Each shard's revision is reported in [`RangePage::revisions`]; the shards were read at
//!   different moments, so a merged page is not one snapshot of the cluster (each shard's part
//!   is linearizable on its own unless serializable).
//!
//! Not done: a `[start, end)` range is always sent to every shard, even when both bounds share
//! a hash tag.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::future::try_join_all;
use hypercache_proto::keys::prefix_end;
use hypercache_proto::v1 as pb;

use crate::call::request;
use crate::client::Client;
use crate::error::Error;
use crate::ids::ShardId;
use crate::retry::OpKind;
use crate::target::{Route, Target};
use crate::types::{KeyValue, RangeOptions, RangePage};

/// The page size the server uses for `limit = 0`.
const SERVER_DEFAULT_LIMIT: u32 = 1000;

/// First byte of a merged page's continuation; the rest is the last key returned.
const AFTER_KEY_TAG: u8 = 0x01;

impl Client {
    /// Reads one page of keys in key order, across every shard the range covers: unless the
    /// prefix holds a complete hash tag, each shard is asked for up to `limit` keys and the
    /// pages are merged so that the page holds exactly the first keys of the range (see
    /// [`RangePage::revisions`] for the shards' revisions). Pass `continuation` back unchanged
    /// for the next page. Linearizable per shard unless `options.serializable`.
    pub async fn range(&self, options: RangeOptions) -> Result<RangePage, Error> {
        let table = self.routing().await?;
        let shards = if options.start.is_empty() && options.end.is_empty() {
            table.shards_for_prefix(&options.prefix)
        } else {
            table.shard_ids().collect()
        };
        if let [shard] = shards[..] {
            return self.range_shard(shard, &options).await;
        }
        let after = match options.continuation.as_deref() {
            None | Some([]) => None,
            Some([AFTER_KEY_TAG, key @ ..]) => Some(Bytes::copy_from_slice(key)),
            Some(_) => {
                return Err(Error::config(
                    "range: this continuation does not come from a multi-shard page of this cluster",
                ))
            }
        };
        let leg = leg_options(&options, after.as_ref());
        let pages = try_join_all(shards.iter().map(|shard| self.range_shard(*shard, &leg))).await?;
        let limit = if options.limit == 0 { SERVER_DEFAULT_LIMIT } else { options.limit };
        Ok(merge(shards.into_iter().zip(pages).collect(), limit as usize, after))
    }

    /// One page from one shard, the server's continuation passed through.
    pub(crate) async fn range_shard(&self, shard: ShardId, options: &RangeOptions) -> Result<RangePage, Error> {
        let msg = options.to_request(shard);
        let route = if options.serializable { Route::First } else { Route::Leader };
        let response = self
            .execute("range", OpKind::Read, Target::Shard(shard), route, |ch, shard, t| {
                let mut kv = self.kv(ch);
                let req = request(pb::RangeRequest { shard_id: shard.0, ..msg.clone() }, t);
                let (seen, serializable) = (&self.inner.seen, options.serializable);
                async move { seen.check(shard, serializable, kv.range(req).await) }
            })
            .await?;
        Ok(RangePage::from_shard(shard, response))
    }
}

/// What every shard is asked for: the caller's range, starting after `after` when continuing.
fn leg_options(options: &RangeOptions, after: Option<&Bytes>) -> RangeOptions {
    let mut leg = RangeOptions { continuation: None, ..options.clone() };
    if let Some(after) = after {
        let mut next = after.to_vec();
        next.push(0);
        if !options.prefix.is_empty() {
            // Empty: the end of the key space.
            leg.end = prefix_end(&options.prefix).map(Bytes::from).unwrap_or_default();
            leg.prefix = Bytes::new();
        }
        leg.start = Bytes::from(next).max(leg.start);
    }
    leg
}

/// Merges the pages of several shards (see the module documentation). `after` is where this
/// page started, reused as the continuation if a shard claims more without returning anything.
pub(crate) fn merge(pages: Vec<(ShardId, RangePage)>, limit: usize, after: Option<Bytes>) -> RangePage {
    let revisions: BTreeMap<ShardId, u64> = pages.iter().map(|(shard, page)| (*shard, page.revision)).collect();
    let shard_has_more = pages.iter().any(|(_, page)| page.continuation.is_some());
    // Keys above the last one a shard with more keys returned are not known to be complete.
    let bound: Option<Bytes> = pages
        .iter()
        .filter(|(_, page)| page.continuation.is_some())
        .filter_map(|(_, page)| page.kvs.last().map(|kv| kv.key.clone()))
        .min();
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<KeyValue>>> =
        pages.into_iter().map(|(_, page)| page.kvs.into_iter().peekable()).collect();
    let mut kvs = Vec::new();
    let mut cut = false;
    loop {
        let smallest = heads
            .iter_mut()
            .enumerate()
            .filter_map(|(i, head)| head.peek().map(|kv| (i, kv.key.clone())))
            .min_by(|a, b| a.1.cmp(&b.1));
        let Some((i, key)) = smallest else { break };
        if kvs.len() >= limit || bound.as_ref().is_some_and(|bound| key > *bound) {
            cut = true;
            break;
        }
        kvs.extend(heads[i].next());
    }
    let continuation = (shard_has_more || cut).then(|| {
        let last = kvs.last().map(|kv| kv.key.clone()).or(after).unwrap_or_default();
        let mut token = Vec::with_capacity(last.len() + 1);
        token.push(AFTER_KEY_TAG);
        token.extend_from_slice(&last);
        Bytes::from(token)
    });
    let revision = if revisions.len() == 1 { revisions.values().copied().sum() } else { 0 };
    RangePage { kvs, continuation, revision, revisions }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(keys: &[&'static str], more: bool, revision: u64) -> RangePage {
        RangePage {
            kvs: keys
                .iter()
                .map(|k| KeyValue { key: Bytes::from_static(k.as_bytes()), ..Default::default() })
                .collect(),
            continuation: more.then(|| Bytes::from_static(b"server-token")),
            revision,
            revisions: BTreeMap::new(),
        }
    }

    fn keys(page: &RangePage) -> Vec<&[u8]> {
        page.kvs.iter().map(|kv| kv.key.as_ref()).collect()
    }

    #[test]
    fn pages_merge_in_key_order_up_to_the_limit() {
        let pages =
            vec![(ShardId(0), page(&["a", "d", "e"], false, 7)), (ShardId(1), page(&["b", "c", "f"], false, 3))];
        let merged = merge(pages.clone(), 10, None);
        assert_eq!(keys(&merged), vec![&b"a"[..], b"b", b"c", b"d", b"e", b"f"]);
        assert_eq!((merged.continuation, merged.revision), (None, 0));
        assert_eq!(merged.revisions, BTreeMap::from([(ShardId(0), 7), (ShardId(1), 3)]));

        let cut = merge(pages, 4, None);
        assert_eq!(keys(&cut), vec![&b"a"[..], b"b", b"c", b"d"]);
        assert_eq!(cut.continuation.as_deref(), Some(&b"\x01d"[..]), "resume after the last key returned");
    }

    #[test]
    fn a_shard_with_more_keys_bounds_the_page() {
        // Shard 1 stopped at "c" (e.g. cut at 4 MiB): keys after "c" may be missing from it,
        // so "d" and "e" of shard 0 wait for the next page.
        let pages = vec![(ShardId(0), page(&["a", "d", "e"], false, 1)), (ShardId(1), page(&["b", "c"], true, 1))];
        let merged = merge(pages, 10, None);
        assert_eq!(keys(&merged), vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(merged.continuation.as_deref(), Some(&b"\x01c"[..]));
        // Nothing returned although a shard claims more: the page ends where it started.
        let empty = merge(vec![(ShardId(0), page(&[], true, 1))], 10, Some(Bytes::from_static(b"k")));
        assert_eq!(empty.continuation.as_deref(), Some(&b"\x01k"[..]));
    }

    #[test]
    fn continuing_asks_for_keys_after_the_last_one() {
        let after = Bytes::from_static(b"p/b");
        let leg = leg_options(&RangeOptions::prefix("p/"), Some(&after));
        assert_eq!((leg.start.as_ref(), leg.end.as_ref(), leg.prefix.is_empty()), (&b"p/b\0"[..], &b"p0"[..], true));
        let leg = leg_options(&RangeOptions::between("a", "z"), Some(&after));
        assert_eq!((leg.start.as_ref(), leg.end.as_ref()), (&b"p/b\0"[..], &b"z"[..]));
        let first = leg_options(&RangeOptions::prefix("p/"), None);
        assert_eq!((first.prefix.as_ref(), first.start.is_empty()), (&b"p/"[..], true));
    }
}
