//! Per-provider pools of upstream keys. This is the seam the key-pool issue fills in (limits,
//! health, classification, smarter selection); today it rotates through the keys and counts
//! in-flight requests per key.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::secret::mask;

#[derive(Debug)]
pub struct UpstreamKey {
    secret: String,
    masked: String,
    in_flight: AtomicUsize,
}

impl UpstreamKey {
    pub fn new(secret: String) -> Self {
        let masked = mask(&secret);
        UpstreamKey {
            secret,
            masked,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The secret itself: only for building the upstream request's auth header.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Safe to log.
    pub fn masked(&self) -> &str {
        &self.masked
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct KeyPool {
    keys: Vec<Arc<UpstreamKey>>,
    cursor: AtomicUsize,
}

impl KeyPool {
    pub fn new(secrets: &[String]) -> Self {
        KeyPool {
            keys: secrets
                .iter()
                .map(|s| Arc::new(UpstreamKey::new(s.clone())))
                .collect(),
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[Arc<UpstreamKey>] {
        &self.keys
    }

    /// Lease the next key in rotation, skipping `exclude` (keys that already failed this
    /// request). `None` when the pool has no key left to try; a keyless pool (local servers
    /// such as Ollama) yields a lease without a key once.
    pub fn lease(&self, exclude: &[usize]) -> Option<KeyLease> {
        if self.keys.is_empty() {
            return if exclude.is_empty() {
                Some(KeyLease {
                    key: None,
                    index: 0,
                })
            } else {
                None
            };
        }
        let n = self.keys.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|i| !exclude.contains(i))
            .map(|index| {
                let key = Arc::clone(&self.keys[index]);
                key.in_flight.fetch_add(1, Ordering::Relaxed);
                KeyLease {
                    key: Some(key),
                    index,
                }
            })
    }
}

/// A key held by one upstream attempt; released on drop, so a stream holds its key until the
/// client has the last byte or goes away.
#[derive(Debug)]
pub struct KeyLease {
    key: Option<Arc<UpstreamKey>>,
    index: usize,
}

impl KeyLease {
    pub fn key(&self) -> Option<&UpstreamKey> {
        self.key.as_deref()
    }

    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for KeyLease {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            key.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_skips_excluded() {
        let pool = KeyPool::new(&[
            "a-1111111111".into(),
            "b-2222222222".into(),
            "c-3333333333".into(),
        ]);
        let picks: Vec<usize> = (0..3)
            .map(|_| pool.lease(&[]).map(|l| l.index()).unwrap_or(9))
            .collect();
        assert_eq!(picks, vec![0, 1, 2]);
        let lease = pool.lease(&[0, 1]).map(|l| l.index());
        assert_eq!(lease, Some(2));
        assert!(pool.lease(&[0, 1, 2]).is_none());
    }

    #[test]
    fn lease_counts_in_flight() {
        let pool = KeyPool::new(&["a-1111111111".into()]);
        let lease = pool.lease(&[]);
        assert_eq!(pool.keys()[0].in_flight(), 1);
        drop(lease);
        assert_eq!(pool.keys()[0].in_flight(), 0);
    }

    #[test]
    fn keyless_pool_yields_once() {
        let pool = KeyPool::new(&[]);
        assert!(pool.lease(&[]).is_some_and(|l| l.key().is_none()));
        assert!(pool.lease(&[0]).is_none());
    }
}
