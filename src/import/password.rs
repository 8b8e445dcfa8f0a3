//! The password ZooKeeper gives a session: 16 bytes of `java.util.Random` seeded with the
//! session id XOR a constant (`ZooKeeperServer.generatePasswd`). An imported session gets
//! the same one, so its client can resume it on zkraft.

/// ZooKeeperServer's `superSecret`.
const SUPER_SECRET: i64 = 0xB341_5C00;

/// The password ZooKeeper generated for session `id`.
pub(super) fn zookeeper(id: i64) -> Vec<u8> {
    let mut r = JavaRandom::new(id ^ SUPER_SECRET);
    let mut out = vec![0u8; 16];
    r.next_bytes(&mut out);
    out
}

/// `java.util.Random`: a 48-bit linear congruential generator.
struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    fn new(seed: i64) -> JavaRandom {
        JavaRandom {
            seed: (seed as u64 ^ Self::MULTIPLIER) & Self::MASK,
        }
    }

    fn next_int(&mut self) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> 16) as u32 as i32
    }

    /// `Random.nextBytes`: each int fills four bytes, low byte first.
    fn next_bytes(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(4) {
            let mut rnd = self.next_int();
            for b in chunk {
                *b = rnd as u8;
                rnd >>= 8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_util_random() {
        // new java.util.Random(42).nextInt() twice: -1170105035, 234785527.
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_int(), -1_170_105_035);
        assert_eq!(r.next_int(), 234_785_527);
        // new Random(0).nextBytes(new byte[6]) = [96, -76, 32, -69, 56, 81].
        let mut r = JavaRandom::new(0);
        let mut b = [0u8; 6];
        r.next_bytes(&mut b);
        assert_eq!(b.map(|x| x as i8), [96, -76, 32, -69, 56, 81]);
        assert_eq!(zookeeper(7).len(), 16);
    }
}
