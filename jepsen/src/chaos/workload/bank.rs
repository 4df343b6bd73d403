//! The bank workload: [`ACCOUNTS`] accounts that all share the hash tag `{bank}`, so one shard
//! holds them all and one transaction can change two of them, and one range page reads them
//! all at one revision (ADR 35: a page is one snapshot). Money only moves between accounts, so
//! every read must see the same total.
//!
//! - **Setup** ([`open_accounts`], recorded as `open-accounts` by its own process before the
//!   workers start): one transaction that creates every account with [`INITIAL_BALANCE`] if
//!   none exists, and otherwise changes nothing; `ok` either way (afterwards the accounts
//!   exist), so an attempt after an `info` one is safe. The checker takes the accounts and the
//!   total from this op, so a stored history is checkable on its own.
//! - **`transfer`**: read both balances (one read-only transaction), then one transaction that
//!   puts both new balances if neither key's `mod_revision` changed since. A comparison that
//!   did not hold, or too little money in `from`, is `fail`: nothing was written.
//! - **`read-all`**: one linearizable range over [`PREFIX`]. A balance that does not parse is
//!   recorded as `i64::MIN`, which the checker reports as negative.
//!
//! Not done: transfers between accounts of different shards (the client refuses such a
//! transaction, `CROSS_SHARD`; there is no cross-shard commit).

use std::collections::BTreeMap;

use hypercache_client::{Client, Compare, Error, OpResult, RangeOptions, Txn};
use rand::rngs::StdRng;
use rand::Rng;

use crate::chaos::history::{EventType, Op};

/// The key prefix of every account; a complete hash tag, so a prefix range is one shard.
pub const PREFIX: &str = "{bank}acct/";
pub const ACCOUNTS: usize = 8;
pub const INITIAL_BALANCE: i64 = 100;
/// Transfers move 1..=MAX_TRANSFER.
const MAX_TRANSFER: i64 = 5;

pub fn account(i: usize) -> String {
    format!("{PREFIX}{i:02}")
}

/// The setup op (see the module essay).
pub fn open_accounts() -> Op {
    Op::OpenAccounts { accounts: (0..ACCOUNTS).map(account).collect(), balance: INITIAL_BALANCE }
}

/// The final read after healing.
pub fn final_read() -> Op {
    Op::ReadAll { balances: None, final_read: true }
}

/// Half transfers between two distinct random accounts, half reads.
pub fn next(rng: &mut StdRng) -> Op {
    if rng.gen_bool(0.5) {
        return Op::ReadAll { balances: None, final_read: false };
    }
    let from = rng.gen_range(0..ACCOUNTS);
    // Any account but `from`.
    let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
    Op::Transfer { from: account(from), to: account(to), amount: rng.gen_range(1..=MAX_TRANSFER) }
}

fn parse(value: &[u8]) -> i64 {
    std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).unwrap_or(i64::MIN)
}

/// Runs a bank op: `Ok` with what was read, or `Fail` for a transfer that wrote nothing.
pub async fn apply(client: &Client, op: &Op) -> Result<(EventType, Op), Error> {
    match op {
        Op::OpenAccounts { accounts, balance } => {
            let txn = accounts.iter().fold(Txn::new(), |txn, key| {
                txn.when(Compare::missing(key.clone()))
                    .then(hypercache_client::Op::put(key.clone(), balance.to_string()))
            });
            client.txn(txn).await?;
            Ok((EventType::Ok, op.clone()))
        }
        Op::Transfer { from, to, amount } => transfer(client, op, from, to, *amount).await,
        Op::ReadAll { final_read, .. } => {
            let page = client.range(RangeOptions::prefix(PREFIX)).await?;
            if page.continuation.is_some() || page.revisions.len() > 1 {
                // Not one snapshot any more: say so rather than record a read the checker
                // would misjudge.
                return Err(Error::Config {
                    message: format!("bank: the accounts under {PREFIX} did not come back as one page of one shard"),
                });
            }
            let balances: BTreeMap<String, i64> =
                page.kvs.iter().map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), parse(&kv.value))).collect();
            Ok((EventType::Ok, Op::ReadAll { balances: Some(balances), final_read: *final_read }))
        }
        other => Err(super::wrong_workload("bank", other)),
    }
}

async fn transfer(client: &Client, op: &Op, from: &str, to: &str, amount: i64) -> Result<(EventType, Op), Error> {
    use hypercache_client::Op as TxnOp;
    let read = client.txn(Txn::new().then(TxnOp::get(from.to_string())).then(TxnOp::get(to.to_string()))).await?;
    let (Some(OpResult::Get(Some(a))), Some(OpResult::Get(Some(b)))) = (read.responses.first(), read.responses.get(1))
    else {
        // An account missing: nothing to move (the checker reports the missing account
        // through the reads).
        return Ok((EventType::Fail, op.clone()));
    };
    let (balance_from, balance_to) = (parse(&a.value), parse(&b.value));
    // Too little money, or a balance that did not parse (`i64::MIN`): nothing to move.
    let (Some(new_from), Some(new_to)) = (balance_from.checked_sub(amount), balance_to.checked_add(amount)) else {
        return Ok((EventType::Fail, op.clone()));
    };
    if new_from < 0 || balance_to == i64::MIN {
        return Ok((EventType::Fail, op.clone()));
    }
    let write = Txn::new()
        .when(Compare::mod_revision(from.to_string(), a.mod_revision))
        .when(Compare::mod_revision(to.to_string(), b.mod_revision))
        .then(TxnOp::put(from.to_string(), new_from.to_string()))
        .then(TxnOp::put(to.to_string(), new_to.to_string()));
    let result = client.txn(write).await?;
    Ok((if result.succeeded { EventType::Ok } else { EventType::Fail }, op.clone()))
}
