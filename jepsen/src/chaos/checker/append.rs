//! The list-append checker, after Elle (Kingsbury and Alvaro, "Elle: Inferring Isolation
//! Anomalies from Experimental Observations", VLDB 2020). Every append writes a value used
//! once in the run, and a read returns a key's whole list, so each read shows the order of every
//! append it saw. From that:
//!
//! - **Direct anomalies**, each proof on its own: an element nobody appended to that key
//!   (`garbage`); an element twice in one list (`duplicate`: an append applied twice); an element
//!   whose append certainly failed (`aborted-read`, Adya's G1a); two reads of a key of which
//!   neither is a prefix of the other (`incompatible-order`: the key's history forked, or an
//!   append was lost from the middle); an acknowledged append missing from its key's final read
//!   after healing (`lost-append`).
//! - **Dependencies** between transactions, from each key's version order (its longest read; by
//!   the prefix check every other read is a prefix of it): `ww` from the appender of each element
//!   to the appender of the next; `wr` from the appender of a read's last element to the reader;
//!   `rw` from a reader to the appender of the first element it did not see; and `rt` (real time)
//!   from a transaction to every transaction invoked after it completed, reduced to the
//!   frontier of latest completions (a transaction that completed before another one's
//!   invocation reaches later ones through it), since HyperCache promises strict
//!   serializability within a shard. A cycle means no order of the transactions explains what
//!   they saw. It is reported with its shortest path and named as Elle does by its edges: `G0`
//!   (`ww` only), `G1c` (`ww` and `wr`), `G-single` (one `rw`: e.g. read skew), `G2` (more than
//!   one `rw`), with `-realtime` when only a real-time edge closes it (a stale read).
//!
//! `info` transactions are in the graph only through appends some read saw (then they took
//! effect), with no real-time edge out of them: they may have completed at any time. `fail`
//! transactions wrote nothing, so nothing leads to or from them. Without a successful final read
//! the verdict is at best `unknown`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::Validity;
use crate::chaos::history::{EventType, Mop, Op, Operation, Process};

/// At most this many anomalies of each kind are listed (all are counted).
const LISTED: usize = 10;

/// One transaction, as an anomaly names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRef {
    /// Its position in the paired history.
    pub index: usize,
    pub process: Process,
    pub outcome: EventType,
    pub invoke: u64,
    pub complete: Option<u64>,
    pub mops: Vec<Mop>,
}

/// How one transaction must precede another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    Ww,
    Wr,
    Rw,
    Rt,
}

/// One step of a cycle: `txn` must precede the next step's (the first's, after the last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub txn: TxnRef,
    pub edge: Edge,
    /// The key behind a `ww`, `wr` or `rw` edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "anomaly", rename_all = "kebab-case")]
pub enum Anomaly {
    Garbage { key: String, element: u64, reader: TxnRef },
    Duplicate { key: String, element: u64, reader: TxnRef },
    AbortedRead { key: String, element: u64, reader: TxnRef, writer: TxnRef },
    IncompatibleOrder { key: String, read: Vec<u64>, longest: Vec<u64>, reader: TxnRef, longest_reader: TxnRef },
    LostAppend { key: String, element: u64, writer: TxnRef, final_read: Vec<u64> },
    Cycle { kind: String, steps: Vec<Step> },
}

impl Anomaly {
    pub fn kind(&self) -> String {
        match self {
            Anomaly::Garbage { .. } => "garbage".into(),
            Anomaly::Duplicate { .. } => "duplicate".into(),
            Anomaly::AbortedRead { .. } => "aborted-read".into(),
            Anomaly::IncompatibleOrder { .. } => "incompatible-order".into(),
            Anomaly::LostAppend { .. } => "lost-append".into(),
            Anomaly::Cycle { kind, .. } => kind.clone(),
        }
    }
}

impl std::fmt::Display for TxnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = self.complete.map_or("never".to_string(), |t| format!("{:.3}s", t as f64 / 1e9));
        write!(
            f,
            "op {} ({:?}, process {}, invoked {:.3}s, completed {done})",
            self.index,
            self.outcome,
            self.process,
            self.invoke as f64 / 1e9
        )
    }
}

/// One line naming the transactions that prove it, for `hcjepsen`'s output.
impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anomaly::Garbage { key, element, reader } => {
                write!(f, "garbage: {key} holds {element}, which nobody appended to it, read by {reader}")
            }
            Anomaly::Duplicate { key, element, reader } => {
                write!(f, "duplicate: {key} holds {element} twice, read by {reader}")
            }
            Anomaly::AbortedRead { key, element, reader, writer } => {
                write!(f, "aborted-read: {key} holds {element}, appended by {writer}, read by {reader}")
            }
            Anomaly::IncompatibleOrder { key, read, longest, reader, longest_reader } => write!(
                f,
                "incompatible-order: {key} read as {read:?} by {reader}, not a prefix of {longest:?} read by {longest_reader}"
            ),
            Anomaly::LostAppend { key, element, writer, final_read } => {
                write!(f, "lost-append: {element} appended to {key} by {writer}, not in the final read {final_read:?}")
            }
            Anomaly::Cycle { kind, steps } => {
                write!(f, "{kind}:")?;
                for step in steps {
                    let key = step.key.as_deref().map(|k| format!(" on {k}")).unwrap_or_default();
                    write!(f, " {} -{:?}{key}->", step.txn, step.edge)?;
                }
                write!(f, " (back to the first)")
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// Keys read or appended to.
    pub keys: usize,
    /// Elements in the longest list read.
    pub longest_list: usize,
    /// Dependency edges by kind (after the real-time reduction).
    pub edges: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub valid: Validity,
    pub txns: Counts,
    /// Successful final-read transactions.
    pub final_reads: usize,
    /// Anomalies by kind, all of them counted.
    pub anomaly_counts: BTreeMap<String, usize>,
    /// The first [`LISTED`] of each kind.
    pub anomalies: Vec<Anomaly>,
}

/// The transactions of a history and what their appends and reads say.
struct Txns<'a> {
    ops: &'a [Operation],
    /// Indices of the `txn` operations.
    all: Vec<usize>,
    /// Every appended element: its key and the transaction that appended it.
    appender: HashMap<u64, (&'a str, usize)>,
    /// Every read of a transaction that completed `ok`: (txn, key, list).
    reads: Vec<(usize, &'a str, &'a [u64])>,
}

impl<'a> Txns<'a> {
    fn new(ops: &'a [Operation]) -> Self {
        let mut txns = Txns { ops, all: Vec::new(), appender: HashMap::new(), reads: Vec::new() };
        for (i, o) in ops.iter().enumerate() {
            let Op::Txn { mops, .. } = &o.op else { continue };
            txns.all.push(i);
            for m in mops {
                match m {
                    Mop::Append { key, value } => {
                        txns.appender.insert(*value, (key.as_str(), i));
                    }
                    Mop::R { key, value: Some(list) } if o.outcome == EventType::Ok => {
                        txns.reads.push((i, key.as_str(), list.as_slice()));
                    }
                    Mop::R { .. } => {}
                }
            }
        }
        txns
    }

    fn txn(&self, i: usize) -> TxnRef {
        let o = &self.ops[i];
        let mops = match &o.op {
            Op::Txn { mops, .. } => mops.clone(),
            _ => Vec::new(),
        };
        TxnRef { index: i, process: o.process, outcome: o.outcome, invoke: o.invoke, complete: o.complete, mops }
    }

    /// The transaction that appended `element` to `key`, if it may have taken effect.
    fn writer(&self, key: &str, element: u64) -> Option<usize> {
        match self.appender.get(&element) {
            Some(&(k, i)) if k == key && self.ops[i].outcome != EventType::Fail => Some(i),
            _ => None,
        }
    }
}

/// Collects anomalies, listing the first few of each kind.
#[derive(Default)]
struct Found {
    counts: BTreeMap<String, usize>,
    listed: Vec<Anomaly>,
}

impl Found {
    fn add(&mut self, anomaly: Anomaly) {
        let n = self.counts.entry(anomaly.kind()).or_insert(0);
        *n += 1;
        if *n <= LISTED {
            self.listed.push(anomaly);
        }
    }
}

pub fn check(ops: &[Operation]) -> Report {
    let txns = Txns::new(ops);
    let mut found = Found::default();
    let mut counts = Counts::default();
    for &i in &txns.all {
        match ops[i].outcome {
            EventType::Ok => counts.ok += 1,
            EventType::Fail => counts.fail += 1,
            EventType::Info | EventType::Invoke => counts.info += 1,
        }
    }
    direct_anomalies(&txns, &mut found);
    let orders = version_orders(&txns, &mut found);
    let final_reads = lost_appends(&txns, &mut found);
    counts.keys = txns
        .all
        .iter()
        .flat_map(|&i| match &ops[i].op {
            Op::Txn { mops, .. } => mops.iter().map(Mop::key).collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect::<HashSet<_>>()
        .len();
    counts.longest_list = orders.values().map(|(order, _)| order.len()).max().unwrap_or(0);
    let graph = Graph::build(&txns, &orders);
    counts.edges = graph.counts();
    for cycle in graph.cycles() {
        found.add(Anomaly::Cycle {
            kind: cycle_kind(&cycle),
            steps: cycle
                .into_iter()
                .map(|(from, edge, key)| Step { txn: txns.txn(from), edge, key: key.map(str::to_string) })
                .collect(),
        });
    }
    let valid = if !found.counts.is_empty() {
        Validity::False
    } else if final_reads == 0 {
        Validity::Unknown
    } else {
        Validity::True
    };
    Report { valid, txns: counts, final_reads, anomaly_counts: found.counts, anomalies: found.listed }
}

/// Garbage, duplicate and aborted reads: each read on its own (each element reported once).
fn direct_anomalies(txns: &Txns, found: &mut Found) {
    // An element seen by many reads is one anomaly, reported with its first reader.
    let (mut reported, mut duplicated) = (HashSet::new(), HashSet::new());
    for &(reader, key, list) in &txns.reads {
        let mut seen = HashSet::new();
        for &element in list {
            if !seen.insert(element) && duplicated.insert((key, element)) {
                found.add(Anomaly::Duplicate { key: key.into(), element, reader: txns.txn(reader) });
            }
            if !reported.insert((key, element)) {
                continue;
            }
            match txns.appender.get(&element) {
                Some(&(k, writer)) if k == key => {
                    if txns.ops[writer].outcome == EventType::Fail {
                        found.add(Anomaly::AbortedRead {
                            key: key.into(),
                            element,
                            reader: txns.txn(reader),
                            writer: txns.txn(writer),
                        });
                    }
                }
                _ => found.add(Anomaly::Garbage { key: key.into(), element, reader: txns.txn(reader) }),
            }
        }
    }
}

/// Each key's version order (its longest read, with the reader), after checking that every
/// other read of the key is a prefix of it. A key with incompatible reads gets no order: its
/// anomaly is reported and nothing is inferred from it.
fn version_orders<'a>(txns: &Txns<'a>, found: &mut Found) -> BTreeMap<&'a str, (&'a [u64], usize)> {
    let mut longest: BTreeMap<&str, (&[u64], usize)> = BTreeMap::new();
    for &(reader, key, list) in &txns.reads {
        let entry = longest.entry(key).or_insert((list, reader));
        if list.len() > entry.0.len() {
            *entry = (list, reader);
        }
    }
    let mut broken = HashSet::new();
    for &(reader, key, list) in &txns.reads {
        let (order, longest_reader) = longest[key];
        if !order.starts_with(list) {
            broken.insert(key);
            found.add(Anomaly::IncompatibleOrder {
                key: key.into(),
                read: list.to_vec(),
                longest: order.to_vec(),
                reader: txns.txn(reader),
                longest_reader: txns.txn(longest_reader),
            });
        }
    }
    longest.retain(|key, _| !broken.contains(key));
    longest
}

/// Acknowledged appends missing from their key's final read; returns how many final-read
/// transactions succeeded.
fn lost_appends(txns: &Txns, found: &mut Found) -> usize {
    let mut finals = 0;
    let mut final_lists: HashMap<&str, &[u64]> = HashMap::new();
    for &i in &txns.all {
        let o = &txns.ops[i];
        if let Op::Txn { mops, final_read: true } = &o.op {
            if o.outcome == EventType::Ok {
                finals += 1;
                for m in mops {
                    if let Mop::R { key, value: Some(list) } = m {
                        final_lists.insert(key, list);
                    }
                }
            }
        }
    }
    let mut elements: Vec<(&u64, &(&str, usize))> = txns.appender.iter().collect();
    elements.sort();
    for (&element, &(key, writer)) in elements {
        if txns.ops[writer].outcome != EventType::Ok {
            continue;
        }
        if let Some(list) = final_lists.get(key) {
            if !list.contains(&element) {
                found.add(Anomaly::LostAppend {
                    key: key.into(),
                    element,
                    writer: txns.txn(writer),
                    final_read: list.to_vec(),
                });
            }
        }
    }
    finals
}

/// An edge's head, kind and key: `(to, edge, key)` out of a node, `(from, edge, key)` in a cycle.
type Link<'a> = (usize, Edge, Option<&'a str>);

/// The dependency graph over transaction indices.
struct Graph<'a> {
    /// Per history index: the edges out of it.
    out: HashMap<usize, Vec<Link<'a>>>,
    nodes: Vec<usize>,
}

impl<'a> Graph<'a> {
    fn build(txns: &Txns<'a>, orders: &BTreeMap<&'a str, (&'a [u64], usize)>) -> Self {
        let mut edges: HashSet<(usize, usize, Edge, Option<&'a str>)> = HashSet::new();
        let mut add = |from: usize, to: usize, edge: Edge, key: Option<&'a str>| {
            if from != to {
                edges.insert((from, to, edge, key));
            }
        };
        for (&key, &(order, _)) in orders {
            for pair in order.windows(2) {
                if let (Some(a), Some(b)) = (txns.writer(key, pair[0]), txns.writer(key, pair[1])) {
                    add(a, b, Edge::Ww, Some(key));
                }
            }
        }
        for &(reader, key, list) in &txns.reads {
            let Some(&(order, _)) = orders.get(key) else { continue };
            if let Some(w) = list.last().and_then(|&e| txns.writer(key, e)) {
                add(w, reader, Edge::Wr, Some(key));
            }
            if let Some(w) = order.get(list.len()).and_then(|&e| txns.writer(key, e)) {
                add(reader, w, Edge::Rw, Some(key));
            }
        }
        // Nodes: every `ok` transaction, and every `info` one whose append was seen.
        let seen_info: HashSet<usize> = orders
            .iter()
            .flat_map(|(&key, &(order, _))| order.iter().filter_map(move |&e| txns.writer(key, e)))
            .filter(|&w| txns.ops[w].outcome != EventType::Ok)
            .collect();
        let mut nodes: Vec<usize> = txns
            .all
            .iter()
            .copied()
            .filter(|&i| txns.ops[i].outcome == EventType::Ok || seen_info.contains(&i))
            .collect();
        nodes.sort_unstable();
        for (from, to) in realtime(txns.ops, &nodes) {
            add(from, to, Edge::Rt, None);
        }
        let mut out: HashMap<usize, Vec<Link>> = HashMap::new();
        let mut sorted: Vec<_> = edges.into_iter().collect();
        // Deterministic reports: the same history always yields the same cycles.
        sorted.sort_by_key(|&(from, to, edge, key)| (from, to, edge as u8, key));
        for (from, to, edge, key) in sorted {
            out.entry(from).or_default().push((to, edge, key));
        }
        Graph { out, nodes }
    }

    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, edge, _) in self.out.values().flatten() {
            *counts.entry(format!("{edge:?}").to_lowercase()).or_insert(0) += 1;
        }
        counts
    }

    /// One shortest cycle per strongly connected component with more than one transaction,
    /// avoiding real-time edges where the component has a cycle without them.
    fn cycles(&self) -> Vec<Vec<Link<'a>>> {
        let mut cycles = Vec::new();
        for component in self.components() {
            let members: HashSet<usize> = component.iter().copied().collect();
            let Some(&start) = component.iter().min() else { continue };
            let cycle = component
                .iter()
                .find_map(|&s| self.shortest_cycle(s, &members, false))
                .or_else(|| self.shortest_cycle(start, &members, true));
            if let Some(cycle) = cycle {
                cycles.push(cycle);
            }
        }
        cycles
    }

    /// The shortest path from `start` back to itself inside `members`.
    fn shortest_cycle(&self, start: usize, members: &HashSet<usize>, realtime: bool) -> Option<Vec<Link<'a>>> {
        let mut parent: HashMap<usize, Link> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for &(to, edge, key) in self.out.get(&node).into_iter().flatten() {
                if !members.contains(&to) || (!realtime && edge == Edge::Rt) {
                    continue;
                }
                if to == start {
                    let mut steps = vec![(node, edge, key)];
                    let mut at = node;
                    while at != start {
                        let (prev, e, k) = parent[&at];
                        steps.push((prev, e, k));
                        at = prev;
                    }
                    steps.reverse();
                    return Some(steps);
                }
                if to != start && !parent.contains_key(&to) {
                    parent.insert(to, (node, edge, key));
                    queue.push_back(to);
                }
            }
        }
        None
    }

    /// Strongly connected components of more than one node (Tarjan's algorithm, iterative: a
    /// long history makes a deep graph).
    fn components(&self) -> Vec<Vec<usize>> {
        let mut index: HashMap<usize, usize> = HashMap::new();
        let mut low: HashMap<usize, usize> = HashMap::new();
        let mut on_stack: HashSet<usize> = HashSet::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut components = Vec::new();
        let empty = Vec::new();
        for &root in &self.nodes {
            if index.contains_key(&root) {
                continue;
            }
            // (node, next edge to look at)
            let mut work = vec![(root, 0usize)];
            while let Some(&(node, next)) = work.last() {
                if next == 0 && !index.contains_key(&node) {
                    let n = index.len();
                    index.insert(node, n);
                    low.insert(node, n);
                    stack.push(node);
                    on_stack.insert(node);
                }
                let edges = self.out.get(&node).unwrap_or(&empty);
                if let Some(&(to, _, _)) = edges.get(next) {
                    if let Some(top) = work.last_mut() {
                        top.1 += 1;
                    }
                    if !index.contains_key(&to) {
                        work.push((to, 0));
                    } else if on_stack.contains(&to) {
                        let l = low[&node].min(index[&to]);
                        low.insert(node, l);
                    }
                    continue;
                }
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    let l = low[&parent].min(low[&node]);
                    low.insert(parent, l);
                }
                if low[&node] == index[&node] {
                    let mut component = Vec::new();
                    while let Some(member) = stack.pop() {
                        on_stack.remove(&member);
                        component.push(member);
                        if member == node {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        components.push(component);
                    }
                }
            }
        }
        components
    }
}

/// Real-time edges among `nodes`: from each `ok` transaction to each transaction invoked after
/// it completed, reduced: a transaction leaves the frontier once another one invoked after its
/// completion has completed (later ones follow it through that one).
fn realtime(ops: &[Operation], nodes: &[usize]) -> Vec<(usize, usize)> {
    // (time, 0 = invoke / 1 = complete, txn): at one instant an invocation is not after a
    // completion.
    let mut events: Vec<(u64, u8, usize)> = Vec::new();
    for &i in nodes {
        events.push((ops[i].invoke, 0, i));
        if let (EventType::Ok, Some(done)) = (ops[i].outcome, ops[i].complete) {
            events.push((done, 1, i));
        }
    }
    events.sort_unstable();
    let mut frontier: Vec<usize> = Vec::new();
    let mut edges = Vec::new();
    for (_, what, i) in events {
        if what == 0 {
            edges.extend(frontier.iter().map(|&f| (f, i)));
        } else {
            frontier.retain(|&f| ops[f].complete.is_some_and(|done| done >= ops[i].invoke));
            frontier.push(i);
        }
    }
    edges
}

/// Elle's name for a cycle.
fn cycle_kind(cycle: &[Link]) -> String {
    let has = |e: Edge| cycle.iter().filter(|(_, edge, _)| *edge == e).count();
    let base = match (has(Edge::Rw), has(Edge::Wr)) {
        (0, 0) => "G0",
        (0, _) => "G1c",
        (1, _) => "G-single",
        _ => "G2",
    };
    if has(Edge::Rt) > 0 {
        format!("{base}-realtime")
    } else {
        base.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: &str, list: &[u64]) -> Mop {
        Mop::R { key: key.into(), value: Some(list.to_vec()) }
    }

    fn a(key: &str, value: u64) -> Mop {
        Mop::Append { key: key.into(), value }
    }

    /// A transaction by `process` from `invoke` to `complete` (ns).
    fn txn(process: Process, outcome: EventType, invoke: u64, complete: u64, mops: Vec<Mop>) -> Operation {
        let complete = (outcome != EventType::Info).then_some(complete);
        Operation { process, op: Op::Txn { mops, final_read: false }, outcome, invoke, complete }
    }

    fn final_read(time: u64, mops: Vec<Mop>) -> Operation {
        Operation {
            process: 99,
            op: Op::Txn { mops, final_read: true },
            outcome: EventType::Ok,
            invoke: time,
            complete: Some(time + 1),
        }
    }

    fn kinds(report: &Report) -> Vec<String> {
        report.anomaly_counts.keys().cloned().collect()
    }

    use EventType::{Fail, Info, Ok};

    #[test]
    fn a_serial_history_with_info_and_failed_appends_is_valid() {
        let h = vec![
            txn(0, Ok, 0, 10, vec![a("x", 1), r("y", &[])]),
            txn(1, Ok, 20, 30, vec![r("x", &[1]), a("y", 2)]),
            // Never seen: may not have happened.
            txn(2, Info, 35, 0, vec![a("x", 3)]),
            txn(3, Fail, 36, 40, vec![a("y", 4)]),
            // Seen: it happened, after the last read of x that did not show it.
            txn(4, Info, 41, 0, vec![a("x", 5)]),
            txn(5, Ok, 50, 60, vec![r("x", &[1, 5]), r("y", &[2]), a("x", 6)]),
            final_read(100, vec![r("x", &[1, 5, 6]), r("y", &[2])]),
        ];
        let report = check(&h);
        assert_eq!(report.valid, Validity::True, "{report:#?}");
        assert_eq!(report.final_reads, 1);
        assert_eq!((report.txns.ok, report.txns.fail, report.txns.info), (4, 1, 2));
        assert!(report.txns.edges["ww"] >= 2 && report.txns.edges["rt"] > 0, "{:?}", report.txns.edges);
    }

    #[test]
    fn no_final_read_is_unknown() {
        let report = check(&[txn(0, Ok, 0, 10, vec![a("x", 1)])]);
        assert_eq!(report.valid, Validity::Unknown);
    }

    #[test]
    fn a_doubled_append_a_failed_append_seen_and_an_element_nobody_appended_are_caught() {
        let h = vec![
            txn(0, Ok, 0, 10, vec![a("x", 1)]),
            txn(1, Fail, 11, 12, vec![a("x", 2)]),
            final_read(100, vec![r("x", &[1, 1, 2, 77])]),
        ];
        let report = check(&h);
        assert_eq!(report.valid, Validity::False);
        assert_eq!(kinds(&report), ["aborted-read", "duplicate", "garbage"]);
        let Some(Anomaly::AbortedRead { writer, .. }) =
            report.anomalies.iter().find(|a| matches!(a, Anomaly::AbortedRead { .. }))
        else {
            panic!("{report:#?}")
        };
        assert_eq!(writer.index, 1);
    }

    #[test]
    fn forked_lists_and_a_lost_acknowledged_append_are_caught() {
        let h = vec![
            txn(0, Ok, 0, 10, vec![a("x", 1)]),
            txn(1, Ok, 0, 10, vec![a("x", 2)]),
            txn(2, Ok, 20, 30, vec![r("x", &[1])]),
            txn(3, Ok, 20, 30, vec![r("x", &[2])]),
            txn(4, Ok, 40, 50, vec![a("y", 3)]),
            final_read(100, vec![r("y", &[])]),
        ];
        let report = check(&h);
        assert_eq!(report.valid, Validity::False);
        assert_eq!(kinds(&report), ["incompatible-order", "lost-append"]);
    }

    #[test]
    fn read_skew_is_a_g_single_cycle() {
        // T1 appends to x and y at once; T2 sees T1's x but not its y.
        let h = vec![
            txn(0, Ok, 0, 10, vec![a("x", 1), a("y", 2)]),
            txn(1, Ok, 0, 10, vec![r("x", &[1]), r("y", &[])]),
            final_read(100, vec![r("x", &[1]), r("y", &[2])]),
        ];
        let report = check(&h);
        assert_eq!(kinds(&report), ["G-single"], "{report:#?}");
        let Anomaly::Cycle { steps, .. } = &report.anomalies[0] else { panic!() };
        let edges: Vec<Edge> = steps.iter().map(|s| s.edge).collect();
        assert_eq!(edges.len(), 2);
        assert!(edges.contains(&Edge::Wr) && edges.contains(&Edge::Rw));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_append_is_a_realtime_cycle() {
        // The append completed before the read began, yet the read does not show it.
        let h = vec![
            txn(0, Ok, 0, 10, vec![a("x", 1)]),
            txn(1, Ok, 20, 30, vec![r("x", &[])]),
            final_read(100, vec![r("x", &[1])]),
        ];
        let report = check(&h);
        assert_eq!(kinds(&report), ["G-single-realtime"], "{report:#?}");
        // Concurrent, the same read is fine.
        let h = vec![
            txn(0, Ok, 0, 25, vec![a("x", 1)]),
            txn(1, Ok, 20, 30, vec![r("x", &[])]),
            final_read(100, vec![r("x", &[1])]),
        ];
        assert_eq!(check(&h).valid, Validity::True);
    }

    #[test]
    fn write_skew_is_g2_and_a_ww_cycle_is_g0() {
        // Each reads the key the other appends to, and neither sees the other's append.
        let h = vec![
            txn(0, Ok, 0, 10, vec![r("x", &[]), a("y", 1)]),
            txn(1, Ok, 0, 10, vec![r("y", &[]), a("x", 2)]),
            final_read(100, vec![r("x", &[2]), r("y", &[1])]),
        ];
        assert_eq!(kinds(&check(&h)), ["G2"]);
        // x says T0 before T1, y says T1 before T0.
        let h = vec![
            txn(0, Ok, 0, 10, vec![a("x", 1), a("y", 4)]),
            txn(1, Ok, 0, 10, vec![a("x", 2), a("y", 3)]),
            final_read(100, vec![r("x", &[1, 2]), r("y", &[3, 4])]),
        ];
        assert_eq!(kinds(&check(&h)), ["G0"]);
    }

    #[test]
    fn the_realtime_frontier_keeps_every_implied_order() {
        // a completes, b runs after a, c after b: a -> b -> c, and no direct a -> c edge is
        // needed; d overlaps c only.
        let ops = vec![
            txn(0, Ok, 0, 10, vec![]),
            txn(1, Ok, 20, 30, vec![]),
            txn(2, Ok, 40, 50, vec![]),
            txn(3, Ok, 35, 45, vec![]),
        ];
        let mut edges = realtime(&ops, &[0, 1, 2, 3]);
        edges.sort_unstable();
        assert_eq!(edges, vec![(0, 1), (1, 2), (1, 3)]);
    }

    #[test]
    fn a_long_history_does_not_overflow_the_stack() {
        let mut h: Vec<Operation> =
            (0..20_000u64).map(|i| txn(i, Ok, i * 10, i * 10 + 5, vec![a("x", i + 1)])).collect();
        h.push(final_read(1_000_000, vec![r("x", &(1..=20_000).collect::<Vec<_>>())]));
        let report = check(&h);
        assert_eq!(report.valid, Validity::True, "{:?}", report.anomaly_counts);
    }
}
