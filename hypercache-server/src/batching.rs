//! Filling a batch from a queue: what the proposer (writes into one Raft entry) and the append
//! batcher (several shards' AppendEntries into one peer call) share.
//!
//! Both take the first item (a carried-over one, else the next to arrive), then whatever else is
//! waiting at that moment, up to a count and a byte limit. Nothing waits for more items to come:
//! batches grow with load because items queue while earlier batches are in flight.

use tokio::sync::mpsc;

/// A queue of items to batch, with the item that did not fit the last batch.
pub struct BatchQueue<T> {
    rx: mpsc::UnboundedReceiver<T>,
    carry: Option<T>,
}

/// One batch taken from a [`BatchQueue`].
pub struct Batch<T> {
    pub items: Vec<T>,
    /// Cut at a limit while more items were waiting (not because the queue ran dry).
    pub full: bool,
}

impl<T> BatchQueue<T> {
    pub fn new(rx: mpsc::UnboundedReceiver<T>) -> Self {
        BatchQueue { rx, carry: None }
    }

    /// The first item of the next batch: the one carried over, else the next to arrive. None once
    /// every sender is gone and the queue is empty.
    pub async fn first(&mut self) -> Option<T> {
        match self.carry.take() {
            Some(item) => Some(item),
            None => self.rx.recv().await,
        }
    }

    /// A batch of `first` and every item waiting now, up to `max_items` items and `max_bytes` as
    /// counted by `size` (`first` always goes, however large). An item that would pass the byte
    /// limit is kept to start the next batch.
    pub fn fill(&mut self, first: T, max_items: usize, max_bytes: usize, size: impl Fn(&T) -> usize) -> Batch<T> {
        let mut bytes = size(&first);
        let mut items = vec![first];
        while items.len() < max_items {
            match self.rx.try_recv() {
                Ok(item) if bytes + size(&item) > max_bytes => {
                    self.carry = Some(item);
                    return Batch { items, full: true };
                }
                Ok(item) => {
                    bytes += size(&item);
                    items.push(item);
                }
                Err(_) => return Batch { items, full: false },
            }
        }
        Batch { items, full: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(items: &[usize]) -> BatchQueue<usize> {
        let (tx, rx) = mpsc::unbounded_channel();
        for i in items {
            tx.send(*i).unwrap();
        }
        BatchQueue::new(rx)
    }

    #[tokio::test]
    async fn takes_what_waits_up_to_the_count() {
        let mut q = queue(&[1, 1, 1, 1, 1]);
        let first = q.first().await.unwrap();
        let b = q.fill(first, 3, 100, |n| *n);
        assert_eq!((b.items.len(), b.full), (3, true));
        let first = q.first().await.unwrap();
        let b = q.fill(first, 3, 100, |n| *n);
        assert_eq!((b.items.len(), b.full), (2, false));
    }

    #[tokio::test]
    async fn an_item_past_the_byte_limit_starts_the_next_batch() {
        let mut q = queue(&[40, 40, 40, 10]);
        let first = q.first().await.unwrap();
        let b = q.fill(first, 10, 100, |n| *n);
        assert_eq!((b.items, b.full), (vec![40, 40], true));
        let first = q.first().await.unwrap();
        assert_eq!(first, 40, "the carried item comes first");
        let b = q.fill(first, 10, 100, |n| *n);
        assert_eq!((b.items, b.full), (vec![40, 10], false));
    }

    #[tokio::test]
    async fn a_lone_item_over_the_limit_still_goes() {
        let mut q = queue(&[500]);
        let first = q.first().await.unwrap();
        let b = q.fill(first, 10, 100, |n| *n);
        assert_eq!((b.items, b.full), (vec![500], false));
    }
}
