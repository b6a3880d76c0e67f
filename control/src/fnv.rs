//! FNV-1a: stable across releases (std's hasher is not), so names and digests derived from it are
//! too.

pub fn fnv1a(parts: &[&str]) -> u64 {
    parts
        .iter()
        .fold(OFFSET_BASIS, |hash, part| fold(hash, part.as_bytes()))
}

pub fn fnv1a_bytes(bytes: &[u8]) -> u64 {
    fold(OFFSET_BASIS, bytes)
}

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

fn fold(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
