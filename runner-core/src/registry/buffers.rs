//! Buffers reused from transfer to transfer. A large upload or download moves through
//! 1 to 8 MiB buffers; allocating each afresh hands back fresh pages, which the kernel
//! faults in and zeroes one by one, and by the hundred they fragment the allocator's
//! arenas. A [`BufferPool`] keeps a few of them for the next use instead.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// A pool of equally sized buffers, shared by clones.
///
/// ```
/// use runner_core::registry::buffers::BufferPool;
///
/// let pool = BufferPool::new(1 << 20, 4);
/// let mut buffer = pool.take();
/// buffer.extend_from_slice(b"weights");
/// let bytes = pool.bytes(buffer); // handed to an HTTP body, a channel...
/// assert_eq!(&bytes[..], b"weights");
/// drop(bytes); // ...and back in the pool, emptied
/// let again = pool.take();
/// assert!(again.is_empty() && again.capacity() >= 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct BufferPool {
    idle: Arc<Mutex<Vec<Vec<u8>>>>,
    capacity: usize,
    keep: usize,
}

impl BufferPool {
    /// Buffers of `capacity` bytes, at most `keep` of them kept while unused.
    pub fn new(capacity: usize, keep: usize) -> BufferPool {
        BufferPool { idle: Arc::default(), capacity, keep }
    }

    /// The size of the pool's buffers.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// An empty buffer with room for [`BufferPool::capacity`] bytes.
    pub fn take(&self) -> Vec<u8> {
        self.idle.lock().expect("buffer pool").pop().unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    /// Gives `buffer` back (emptied), unless the pool keeps enough already or it is not one
    /// of the pool's size.
    pub fn give_back(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() != self.capacity {
            return;
        }
        let mut idle = self.idle.lock().expect("buffer pool");
        if idle.len() < self.keep {
            buffer.clear();
            idle.push(buffer);
        }
    }

    /// `buffer`'s bytes, which give the buffer back to the pool when the last of them is
    /// dropped.
    pub fn bytes(&self, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { buffer, pool: self.clone() })
    }
}

struct Pooled {
    buffer: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}
