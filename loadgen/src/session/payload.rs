//! Deterministic message payloads: the bytes of message `seq` on connection `conn` are a pure
//! function of the pair, so every echoed byte can be checked without keeping copies of what was
//! sent, and a server that mixes up two clients' streams is caught.

/// SplitMix64 step: a cheap, well-mixed 64-bit generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with the payload of message `seq` on connection `conn`.
pub fn fill(conn: u64, seq: u64, out: &mut [u8]) {
    let mut state = conn.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ seq.rotate_left(32);
    let mut chunks = out.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let word = splitmix64(&mut state).to_le_bytes();
        rest.copy_from_slice(&word[..rest.len()]);
    }
}

/// The first index at which `got` differs from `expected` (compared over `got`'s length).
pub fn first_difference(expected: &[u8], got: &[u8]) -> Option<usize> {
    expected.iter().zip(got).position(|(e, g)| e != g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_deterministic_and_distinct() {
        let (mut a, mut b, mut c, mut d) = ([0u8; 61], [0u8; 61], [0u8; 61], [0u8; 61]);
        fill(3, 7, &mut a);
        fill(3, 7, &mut b);
        fill(3, 8, &mut c);
        fill(4, 7, &mut d);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        // The tail past the last full word is filled too.
        assert_ne!(&a[56..], &[0u8; 5]);
    }

    #[test]
    fn first_difference_finds_the_offset() {
        let mut a = [0u8; 64];
        fill(1, 1, &mut a);
        let mut b = a;
        assert_eq!(first_difference(&a, &b), None);
        b[17] ^= 1;
        assert_eq!(first_difference(&a, &b), Some(17));
    }
}
