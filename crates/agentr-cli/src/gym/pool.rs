//! The server's environments by id: a bounded number of them, an idle one evicted only to
//! make room.
//!
//! AgentGym's task classes create all their clients up front and play them one after the
//! other, so a well-behaved client can wait a long time for its turn; a timer that evicted
//! idle environments broke such runs. Eviction happens only under pressure: when `/create`
//! finds every slot taken, the least recently used environment idle for longer than the
//! timeout makes room, and the caller learns which one (to log it).
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

/// An environment evicted to make room.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eviction {
    pub id: u64,
    /// How long it had been untouched.
    pub idle: Duration,
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
    /// lock, so it must be quick). At capacity, the least recently used environment idle for
    /// longer than the timeout is evicted first, and returned.
    pub fn create<R>(
        &self,
        make: impl FnOnce(u64) -> Result<(T, R), String>,
    ) -> Result<(u64, R, Option<Eviction>), CreateError> {
        // An evicted environment is dropped after the lock is released (a ScienceWorld
        // environment stops its JVM when dropped).
        let mut evicted = None;
        let mut table = self.table();
        if table.live.len() >= self.max {
            evicted = self.take_least_recent_idle(&mut table);
            if evicted.is_none() {
                return Err(CreateError::Full(self.max));
            }
        }
        let id = table.next;
        let made = make(id);
        let eviction = evicted.as_ref().map(|(id, _, idle)| Eviction {
            id: *id,
            idle: *idle,
        });
        let (value, reply) = match made {
            Ok(made) => made,
            Err(message) => {
                // Nothing was made, so the evicted environment keeps its slot.
                if let Some((id, entry, _)) = evicted {
                    table.live.insert(id, entry);
                }
                return Err(CreateError::Failed(message));
            }
        };
        table.next += 1;
        let entry = Entry {
            used: AtomicU64::new(self.now()),
            value: Mutex::new(value),
        };
        table.live.insert(id, Arc::new(entry));
        drop(table);
        drop(evicted);
        Ok((id, reply, eviction))
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

    /// Removes the least recently used environment untouched for longer than the timeout.
    fn take_least_recent_idle(
        &self,
        table: &mut Table<T>,
    ) -> Option<(u64, Arc<Entry<T>>, Duration)> {
        let now = self.now();
        let timeout = self.idle.as_millis() as u64;
        let (id, used) = table
            .live
            .iter()
            .map(|(&id, e)| (id, e.used.load(Ordering::Relaxed)))
            .filter(|&(_, used)| now.saturating_sub(used) > timeout)
            .min_by_key(|&(id, used)| (used, id))?;
        let entry = table.live.remove(&id)?;
        Some((id, entry, Duration::from_millis(now.saturating_sub(used))))
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
        assert_eq!(
            pool.create(|id| Ok((id as u32, id * 2))).unwrap(),
            (1, 2, None)
        );
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
    fn a_full_pool_evicts_only_the_least_recently_used_idle_environment() {
        let pool = Pool::new(3, Duration::from_millis(50));
        for v in 0..3 {
            pool.create(value(v)).unwrap();
        }
        assert_eq!(pool.create(value(3)), Err(CreateError::Full(3)));
        std::thread::sleep(Duration::from_millis(120));
        // Id 0 is used again: ids 1 and 2 are idle, 1 the longer.
        assert!(matches!(pool.get(0), Lookup::Live(_)));
        let (id, (), eviction) = pool.create(value(3)).unwrap();
        assert_eq!(id, 3);
        let eviction = eviction.unwrap();
        assert_eq!(eviction.id, 1);
        assert!(eviction.idle >= Duration::from_millis(100), "{eviction:?}");
        assert!(matches!(pool.get(1), Lookup::Deleted));
        assert_eq!(pool.ids(), [0, 2, 3]);
        // A failed make evicts nothing.
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            pool.create(|_| Err::<(u32, ()), _>("no".into())),
            Err(CreateError::Failed("no".into()))
        );
        assert_eq!(pool.ids(), [0, 2, 3]);
    }

    /// Regression (issue 22): a client that waits longer than the timeout for its turn keeps
    /// its environment while the server has room.
    #[test]
    fn idle_environments_stay_while_there_is_room() {
        let pool = Pool::new(3, Duration::from_millis(10));
        pool.create(value(0)).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let (id, (), eviction) = pool.create(value(1)).unwrap();
        assert_eq!((id, eviction), (1, None));
        assert!(matches!(pool.get(0), Lookup::Live(e) if *e.lock() == 0));
    }
}
