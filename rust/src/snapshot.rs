//! Versioned state bytes for changelogs and checkpoints (never pickles).
//!
//! Layout: the magic `FSTR`, a little-endian `u16` format version, then the engine's sections
//! written with [`Writer`], then (from version 3) the CRC-32 (IEEE, as zlib's `crc32`) of
//! every byte before it, little-endian. [`Reader`] never panics on bad input: truncation, a
//! wrong magic, an unknown version, a checksum that does not match or a length beyond the
//! remaining bytes is a [`CoreError::Snapshot`]. A corrupt snapshot is therefore refused
//! before any of it is read, never restored into a different state. Version 2 (no checksum)
//! is still read, so changelogs written before the checksum restore.

use crate::{CoreError, CoreResult};

/// Leading bytes of every snapshot.
pub const MAGIC: &[u8; 4] = b"FSTR";
/// Current format version; bump on any layout change.
pub const VERSION: u16 = 3;
/// The last version without a checksum (still read).
const VERSION_UNCHECKED: u16 = 2;

/// CRC-32 (IEEE 802.3, reflected; the value of zlib's and Python's `zlib.crc32`).
///
/// By `crc32fast`: carry-less multiplication where the CPU has it (about ten gigabytes per
/// second here), else slicing by 16. A snapshot's checksum runs inside the commit; the slicing
/// by 8 this replaced still made it 40% of a large feature snapshot's time.
///
/// # Examples
/// ```
/// assert_eq!(fraudstream::snapshot::crc32(b"123456789"), 0xCBF4_3926);
/// ```
#[must_use]
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Appends little-endian primitives to a byte buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
    /// Whether the bytes start with the header (then [`Writer::into_bytes`] appends the CRC).
    headed: bool,
}

impl Writer {
    /// A writer that starts with the magic and version header; its bytes end with their CRC.
    #[must_use]
    pub fn with_header() -> Self {
        let mut w = Writer::default();
        w.buf.extend_from_slice(MAGIC);
        w.buf.extend_from_slice(&VERSION.to_le_bytes());
        w.headed = true;
        w
    }

    /// Writes a byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Writes a `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes an `i64`.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes an `f64` bit-exactly.
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    /// Writes a length or count.
    pub fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }

    /// Writes a length-prefixed string.
    pub fn str(&mut self, s: &str) {
        self.count(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// The bytes written (followed by their CRC-32 for a writer made by
    /// [`Writer::with_header`]).
    #[must_use]
    pub fn into_bytes(mut self) -> Vec<u8> {
        if self.headed {
            let crc = crc32(&self.buf);
            self.buf.extend_from_slice(&crc.to_le_bytes());
        }
        self.buf
    }
}

/// Reads what a [`Writer`] wrote, checking bounds on every read.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    version: u16,
}

impl<'a> Reader<'a> {
    /// A reader over raw section bytes (no header).
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, version: VERSION }
    }

    /// The format version of the bytes ([`VERSION`] for a reader without a header): what a
    /// reader of an older layout branches on.
    #[must_use]
    pub fn version(&self) -> u16 {
        self.version
    }

    /// A reader that first checks the magic, the version and (from version 3) the checksum;
    /// it then reads the bytes between the header and the checksum.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for a wrong magic, an unsupported version or a checksum that
    /// does not match the bytes (they were corrupted).
    pub fn with_header(buf: &'a [u8]) -> CoreResult<Self> {
        let mut r = Reader::new(buf);
        if r.take(4)? != MAGIC {
            return Err(CoreError::Snapshot("not a fraudstream snapshot (bad magic)".into()));
        }
        let version = u16::from_le_bytes([r.u8()?, r.u8()?]);
        r.version = version;
        match version {
            VERSION => {
                let body = buf
                    .len()
                    .checked_sub(4)
                    .filter(|&n| n >= r.pos)
                    .ok_or_else(|| CoreError::Snapshot("truncated: no room for the checksum".into()))?;
                let mut stored = [0u8; 4];
                stored.copy_from_slice(&buf[body..]);
                let (stored, actual) = (u32::from_le_bytes(stored), crc32(&buf[..body]));
                if stored != actual {
                    return Err(CoreError::Snapshot(format!(
                        "checksum mismatch (stored {stored:#010x}, computed {actual:#010x}): the \
                         {} bytes are corrupt",
                        buf.len()
                    )));
                }
                r.buf = &buf[..body];
                Ok(r)
            }
            VERSION_UNCHECKED => Ok(r),
            _ => Err(CoreError::Snapshot(format!(
                "snapshot format version {version}, this build reads versions \
                 {VERSION_UNCHECKED} and {VERSION}"
            ))),
        }
    }

    fn take(&mut self, n: usize) -> CoreResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            CoreError::Snapshot(format!("truncated: needed {n} bytes at offset {}", self.pos))
        })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> CoreResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads a byte.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] when truncated (likewise for every read below).
    pub fn u8(&mut self) -> CoreResult<u8> {
        Ok(self.take(1)?[0])
    }

    /// Reads a `u64`.
    pub fn u64(&mut self) -> CoreResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads an `i64`.
    pub fn i64(&mut self) -> CoreResult<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Reads an `f64`.
    pub fn f64(&mut self) -> CoreResult<f64> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// Reads a length, rejecting one larger than the bytes left (each item takes >= 1 byte).
    pub fn count(&mut self) -> CoreResult<usize> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(CoreError::Snapshot(format!("length {n} exceeds the {left} bytes left")));
        }
        usize::try_from(n).map_err(|_| CoreError::Snapshot(format!("length {n} too large")))
    }

    /// Reads a length and checks it equals `expected`.
    pub fn expect_len(&mut self, expected: usize, what: &str) -> CoreResult<()> {
        let n = self.count()?;
        if n == expected {
            Ok(())
        } else {
            Err(CoreError::Snapshot(format!("{what}: found {n}, expected {expected}")))
        }
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn str(&mut self) -> CoreResult<String> {
        let n = self.count()?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| CoreError::Snapshot("string is not UTF-8".into()))
    }

    /// Bytes not read yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> CoreResult<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(CoreError::Snapshot(format!("{} trailing bytes", self.buf.len() - self.pos)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRC bit by bit, as its definition reads.
    fn crc32_bitwise(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn crc32_equals_the_bitwise_crc_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for start in 0..8 {
            for end in start..data.len() {
                assert_eq!(crc32(&data[start..end]), crc32_bitwise(&data[start..end]), "{start}..{end}");
            }
        }
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn primitives_round_trip() {
        let mut w = Writer::with_header();
        w.i64(-5);
        w.f64(0.1);
        w.str("héllo");
        w.u8(7);
        let bytes = w.into_bytes();
        let mut r = Reader::with_header(&bytes).unwrap();
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.f64().unwrap().to_bits(), 0.1f64.to_bits());
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.u8().unwrap(), 7);
        r.finish().unwrap();
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let mut w = Writer::with_header();
        w.i64(1_700_000_000_000);
        w.str("card");
        w.f64(12.5);
        let bytes = w.into_bytes();
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let read = Reader::with_header(&bad).and_then(|mut r| {
                let (_, _, _) = (r.i64()?, r.str()?, r.f64()?);
                r.finish()
            });
            assert!(read.is_err(), "bit {bit} flipped and still read");
        }
        assert!(Reader::with_header(&bytes[..bytes.len() - 1]).is_err(), "truncated");
    }

    #[test]
    fn version_2_without_a_checksum_is_still_read() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&7i64.to_le_bytes());
        let mut r = Reader::with_header(&bytes).unwrap();
        assert_eq!(r.i64().unwrap(), 7);
        r.finish().unwrap();
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(Reader::with_header(b"XXXX\x01\x00").is_err());
        assert!(Reader::with_header(b"FSTR\x09\x00").is_err());
        assert!(Reader::with_header(b"FS").is_err());
        let mut r = Reader::new(&[0xff; 8]);
        assert!(r.count().is_err(), "a huge length must not allocate");
        let mut w = Writer::default();
        w.i64(1);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes[..5]);
        assert!(r.i64().is_err());
    }
}
