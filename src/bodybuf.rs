//! Body buffers that give large bodies' memory back to the system when they are dropped.
//!
//! A request body (up to `server.max_body_bytes`) and the rewritten body sent upstream are
//! each one contiguous buffer. Small ones live on the heap. Large ones (from
//! [`LARGE`] bytes) live in an anonymous memory mapping that is unmapped when the last
//! `Bytes` referring to it goes, so a burst of large uploads leaves nothing resident
//! behind: glibc would otherwise raise its mmap threshold after the first large free and
//! keep later bodies in arenas it never returns. Not for: small, hot-path buffers.

use std::io;

use bytes::{Bytes, BytesMut};
use memmap2::MmapMut;

/// From this size a body is kept in its own mapping.
pub const LARGE: usize = 256 * 1024;

/// A growable byte buffer: on the heap while small, in a mapping once it passes [`LARGE`]
/// (sized for `reserve` bytes: only what is written becomes resident).
pub struct BodyBuf {
    inner: Inner,
    reserve: usize,
}

enum Inner {
    Heap(BytesMut),
    Mapped { map: MmapMut, len: usize },
}

/// What keeps a mapping alive behind a `Bytes`.
struct Mapped {
    map: MmapMut,
    len: usize,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

impl BodyBuf {
    /// A buffer expecting about `hint` bytes, reserving up to `reserve` once mapped.
    pub fn new(hint: usize, reserve: usize) -> Self {
        let mut buf = Self {
            inner: Inner::Heap(BytesMut::new()),
            reserve,
        };
        if hint >= LARGE {
            buf.map(0, hint.max(reserve));
        }
        if let Inner::Heap(b) = &mut buf.inner {
            b.reserve(hint.min(LARGE));
        }
        buf
    }

    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Heap(b) => b.len(),
            Inner::Mapped { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the first `len` bytes into a new mapping of `size` bytes; stays on the heap
    /// if no mapping can be made.
    fn map(&mut self, len: usize, size: usize) {
        let Ok(mut map) = MmapMut::map_anon(size.max(1)) else {
            return;
        };
        match &self.inner {
            Inner::Heap(b) => map[..len].copy_from_slice(&b[..len]),
            Inner::Mapped { map: old, .. } => map[..len].copy_from_slice(&old[..len]),
        }
        self.inner = Inner::Mapped { map, len };
    }

    /// Appends `data` (callers enforce their own size limits).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        let len = self.len();
        let needed = len + data.len();
        match &self.inner {
            Inner::Heap(_) if needed >= LARGE => self.map(len, needed.max(self.reserve)),
            Inner::Mapped { map, .. } if needed > map.len() => {
                self.map(len, needed.saturating_mul(2));
            }
            _ => {}
        }
        match &mut self.inner {
            Inner::Mapped { map, len } if needed <= map.len() => {
                map[*len..needed].copy_from_slice(data);
                *len = needed;
            }
            Inner::Mapped { map, len } => {
                // No bigger mapping could be made: continue on the heap.
                let mut heap = BytesMut::with_capacity(needed);
                heap.extend_from_slice(&map[..*len]);
                heap.extend_from_slice(data);
                self.inner = Inner::Heap(heap);
            }
            Inner::Heap(b) => b.extend_from_slice(data),
        }
    }

    pub fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }

    /// The bytes, without a copy.
    pub fn freeze(self) -> Bytes {
        match self.inner {
            Inner::Heap(b) => b.freeze(),
            Inner::Mapped { map, len } => Bytes::from_owner(Mapped { map, len }),
        }
    }
}

impl io::Write for BodyBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_bodies_keep_their_bytes() {
        let mut small = BodyBuf::new(10, 1 << 20);
        small.extend_from_slice(b"hello");
        assert!(matches!(small.inner, Inner::Heap(_)));
        assert_eq!(&small.freeze()[..], b"hello");

        // Grows from the heap into a mapping, then past the mapping's first size.
        let chunk = vec![7u8; 100_000];
        let mut grown = BodyBuf::new(0, LARGE + 1);
        for _ in 0..8 {
            grown.extend_from_slice(&chunk);
        }
        assert!(matches!(grown.inner, Inner::Mapped { .. }));
        let bytes = grown.freeze();
        assert_eq!(bytes.len(), 800_000);
        assert!(bytes.iter().all(|b| *b == 7));

        // A declared size past the threshold starts mapped.
        let mut mapped = BodyBuf::new(LARGE * 2, 0);
        assert!(matches!(mapped.inner, Inner::Mapped { .. }));
        mapped.extend_from_slice(&vec![1u8; LARGE * 2]);
        mapped.push(2);
        let bytes = mapped.freeze();
        assert_eq!(bytes.len(), LARGE * 2 + 1);
        assert_eq!(bytes[LARGE * 2], 2);
    }
}
