//! The length in bytes of `zlib.compress(data)` (Python's default: level 6, 32 KiB window,
//! memLevel 8, default strategy), the "zlib entropy" of the ZLib membership-inference attack
//! (Carlini et al. 2021).
//!
//! Rust's deflate encoders do not give zlib's lengths: on text samples of 50 B to 40 KB,
//! `flate2` at `Compression::new(6)` differs from Python's `zlib.compress` on 52 of 125 texts
//! with its default miniz_oxide backend (61 vs 55 bytes on a 50-byte text) and on 227 of 294
//! with its zlib-rs backend. A C zlib would add a C build dependency and, through cargo's
//! feature unification, change the backend of every crate that uses `flate2`. So this file
//! ports the part of zlib 1.2.13 (`deflate.c`: `fill_window`, `longest_match`,
//! `deflate_slow`; `trees.c`: `build_tree`, `gen_bitlen`, `scan_tree`, `build_bl_tree`,
//! `_tr_flush_block`) that decides the compressed length, and counts bits instead of writing
//! them. It reproduces the lengths of zlib proper (madler/zlib, what CPython normally links;
//! 1.2.13 here), not of zlib-ng, whose output differs (some distributions' Python uses
//! zlib-ng-compat).
//!
//! The length is 2 header bytes + the deflate blocks, byte-aligned at the end + 4 bytes of
//! Adler-32. Each block is stored, fixed-Huffman or dynamic-Huffman, whichever zlib picks
//! (`_tr_flush_block`), and its size in bits is exactly zlib's `opt_len`/`static_len`
//! accounting. The match finder reproduces zlib's hash chains, lazy matching (level 6:
//! good 8, lazy 16, nice 128, chain 128) and the window slide, so the symbols are zlib's.

const W_SIZE: usize = 1 << 15;
const W_MASK: usize = W_SIZE - 1;
const WINDOW_SIZE: usize = 2 * W_SIZE;
/// memLevel 8: hash_bits = 15, hash_shift = (15 + 3 - 1) / 3.
const HASH_SIZE: usize = 1 << 15;
const HASH_MASK: usize = HASH_SIZE - 1;
const HASH_SHIFT: u32 = 5;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const MIN_LOOKAHEAD: usize = MAX_MATCH + MIN_MATCH + 1;
const MAX_DIST: usize = W_SIZE - MIN_LOOKAHEAD;
/// Matches of length 3 are dropped when farther than this.
const TOO_FAR: usize = 4096;
/// configuration_table[6]
const GOOD_MATCH: usize = 8;
const MAX_LAZY: usize = 16;
const NICE_MATCH: usize = 128;
const MAX_CHAIN: usize = 128;
/// A block is flushed after lit_bufsize − 1 = 2^(memLevel+6) − 1 symbols.
const SYMBOLS_PER_BLOCK: usize = (1 << 14) - 1;

const LITERALS: usize = 256;
const END_BLOCK: usize = 256;
const LENGTH_CODES: usize = 29;
const L_CODES: usize = LITERALS + 1 + LENGTH_CODES;
const D_CODES: usize = 30;
const BL_CODES: usize = 19;
const HEAP_SIZE: usize = 2 * L_CODES + 1;
const MAX_BITS: usize = 15;
const MAX_BL_BITS: usize = 7;
const REP_3_6: usize = 16;
const REPZ_3_10: usize = 17;
const REPZ_11_138: usize = 18;

const EXTRA_LBITS: [u8; LENGTH_CODES] =
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const EXTRA_DBITS: [u8; D_CODES] =
    [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const EXTRA_BLBITS: [u8; BL_CODES] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];
const BL_ORDER: [usize; BL_CODES] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// Length code (0..28) of a match length − 3 (0..255), as zlib's `_length_code` (255, i.e.
/// length 258, uses code 28 rather than 27 + 5 extra bits).
fn length_code(lc: usize) -> usize {
    if lc == 255 {
        return LENGTH_CODES - 1;
    }
    let mut base = 0;
    for (code, &extra) in EXTRA_LBITS.iter().enumerate().take(LENGTH_CODES - 1) {
        let next = base + (1usize << extra);
        if lc < next {
            return code;
        }
        base = next;
    }
    unreachable!("match length code {lc} out of range")
}

/// Distance code (0..29) of a match distance − 1 (zlib's `d_code`).
fn dist_code(dist: usize) -> usize {
    let mut base = 0;
    for (code, &extra) in EXTRA_DBITS.iter().enumerate() {
        let next = base + (1usize << extra);
        if dist < next {
            return code;
        }
        base = next;
    }
    unreachable!("distance {dist} out of range")
}

/// Fixed-Huffman code length of a literal/length symbol (RFC 1951 §3.2.6).
fn static_llen(n: usize) -> usize {
    match n {
        0..=143 => 8,
        144..=255 => 9,
        256..=279 => 7,
        _ => 8,
    }
}

/// One Huffman tree under construction (zlib's `ct_data` array and `tree_desc`). zlib keeps
/// freq/code and dad/len in unions; only freq, dad and len matter for lengths, and keeping
/// them apart changes nothing because zlib never reads a field after its union partner is
/// written.
struct Tree {
    freq: Vec<u32>,
    dad: Vec<usize>,
    len: Vec<usize>,
    elems: usize,
    max_length: usize,
    /// Fixed-code lengths (`None` for the bit-length tree).
    static_len: Option<fn(usize) -> usize>,
    extra: &'static [u8],
    extra_base: usize,
    max_code: isize,
}

impl Tree {
    fn new(
        elems: usize,
        max_length: usize,
        static_len: Option<fn(usize) -> usize>,
        extra: &'static [u8],
        extra_base: usize,
    ) -> Tree {
        let size = 2 * elems + 1;
        Tree {
            freq: vec![0; size],
            dad: vec![0; size],
            len: vec![0; size],
            elems,
            max_length,
            static_len,
            extra,
            extra_base,
            max_code: -1,
        }
    }
}

/// The shared heap of `build_tree` and the running bit counts of a block.
struct Heap {
    heap: [usize; HEAP_SIZE],
    heap_len: usize,
    heap_max: usize,
    depth: [u8; HEAP_SIZE],
    bl_count: [usize; MAX_BITS + 1],
    opt_len: i64,
    static_len: i64,
}

fn smaller(t: &Tree, depth: &[u8], n: usize, m: usize) -> bool {
    t.freq[n] < t.freq[m] || (t.freq[n] == t.freq[m] && depth[n] <= depth[m])
}

impl Heap {
    fn pqdownheap(&mut self, t: &Tree, mut k: usize) {
        let v = self.heap[k];
        let mut j = k << 1;
        while j <= self.heap_len {
            if j < self.heap_len && smaller(t, &self.depth, self.heap[j + 1], self.heap[j]) {
                j += 1;
            }
            if smaller(t, &self.depth, v, self.heap[j]) {
                break;
            }
            self.heap[k] = self.heap[j];
            k = j;
            j <<= 1;
        }
        self.heap[k] = v;
    }

    /// zlib's `build_tree` up to `gen_bitlen` (codes are not needed): sets `t.len` and
    /// `t.max_code`, adds the tree's data bits to `opt_len` and `static_len`.
    fn build_tree(&mut self, t: &mut Tree) {
        let elems = t.elems;
        let mut max_code: isize = -1;
        self.heap_len = 0;
        self.heap_max = HEAP_SIZE;
        for n in 0..elems {
            if t.freq[n] != 0 {
                self.heap_len += 1;
                self.heap[self.heap_len] = n;
                max_code = n as isize;
                self.depth[n] = 0;
            } else {
                t.len[n] = 0;
            }
        }
        // At least two codes of non-zero frequency.
        while self.heap_len < 2 {
            let node = if max_code < 2 {
                max_code += 1;
                max_code as usize
            } else {
                0
            };
            self.heap_len += 1;
            self.heap[self.heap_len] = node;
            t.freq[node] = 1;
            self.depth[node] = 0;
            self.opt_len -= 1;
            if let Some(sl) = t.static_len {
                self.static_len -= sl(node) as i64;
            }
        }
        t.max_code = max_code;
        for n in (1..=self.heap_len / 2).rev() {
            self.pqdownheap(t, n);
        }
        let mut node = elems;
        loop {
            let n = self.heap[1];
            self.heap[1] = self.heap[self.heap_len];
            self.heap_len -= 1;
            self.pqdownheap(t, 1);
            let m = self.heap[1];
            self.heap_max -= 1;
            self.heap[self.heap_max] = n;
            self.heap_max -= 1;
            self.heap[self.heap_max] = m;
            t.freq[node] = t.freq[n] + t.freq[m];
            self.depth[node] = self.depth[n].max(self.depth[m]) + 1;
            t.dad[n] = node;
            t.dad[m] = node;
            self.heap[1] = node;
            node += 1;
            self.pqdownheap(t, 1);
            if self.heap_len < 2 {
                break;
            }
        }
        self.heap_max -= 1;
        self.heap[self.heap_max] = self.heap[1];
        self.gen_bitlen(t);
    }

    fn gen_bitlen(&mut self, t: &mut Tree) {
        let max_code = t.max_code as usize;
        let max_length = t.max_length;
        self.bl_count = [0; MAX_BITS + 1];
        let mut overflow = 0i64;
        t.len[self.heap[self.heap_max]] = 0; // root
        let mut h = self.heap_max + 1;
        while h < HEAP_SIZE {
            let n = self.heap[h];
            h += 1;
            let mut bits = t.len[t.dad[n]] + 1;
            if bits > max_length {
                bits = max_length;
                overflow += 1;
            }
            t.len[n] = bits;
            if n > max_code {
                continue; // not a leaf
            }
            self.bl_count[bits] += 1;
            let xbits = if n >= t.extra_base { t.extra[n - t.extra_base] as usize } else { 0 };
            let f = t.freq[n] as i64;
            self.opt_len += f * (bits + xbits) as i64;
            if let Some(sl) = t.static_len {
                self.static_len += f * (sl(n) + xbits) as i64;
            }
        }
        if overflow == 0 {
            return;
        }
        loop {
            let mut bits = max_length - 1;
            while self.bl_count[bits] == 0 {
                bits -= 1;
            }
            self.bl_count[bits] -= 1;
            self.bl_count[bits + 1] += 2;
            self.bl_count[max_length] -= 1;
            overflow -= 2;
            if overflow <= 0 {
                break;
            }
        }
        let mut h = HEAP_SIZE;
        for bits in (1..=max_length).rev() {
            let mut n = self.bl_count[bits];
            while n != 0 {
                h -= 1;
                let m = self.heap[h];
                if m > max_code {
                    continue;
                }
                if t.len[m] != bits {
                    self.opt_len += (bits as i64 - t.len[m] as i64) * t.freq[m] as i64;
                    t.len[m] = bits;
                }
                n -= 1;
            }
        }
    }
}

/// zlib's `scan_tree`: the bit-length-code frequencies of sending `t`'s code lengths.
fn scan_tree(t: &mut Tree, bl: &mut Tree) {
    let max_code = t.max_code;
    let mut prevlen: isize = -1;
    let mut nextlen = t.len[0];
    let mut count = 0usize;
    let (mut max_count, mut min_count) = if nextlen == 0 { (138, 3) } else { (7, 4) };
    t.len[(max_code + 1) as usize] = 0xffff; // guard
    for n in 0..=max_code as usize {
        let curlen = nextlen;
        nextlen = t.len[n + 1];
        count += 1;
        if count < max_count && curlen == nextlen {
            continue;
        } else if count < min_count {
            bl.freq[curlen] += count as u32;
        } else if curlen != 0 {
            if curlen as isize != prevlen {
                bl.freq[curlen] += 1;
            }
            bl.freq[REP_3_6] += 1;
        } else if count <= 10 {
            bl.freq[REPZ_3_10] += 1;
        } else {
            bl.freq[REPZ_11_138] += 1;
        }
        count = 0;
        prevlen = curlen as isize;
        (max_count, min_count) = if nextlen == 0 {
            (138, 3)
        } else if curlen == nextlen {
            (6, 3)
        } else {
            (7, 4)
        };
    }
}

struct Deflate<'a> {
    input: &'a [u8],
    next_in: usize,
    /// Two windows plus room for `longest_match` to read past the end (zlib reads up to
    /// strstart + 258; what it reads there never changes the result, see `longest_match`).
    window: Vec<u8>,
    head: Vec<u16>,
    prev: Vec<u16>,
    ins_h: usize,
    strstart: usize,
    block_start: isize,
    lookahead: usize,
    insert: usize,
    match_length: usize,
    match_start: usize,
    prev_length: usize,
    prev_match: usize,
    match_available: bool,
    symbols: usize,
    ltree: Tree,
    dtree: Tree,
    bltree: Tree,
    heap: Heap,
    /// Bits of deflate data written so far.
    bits: u64,
}

impl<'a> Deflate<'a> {
    fn new(input: &'a [u8]) -> Self {
        let mut d = Deflate {
            input,
            next_in: 0,
            window: vec![0; WINDOW_SIZE + MAX_MATCH + 8],
            head: vec![0; HASH_SIZE],
            prev: vec![0; W_SIZE],
            ins_h: 0,
            strstart: 0,
            block_start: 0,
            lookahead: 0,
            insert: 0,
            match_length: MIN_MATCH - 1,
            match_start: 0,
            prev_length: MIN_MATCH - 1,
            prev_match: 0,
            match_available: false,
            symbols: 0,
            ltree: Tree::new(L_CODES, MAX_BITS, Some(static_llen), &EXTRA_LBITS, LITERALS + 1),
            dtree: Tree::new(D_CODES, MAX_BITS, Some(|_| 5), &EXTRA_DBITS, 0),
            bltree: Tree::new(BL_CODES, MAX_BL_BITS, None, &EXTRA_BLBITS, 0),
            heap: Heap {
                heap: [0; HEAP_SIZE],
                heap_len: 0,
                heap_max: 0,
                depth: [0; HEAP_SIZE],
                bl_count: [0; MAX_BITS + 1],
                opt_len: 0,
                static_len: 0,
            },
            bits: 0,
        };
        d.init_block();
        d
    }

    fn update_hash(&mut self, c: u8) {
        self.ins_h = ((self.ins_h << HASH_SHIFT) ^ c as usize) & HASH_MASK;
    }

    /// INSERT_STRING: returns the previous head of the string's hash chain.
    fn insert_string(&mut self, s: usize) -> usize {
        self.update_hash(self.window[s + MIN_MATCH - 1]);
        let head = self.head[self.ins_h];
        self.prev[s & W_MASK] = head;
        self.head[self.ins_h] = s as u16;
        head as usize
    }

    fn slide_hash(&mut self) {
        for p in self.head.iter_mut().chain(self.prev.iter_mut()) {
            *p = if *p as usize >= W_SIZE { (*p as usize - W_SIZE) as u16 } else { 0 };
        }
    }

    fn fill_window(&mut self) {
        loop {
            let mut more = WINDOW_SIZE - self.lookahead - self.strstart;
            if self.strstart >= W_SIZE + MAX_DIST {
                let keep = W_SIZE - more;
                self.window.copy_within(W_SIZE..W_SIZE + keep, 0);
                self.match_start = self.match_start.wrapping_sub(W_SIZE);
                self.strstart -= W_SIZE;
                self.block_start -= W_SIZE as isize;
                if self.insert > self.strstart {
                    self.insert = self.strstart;
                }
                self.slide_hash();
                more += W_SIZE;
            }
            if self.next_in == self.input.len() {
                break;
            }
            let n = more.min(self.input.len() - self.next_in);
            let at = self.strstart + self.lookahead;
            self.window[at..at + n].copy_from_slice(&self.input[self.next_in..self.next_in + n]);
            self.next_in += n;
            self.lookahead += n;
            if self.lookahead + self.insert >= MIN_MATCH {
                let mut s = self.strstart - self.insert;
                self.ins_h = self.window[s] as usize;
                self.update_hash(self.window[s + 1]);
                while self.insert > 0 {
                    self.update_hash(self.window[s + MIN_MATCH - 1]);
                    self.prev[s & W_MASK] = self.head[self.ins_h];
                    self.head[self.ins_h] = s as u16;
                    s += 1;
                    self.insert -= 1;
                    if self.lookahead + self.insert < MIN_MATCH {
                        break;
                    }
                }
            }
            if !(self.lookahead < MIN_LOOKAHEAD && self.next_in < self.input.len()) {
                break;
            }
        }
    }

    /// zlib's `longest_match` (the portable, byte-by-byte variant). Bytes past the lookahead
    /// may be compared, but a candidate that matches every lookahead byte reaches `nice_match`
    /// (clamped to the lookahead) and ends the search, and the result is clamped to the
    /// lookahead, so they never change which match is used.
    fn longest_match(&mut self, mut cur_match: usize) -> usize {
        let mut chain_length = MAX_CHAIN;
        let scan = self.strstart;
        let mut best_len = self.prev_length;
        let mut nice_match = NICE_MATCH;
        let limit = self.strstart.saturating_sub(MAX_DIST);
        if self.prev_length >= GOOD_MATCH {
            chain_length >>= 2;
        }
        if nice_match > self.lookahead {
            nice_match = self.lookahead;
        }
        let w = &self.window;
        let mut scan_end1 = w[scan + best_len - 1];
        let mut scan_end = w[scan + best_len];
        loop {
            let m = cur_match;
            if w[m + best_len] == scan_end
                && w[m + best_len - 1] == scan_end1
                && w[m] == w[scan]
                && w[m + 1] == w[scan + 1]
            {
                // zlib skips index 2 (equal by the hash) and compares from index 3 on.
                let mut len = 3;
                while len < MAX_MATCH && w[scan + len] == w[m + len] {
                    len += 1;
                }
                if len > best_len {
                    self.match_start = cur_match;
                    best_len = len;
                    if len >= nice_match {
                        break;
                    }
                    scan_end1 = w[scan + best_len - 1];
                    scan_end = w[scan + best_len];
                }
            }
            cur_match = self.prev[cur_match & W_MASK] as usize;
            if cur_match <= limit {
                break;
            }
            chain_length -= 1;
            if chain_length == 0 {
                break;
            }
        }
        best_len.min(self.lookahead)
    }

    fn init_block(&mut self) {
        self.ltree.freq[..L_CODES].fill(0);
        self.dtree.freq[..D_CODES].fill(0);
        self.bltree.freq[..BL_CODES].fill(0);
        self.ltree.freq[END_BLOCK] = 1;
        self.heap.opt_len = 0;
        self.heap.static_len = 0;
        self.symbols = 0;
    }

    /// `_tr_tally` for a literal; true when the block is full.
    fn tally_lit(&mut self, c: u8) -> bool {
        self.ltree.freq[c as usize] += 1;
        self.symbols += 1;
        self.symbols == SYMBOLS_PER_BLOCK
    }

    /// `_tr_tally` for a match of `length` at `dist`; true when the block is full.
    fn tally_dist(&mut self, dist: usize, length: usize) -> bool {
        self.ltree.freq[length_code(length - MIN_MATCH) + LITERALS + 1] += 1;
        self.dtree.freq[dist_code(dist - 1)] += 1;
        self.symbols += 1;
        self.symbols == SYMBOLS_PER_BLOCK
    }

    /// `_tr_flush_block`, counting bits.
    fn flush_block(&mut self, last: bool) {
        let stored_len = (self.strstart as isize - self.block_start) as u64;
        let have_buf = self.block_start >= 0;
        self.heap.build_tree(&mut self.ltree);
        self.heap.build_tree(&mut self.dtree);
        // build_bl_tree
        scan_tree(&mut self.ltree, &mut self.bltree);
        scan_tree(&mut self.dtree, &mut self.bltree);
        self.heap.build_tree(&mut self.bltree);
        let mut max_blindex = BL_CODES - 1;
        while max_blindex >= 3 && self.bltree.len[BL_ORDER[max_blindex]] == 0 {
            max_blindex -= 1;
        }
        self.heap.opt_len += 3 * (max_blindex as i64 + 1) + 5 + 5 + 4;

        let opt_len = self.heap.opt_len as u64;
        let static_len = self.heap.static_len as u64;
        let mut opt_lenb = (opt_len + 3 + 7) >> 3;
        let static_lenb = (static_len + 3 + 7) >> 3;
        if static_lenb <= opt_lenb {
            opt_lenb = static_lenb;
        }
        if stored_len + 4 <= opt_lenb && have_buf {
            self.bits += 3;
            self.bits = (self.bits + 7) & !7;
            self.bits += 32 + 8 * stored_len;
        } else if static_lenb == opt_lenb {
            self.bits += 3 + static_len;
        } else {
            self.bits += 3 + opt_len;
        }
        self.init_block();
        if last {
            self.bits = (self.bits + 7) & !7;
        }
        self.block_start = self.strstart as isize;
    }

    /// `deflate_slow` with `Z_FINISH`, all input available.
    fn run(&mut self) {
        loop {
            if self.lookahead < MIN_LOOKAHEAD {
                self.fill_window();
                if self.lookahead == 0 {
                    break;
                }
            }
            let mut hash_head = 0;
            if self.lookahead >= MIN_MATCH {
                hash_head = self.insert_string(self.strstart);
            }
            self.prev_length = self.match_length;
            self.prev_match = self.match_start;
            self.match_length = MIN_MATCH - 1;
            if hash_head != 0 && self.prev_length < MAX_LAZY && self.strstart - hash_head <= MAX_DIST {
                self.match_length = self.longest_match(hash_head);
                if self.match_length == MIN_MATCH && self.strstart.wrapping_sub(self.match_start) > TOO_FAR {
                    self.match_length = MIN_MATCH - 1;
                }
            }
            if self.prev_length >= MIN_MATCH && self.match_length <= self.prev_length {
                let max_insert = self.strstart + self.lookahead - MIN_MATCH;
                let dist = (self.strstart - 1).wrapping_sub(self.prev_match);
                let bflush = self.tally_dist(dist, self.prev_length);
                self.lookahead -= self.prev_length - 1;
                self.prev_length -= 2;
                loop {
                    self.strstart += 1;
                    if self.strstart <= max_insert {
                        self.insert_string(self.strstart);
                    }
                    self.prev_length -= 1;
                    if self.prev_length == 0 {
                        break;
                    }
                }
                self.match_available = false;
                self.match_length = MIN_MATCH - 1;
                self.strstart += 1;
                if bflush {
                    self.flush_block(false);
                }
            } else if self.match_available {
                if self.tally_lit(self.window[self.strstart - 1]) {
                    self.flush_block(false);
                }
                self.strstart += 1;
                self.lookahead -= 1;
            } else {
                self.match_available = true;
                self.strstart += 1;
                self.lookahead -= 1;
            }
        }
        if self.match_available {
            self.tally_lit(self.window[self.strstart - 1]);
            self.match_available = false;
        }
        self.flush_block(true);
    }
}

/// `len(zlib.compress(data))` in Python (level 6), for zlib proper (see the module docs).
pub fn compressed_len(data: &[u8]) -> usize {
    let mut d = Deflate::new(data);
    d.run();
    debug_assert_eq!(d.bits % 8, 0);
    2 + (d.bits / 8) as usize + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc1951() {
        // length 3 -> 257 (code 0), 10 -> 264 (7), 11 -> 265 (8), 258 -> 285 (28)
        assert_eq!(length_code(0), 0);
        assert_eq!(length_code(7), 7);
        assert_eq!(length_code(8), 8);
        assert_eq!(length_code(254), 27);
        assert_eq!(length_code(255), 28);
        // distance 1 -> 0, 5 -> 4, 7 -> 5, 32768 -> 29
        assert_eq!(dist_code(0), 0);
        assert_eq!(dist_code(4), 4);
        assert_eq!(dist_code(6), 5);
        assert_eq!(dist_code(32767), 29);
    }
}
