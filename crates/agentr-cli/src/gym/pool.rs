//! The server's environments by id: a bounded number of them, idle ones evicted.
//!
//! Ids count up from 0 and are never reused, so an id below the next one that is no longer
//! held was closed or evicted: such ids get AgentGym's "has been deleted" answer, ids never
//! handed out its "is not valid" one. Each environment has its own lock, so requests to
//! different ids run in parallel; the table's lock is held only to find, add or remove one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One environment and when it was last asked for.
#[derive(Debug)]
pub struct Entry<T> {
    /// Milliseconds since the pool's start.
    used: AtomicU64,
    value: Mutex<T>,
}

impl<T> Entry<T> {
    /// The environment, for one request at a time.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What an id refers to.
#[derive(Debug)]
pub enum Lookup<T> {
    /// A live environment.
    Live(Arc<Entry<T>>),
    /// One that was closed or evicted.
    Deleted,
    /// An id never handed out.
    Unknown,
}

/// Why `/create` made nothing.
#[derive(Debug, PartialEq)]
pub enum CreateError {
    /// Every slot holds an environment that is not idle.
    Full(usize),
    /// Making the environment failed.
    Failed(String),
}

#[derive(Debug)]
struct Table<T> {
    live: HashMap<u64, Arc<Entry<T>>>,
    next: u64,
}

/// Environments by id.
#[derive(Debug)]
pub struct Pool<T> {
    table: Mutex<Table<T>>,
    max: usize,
    idle: Duration,
    start: Instant,
}

impl<T> Pool<T> {
    /// At most `max` environments; one untouched for longer than `idle` may be evicted.
    pub fn new(max: usize, idle: Duration) -> Self {
        Pool {
            table: Mutex::new(Table {
                live: HashMap::new(),
                next: 0,
            }),
            max: max.max(1),
            idle,
            start: Instant::now(),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table<T>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The environment `id` names, marked as used now.
    pub fn get(&self, id: i64) -> Lookup<T> {
        let Ok(id) = u64::try_from(id) else {
            return Lookup::Unknown;
        };
        let table = self.table();
        match table.live.get(&id) {
            Some(entry) => {
                entry.used.store(self.now(), Ordering::Relaxed);
                Lookup::Live(Arc::clone(entry))
            }
            None if id < table.next => Lookup::Deleted,
            None => Lookup::Unknown,
        }
    }

    /// Makes an environment with the next id (`make` gets the id and runs under the table's
    /// lock, so it must be quick). At capacity, idle environments are evicted first.
    pub fn create<R>(
        &self,
        make: impl FnOnce(u64) -> Result<(T, R), String>,
    ) -> Result<(u64, R), CreateError> {
        // Evicted environments are dropped after the lock is released (a ScienceWorld
        // environment stops its JVM when dropped).
        let mut evicted = Vec::new();
        let mut table = self.table();
        if table.live.len() >= self.max {
            evicted = self.take_idle(&mut table);
        }
        if table.live.len() >= self.max {
            return Err(CreateError::Full(self.max));
        }
        let id = table.next;
        let (value, reply) = make(id).map_err(CreateError::Failed)?;
        table.next += 1;
        let entry = Entry {
            used: AtomicU64::new(self.now()),
            value: Mutex::new(value),
        };
        table.live.insert(id, Arc::new(entry));
        drop(table);
        drop(evicted);
        Ok((id, reply))
    }

    /// Removes `id`; the entry comes back so the caller decides where it is dropped.
    pub fn close(&self, id: i64) -> Lookup<T> {
        let Ok(id) = u64::try_from(id) else {
            return Lookup::Unknown;
        };
        let mut table = self.table();
        match table.live.remove(&id) {
            Some(entry) => Lookup::Live(entry),
            None if id < table.next => Lookup::Deleted,
            None => Lookup::Unknown,
        }
    }

    /// Evicts every idle environment; returns how many.
    pub fn sweep(&self) -> usize {
        let evicted = {
            let mut table = self.table();
            self.take_idle(&mut table)
        };
        evicted.len()
    }

    fn take_idle(&self, table: &mut Table<T>) -> Vec<Arc<Entry<T>>> {
        let now = self.now();
        let idle = self.idle.as_millis() as u64;
        let stale: Vec<u64> = table
            .live
            .iter()
            .filter(|(_, e)| now.saturating_sub(e.used.load(Ordering::Relaxed)) > idle)
            .map(|(&id, _)| id)
            .collect();
        stale
            .into_iter()
            .filter_map(|id| table.live.remove(&id))
            .collect()
    }

    /// The live ids, ascending.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.table().live.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: u32) -> impl FnOnce(u64) -> Result<(u32, ()), String> {
        move |_| Ok((v, ()))
    }

    #[test]
    fn ids_count_up_and_closed_ones_stay_deleted() {
        let pool = Pool::new(10, Duration::from_secs(60));
        assert_eq!(pool.create(value(10)).unwrap().0, 0);
        assert_eq!(pool.create(|id| Ok((id as u32, id * 2))).unwrap(), (1, 2));
        assert!(matches!(pool.get(1), Lookup::Live(e) if *e.lock() == 1));
        assert!(matches!(pool.close(0), Lookup::Live(_)));
        assert!(matches!(pool.close(0), Lookup::Deleted));
        assert!(matches!(pool.get(0), Lookup::Deleted));
        assert!(matches!(pool.get(2), Lookup::Unknown));
        assert!(matches!(pool.get(-1), Lookup::Unknown));
        assert!(matches!(pool.close(-5), Lookup::Unknown));
        // A failed make hands out no id.
        assert_eq!(
            pool.create(|_| Err::<(u32, ()), _>("no".into())),
            Err(CreateError::Failed("no".into()))
        );
        assert_eq!(pool.create(value(3)).unwrap().0, 2);
        assert_eq!(pool.ids(), [1, 2]);
    }

    #[test]
    fn a_full_pool_evicts_only_idle_environments() {
        let pool = Pool::new(2, Duration::from_millis(50));
        pool.create(value(0)).unwrap();
        pool.create(value(1)).unwrap();
        assert_eq!(pool.create(value(2)), Err(CreateError::Full(2)));
        std::thread::sleep(Duration::from_millis(120));
        // Id 1 is used again: only id 0 is idle.
        assert!(matches!(pool.get(1), Lookup::Live(_)));
        assert_eq!(pool.create(value(2)).unwrap().0, 2);
        assert!(matches!(pool.get(0), Lookup::Deleted));
        assert_eq!(pool.ids(), [1, 2]);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(pool.sweep(), 2);
        assert!(pool.ids().is_empty());
    }
}
