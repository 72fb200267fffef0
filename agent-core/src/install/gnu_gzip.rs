//! GNU gzip's deflate (`gzip -4` to `gzip -9`), for redeflate records whose parameters name it
//! (`docs/FORMAT.md` §6): the lazy-matching deflate that zlib's descends from, with what makes
//! gzip's streams differ from zlib's. gzip reads its input into a 64 KiB window it slides by
//! 32 KiB and zeroes the two bytes after the input's end; its matcher compares strings past the
//! lookahead (the window's stale bytes) and cuts a match to the lookahead afterwards; a block
//! holds up to 32,767 symbols (zlib: 16,383 at `memLevel` 8) and, every 4,096 symbols at levels
//! above 2, ends early when under half of them are matches and their estimated size is under
//! half the input they cover. Written from zlib's deflate (zlib licence), which shares gzip's
//! algorithm, and checked against the real `gzip` (tests, and every gzip member of the
//! benchmark's Debian tree: 1,289 of 1,289 rebuilt byte for byte).
//!
//! The stream is a function of the level and the plaintext alone, whatever the pieces the
//! plaintext comes in: a read of the window waits until it has all the bytes gzip's `read`
//! would have returned from a file.

use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use super::{Redeflate, RedeflateError};
use crate::wire::DeflateParams;

// The window, the hash and the matcher: gzip's (and zlib's at window bits 15, memLevel 8).
const WSIZE: usize = 0x8000;
const WMASK: usize = WSIZE - 1;
const WINDOW_SIZE: usize = 2 * WSIZE;
const HASH_BITS: usize = 15;
const HASH_SIZE: usize = 1 << HASH_BITS;
const HASH_MASK: usize = HASH_SIZE - 1;
const H_SHIFT: usize = HASH_BITS.div_ceil(MIN_MATCH);
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const MIN_LOOKAHEAD: usize = MAX_MATCH + MIN_MATCH + 1;
const MAX_DIST: usize = WSIZE - MIN_LOOKAHEAD;
/// A match of 3 bytes farther than this is not worth it.
const TOO_FAR: usize = 4096;
/// A block's symbols (gzip's; zlib's at memLevel 8 is half).
const LIT_BUFSIZE: usize = 0x8000;
/// A block's matches.
const DIST_BUFSIZE: usize = LIT_BUFSIZE;

// The codes of RFC 1951.

const MAX_BITS: usize = 15;
const MAX_BL_BITS: usize = 7;
const LENGTH_CODES: usize = 29;
const LITERALS: usize = 256;
const END_BLOCK: usize = 256;
const L_CODES: usize = LITERALS + 1 + LENGTH_CODES;
const D_CODES: usize = 30;
const BL_CODES: usize = 19;
const REP_3_6: usize = 16;
const REPZ_3_10: usize = 17;
const REPZ_11_138: usize = 18;
const HEAP_SIZE: usize = 2 * L_CODES + 1;

const EXTRA_LBITS: [u8; LENGTH_CODES] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const EXTRA_DBITS: [u8; D_CODES] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const EXTRA_BLBITS: [u8; BL_CODES] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];
const BL_ORDER: [usize; BL_CODES] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// good_length, max_lazy, nice_length, max_chain of levels 4 to 9.
const CONFIG: [(usize, usize, usize, usize); 6] = [
    (4, 4, 16, 16),
    (8, 16, 32, 32),
    (8, 16, 128, 128),
    (8, 32, 128, 256),
    (32, 128, 258, 1024),
    (32, 258, 258, 4096),
];

/// The fixed tables: length and distance codes, their bases, the static trees.
struct Tables {
    length_code: [u8; 256],
    dist_code: [u8; 512],
    base_length: [u16; LENGTH_CODES],
    base_dist: [u16; D_CODES],
    static_ltree_len: [u16; L_CODES + 2],
    static_ltree_code: [u16; L_CODES + 2],
    static_dtree_len: [u16; D_CODES],
    static_dtree_code: [u16; D_CODES],
}

fn bi_reverse(mut code: u32, len: usize) -> u16 {
    let mut res = 0u32;
    for _ in 0..len {
        res = (res << 1) | (code & 1);
        code >>= 1;
    }
    res as u16
}

/// Canonical codes for `lens[..=max_code]` given the count of each length.
fn gen_codes(lens: &[u16], codes: &mut [u16], max_code: usize, bl_count: &[u16; MAX_BITS + 1]) {
    let mut next_code = [0u16; MAX_BITS + 1];
    let mut code = 0u16;
    for bits in 1..=MAX_BITS {
        code = (code.wrapping_add(bl_count[bits - 1])) << 1;
        next_code[bits] = code;
    }
    for n in 0..=max_code {
        let len = usize::from(lens[n]);
        if len == 0 {
            continue;
        }
        codes[n] = bi_reverse(u32::from(next_code[len]), len);
        next_code[len] = next_code[len].wrapping_add(1);
    }
}

impl Tables {
    fn new() -> Tables {
        let mut t = Tables {
            length_code: [0; 256],
            dist_code: [0; 512],
            base_length: [0; LENGTH_CODES],
            base_dist: [0; D_CODES],
            static_ltree_len: [0; L_CODES + 2],
            static_ltree_code: [0; L_CODES + 2],
            static_dtree_len: [5; D_CODES],
            static_dtree_code: [0; D_CODES],
        };
        let mut length = 0usize;
        let mut code = 0usize;
        while code < LENGTH_CODES - 1 {
            t.base_length[code] = length as u16;
            for _ in 0..(1usize << EXTRA_LBITS[code]) {
                t.length_code[length] = code as u8;
                length += 1;
            }
            code += 1;
        }
        // Length 258 has code 285 (not 284 with its extra bits all ones).
        t.length_code[length - 1] = code as u8;
        let mut dist = 0usize;
        code = 0;
        while code < 16 {
            t.base_dist[code] = dist as u16;
            for _ in 0..(1usize << EXTRA_DBITS[code]) {
                t.dist_code[dist] = code as u8;
                dist += 1;
            }
            code += 1;
        }
        dist >>= 7;
        while code < D_CODES {
            t.base_dist[code] = (dist << 7) as u16;
            for _ in 0..(1usize << (EXTRA_DBITS[code] - 7)) {
                t.dist_code[256 + dist] = code as u8;
                dist += 1;
            }
            code += 1;
        }
        let mut bl_count = [0u16; MAX_BITS + 1];
        for n in 0..=(L_CODES + 1) {
            let len = match n {
                0..=143 => 8,
                144..=255 => 9,
                256..=279 => 7,
                _ => 8,
            };
            t.static_ltree_len[n] = len;
            bl_count[usize::from(len)] += 1;
        }
        gen_codes(
            &t.static_ltree_len,
            &mut t.static_ltree_code,
            L_CODES + 1,
            &bl_count,
        );
        for n in 0..D_CODES {
            t.static_dtree_code[n] = bi_reverse(n as u32, 5);
        }
        t
    }

    fn d_code(&self, dist: usize) -> usize {
        if dist < 256 {
            usize::from(self.dist_code[dist])
        } else {
            usize::from(self.dist_code[256 + (dist >> 7)])
        }
    }
}

/// A Huffman tree being built: frequencies, then lengths and codes.
struct Tree {
    freq: Vec<u32>,
    len: Vec<u16>,
    code: Vec<u16>,
    dad: Vec<u16>,
    max_code: usize,
}

impl Tree {
    fn new(size: usize) -> Tree {
        Tree {
            freq: vec![0; size],
            len: vec![0; size],
            code: vec![0; size],
            dad: vec![0; size],
            max_code: 0,
        }
    }
}

/// What a tree is built from: its static twin (lengths), extra bits, the first code with
/// extra bits, how many codes, the longest code.
struct Desc<'a> {
    stree: Option<&'a [u16]>,
    extra: &'a [u8],
    base: usize,
    elems: usize,
    max_length: usize,
}

/// Scratch for building trees.
struct Builder {
    heap: [usize; HEAP_SIZE],
    heap_len: usize,
    heap_max: usize,
    depth: [u8; HEAP_SIZE],
    bl_count: [u16; MAX_BITS + 1],
    opt_len: u64,
    static_len: u64,
}

impl Builder {
    fn smaller(tree: &Tree, depth: &[u8; HEAP_SIZE], n: usize, m: usize) -> bool {
        tree.freq[n] < tree.freq[m] || (tree.freq[n] == tree.freq[m] && depth[n] <= depth[m])
    }

    fn pqdownheap(&mut self, tree: &Tree, mut k: usize) {
        let v = self.heap[k];
        let mut j = k << 1;
        while j <= self.heap_len {
            if j < self.heap_len && Self::smaller(tree, &self.depth, self.heap[j + 1], self.heap[j])
            {
                j += 1;
            }
            if Self::smaller(tree, &self.depth, v, self.heap[j]) {
                break;
            }
            self.heap[k] = self.heap[j];
            k = j;
            j <<= 1;
        }
        self.heap[k] = v;
    }

    fn gen_bitlen(&mut self, tree: &mut Tree, desc: &Desc<'_>) {
        let max_code = tree.max_code;
        self.bl_count = [0; MAX_BITS + 1];
        let mut overflow = 0i32;
        tree.len[self.heap[self.heap_max]] = 0;
        let mut h = self.heap_max + 1;
        while h < HEAP_SIZE {
            let n = self.heap[h];
            let mut bits = usize::from(tree.len[usize::from(tree.dad[n])]) + 1;
            if bits > desc.max_length {
                bits = desc.max_length;
                overflow += 1;
            }
            tree.len[n] = bits as u16;
            h += 1;
            if n > max_code {
                continue;
            }
            self.bl_count[bits] += 1;
            let xbits = if n >= desc.base {
                usize::from(desc.extra[n - desc.base])
            } else {
                0
            };
            let f = u64::from(tree.freq[n]);
            // Wrapping, as C's unsigned long: a forced node counts -1 before its block's sum.
            self.opt_len = self.opt_len.wrapping_add(f * (bits + xbits) as u64);
            if let Some(st) = desc.stree {
                self.static_len = self
                    .static_len
                    .wrapping_add(f * (usize::from(st[n]) + xbits) as u64);
            }
        }
        if overflow == 0 {
            return;
        }
        loop {
            let mut bits = desc.max_length - 1;
            while self.bl_count[bits] == 0 {
                bits -= 1;
            }
            self.bl_count[bits] -= 1;
            self.bl_count[bits + 1] += 2;
            self.bl_count[desc.max_length] -= 1;
            overflow -= 2;
            if overflow <= 0 {
                break;
            }
        }
        let mut h = HEAP_SIZE;
        let mut bits = desc.max_length;
        while bits != 0 {
            let mut n = self.bl_count[bits];
            while n != 0 {
                h -= 1;
                let m = self.heap[h];
                if m > max_code {
                    continue;
                }
                if usize::from(tree.len[m]) != bits {
                    self.opt_len = self.opt_len.wrapping_add(
                        (bits as u64)
                            .wrapping_sub(u64::from(tree.len[m]))
                            .wrapping_mul(u64::from(tree.freq[m])),
                    );
                    tree.len[m] = bits as u16;
                }
                n -= 1;
            }
            bits -= 1;
        }
    }

    fn build_tree(&mut self, tree: &mut Tree, desc: &Desc<'_>) {
        let elems = desc.elems;
        let mut max_code: isize = -1;
        self.heap_len = 0;
        self.heap_max = HEAP_SIZE;
        for n in 0..elems {
            if tree.freq[n] != 0 {
                self.heap_len += 1;
                self.heap[self.heap_len] = n;
                max_code = n as isize;
                self.depth[n] = 0;
            } else {
                tree.len[n] = 0;
            }
        }
        while self.heap_len < 2 {
            let new = if max_code < 2 {
                max_code += 1;
                max_code as usize
            } else {
                0
            };
            self.heap_len += 1;
            self.heap[self.heap_len] = new;
            tree.freq[new] = 1;
            self.depth[new] = 0;
            self.opt_len = self.opt_len.wrapping_sub(1);
            if let Some(st) = desc.stree {
                self.static_len = self.static_len.wrapping_sub(u64::from(st[new]));
            }
        }
        tree.max_code = max_code as usize;
        let mut n = self.heap_len / 2;
        while n >= 1 {
            self.pqdownheap(tree, n);
            n -= 1;
        }
        let mut node = elems;
        loop {
            // pqremove
            let n = self.heap[1];
            self.heap[1] = self.heap[self.heap_len];
            self.heap_len -= 1;
            self.pqdownheap(tree, 1);
            let m = self.heap[1];
            self.heap_max -= 1;
            self.heap[self.heap_max] = n;
            self.heap_max -= 1;
            self.heap[self.heap_max] = m;
            tree.freq[node] = tree.freq[n] + tree.freq[m];
            self.depth[node] = self.depth[n].max(self.depth[m]) + 1;
            tree.dad[n] = node as u16;
            tree.dad[m] = node as u16;
            self.heap[1] = node;
            node += 1;
            self.pqdownheap(tree, 1);
            if self.heap_len < 2 {
                break;
            }
        }
        self.heap_max -= 1;
        self.heap[self.heap_max] = self.heap[1];
        self.gen_bitlen(tree, desc);
        gen_codes(&tree.len, &mut tree.code, tree.max_code, &self.bl_count);
    }
}

/// The code lengths `lens` in RFC 1951's run-length code, cut as gzip (and zlib) cut it: each
/// symbol of the bit-length alphabet with its extra bits (value, count; 0 bits for none).
fn tree_runs(lens: &[u16], emit: &mut dyn FnMut(usize, u32, u32)) {
    let mut prevlen: i32 = -1;
    let mut nextlen = lens.first().map_or(0, |&l| i32::from(l));
    let (mut count, mut max_count, mut min_count) = (0u32, 7, 4);
    if nextlen == 0 {
        (max_count, min_count) = (138, 3);
    }
    for n in 0..lens.len() {
        let curlen = nextlen;
        // Past the last code, a length no code has (gzip's guard).
        nextlen = lens.get(n + 1).map_or(0xffff, |&l| i32::from(l));
        count += 1;
        if count < max_count && curlen == nextlen {
            continue;
        } else if count < min_count {
            for _ in 0..count {
                emit(curlen as usize, 0, 0);
            }
        } else if curlen != 0 {
            if curlen != prevlen {
                emit(curlen as usize, 0, 0);
                count -= 1;
            }
            emit(REP_3_6, count - 3, 2);
        } else if count <= 10 {
            emit(REPZ_3_10, count - 3, 3);
        } else {
            emit(REPZ_11_138, count - 11, 7);
        }
        count = 0;
        prevlen = curlen;
        (max_count, min_count) = if nextlen == 0 {
            (138, 3)
        } else if curlen == nextlen {
            (6, 3)
        } else {
            (7, 4)
        };
    }
}

/// How many bytes at `a` and `b` in `w` are equal, at most [`MAX_MATCH`], comparing from
/// offset 3: offset 2 is equal when 0 and 1 are and the hashes are, as gzip assumes (a chain
/// only links strings of one hash).
fn match_len(w: &[u8], a: usize, b: usize) -> usize {
    let mut len = 3;
    while len + 8 <= MAX_MATCH {
        let x = u64::from_le_bytes(w[a + len..a + len + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(w[b + len..b + len + 8].try_into().unwrap_or([0; 8]));
        let d = x ^ y;
        if d != 0 {
            return len + (d.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    while len < MAX_MATCH && w[a + len] == w[b + len] {
        len += 1;
    }
    len
}

/// GNU gzip's deflate state, fed in pieces.
struct GnuDeflate {
    t: Tables,
    window: Vec<u8>,
    prev: Vec<u16>,
    head: Vec<u16>,
    ins_h: usize,
    strstart: usize,
    block_start: i64,
    lookahead: usize,
    match_start: usize,
    prev_length: usize,
    prev_match: usize,
    match_length: usize,
    match_available: bool,
    eofile: bool,
    good: usize,
    lazy: usize,
    nice: usize,
    chain: usize,
    phase: Phase,
    /// A read in progress: where it writes, how much it asked for, how much it has.
    reading: Option<(usize, usize, usize)>,
    // Symbols of the current block: (lc, dist) with dist 0 for a literal.
    syms: Vec<(u8, u16)>,
    last_dist: usize,
    ltree: Tree,
    dtree: Tree,
    bltree: Tree,
    b: Builder,
    bi_buf: u32,
    bi_valid: u32,
    out: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// The first read (2 * WSIZE) not done.
    Start,
    /// lm_init's fill loop, then the hash of the first two bytes.
    InitFill,
    /// deflate()'s loop.
    Main,
    /// The last block is out.
    Done,
}

impl GnuDeflate {
    /// An encoder at `level` (4 to 9).
    fn new(level: u8) -> Option<GnuDeflate> {
        let mut d = GnuDeflate {
            t: Tables::new(),
            window: vec![0; WINDOW_SIZE],
            prev: vec![0; WSIZE],
            head: vec![0; HASH_SIZE],
            ins_h: 0,
            strstart: 0,
            block_start: 0,
            lookahead: 0,
            match_start: 0,
            prev_length: 0,
            prev_match: 0,
            match_length: 0,
            match_available: false,
            eofile: false,
            good: 0,
            lazy: 0,
            nice: 0,
            chain: 0,
            phase: Phase::Start,
            reading: None,
            syms: Vec::with_capacity(LIT_BUFSIZE),
            last_dist: 0,
            ltree: Tree::new(HEAP_SIZE),
            dtree: Tree::new(2 * D_CODES + 1),
            bltree: Tree::new(2 * BL_CODES + 1),
            b: Builder {
                heap: [0; HEAP_SIZE],
                heap_len: 0,
                heap_max: 0,
                depth: [0; HEAP_SIZE],
                bl_count: [0; MAX_BITS + 1],
                opt_len: 0,
                static_len: 0,
            },
            bi_buf: 0,
            bi_valid: 0,
            out: Vec::new(),
        };
        d.reset(level)?;
        Some(d)
    }

    /// Back to the start of a stream at `level`, reusing the memory (zeroed, as a new gzip's).
    fn reset(&mut self, level: u8) -> Option<()> {
        let &(good, lazy, nice, chain) = CONFIG.get(usize::from(level).checked_sub(4)?)?;
        (self.good, self.lazy, self.nice, self.chain) = (good, lazy, nice, chain);
        self.window.fill(0);
        self.prev.fill(0);
        self.head.fill(0);
        self.ins_h = 0;
        self.strstart = 0;
        self.block_start = 0;
        self.lookahead = 0;
        self.match_start = 0;
        self.prev_length = 0;
        self.prev_match = 0;
        self.match_length = MIN_MATCH - 1;
        self.match_available = false;
        self.eofile = false;
        self.phase = Phase::Start;
        self.reading = None;
        self.bi_buf = 0;
        self.bi_valid = 0;
        self.out.clear();
        self.init_block();
        Some(())
    }

    fn init_block(&mut self) {
        for f in &mut self.ltree.freq[..L_CODES] {
            *f = 0;
        }
        for f in &mut self.dtree.freq[..D_CODES] {
            *f = 0;
        }
        for f in &mut self.bltree.freq[..BL_CODES] {
            *f = 0;
        }
        self.ltree.freq[END_BLOCK] = 1;
        self.b.opt_len = 0;
        self.b.static_len = 0;
        self.syms.clear();
        self.last_dist = 0;
    }

    fn send_bits(&mut self, value: u32, length: u32) {
        self.bi_buf |= value << self.bi_valid;
        self.bi_valid += length;
        while self.bi_valid >= 8 {
            self.out.push(self.bi_buf as u8);
            self.bi_buf >>= 8;
            self.bi_valid -= 8;
        }
    }

    fn bi_windup(&mut self) {
        if self.bi_valid > 0 {
            self.out.push(self.bi_buf as u8);
        }
        self.bi_buf = 0;
        self.bi_valid = 0;
    }

    fn update_hash(h: usize, c: u8) -> usize {
        ((h << H_SHIFT) ^ usize::from(c)) & HASH_MASK
    }

    fn insert_string(&mut self, s: usize) -> usize {
        self.ins_h = Self::update_hash(self.ins_h, self.window[s + MIN_MATCH - 1]);
        let head = usize::from(self.head[self.ins_h]);
        self.prev[s & WMASK] = head as u16;
        self.head[self.ins_h] = s as u16;
        head
    }

    fn longest_match(&mut self, mut cur_match: usize) -> usize {
        let mut chain_length = self.chain;
        let scan = self.strstart;
        let mut best_len = self.prev_length;
        let limit = self.strstart.saturating_sub(MAX_DIST);
        let w = &self.window;
        if self.prev_length >= self.good {
            chain_length >>= 2;
        }
        loop {
            let m = cur_match;
            if w[m + best_len] == w[scan + best_len]
                && w[m + best_len - 1] == w[scan + best_len - 1]
                && w[m] == w[scan]
                && w[m + 1] == w[scan + 1]
            {
                let len = match_len(w, scan, m);
                if len > best_len {
                    self.match_start = cur_match;
                    best_len = len;
                    if len >= self.nice {
                        break;
                    }
                }
            }
            cur_match = usize::from(self.prev[cur_match & WMASK]);
            if cur_match <= limit {
                break;
            }
            chain_length -= 1;
            if chain_length == 0 {
                break;
            }
        }
        best_len
    }

    /// ct_tally: records a literal (`dist` 0) or a match; whether the block should end.
    fn tally(&mut self, dist: usize, lc: usize) -> bool {
        self.syms.push((lc as u8, dist as u16));
        if dist == 0 {
            self.ltree.freq[lc] += 1;
        } else {
            let d = dist - 1;
            self.ltree.freq[usize::from(self.t.length_code[lc]) + LITERALS + 1] += 1;
            let dc = self.t.d_code(d);
            self.dtree.freq[dc] += 1;
            self.last_dist += 1;
        }
        let last_lit = self.syms.len();
        // gzip guesses whether to end the block early at levels above 2: all of these.
        if (last_lit & 0xfff) == 0 {
            let mut out_length = last_lit as u64 * 8;
            let in_length = (self.strstart as i64 - self.block_start) as u64;
            for (freq, extra) in self.dtree.freq.iter().zip(EXTRA_DBITS) {
                out_length += u64::from(*freq) * (5 + u64::from(extra));
            }
            out_length >>= 3;
            if self.last_dist < last_lit / 2 && out_length < in_length / 2 {
                return true;
            }
        }
        last_lit == LIT_BUFSIZE - 1 || self.last_dist == DIST_BUFSIZE
    }

    /// Counts the code-length symbols of tree `which` (0 literal/length, 1 distance) into the
    /// bit-length tree.
    fn scan_tree(&mut self, which: u8) {
        let lens = self.tree_lens(which);
        let freq = &mut self.bltree.freq;
        tree_runs(&lens, &mut |sym, _, _| freq[sym] += 1);
    }

    /// Sends the code lengths of tree `which` in the bit-length tree's code.
    fn send_tree(&mut self, which: u8) {
        let lens = self.tree_lens(which);
        tree_runs(&lens, &mut |sym, value, bits| {
            self.send_code_bl(sym);
            if bits > 0 {
                self.send_bits(value, bits);
            }
        });
    }

    /// The code lengths of tree `which`'s codes `0..=max_code`.
    fn tree_lens(&self, which: u8) -> Vec<u16> {
        let tree = if which == 0 { &self.ltree } else { &self.dtree };
        tree.len[..=tree.max_code].to_vec()
    }

    fn send_code_bl(&mut self, c: usize) {
        let (code, len) = (self.bltree.code[c], self.bltree.len[c]);
        self.send_bits(u32::from(code), u32::from(len));
    }

    fn build_bl_tree(&mut self) -> usize {
        self.scan_tree(0);
        self.scan_tree(1);
        let desc = Desc {
            stree: None,
            extra: &EXTRA_BLBITS,
            base: 0,
            elems: BL_CODES,
            max_length: MAX_BL_BITS,
        };
        self.b.build_tree(&mut self.bltree, &desc);
        let mut max_blindex = BL_CODES - 1;
        while max_blindex >= 3 {
            if self.bltree.len[BL_ORDER[max_blindex]] != 0 {
                break;
            }
            max_blindex -= 1;
        }
        self.b.opt_len = self
            .b
            .opt_len
            .wrapping_add(3 * (max_blindex as u64 + 1) + 5 + 5 + 4);
        max_blindex
    }

    fn compress_block(&mut self, dynamic: bool) {
        let syms = std::mem::take(&mut self.syms);
        for &(lc, dist) in &syms {
            let lc = usize::from(lc);
            if dist == 0 {
                self.send_lcode(lc, dynamic);
            } else {
                let code = usize::from(self.t.length_code[lc]);
                self.send_lcode(code + LITERALS + 1, dynamic);
                let extra = EXTRA_LBITS[code];
                if extra != 0 {
                    let v = lc - usize::from(self.t.base_length[code]);
                    self.send_bits(v as u32, u32::from(extra));
                }
                let d = usize::from(dist) - 1;
                let code = self.t.d_code(d);
                self.send_dcode(code, dynamic);
                let extra = EXTRA_DBITS[code];
                if extra != 0 {
                    let v = d - usize::from(self.t.base_dist[code]);
                    self.send_bits(v as u32, u32::from(extra));
                }
            }
        }
        self.syms = syms;
        self.send_lcode(END_BLOCK, dynamic);
    }

    fn send_lcode(&mut self, c: usize, dynamic: bool) {
        let (code, len) = if dynamic {
            (self.ltree.code[c], self.ltree.len[c])
        } else {
            (self.t.static_ltree_code[c], self.t.static_ltree_len[c])
        };
        self.send_bits(u32::from(code), u32::from(len));
    }

    fn send_dcode(&mut self, c: usize, dynamic: bool) {
        let (code, len) = if dynamic {
            (self.dtree.code[c], self.dtree.len[c])
        } else {
            (self.t.static_dtree_code[c], self.t.static_dtree_len[c])
        };
        self.send_bits(u32::from(code), u32::from(len));
    }

    fn flush_block(&mut self, eof: bool) {
        let stored_len = (self.strstart as i64 - self.block_start) as u64;
        let ldesc = Desc {
            stree: Some(&self.t.static_ltree_len),
            extra: &EXTRA_LBITS,
            base: LITERALS + 1,
            elems: L_CODES,
            max_length: MAX_BITS,
        };
        self.b.build_tree(&mut self.ltree, &ldesc);
        let ddesc = Desc {
            stree: Some(&self.t.static_dtree_len),
            extra: &EXTRA_DBITS,
            base: 0,
            elems: D_CODES,
            max_length: MAX_BITS,
        };
        self.b.build_tree(&mut self.dtree, &ddesc);
        let max_blindex = self.build_bl_tree();
        let mut opt_lenb = (self.b.opt_len.wrapping_add(3 + 7)) >> 3;
        let static_lenb = (self.b.static_len.wrapping_add(3 + 7)) >> 3;
        if static_lenb <= opt_lenb {
            opt_lenb = static_lenb;
        }
        let eofb = u32::from(eof);
        if stored_len + 4 <= opt_lenb && self.block_start >= 0 {
            self.send_bits(eofb, 3);
            self.bi_windup();
            let len = stored_len as u16;
            self.out.extend_from_slice(&len.to_le_bytes());
            self.out.extend_from_slice(&(!len).to_le_bytes());
            let from = self.block_start as usize;
            self.out
                .extend_from_slice(&self.window[from..from + stored_len as usize]);
        } else if static_lenb == opt_lenb {
            self.send_bits((1 << 1) + eofb, 3);
            self.compress_block(false);
        } else {
            self.send_bits((2 << 1) + eofb, 3);
            let (lcodes, dcodes, blcodes) = (
                self.ltree.max_code + 1,
                self.dtree.max_code + 1,
                max_blindex + 1,
            );
            self.send_bits((lcodes - 257) as u32, 5);
            self.send_bits((dcodes - 1) as u32, 5);
            self.send_bits((blcodes - 4) as u32, 4);
            for &code in &BL_ORDER[..blcodes] {
                let l = self.bltree.len[code];
                self.send_bits(u32::from(l), 3);
            }
            self.send_tree(0);
            self.send_tree(1);
            self.compress_block(true);
        }
        self.init_block();
        if eof {
            self.bi_windup();
        }
    }

    /// FLUSH_BLOCK(0), then `block_start = strstart`.
    fn flush(&mut self) {
        self.flush_block(false);
        self.block_start = self.strstart as i64;
    }

    /// Starts fill_window(): slides the window if needed, and begins reading.
    fn fill_window(&mut self) {
        let mut more = WINDOW_SIZE - self.lookahead - self.strstart;
        if self.strstart >= WSIZE + MAX_DIST {
            self.window.copy_within(WSIZE..WINDOW_SIZE, 0);
            self.match_start = self.match_start.wrapping_sub(WSIZE);
            self.strstart -= WSIZE;
            self.block_start -= WSIZE as i64;
            // Positions in the lower half are gone: empty heads and links.
            for p in self.head.iter_mut().chain(self.prev.iter_mut()) {
                *p = p.saturating_sub(WSIZE as u16);
            }
            more += WSIZE;
        }
        if !self.eofile {
            self.reading = Some((self.strstart + self.lookahead, more, 0));
        }
    }

    /// Continues the read in progress; true when it is complete.
    fn read_some(&mut self, input: &mut &[u8], finish: bool) -> bool {
        let Some((at, want, got)) = self.reading else {
            return true;
        };
        let n = (want - got).min(input.len());
        self.window[at + got..at + got + n].copy_from_slice(&input[..n]);
        *input = &input[n..];
        let got = got + n;
        if got < want && !finish {
            self.reading = Some((at, want, got));
            return false;
        }
        self.reading = None;
        if self.phase == Phase::Start {
            if got == 0 {
                self.eofile = true;
                self.lookahead = 0;
            } else {
                self.lookahead = got;
            }
        } else if got == 0 {
            self.eofile = true;
            let at = self.strstart + self.lookahead;
            for b in &mut self.window[at..(at + MIN_MATCH - 1).min(WINDOW_SIZE)] {
                *b = 0;
            }
        } else {
            self.lookahead += got;
        }
        true
    }

    /// One step of deflate()'s loop.
    fn step(&mut self) {
        let hash_head = self.insert_string(self.strstart);
        self.prev_length = self.match_length;
        self.prev_match = self.match_start;
        self.match_length = MIN_MATCH - 1;
        if hash_head != 0
            && self.prev_length < self.lazy
            && self.strstart - hash_head <= MAX_DIST
            && self.strstart <= WINDOW_SIZE - MIN_LOOKAHEAD
        {
            self.match_length = self.longest_match(hash_head);
            if self.match_length > self.lookahead {
                self.match_length = self.lookahead;
            }
            if self.match_length == MIN_MATCH
                && self.strstart.wrapping_sub(self.match_start) > TOO_FAR
            {
                self.match_length -= 1;
            }
        }
        if self.prev_length >= MIN_MATCH && self.match_length <= self.prev_length {
            let flush = self.tally(
                self.strstart - 1 - self.prev_match,
                self.prev_length - MIN_MATCH,
            );
            self.lookahead -= self.prev_length - 1;
            self.prev_length -= 2;
            loop {
                self.strstart += 1;
                self.insert_string(self.strstart);
                self.prev_length -= 1;
                if self.prev_length == 0 {
                    break;
                }
            }
            self.match_available = false;
            self.match_length = MIN_MATCH - 1;
            self.strstart += 1;
            if flush {
                self.flush();
            }
        } else if self.match_available {
            let c = usize::from(self.window[self.strstart - 1]);
            if self.tally(0, c) {
                self.flush();
            }
            self.strstart += 1;
            self.lookahead -= 1;
        } else {
            self.match_available = true;
            self.strstart += 1;
            self.lookahead -= 1;
        }
    }

    /// Deflates the next bytes of plaintext (the last when `finish`); the stream bytes made so
    /// far are in `self.out`.
    fn deflate(&mut self, mut input: &[u8], finish: bool) {
        loop {
            if !self.read_some(&mut input, finish) {
                break;
            }
            match self.phase {
                Phase::Start => {
                    if self.reading.is_none() && self.lookahead == 0 && !self.eofile {
                        self.reading = Some((0, 2 * WSIZE, 0));
                        continue;
                    }
                    self.phase = Phase::InitFill;
                    if self.eofile {
                        self.phase = Phase::Main;
                    }
                }
                Phase::InitFill => {
                    if self.lookahead < MIN_LOOKAHEAD && !self.eofile {
                        self.fill_window();
                        continue;
                    }
                    self.ins_h = 0;
                    for j in 0..MIN_MATCH - 1 {
                        self.ins_h = Self::update_hash(self.ins_h, self.window[j]);
                    }
                    self.phase = Phase::Main;
                }
                Phase::Main => {
                    if self.lookahead < MIN_LOOKAHEAD && !self.eofile {
                        self.fill_window();
                        continue;
                    }
                    if self.lookahead == 0 {
                        if self.match_available {
                            let c = usize::from(self.window[self.strstart - 1]);
                            self.tally(0, c);
                        }
                        self.flush_block(true);
                        self.phase = Phase::Done;
                        continue;
                    }
                    self.step();
                }
                Phase::Done => break,
            }
        }
    }
}

/// Plaintext bytes given to the encoder between two hand-outs of its stream.
const PIECE: usize = 32 * 1024;

/// GNU gzip's deflate as a [`Redeflate`] encoder: parameters [`DeflateParams::gzip`] (levels 4
/// to 9). Its state, about 330 KiB, is allocated at the first stream and reused.
#[derive(Default)]
pub struct GnuGzip {
    d: Option<Box<GnuDeflate>>,
}

impl GnuGzip {
    /// An encoder; nothing is allocated until the first stream.
    pub fn new() -> GnuGzip {
        GnuGzip { d: None }
    }

    /// Whether [`Redeflate::start`] accepts `params`.
    pub fn supports(params: DeflateParams) -> bool {
        params.is_gzip() && (4..=9).contains(&params.level)
    }
}

impl Redeflate for GnuGzip {
    fn start(&mut self, params: DeflateParams) -> Result<(), RedeflateError> {
        if !GnuGzip::supports(params) {
            return Err(RedeflateError::Unsupported);
        }
        match &mut self.d {
            Some(d) => d.reset(params.level).ok_or(RedeflateError::Unsupported),
            d => {
                *d = Some(Box::new(
                    GnuDeflate::new(params.level).ok_or(RedeflateError::Unsupported)?,
                ));
                Ok(())
            }
        }
    }

    fn deflate(
        &mut self,
        plain: &[u8],
        finish: bool,
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), RedeflateError> {
        let Some(d) = self.d.as_mut() else {
            return Err(RedeflateError::Failed);
        };
        // At least one piece (an empty one ends an empty stream), the stream handed out after
        // each.
        let mut rest = plain;
        loop {
            let (piece, after) = rest.split_at(rest.len().min(PIECE));
            rest = after;
            d.deflate(piece, finish && rest.is_empty());
            if !d.out.is_empty() {
                let go_on = out(&d.out);
                d.out.clear();
                if !go_on {
                    return Ok(());
                }
            }
            if rest.is_empty() {
                return Ok(());
            }
        }
    }
}
