//! Admission: how many pipelines run at once and how many may wait.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::{Error, ErrorKind, Result};

/// Bounds the work one server accepts: `concurrency` pipelines run at once, at most
/// `queue` more wait; past that requests are refused at once ([`ErrorKind::Overloaded`]).
pub(crate) struct Limits {
    pub(crate) semaphore: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

impl Limits {
    pub(crate) fn new(concurrency: usize, queue: usize) -> Arc<Limits> {
        let concurrency = concurrency.max(1);
        Arc::new(Limits {
            semaphore: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: concurrency + queue,
        })
    }
}

/// One unit of a shared count, given back when dropped.
pub(crate) struct Counted(Arc<AtomicUsize>);

impl Counted {
    /// Counts one more; also returns the count before.
    pub(crate) fn new(counter: &Arc<AtomicUsize>) -> (Counted, usize) {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        (Counted(counter.clone()), before)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limits {
    /// Counts one request in, or refuses it (counting nothing) past the capacity.
    fn enter(&self) -> Result<()> {
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        if before >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::serving(
                ErrorKind::Overloaded,
                format!("the server is at capacity ({} requests running or queued); retry later", self.capacity),
            ));
        }
        Ok(())
    }

    /// Admits a request run right here, on the caller's stack, counted until the guard is
    /// dropped: borrowed, so no reference count changes hands (two atomic operations
    /// fewer per request than [`Admission`]).
    pub(crate) fn admit(&self) -> Result<Admitted<'_>> {
        self.enter()?;
        Ok(Admitted(&self.admitted))
    }
}

/// A request counted against [`Limits`] until dropped (owned: it may cross threads).
pub(crate) struct Admission {
    _counted: Counted,
}

impl Admission {
    pub(crate) fn new(limits: &Arc<Limits>) -> Result<Admission> {
        limits.enter()?;
        Ok(Admission { _counted: Counted(limits.admitted.clone()) })
    }
}

/// [`Limits::admit`]'s guard.
pub(crate) struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
